"""What a user gets: the tree the extension build installs, and a Python shaped like Slicer 5.10's.

``build_installed_tree`` configures the extension with CMake against a stand-in Slicer whose
``slicerMacroBuildScriptedModule`` / ``ctkMacroCompilePythonScript`` copy the listed files the way the
real macros do, then runs ``cmake --install``:

- Slicer's CMake/SlicerMacroBuildScriptedModule.cmake (v5.10.0) calls ctkMacroCompilePythonScript with
  DESTINATION_DIR ``<build>/<Slicer_QTSCRIPTEDMODULES_LIB_DIR>`` (no WITH_SUBDIR) and NO_INSTALL_SUBDIR;
- CTK's CMake/ctkMacroCompilePythonScript.cmake copies each script (``.py`` appended when its extension
  does not match "py") and each resource from ``<SOURCE_DIR>/<file>`` to ``<DESTINATION_DIR>/<file>``,
  and installs the whole DESTINATION_DIR (``install(DIRECTORY "<dir>/" ...)``), so anything else put
  there at configure time (the extension's configure_file of pyproject.toml) is installed too.

``make_slicer_python`` makes a virtual environment holding only what Slicer 5.10's SuperBuild installs
into its Python (SLICER_PYTHON, read from SuperBuild/External_python-*.cmake and External_SimpleITK.cmake
at v5.10.0) plus slicer-core for the scene, and ``bin/PythonSlicer`` (what slicer.util.pip_install and
the model process run).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTED_MODULES = "lib/Slicer-5.10/qt-scripted-modules"

# Slicer 5.10.0's SuperBuild (default options: SciPy, DICOM, extension manager with SSL, SimpleITK on).
SLICER_PYTHON = [
    "pip==25.1.1", "setuptools==80.9.0", "wheel==0.45.1",                   # python-pip / -setuptools / -wheel
    "packaging==25.0", "pyparsing==3.2.3", "six==1.17.0",                    # python-pythonqt-requirements
    "numpy==2.0.2", "scipy==1.13.1",                                         # python-numpy, python-scipy
    "certifi==2025.4.26", "idna==3.10", "charset-normalizer==3.4.2", "urllib3==2.4.0",
    "requests==2.32.3",                                                      # python-requests-requirements
    "pydicom==2.4.4", "pillow==11.2.1", "retrying==1.3.4", "dicomweb-client==0.60.0",  # python-dicom-requirements
    "chardet==5.2.0", "couchdb==1.2", "gitdb==4.0.12", "smmap==5.0.2",
    "GitPython==3.1.44",                                                     # python-extension-manager-requirements
    "cryptography==45.0.3", "PyJWT==2.10.1", "wrapt==1.17.2", "Deprecated==1.2.18", "pycparser==2.22",
    "cffi==1.17.1", "PyNaCl==1.5.0", "python-dateutil==2.9.0.post0", "typing_extensions==4.14.0",
    "PyGithub==2.6.1",                                                       # python-extension-manager-ssl-requirements
    "SimpleITK==2.5.2",                                                      # External_SimpleITK (slicer-v2.5.2)
]
SLICER_CORE = "slicer-core>=5.8"  # Slicer's own modules (MRML, segmentations) without the application

STUB_CONFIG = r"""
set(Slicer_VERSION_MAJOR 5)
set(Slicer_VERSION_MINOR 10)
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.10/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.10/qt-scripted-modules)
set(BUILD_TESTING OFF)
"""

STUB_MACROS = r"""
macro(ctkMacroCompilePythonScript)
  cmake_parse_arguments(MY "NO_INSTALL_SUBDIR;GLOBAL_TARGET" "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR"
    "SCRIPTS;RESOURCES" ${ARGN})
  if(NOT DEFINED MY_SOURCE_DIR)
    set(MY_SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  foreach(file ${MY_SCRIPTS})
    get_filename_component(file_ext ${file} EXT)
    if(NOT "${file_ext}" MATCHES "py")
      set(file "${file}.py")
    endif()
    configure_file(${MY_SOURCE_DIR}/${file} ${MY_DESTINATION_DIR}/${file} COPYONLY)
  endforeach()
  foreach(file ${MY_RESOURCES})
    configure_file(${MY_SOURCE_DIR}/${file} ${MY_DESTINATION_DIR}/${file} COPYONLY)
  endforeach()
  set(MY_DIRECTORY_TO_INSTALL ${MY_DESTINATION_DIR})
  if(MY_NO_INSTALL_SUBDIR)
    set(MY_DIRECTORY_TO_INSTALL ${MY_DESTINATION_DIR}/)
  endif()
  install(DIRECTORY "${MY_DIRECTORY_TO_INSTALL}" DESTINATION "${MY_INSTALL_DIR}" COMPONENT RuntimeLibraries
    USE_SOURCE_PERMISSIONS)
endmacro()
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  set(_no_install_subdir_option NO_INSTALL_SUBDIR)
  set(_destination_subdir "")
  if(MY_SLICER_WITH_SUBDIR)
    get_filename_component(_destination_subdir ${CMAKE_CURRENT_SOURCE_DIR} NAME)
    set(_destination_subdir "/${_destination_subdir}")
    set(_no_install_subdir_option "")
  endif()
  ctkMacroCompilePythonScript(
    TARGET_NAME ${MY_SLICER_NAME}
    SCRIPTS "${MY_SLICER_SCRIPTS}"
    RESOURCES "${MY_SLICER_RESOURCES}"
    DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}${_destination_subdir}
    INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}
    ${_no_install_subdir_option}
    )
