"""The ``medsamkit serve`` HTTP server (app.py, needs the ``server`` extra) and its protocol.

protocol.py and wire.py import only numpy and the standard library (zstandard when present), so
the client side (medsamkit.backend.remote) can use them without FastAPI installed.
"""
