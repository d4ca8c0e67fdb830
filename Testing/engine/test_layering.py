"""The house plan (docs/architecture.md), checked over the whole tree: medsamkit and the two Slicer modules.

Layers, lowest first; a module may import its own part, the core, and the parts of a lower rank:

    core      models/, fast/, dicom/, preprocess, prompts, predictor, volume*, markers, metrics, io, ...
    protocol  what client and server say to each other
    backend   one interface, one constructor (open_backend): in-process, model process or remote
    records   the prompt-record format and its workflows (replay, review, report)
    server / training / recist   a model server, fine-tuning, RECIST (DICOM SR -> SEG)
    mrml      slicer-core scene logic: what the GUI needs
    cli       the faces: console commands, bench, options, the headless batch

The Slicer modules are glue over the mrml layer: MedSAMSegment/ imports only medsamkit.mrml, backend,
protocol and errors; MedSAMTraining/ also medsamkit.training. Every ``import`` statement counts, also the
ones inside functions (they run as soon as the function does). There is no list of exceptions.
"""
import ast
import json
import re
import subprocess
import sys

from conftest import REPO

PACKAGE = REPO / "medsamkit"

RANK = {"core": 0, "protocol": 1, "backend": 2, "records": 3, "server": 4, "training": 4, "recist": 4,
        "mrml": 5, "cluster": 6, "cli": 7,
        "entry": 8}  # the package's front doors: medsamkit/__init__.py (lazy open_backend, load_model) and __main__

#: Slicer module folder -> the medsamkit parts it may import ("" is the package root: __version__)
GUI_ALLOWED = {
    "MedSAMSegment": {"", "mrml", "backend", "protocol", "errors"},
    "MedSAMTraining": {"", "mrml", "backend", "protocol", "errors", "training"},
}


def _imports(path, package):
    """(imported module, line) for every import statement of one file; ``package``: its dotted package parts."""
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
                yield target, node.lineno


def medsamkit_imports():
    """(importing module, imported module, line) for every import statement in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        package = parts if is_pkg else parts[:-1]
        for target, line in _imports(path, package):
            yield ".".join(parts), target, line


def _part(module: str) -> str:
    """'medsamkit.backend.local' -> 'backend'; 'medsamkit.predictor' -> 'predictor'; 'medsamkit' -> ''."""
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else ""


def _rank(part: str) -> int:
    return RANK.get(part, RANK["core"])


def _layer(part: str) -> str:
    if part in ("", "__main__"):
        return "entry"
    return part if part in RANK else "core"


def test_the_scanner_sees_imports_inside_functions():
    pairs = {(m, t) for m, t, _ in medsamkit_imports()}
    assert ("medsamkit.models.loader", "medsamkit.models.adapter_file.apply_adapter") in pairs  # inside load_model
    assert ("medsamkit.backend.remote", "medsamkit.protocol.wire") in pairs


def test_import_directions():
    bad = []
    for module, target, line in medsamkit_imports():
        source, imported = _layer(_part(module)), _layer(_part(target))
        if not _part(target) or source == imported:
            continue
        if _rank(imported) >= _rank(source):
            bad.append(f"{module}:{line} ({source}) imports {target} ({imported})")
    assert bad == [], "\n".join(bad)


def test_a_lower_layer_importing_a_higher_one_is_caught():
    """The rule itself: the core importing a backend, or a backend importing the CLI, is refused."""
    assert _rank(_layer(_part("medsamkit.backend.local"))) > _rank(_layer(_part("medsamkit.predictor")))
    assert _rank(_layer(_part("medsamkit.cli.options"))) > _rank(_layer(_part("medsamkit.backend")))
    assert _rank("server") == _rank("training")  # siblings: neither may import the other


def test_the_slicer_modules_import_only_what_the_plan_allows():
    bad = []
    for folder, allowed in GUI_ALLOWED.items():
        files = sorted((REPO / folder).rglob("*.py"))
        assert files, f"no Python files under {folder}"
        for path in files:
            if "Testing" in path.relative_to(REPO).parts:
                continue
            for target, line in _imports(path, []):
                if _part(target) not in allowed:
                    bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert bad == [], "\n".join(bad)


def test_no_import_circles_between_files():
    """No two files (or longer loops) of medsamkit import each other, directly or through others."""
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: set() for m in files}
    for module, target, _ in medsamkit_imports():
        while target and target not in files:  # 'pkg.mod.name' -> 'pkg.mod'
            target = target.rpartition(".")[0]
        if target and target != module and not module.startswith(target + ".") and not target.startswith(module + "."):
            graph[module].add(target)  # a package's __init__ and its own modules do not count as a circle
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == [], circles


CODE = r"""
import importlib, json, pkgutil, sys, warnings
warnings.simplefilter("ignore")
import medsamkit
names = [m.name for m in pkgutil.walk_packages(medsamkit.__path__, "medsamkit.")
         if not m.name.startswith(("medsamkit.mrml", "medsamkit.cli.batch")) and not m.name.endswith("__main__")]
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
    assert "medsamkit.predictor" in info["names"] and "medsamkit.cli.commands" in info["names"]
    assert info["failed"] == {}
    assert info["bad"] == [], f"engine modules pulled in GUI/MRML modules: {info['bad']}"


def test_importing_medsamkit_is_light():
    res = subprocess.run([sys.executable, "-c", "import medsamkit, sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.stdout.strip() == "False"


BACKEND_CLASSES = {"LocalBackend", "ProcessBackend", "RemoteBackend"}


def test_only_open_backend_constructs_a_backend():
    """Every face, the effect, the server and training validation reach a model through open_backend:
    no file outside medsamkit/backend/ calls a backend class (Testing/ may, to test the classes)."""
    bad = []
    files = [p for folder in ("medsamkit", "MedSAMSegment", "MedSAMTraining") for p in sorted((REPO / folder).rglob("*.py"))]
    for path in files:
        rel = path.relative_to(REPO)
        if rel.parts[:2] == ("medsamkit", "backend") or "Testing" in rel.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in BACKEND_CLASSES:
                    bad.append(f"{rel}:{node.lineno} calls {name}")
    assert bad == [], "\n".join(bad)


MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _code_files():
    for root in (PACKAGE, REPO / "MedSAMSegment", REPO / "MedSAMTraining"):
        yield from sorted(root.rglob("*.py"))


def test_no_file_over_400_lines_and_no_function_over_80():
    """Files a reader can hold in mind: the package and the Slicer modules (tests and benchmarks aside)."""
    too_long = []
    for path in _code_files():
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(REPO).as_posix()
        if text.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}: {node.name} is {length} lines")
    assert too_long == [], too_long


def test_no_history_comments_in_code():
    """The git log holds history: code, tests and benchmarks say what is, not which issue or defect made it."""
    pattern = re.compile(r"\b(issue|defect)\s*#?\d+", re.IGNORECASE)
    found = []
    for root in (PACKAGE, REPO / "MedSAMSegment", REPO / "MedSAMTraining", REPO / "Testing", REPO / "benchmarks"):
        for path in sorted(root.rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO).as_posix()}:{n}: {line.strip()}")
    assert found == [], found
