"""A prompt record as a JSON document: its schema and version, a list of entries, and the checks it passes.

Every record read back (a sidecar, a segment tag) or written goes through :func:`check_record`, which
checks the schema, the version and every entry's fields (:mod:`medsamkit.record_schema`); a corrupt or
foreign record is refused with :class:`RecordError`, saying what is wrong and what to do. What an entry
holds: :mod:`medsamkit.records.record`.
"""
from __future__ import annotations

import json

from .. import record_schema
from ..errors import InputError

SCHEMA = "medsamkit.prompt-record"
SCHEMA_VERSION = 1
KINDS, WRITE_MODES, REGIONS = record_schema.KINDS, record_schema.WRITE_MODES, record_schema.REGIONS


class RecordError(InputError):
    """A prompt record that cannot be used: not JSON, another program's, a newer schema, or damaged."""


def new_record(entries=()) -> dict:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "entries": list(entries)}


def append_entry(record: "dict | None", entry: dict) -> dict:
    """A new record with ``entry`` appended; older entries of the same segment lose their snapshot."""
    record = new_record() if record is None else record
    seg = entry["segment"]["id"]
    entries = []
    for e in record["entries"]:
        if e["segment"]["id"] == seg and "snapshot" in e.get("result", {}):
            e = dict(e, result={k: v for k, v in e["result"].items() if k != "snapshot"})
        entries.append(e)
    return new_record(entries + [entry])


def dumps(record: dict, indent: int | None = 1) -> str:
    check_record(record)
    return json.dumps(record, indent=indent, allow_nan=False)


def loads(text: str, source: str = "record") -> dict:
    """Parse and check a record; RecordError with what is wrong and what to do."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise RecordError(f"{source} is not a prompt record: its JSON is nested too deeply. Use the record from the "
                          ".seg.nrrd or the sidecar written with it.") from None
    except (ValueError, TypeError) as exc:
        raise RecordError(f"{source} is not a prompt record: not valid JSON ({exc}). The file may be truncated or "
                          "edited by hand; use the record from the .seg.nrrd or the sidecar written with it.") from exc
    return check_record(data, source)


def check_record(data, source: str = "record") -> dict:
    """Checks a parsed record's schema and every entry's fields, types and limits (:mod:`medsamkit.record_schema`)
    before anything uses it; returns it. Raises RecordError naming the record, the entry and the field."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise RecordError(f"{source} is not a medsamkit prompt record (schema {str(found)[:80]!r}, expected "
                          f"'{SCHEMA}'). Give the .prompts.json sidecar or a .seg.nrrd written by medsamkit.")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordError(f"{source} has no valid schema_version ({str(version)[:40]!r}); the record is damaged.")
    if version > SCHEMA_VERSION:
        raise RecordError(f"{source} uses prompt-record schema {version}, newer than this medsamkit reads "
                          f"({SCHEMA_VERSION}); update medsamkit (python -m pip install -U medsamkit).")
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise RecordError(f"{source} has no list of entries; the record is damaged.")
    if len(entries) > record_schema.MAX_ENTRIES:
        raise RecordError(f"{source} holds {len(entries):,} entries; records of at most "
                          f"{record_schema.MAX_ENTRIES:,} are read. Split the record.")
    for n, e in enumerate(entries, 1):
        try:
            record_schema.check_entry(e)
        except record_schema.Problem as exc:
            name = e.get("id") if isinstance(e, dict) and isinstance(e.get("id"), str) else None
            where = f"{source}, entry {n}" + (f" (id {name[:16]})" if name else "")
            raise RecordError(f"{where}, field {exc.field}: {exc.what}. The record is damaged and cannot be used; "
                              "use an intact copy (the sidecar or the .seg.nrrd written with the result).") from None
    return data
