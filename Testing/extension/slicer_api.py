"""The real API the stand-ins are held to, read from the generated lists in Testing/extension/api/.

``members(cls)`` is what PythonQt would let Python touch on a C++ class (with its bases): properties
(and whether they are writable), signals (normalised signatures), slots and other callables, enum values.
Slicer/CTK classes come from both supported Slicer versions' headers and only names present in *both*
(5.8.0 and 5.10.0) count, since the extension must run on either. Qt classes come from Qt 5.15's
metadata. Regenerate the lists with api/generate_api.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

API_DIR = Path(__file__).resolve().parent / "api"
SLICER_VERSIONS = ("5.8.0", "5.10.0")


@dataclass
class Members:
    name: str
    properties: dict = field(default_factory=dict)   # name -> writable
    signals: set = field(default_factory=set)
    callables: set = field(default_factory=set)      # methods, slots (by name), invokables
    enums: set = field(default_factory=set)          # enum value names reachable as class attributes

    def has(self, name: str) -> bool:
        return name in self.properties or name in self.callables or name in self.enums or \
            any(s.split("(")[0] == name for s in self.signals)


@lru_cache(maxsize=None)
def _load(name: str) -> dict:
    return json.loads((API_DIR / name).read_text(encoding="utf-8"))


def qt_json() -> dict:
    return _load("qt-5.15.json")


def slicer_json(version: str) -> dict:
    return _load(f"slicer-{version}.json")


def _qt_members(name: str) -> Members:
    c = qt_json()["classes"][name]
    return Members(name, {k: v["writable"] for k, v in c["properties"].items()}, set(c["signals"]),
                   set(c["methods"]) | {s.split("(")[0] for s in c["slots"]},
                   {v for values in c["enums"].values() for v in values})


def _cpp_members(version: str, name: str) -> Members:
    classes = slicer_json(version)["cpp"]
    if name not in classes:
        qt = qt_json()["classes"]
        return _qt_members(name) if name in qt else Members(name)
    c = classes[name]
    m = Members(name, {k: v["writable"] for k, v in c["properties"].items()}, set(c["signals"]),
                set(c["invokables"]) | {s.split("(")[0] for s in c["slots"]},
                {v for values in c["enums"].values() for v in values})
    for base in c["bases"]:
        b = _cpp_members(version, base)
        m.properties = {**b.properties, **m.properties}
        m.signals |= b.signals
        m.callables |= b.callables
        m.enums |= b.enums
    return m


@lru_cache(maxsize=None)
def members(name: str) -> Members:
    """The API of a Qt, CTK or Slicer class; for Slicer/CTK classes the intersection over SLICER_VERSIONS."""
    if name in qt_json()["classes"]:
        return _qt_members(name)
    per_version = [_cpp_members(v, name) for v in SLICER_VERSIONS]
    if not any(name in slicer_json(v)["cpp"] for v in SLICER_VERSIONS):
        raise KeyError(f"{name} is in no API list: add it to api/generate_api.py and regenerate")
    m = per_version[0]
    for other in per_version[1:]:
        m = Members(name, {k: w for k, w in m.properties.items() if k in other.properties},
                    m.signals & other.signals, m.callables & other.callables, m.enums & other.enums)
    return m


def cpp_members_in(version: str, name: str) -> Members:
    """The API of a Slicer/CTK class in one Slicer version only (for version-specific checks)."""
    return _cpp_members(version, name)


def python_class_methods(version: str, module: str, cls: str) -> set:
    return set(slicer_json(version)["python"][module]["classes"][cls]["methods"])


def util_functions(version: str) -> dict:
    return slicer_json(version)["slicer.util"]["functions"]


def qt_enum(enum: str) -> list:
    return qt_json()["Qt"][enum]
