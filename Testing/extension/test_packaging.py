"""Extension packaging checked as far as possible without Slicer: CMake lists, metadata, icons, layering.

The CMake configuration runs for real (when ``cmake`` is on PATH) against a stub Slicer package whose
macros make the same existence checks as Slicer's slicerMacroBuildScriptedModule and CTK's
ctkMacroCompilePythonScript, and record what would be copied into the extension.
"""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

STUB_USE_SLICER = r"""
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to slicerMacroBuildScriptedModule(): ${MY_SLICER_UNPARSED_ARGUMENTS}")
  endif()
  foreach(var SCRIPTS RESOURCES)
    foreach(value ${MY_SLICER_${var}})
      if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${value} AND NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${value}.py)
        message(FATAL_ERROR "slicerMacroBuildScriptedModule(${var}) given nonexistent file '${value}'")
      endif()
      file(APPEND ${MANIFEST} "${MY_SLICER_NAME}|${var}|${value}\n")
    endforeach()
  endforeach()
endmacro()
function(ctkMacroCompilePythonScript)
  cmake_parse_arguments(MY "NO_INSTALL_SUBDIR;GLOBAL_TARGET" "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(var TARGET_NAME SCRIPTS DESTINATION_DIR INSTALL_DIR)
    if(NOT DEFINED MY_${var})
      message(FATAL_ERROR "${var} is mandatory")
    endif()
  endforeach()
  foreach(var SCRIPTS RESOURCES)
    foreach(value ${MY_${var}})
      if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${value})
        message(FATAL_ERROR "ctkMacroCompilePythonScript(${var}) given nonexistent file '${value}'")
      endif()
      file(APPEND ${MANIFEST} "${MY_TARGET_NAME}|${var}|${value}\n")
    endforeach()
  endforeach()
endfunction()
function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT" "SLICER_ARGS" ${ARGN})
  if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT})
    message(FATAL_ERROR "slicer_add_python_unittest: no ${MY_SCRIPT}")
  endif()
  file(APPEND ${MANIFEST} "test|SCRIPT|${MY_SCRIPT}\n")
endfunction()
"""

STUB_SLICER_CONFIG = r"""
set(Slicer_VERSION_MAJOR 5)
set(Slicer_VERSION_MINOR 10)
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.10/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.10/qt-scripted-modules)
set(BUILD_TESTING ON)
set(MANIFEST ${CMAKE_BINARY_DIR}/manifest.txt)
file(WRITE ${MANIFEST} "")
"""


def _cmake_lists(path: Path, name: str) -> list[str]:
    text = (REPO / path).read_text(encoding="utf-8")
    block = re.search(rf"set\({name}\s+(.*?)\)", text, re.S)
    return block.group(1).split() if block else []


def test_module_cmake_lists_every_file_and_only_existing_ones():
    module = REPO / "MedSAMSegment"
    scripts = [s.replace("${MODULE_NAME}", "MedSAMSegment") for s in _cmake_lists(Path("MedSAMSegment/CMakeLists.txt"), "MODULE_PYTHON_SCRIPTS")]
    resources = [s.replace("${MODULE_NAME}", "MedSAMSegment") for s in _cmake_lists(Path("MedSAMSegment/CMakeLists.txt"), "MODULE_PYTHON_RESOURCES")]
    assert all((module / s).is_file() for s in scripts + resources), [s for s in scripts + resources if not (module / s).is_file()]
    on_disk = sorted(str(p.relative_to(module)) for p in module.rglob("*.py"))
    assert sorted(scripts) == on_disk  # nothing forgotten: an unlisted file would be missing in the package
    top = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    for sub in re.findall(r"add_subdirectory\((\w+)\)", top):
        assert (REPO / sub / "CMakeLists.txt").is_file(), sub
    for res in _cmake_lists(Path("CMakeLists.txt"), "MEDSAMKIT_PYTHON_RESOURCES"):
        assert (REPO / res).is_file(), res


def _package_data_globs() -> list[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
        line = re.search(r"^\[tool\.setuptools\.package-data\]\s*medsamkit\s*=\s*\[(.*?)\]", text, re.M | re.S)
        return re.findall(r'"([^"]+)"', line.group(1))
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]["package-data"]["medsamkit"]


