"""Regenerate the API lists the strict stand-ins check against (Testing/extension/api/*.json).

Nothing here is written by hand: every name comes from the sources of the real thing.

- ``qt-5.15.json``: Qt 5.15 classes the GUI files touch, from PyQt5's class metadata
  (``QMetaObject``: properties with their writability, signals, slots; ``dir()``: the other
  methods, as PythonQt wraps every public method of a Qt class) and enum values.
  Needs PyQt5 (``pip install PyQt5==5.15.*`` in a throw-away environment; it is not a project dependency).
- ``slicer-<tag>.json``: the Slicer and CTK classes the GUI files touch, parsed from their C++ headers
  (``Q_PROPERTY``, ``Q_INVOKABLE``, public slots, signals, public enums: what PythonQt exposes of a
  Slicer/CTK QObject), Slicer's Python base classes (method names) and ``slicer.util`` functions
  (names and parameters), read from a Slicer git repository at a tag, with CTK at the revision that
  tag pins in SuperBuild/External_CTK.cmake.

Usage (paths are wherever you fetched the repositories; nothing machine-specific is stored)::

    python Testing/extension/api/generate_api.py slicer --slicer-git <Slicer repo> --ctk-git <CTK repo> --tag v5.8.0
    python Testing/extension/api/generate_api.py slicer --slicer-git <Slicer repo> --ctk-git <CTK repo> --tag v5.10.0
    python Testing/extension/api/generate_api.py qt      # in an environment with PyQt5
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Slicer/CTK C++ classes the GUI files reach (directly or through the scripted base classes), with their
# header path inside the repository. Bases are followed through the same table.
SLICER_HEADERS = {
    "qSlicerSegmentEditorAbstractEffect": "Modules/Loadable/Segmentations/EditorEffects/qSlicerSegmentEditorAbstractEffect.h",
    "qSlicerSegmentEditorScriptedEffect": "Modules/Loadable/Segmentations/EditorEffects/qSlicerSegmentEditorScriptedEffect.h",
    "qSlicerSegmentEditorEffectFactory": "Modules/Loadable/Segmentations/EditorEffects/qSlicerSegmentEditorEffectFactory.h",
    "qSlicerAbstractCoreModule": "Base/QTCore/qSlicerAbstractCoreModule.h",
    "qSlicerAbstractModule": "Base/QTGUI/qSlicerAbstractModule.h",
    "qSlicerLoadableModule": "Base/QTGUI/qSlicerLoadableModule.h",
    "qSlicerScriptedLoadableModule": "Base/QTGUI/qSlicerScriptedLoadableModule.h",
    "qSlicerCoreApplication": "Base/QTCore/qSlicerCoreApplication.h",
    "qSlicerApplication": "Base/QTGUI/qSlicerApplication.h",
    "qMRMLNodeComboBox": "Libs/MRML/Widgets/qMRMLNodeComboBox.h",
    "qMRMLAbstractViewWidget": "Libs/MRML/Widgets/qMRMLAbstractViewWidget.h",
    "qMRMLSliceWidget": "Libs/MRML/Widgets/qMRMLSliceWidget.h",
    "qMRMLWidget": "Libs/MRML/Widgets/qMRMLWidget.h",
    "qMRMLLayoutManager": "Libs/MRML/Widgets/qMRMLLayoutManager.h",
    "qSlicerLayoutManager": "Base/QTGUI/qSlicerLayoutManager.h",
    "qMRMLSegmentEditorWidget": "Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h",
}
CTK_HEADERS = {
    "ctkPathLineEdit": "Libs/Widgets/ctkPathLineEdit.h",
    "ctkCollapsibleButton": "Libs/Widgets/ctkCollapsibleButton.h",
    "ctkVTKAbstractView": "Libs/Visualization/VTK/Widgets/ctkVTKAbstractView.h",
    "ctkVTKSliceView": "Libs/Visualization/VTK/Widgets/ctkVTKSliceView.h",
}
SLICER_PYTHON = {
    "AbstractScriptedSegmentEditorEffect":
        "Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/AbstractScriptedSegmentEditorEffect.py",
    "ScriptedLoadableModule": "Base/Python/slicer/ScriptedLoadableModule.py",
}
SLICER_UTIL = "Base/Python/slicer/util.py"

# Qt classes the GUI files and the stand-ins use (bases are included by PyQt5's dir()).
QT_CLASSES = ["QObject", "QTimer", "QWidget", "QFrame", "QLabel", "QLineEdit", "QComboBox", "QAbstractButton",
              "QPushButton", "QRadioButton", "QCheckBox", "QGroupBox", "QProgressBar", "QSpinBox",
              "QDoubleSpinBox", "QListWidget", "QLayout", "QBoxLayout", "QHBoxLayout", "QVBoxLayout",
              "QFormLayout", "QApplication", "QIcon", "QCursor", "QMainWindow", "QToolButton", "QButtonGroup",
              "QSettings"]
QT_NAMESPACE_ENUMS = ["CursorShape", "AlignmentFlag", "Orientation", "CheckState"]


def git_show(repo: Path, rev: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{path}"], check=True, capture_output=True,
                          text=True).stdout


# ----------------------------------------------------------------------------------------------- C++ headers
def _strip_comments(text: str) -> str:
    """Comments and the contents of string/char literals removed in one left-to-right pass."""
    token = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
    return token.sub(lambda m: " " if m.group(0)[0] == "/" else '""', text)


def _class_body(text: str, name: str) -> tuple[str, list[str]]:
    m = re.search(r"\bclass\s+(?:\w+\s+)?" + name + r"\s*(?::\s*([^{]*))?\{", text)
    if m is None:
        raise ValueError(f"class {name} not found")
    bases = [b.split()[-1] for b in (m.group(1) or "").split(",") if b.strip()]
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end():i - 1], bases


def _flatten_braces(body: str) -> str:
    """Inline function bodies and enum bodies become ';' so the body splits into declarations."""
    out, depth = [], 0
    for ch in body:
        if ch == "{":
            depth += 1
            if depth == 1:
                out.append(";")
            continue
        if ch == "}":
            depth -= 1
            continue
        if depth == 0:
            out.append(ch)
    return "".join(out)


def _signature(decl: str) -> tuple[str, str] | None:
    m = re.search(r"(~?\w+)\s*\((.*)\)\s*(?:const)?\s*(?:override)?\s*(?:=\s*0)?\s*$", decl.strip(), re.S)
    if m is None:
        return None
    params = []
    for p in _split_params(m.group(2)):
        p = p.split("=")[0].strip()
        if not p or p == "void":
            continue
        p = re.sub(r"\bconst\b", "", p).replace("&", " ").strip()
        toks = re.findall(r"[\w:<>,]+\**|\*+", p)
        toks = [t for t in toks if t]
        if len(toks) >= 2 and re.fullmatch(r"\w+", toks[-1]):
            toks = toks[:-1]
        params.append(re.sub(r"\s+\*", "*", " ".join(toks)))
    return m.group(1), f"{m.group(1)}({','.join(params)})"


def _split_params(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += {"<": 1, ">": -1, "(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def parse_header(text: str, name: str) -> dict:
    text = _strip_comments(text)
    body, bases = _class_body(text, name)
    api = {"bases": bases, "properties": {}, "signals": [], "slots": [], "invokables": [], "enums": {}}
    for m in re.finditer(r"Q_PROPERTY\s*\(([^)]*)\)", body):
        toks = m.group(1).split()
        idx = next(i for i, t in enumerate(toks) if t in ("READ", "MEMBER", "WRITE"))
        api["properties"][toks[idx - 1].lstrip("*&")] = {"writable": "WRITE" in toks or "MEMBER" in toks}
    section = "private"
    enum_re = re.compile(r"enum\s+(?:class\s+)?(\w+)\s*(?::\s*\w+\s*)?\{([^}]*)\}")
    # Enums are read with their section: split the body at access labels first.
    pieces = re.split(r"\b(public|protected|private)\s*(Q_SLOTS|slots)?\s*:|\b(signals|Q_SIGNALS)\s*:", body)
    i = 0
    chunks = [("private", pieces[0])]
    i = 1
    while i < len(pieces):
        access, slots, sig, chunk = pieces[i], pieces[i + 1], pieces[i + 2], pieces[i + 3]
        section = "signals" if sig else (f"{access} slots" if slots else access)
        chunks.append((section, chunk))
        i += 4
    for section, chunk in chunks:
        if section.startswith("public") or section == "signals":
            for em in enum_re.finditer(chunk):
                values = [v.split("=")[0].strip() for v in em.group(2).split(",") if v.split("=")[0].strip()]
                api["enums"][em.group(1)] = values
        for decl in _flatten_braces(enum_re.sub(";", chunk)).split(";"):
            decl = re.sub(r"Q_(PROPERTY|ENUMS?|OBJECT|DECLARE_PRIVATE|DISABLE_COPY|DECLARE_PUBLIC)\s*\([^)]*\)", "", decl)
            decl = re.sub(r"Q_OBJECT|QVTK_OBJECT", "", decl).strip()
            if "(" not in decl or decl.startswith(("friend", "typedef", "using")):
                continue
            sig = _signature(decl)
            if sig is None:
                continue
            fname, full = sig
            if section == "signals":
                api["signals"].append(full)
            elif section == "public slots":
                api["slots"].append(full)
            elif "Q_INVOKABLE" in decl and section.startswith("public"):
                api["invokables"].append(fname)
    for key in ("signals", "slots", "invokables"):
        api[key] = sorted(set(api[key]))
    return api


# ----------------------------------------------------------------------------------------------- Python files
def parse_python_classes(text: str) -> dict:
    tree = ast.parse(text)
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            methods = sorted(n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
            attrs = sorted({t.attr for n in ast.walk(node) if isinstance(n, ast.Assign) for t in n.targets
                            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"})
            out[node.name] = {"bases": [ast.unparse(b) for b in node.bases], "methods": methods,
                              "self_attributes": attrs}
    return out


def parse_python_functions(text: str) -> dict:
    tree = ast.parse(text)
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            a = node.args
            out[node.name] = {"args": [x.arg for x in a.posonlyargs + a.args],
                              "kwonly": [x.arg for x in a.kwonlyargs],
                              "varargs": a.vararg is not None, "varkw": a.kwarg is not None}
    return out


EDITOR_WIDGET = "Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.cxx"
SLICE_INTERSECTION_WIDGET = "Libs/MRML/DisplayableManager/vtkMRMLSliceIntersectionWidget.cxx"


def shortcuts(slicer_git: Path, tag: str) -> dict:
    """Keys taken before an effect sees them: the Segment Editor's QShortcuts (installKeyboardShortcuts;
    as VTK key symbols) and the slice view's own keys (vtkMRMLSliceIntersectionWidget)."""
    editor = git_show(slicer_git, tag, EDITOR_WIDGET)
    body = editor[editor.index("::installKeyboardShortcuts"):]
    body = body[:body.index("\n}\n")]
    vtk_names = {"Escape": "Escape", "Space": "space", "Slash": "slash", "Asterisk": "asterisk", "Comma": "comma",
                 "Period": "period", "Greater": "greater", "Less": "less"}
    keys = {vtk_names.get(k, k.lower() if len(k) == 1 else k) for k in re.findall(r"Qt::Key_(\w+)", body)}
    keys.discard("unknown")
    if "effectIndex % 10" in body:
        keys |= {str(d) for d in range(10)}
    slice_view = git_show(slicer_git, tag, SLICE_INTERSECTION_WIDGET)
    view_keys = set(re.findall(r'SetKeyboardEventTranslation\([^;]*?"(\w+)"', slice_view))
    return {"segment_editor": sorted(keys), "slice_view": sorted(view_keys),
            "source": [f"Slicer {tag}: {EDITOR_WIDGET}", f"Slicer {tag}: {SLICE_INTERSECTION_WIDGET}"]}


