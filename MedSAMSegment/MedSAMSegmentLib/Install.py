"""First-use installation of MedSAM's Python dependencies inside Slicer (Qt dialogs; logic in Dependencies.py).

One confirmation lists everything that will be installed. torch goes through the PyTorch Utils extension
when it is installed (it picks the build matching the GPU/driver); otherwise pip installs the default
build and the dialog says so. A failed download (offline, proxy) shows what to do instead of a traceback.
"""
import logging
import os
import tempfile

import qt

import slicer

from MedSAMSegmentLib import Dependencies


def ensureDependencies(askConfirmation=True, purpose="local"):
    """True when every package ``purpose`` needs is installed, installing the missing ones after one
    confirmation. purpose: "local" (run the model), "remote" (a MedSAM server: client packages only) or
    "train" (MedSAMTraining). pip never replaces a package already installed in Slicer's Python
    (constraints pin each one to its installed version)."""
    if not Dependencies.python_supported():
        slicer.util.errorDisplay(Dependencies.unsupported_message(), "MedSAM: Slicer too old")
        return False
    pyproject = Dependencies.find_pyproject()
    if pyproject is None:
        slicer.util.errorDisplay("MedSAM cannot find its pyproject.toml (the list of Python packages it needs); "
                                 "reinstall the MedSAM extension.")
        return False
    missing = Dependencies.missing_requirements(Dependencies.requirements_for(pyproject, purpose))
    if not missing:
        return True
    torchRequirement, others = Dependencies.split_torch(missing)
    torchLogic = _torchLogic()
    how = ("PyTorch through the PyTorch Utils extension (matching your GPU)" if torchLogic is not None
           else "PyTorch with pip (CPU/default build; install the PyTorch extension for a GPU-matched build)")
    text = ("MedSAM needs these Python packages, which are not installed in this Slicer:\n\n  "
            + "\n  ".join(missing) + "\n\n"
            + (f"{how} and the others with pip. " if torchRequirement else "They will be installed with pip. ")
            + Dependencies.download_note(purpose) + " This needs a network connection. Install now?")
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(text, "MedSAM: install Python packages"):
        return False
    qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
    try:
        if torchRequirement:
            if torchLogic is not None:
                spec = torchRequirement[len("torch"):].strip()
                if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=spec or None) is None:
                    raise RuntimeError("PyTorch Utils could not install PyTorch")
            else:
                _pipInstall([torchRequirement])
        if others:
            _pipInstall(others)
    except Exception as exc:
        qt.QApplication.restoreOverrideCursor()
        logging.exception("MedSAM dependency installation failed")
        slicer.util.errorDisplay(Dependencies.offline_message(missing, str(exc)), "MedSAM: installation failed")
        return False
    qt.QApplication.restoreOverrideCursor()
    still = Dependencies.missing_requirements(missing)
    if still:
        if slicer.util.confirmYesNoDisplay("The packages were installed but Slicer must restart to load them "
                                           f"({', '.join(still)}). Restart now?"):
            slicer.util.restart()
        return False
    return True


def _pipInstall(requirements):
    """pip install with constraints pinning every installed distribution (nothing of Slicer's is replaced)."""
    fd, path = tempfile.mkstemp(prefix="medsam-constraints-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(pin + "\n" for pin in Dependencies.installed_constraints()))
        slicer.util.pip_install(["-c", path, *requirements])
    finally:
        os.remove(path)


def _torchLogic():
    try:
        import PyTorchUtils
    except ImportError:
        return None
    return PyTorchUtils.PyTorchUtilsLogic()