def test_extension_ships_every_non_python_file_of_the_package():
    """The extension's file list, git's files and the wheel's package-data name the same non-Python files:
    a file the package reads at run time (a model's weights, its provenance) is in all three or none."""
    import fnmatch

    proc = subprocess.run(["git", "ls-files", "medsamkit"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    tracked = {p for p in proc.stdout.splitlines() if not p.endswith(".py") and Path(p).name != ".gitignore"}
    assert "medsamkit/models/weights/litemedsam_clicks.safetensors" in tracked
    listed = set(_cmake_lists(Path("CMakeLists.txt"), "MEDSAMKIT_PYTHON_RESOURCES"))
    assert listed == tracked, {"not in CMakeLists.txt": sorted(tracked - listed), "not in git": sorted(listed - tracked)}
    globs = _package_data_globs()
    in_wheel = {p for p in tracked if any(fnmatch.fnmatch(p[len("medsamkit/"):], g) for g in globs)}
    assert in_wheel == tracked, sorted(tracked - in_wheel)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed: CMake configuration not run")
def test_cmake_configures_against_a_stub_slicer(tmp_path):
    stub = tmp_path / "SlicerStub"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(STUB_SLICER_CONFIG)
    (stub / "UseSlicer.cmake").write_text(STUB_USE_SLICER)
    (stub / "Empty.cmake").write_text("")
    build = tmp_path / "build"
    proc = subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), f"-DSlicer_DIR={stub}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split("|") for line in (build / "manifest.txt").read_text(encoding="utf-8").splitlines()]
    shipped = {(target, value) for target, _, value in rows}
    assert ("MedSAMSegment", "MedSAMSegmentLib/SegmentEditorEffect.py") in shipped
    assert ("MedSAMSegment", "MedSAMSegmentLib/SegmentEditorEffect.png") in shipped
    assert ("test", "MedSAMSegment.py") in shipped
    engine = {value for target, _, value in rows if target == "MedSAMKit"}
    expected = {str(p.relative_to(REPO)) for p in (REPO / "medsamkit").rglob("*.py")}
    assert expected <= engine and "medsamkit/cli/batch.py" in engine
    assert "medsamkit/data/sample_lung_ct.nii.gz" in engine  # the module self-test's sample
    copied = build / "lib/Slicer-5.10/qt-scripted-modules/medsamkit/pyproject.toml"
    assert copied.read_text(encoding="utf-8") == (REPO / "pyproject.toml").read_text(encoding="utf-8")


def _s4ext() -> dict:
    out = {}
    for line in (REPO / "extension.s4ext").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def test_s4ext_and_catalog_entry_agree_with_cmake():
    s4ext = _s4ext()
    for key in ("scm", "scmurl", "scmrevision", "depends", "build_subdirectory", "homepage", "contributors",
                "category", "iconurl", "status", "description", "screenshoturls", "enabled"):
        assert s4ext.get(key), f"extension.s4ext: {key} is empty"
    cmake = dict(re.findall(r'set\(EXTENSION_(\w+) "([^"]*)"\)', (REPO / "CMakeLists.txt").read_text(encoding="utf-8")))
    pairs = {"HOMEPAGE": "homepage", "CATEGORY": "category", "CONTRIBUTORS": "contributors",
             "DESCRIPTION": "description", "ICONURL": "iconurl", "SCREENSHOTURLS": "screenshoturls",
             "DEPENDS": "depends"}
    for ck, sk in pairs.items():
        assert cmake[ck] == s4ext[sk], ck
    # The JSON catalog entry, checked against slicer-extension-catalog-entry-schema-v1.0.2's rules.
    entry = json.loads((REPO / "MedSAM.json").read_text(encoding="utf-8"))
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
    assert set(entry) <= allowed and {"$schema", "category", "scm_url"} <= set(entry)
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry["scm_type"] in ("git", "local") and isinstance(entry["enabled"], bool)
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    assert all(isinstance(d, str) for d in entry["build_dependencies"])
    assert (entry["category"], entry["scm_url"], entry["scm_revision"], entry["build_subdirectory"]) == (
        s4ext["category"], s4ext["scmurl"], s4ext["scmrevision"], s4ext["build_subdirectory"])
    assert entry["build_dependencies"] == s4ext["depends"].split()
    for url_key in ("iconurl", "screenshoturls"):  # the URLs point at files of this repository
        assert (REPO / s4ext[url_key].split("/main/", 1)[1]).is_file()


def test_icons():
    from PIL import Image

    for path, size in (("Resources/MedSAM.png", (128, 128)),
                       ("MedSAMSegment/Resources/Icons/MedSAMSegment.png", (128, 128)),
                       ("MedSAMSegment/MedSAMSegmentLib/SegmentEditorEffect.png", (64, 64))):
        with Image.open(REPO / path) as im:
            assert (im.format, im.size) == ("PNG", size), path
        assert (REPO / path).stat().st_size < 64_000


FORBIDDEN_IN_MRML = {"qt", "ctk", "slicer.ScriptedLoadableModule", "SegmentEditorEffects"}


def test_mrml_layer_uses_slicer_core_only():
    """medsamkit.mrml: no Qt, no scripted-module framework, no slicer.app / slicer.mrmlScene globals."""
    for path in sorted((REPO / "medsamkit" / "mrml").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {node.module or ""}
            else:
                names = set()
            assert not (names & FORBIDDEN_IN_MRML), (path.name, names)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "slicer":
                assert node.attr not in ("app", "mrmlScene", "modules"), (path.name, node.attr, node.lineno)


def test_engine_does_not_import_slicer_and_mrml_imports_lazily():
    """Importing every medsamkit.mrml module in a fresh interpreter loads neither slicer nor qt."""
    code = ("import sys, importlib, pkgutil, medsamkit.mrml as m\n"
            "for info in pkgutil.iter_modules(m.__path__): importlib.import_module('medsamkit.mrml.' + info.name)\n"
            "print(sorted(k for k in ('slicer', 'qt', 'ctk', 'vtk') if k in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    for path in (REPO / "medsamkit").rglob("*.py"):
        if "mrml" in path.relative_to(REPO / "medsamkit").parts:
            continue
        imports = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imports |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imports.add((node.module or "").split(".")[0])
        assert not imports & {"slicer", "qt", "ctk"}, path


def test_no_folder_named_slicer_that_could_join_slicer_cores_namespace():
    """slicer-core's meta-package imports every module of any ``slicer`` folder on sys.path (extend_path)."""
    for base in (REPO, REPO / "Testing", REPO / "MedSAMSegment", REPO / "MedSAMTraining"):
        assert not (base / "slicer").exists(), base / "slicer"


def test_cmake_refuses_a_slicer_older_than_5_10(tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not on PATH")
    stub = tmp_path / "SlicerStub"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(STUB_SLICER_CONFIG.replace("Slicer_VERSION_MINOR 10", "Slicer_VERSION_MINOR 8"))
    (stub / "UseSlicer.cmake").write_text(STUB_USE_SLICER)
    (stub / "Empty.cmake").write_text("")
    proc = subprocess.run(["cmake", "-S", str(REPO), "-B", str(tmp_path / "build"), f"-DSlicer_DIR={stub}"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "MedSAM needs Slicer 5.10 or later" in proc.stderr