def slicer_api(slicer_git: Path, ctk_git: Path, tag: str) -> dict:
    ctk_cmake = git_show(slicer_git, tag, "SuperBuild/External_CTK.cmake")
    ctk_rev = re.search(r'Slicer_\$\{proj\}_GIT_TAG\s*"([0-9a-f]{40})"', ctk_cmake).group(1)
    classes = {}
    for name, path in SLICER_HEADERS.items():
        classes[name] = dict(parse_header(git_show(slicer_git, tag, path), name), source=f"Slicer {tag}: {path}")
    for name, path in CTK_HEADERS.items():
        classes[name] = dict(parse_header(git_show(ctk_git, ctk_rev, path), name), source=f"CTK {ctk_rev}: {path}")
    python = {}
    for name, path in SLICER_PYTHON.items():
        python[name] = dict(classes=parse_python_classes(git_show(slicer_git, tag, path)), source=f"Slicer {tag}: {path}")
    util = parse_python_functions(git_show(slicer_git, tag, SLICER_UTIL))
    return {"tag": tag, "ctk_revision": ctk_rev, "cpp": classes, "python": python,
            "shortcuts": shortcuts(slicer_git, tag),
            "slicer.util": {"source": f"Slicer {tag}: {SLICER_UTIL}", "functions": util}}


