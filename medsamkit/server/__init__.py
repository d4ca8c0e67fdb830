"""The ``medsamkit serve`` HTTP server (app.py, needs the ``server`` extra).

The protocol it speaks (paths, headers, status codes, API version, byte layout of frames) lives in
:mod:`medsamkit.protocol`, which the client (medsamkit.backend.remote) imports too; it needs only
numpy and the standard library (zstandard when present), so the client runs without FastAPI.
"""
