"""``medsamkit models list|fetch KIND|add FILE``: the model catalog, downloads on demand, hand-copied files.

``fetch --progress json`` prints one JSON object per line (events ``start``, ``progress`` with ``done``,
``total`` and ``speed`` in bytes, ``waiting``, ``verify``, ``done`` with ``path``, and at the end either
``done`` or ``error`` / ``licence_required`` with ``message``): the Slicer dialog reads these.
Exit status: 0 done, 2 error, 3 licence not accepted, 130 interrupted (a partial download is kept and resumed).
"""
from __future__ import annotations

import json
import signal
import sys

from . import arg_types


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("models", help="list, download (fetch) or register (add) model weights",
                              description="Models from their authors: the catalog, the per-user cache "
                                          "($MEDSAMKIT_CACHE_DIR), downloads with verification (docs/models.md).")
    sub = p.add_subparsers(dest="models_command", required=True)
    q = sub.add_parser("list", help="catalog kinds, which are cached, sizes, licences")
    q.add_argument("--json", action="store_true", help="print the list as JSON")
    q.set_defaults(func=cmd_list)
    q = sub.add_parser("fetch", help="download a model's weights into the cache (verified; resumes)")
    q.add_argument("kind", metavar="KIND")
    q.add_argument("--progress", default="auto", choices=("auto", "tqdm", "json", "none"),
                   help="auto: a bar on a terminal, lines otherwise; json: one JSON event per line on stdout")
    q.add_argument("--accept-licence", action="store_true",
                   help="accept the model's licence when it restricts use (it is printed first)")
    q.add_argument("--timeout", type=arg_types.positive_float, default=None, metavar="SECONDS",
                   help="give up after this long without data (default 30, or $MEDSAMKIT_DOWNLOAD_TIMEOUT)")
    q.set_defaults(func=cmd_fetch)
    q = sub.add_parser("add", help="verify a hand-copied weights file and register it (offline sites)")
    q.add_argument("file", metavar="FILE")
    q.add_argument("--model", default=None, metavar="KIND", help="catalog kind (default: from the file name/keys)")
    q.set_defaults(func=cmd_add)


def _rows():
    from ..models import download
    from ..models.catalog import load_catalog
    from ..models.registry import MODEL_KINDS, get_spec

    rows = []
    for kind in MODEL_KINDS:
        spec = get_spec(kind)
        if spec.default_checkpoint is not None and kind not in load_catalog():
            rows.append({"kind": kind, "title": spec.title, "status": "bundled", "file": None, "size": None,
                         "verification": "bundled", "licence": "see the package", "restricted": False})
    for kind, entry in load_catalog().items():
        path = download.models_dir() / entry.filename
        record = {}
        if path.is_file():
            try:
                record = json.loads((path.with_name(path.name + ".json")).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record = {}
        status = "cached" if record else ("unverified file" if path.is_file() else
                                          ("download" if entry.urls else "manual download"))
        rows.append({"kind": kind, "title": entry.title, "status": status, "file": str(path),
                     "size": path.stat().st_size if path.is_file() else entry.size,
                     "verification": entry.verification, "licence": entry.licence, "restricted": entry.restricted})
    return rows


def cmd_list(args) -> int:
    from ..models import download

    rows = _rows()
    if args.json:
        print(json.dumps({"folder": str(download.models_dir()), "models": rows}, indent=1))
        return 0
    print(f"model folder: {download.models_dir()}")
    for r in rows:
        size = f"{r['size'] / 1e6:,.0f} MB" if r["size"] else "size n/a"
        lic = r["licence"].split(" (")[0] + (" [restricted]" if r["restricted"] else "")
        print(f"  {r['kind']:<11} {r['status']:<16} {size:>10}  check: {r['verification']:<7} licence: {lic}")
    return 0


def _events(mode: str):
    from ..models import download

    if mode == "json":
        return download.JsonLines(sys.stdout)
    if mode == "none":
        return None
    if mode == "tqdm" or (mode == "auto" and sys.stderr.isatty()):
        return download.TqdmBytes(sys.stderr)
    return download.default_events()


def cmd_fetch(args) -> int:
    from ..errors import MedSAMError
    from ..models import download
    from ..models.catalog import get_entry

    events = _events(args.progress)
    accept = args.accept_licence
    signal.signal(signal.SIGTERM, _raise_interrupt)  # Cancel in Slicer terminates us: keep the .part resumable
    try:
        entry = get_entry(args.kind)
        if (entry.restricted and not accept and not download.licence_accepted(entry)
                and args.progress != "json" and sys.stdin.isatty()):
            print(download.licence_notice(entry), file=sys.stderr)
            accept = input("Accept this licence and download? [y/N] ").strip().lower() in ("y", "yes")
            if not accept:
                print("not accepted; nothing was downloaded", file=sys.stderr)
                return 3
        path = download.ensure_checkpoint(args.kind, events=events, accept_licence=accept, timeout=args.timeout)
    except download.LicenceNotAccepted as exc:
        if args.progress == "json":
            e = exc.entry
            download.JsonLines()({"event": "licence_required", "kind": e.kind, "title": e.title,
                                  "licence": e.licence, "licence_url": e.licence_url, "citation": e.citation,
                                  "message": str(exc)})
        else:
            print(f"medsamkit models fetch: {exc}", file=sys.stderr)
        return 3
    except MedSAMError as exc:
        if args.progress != "json":
            raise
        download.JsonLines()({"event": "error", "message": str(exc)})
        return 2
    except KeyboardInterrupt:
        if args.progress == "json":
            download.JsonLines()({"event": "error", "message": "cancelled; the partial download is kept"})
        print("interrupted; the partial download is kept and the next fetch resumes it", file=sys.stderr)
        return 130
    finally:
        if isinstance(events, download.TqdmBytes):
            events.close()
    if args.progress == "json":
        pass  # the 'done' event (or the verify of a cached file) already carries the path
    else:
        print(path)
    return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_add(args) -> int:
    from ..models import download

    path = download.add_file(args.file, kind=args.model)
    print(f"registered {path}")
    return 0