# ----------------------------------------------------------------------------------------------- Qt via PyQt5
def qt_api() -> dict:
    from PyQt5 import QtCore, QtGui, QtWidgets
    from PyQt5.QtCore import QMetaMethod

    out = {"qt_version": QtCore.QT_VERSION_STR, "classes": {}, "Qt": {}}
    for name in QT_CLASSES:
        cls = next(getattr(m, name) for m in (QtWidgets, QtGui, QtCore) if hasattr(m, name))
        entry = {"bases": [b.__name__ for b in cls.__mro__[1:] if b.__module__.startswith("PyQt5")],
                 "properties": {}, "signals": [], "slots": [], "methods": [], "enums": {}}
        meta = getattr(cls, "staticMetaObject", None)
        if meta is not None:
            for i in range(meta.propertyCount()):
                p = meta.property(i)
                entry["properties"][p.name()] = {"writable": bool(p.isWritable())}
            for i in range(meta.methodCount()):
                m = meta.method(i)
                sig = bytes(m.methodSignature()).decode()
                if m.methodType() == QMetaMethod.Signal:
                    entry["signals"].append(sig)
                elif m.methodType() == QMetaMethod.Slot and m.access() == QMetaMethod.Public:
                    entry["slots"].append(sig)
        for attr in dir(cls):
            if attr.startswith("_") or attr.startswith("pyqt"):
                continue
            value = getattr(cls, attr)
            if isinstance(value, int) and not callable(value):
                enum_type = type(value).__name__
                entry["enums"].setdefault(enum_type, []).append(attr)
            elif callable(value) and attr not in entry["properties"]:
                entry["methods"].append(attr)
        for key in ("signals", "slots", "methods"):
            entry[key] = sorted(set(entry[key]))
        out["classes"][name] = entry
    for enum in QT_NAMESPACE_ENUMS:
        out["Qt"][enum] = sorted(a for a in dir(QtCore.Qt) if type(getattr(QtCore.Qt, a)).__name__ == enum)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("slicer")
    s.add_argument("--slicer-git", type=Path, required=True, help="a git clone of github.com/Slicer/Slicer")
    s.add_argument("--ctk-git", type=Path, required=True, help="a git clone of github.com/commontk/CTK")
    s.add_argument("--tag", required=True, help="Slicer tag, e.g. v5.8.0")
    sub.add_parser("qt")
    args = ap.parse_args(argv)
    if args.what == "slicer":
        api, out = slicer_api(args.slicer_git, args.ctk_git, args.tag), HERE / f"slicer-{args.tag.lstrip('v')}.json"
    else:
        api, out = qt_api(), HERE / "qt-5.15.json"
    out.write_text(json.dumps(api, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out.name}")


if __name__ == "__main__":
    main()
