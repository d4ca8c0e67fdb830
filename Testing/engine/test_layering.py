"""Import directions (STYLE rule 1 and issue 14), checked on the source and in a fresh interpreter.

Layers, lowest first: the engine core (models, preprocessing, prompts, Predictor, propagation,
markers, metrics, fast engine, I/O) -> protocol (what client and server say to each other) ->
backend (one interface, local or remote) -> server / training / mrml -> the command lines. A module
may import only from its own layer or below; the table below names what each layer must not import.
Every ``import`` statement counts, also the ones inside functions (they run as soon as the function does).
"""
import ast
import json
import subprocess
import sys

from conftest import REPO

PACKAGE = REPO / "medsamkit"
CLI = {p.stem for p in PACKAGE.glob("cli*.py")} | {"__main__"}  # cli.py, cli_volume.py, cli_types.py, ...
NOT_CORE = {"backend", "server", "protocol", "training", "mrml", "bench"} | CLI

#: top-level part of medsamkit (package or module) -> parts it must never import
FORBIDDEN = {
    "core": NOT_CORE,
    "models": {"training"} | NOT_CORE,
    "protocol": NOT_CORE - {"protocol"},
    "backend": {"server", "training", "mrml", "bench"} | CLI,
    "server": {"training", "mrml", "bench"} | CLI,
    "training": {"server", "mrml", "bench"} | CLI,
    "mrml": {"server", "bench"} | CLI,
}


#: command lines that live inside a layer's folder: the headless Slicer batch (``Slicer --python-script
#: medsamkit/mrml/batch.py -- ...``) is a face like cli.py and may hand a sub-command to it (``-- recist``)
FACE_MODULES = {"medsamkit.mrml.batch"}


def _part(module: str) -> str:
    """'medsamkit.backend.local' -> 'backend'; 'medsamkit' -> ''; a face module -> 'cli'."""
    if module in FACE_MODULES:
        return "cli"
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else ""


def _layer(part: str) -> str:
    return part if part in FORBIDDEN else ("core" if part not in NOT_CORE else part)


def medsamkit_imports():
    """(importing module, imported module) for every import statement in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        module = ".".join(parts)
        package = parts if is_pkg else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] + [f"{target}.{a.name}" for a in node.names] if node.level or node.module else []
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == "medsamkit":
                    yield module, target


def test_the_scanner_sees_imports_inside_functions():
    pairs = set(medsamkit_imports())
    assert ("medsamkit.models.registry", "medsamkit.models.adapter_file.apply_adapter") in pairs  # inside load_model
    assert ("medsamkit.backend.remote", "medsamkit.protocol.wire") in pairs


def test_import_directions():
    bad = []
    for module, target in medsamkit_imports():
        source, imported = _part(module), _part(target)
        if source in ("", imported) or not imported:
            continue
        if imported in FORBIDDEN.get(_layer(source), ()):
            bad.append(f"{module} imports {target}")
    assert bad == [], "\n".join(bad)


def test_the_core_layer_is_what_the_brief_names():
    core = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.stem != "__init__"}
    core -= NOT_CORE
    assert {"models", "predictor", "preprocess", "prompts", "markers", "metrics", "volume_segmentation", "fast",
            "segment", "io"} <= core


CODE = r"""
import importlib, json, pkgutil, sys, warnings
warnings.simplefilter("ignore")
import medsamkit
names = [m.name for m in pkgutil.walk_packages(medsamkit.__path__, "medsamkit.")
         if not m.name.startswith("medsamkit.mrml") and not m.name.endswith("__main__")]
failed = {}
for n in names:
    try:
        importlib.import_module(n)
    except Exception as exc:
        failed[n] = repr(exc)
from medsamkit.models import load_model  # the lazily imported model stack too
load_model(device="cpu", engine="torch")
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("slicer", "qt", "ctk", "vtk", "PythonQt", "PySide6", "PyQt5"))
print(json.dumps({"names": names, "failed": failed, "bad": bad}))
"""


def test_engine_imports_without_slicer_or_qt():
    res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert "medsamkit.predictor" in info["names"] and "medsamkit.cli" in info["names"]
    assert info["failed"] == {}
    assert info["bad"] == [], f"engine modules pulled in GUI/MRML modules: {info['bad']}"


def test_importing_medsamkit_is_light():
    res = subprocess.run([sys.executable, "-c", "import medsamkit, sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.stdout.strip() == "False"