endmacro()
function(slicer_add_python_unittest)
endfunction()
"""


def cmake() -> str | None:
    """cmake on PATH, or the one the cmake wheel put beside this Python."""
    beside = Path(sys.executable).with_name("cmake")
    return shutil.which("cmake") or (str(beside) if beside.is_file() else None)


def build_installed_tree(work: Path) -> Path:
    """Configure + install the extension into ``work/install``; returns its qt-scripted-modules folder."""
    exe = cmake()
    if exe is None:
        raise RuntimeError("cmake is needed to build the extension's install tree (pip install cmake)")
    stub = work / "SlicerStub"
    stub.mkdir(parents=True)
    (stub / "SlicerConfig.cmake").write_text(STUB_CONFIG)
    (stub / "UseSlicer.cmake").write_text(STUB_MACROS)
    (stub / "Empty.cmake").write_text("")
    build, prefix = work / "build", work / "install"
    for cmd in ([exe, "-S", str(REPO), "-B", str(build), f"-DSlicer_DIR={stub}"],
                [exe, "--install", str(build), "--prefix", str(prefix)]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return prefix / SCRIPTED_MODULES


def make_slicer_python(folder: Path) -> Path:
    """A venv with Slicer 5.10's bundled packages + slicer-core; returns its PythonSlicer."""
    venv.EnvBuilder(with_pip=True, symlinks=os.name != "nt").create(folder)
    bindir = folder / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    slicer_python = bindir / ("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
    if os.name == "nt":
        shutil.copy2(python, slicer_python)
    else:
        slicer_python.symlink_to(python.name)
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", *SLICER_PYTHON, SLICER_CORE],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"installing Slicer 5.10's Python packages failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return slicer_python


def torch_distribution_files(skip: "set[str]") -> list[str]:
    """Paths (top-level entries of site-packages) of this Python's torch and of the distributions it
    needs, except those named in ``skip`` (Slicer's own): what PyTorch Utils would have installed."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    skip = {canonicalize_name(n) for n in skip}
    todo, seen, paths = [("torch", ())], set(), []
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), tuple(sorted(extras)))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
                todo.append((req.name, tuple(req.extras)))
        if canonicalize_name(name) in skip:
            continue
        base = Path(dist.locate_file(""))
        for top in sorted({Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}):
            top_path = base / top.removesuffix(".py")
            for cand in (base / top, top_path):
                if cand.exists() and str(cand) not in paths and "__pycache__" not in top:
                    paths.append(str(cand))
    return paths


def slicer_python_distributions(python: Path) -> dict:
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))")
    # cwd: not the checkout, whose medsamkit.egg-info (pip install -e) would be listed from sys.path's ''
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                                     timeout=120, cwd=str(Path(python).parent)).stdout)
