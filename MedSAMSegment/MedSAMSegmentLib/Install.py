"""First-use installation of MedSAM's Python dependencies inside Slicer (Qt dialogs; logic in Dependencies.py).

One confirmation lists everything that will be installed. torch goes through the PyTorch Utils extension
when it is installed (it picks the build matching the GPU/driver); otherwise pip installs the default
build and the dialog says so. A failed download (offline, proxy) shows what to do instead of a traceback.
"""
import logging

import qt

import slicer

from MedSAMSegmentLib import Dependencies


def ensureDependencies(askConfirmation=True):
    """True when every dependency is importable (installing the missing ones after confirmation)."""
    pyproject = Dependencies.find_pyproject()
    if pyproject is None:
        slicer.util.errorDisplay("MedSAM cannot find its pyproject.toml (the list of Python packages it needs); "
                                 "reinstall the MedSAM extension.")
        return False
    missing = Dependencies.missing_requirements(Dependencies.requirements_from_pyproject(pyproject))
    if not missing:
        return True
    torchRequirement, others = Dependencies.split_torch(missing)
    torchLogic = _torchLogic()
    how = ("PyTorch through the PyTorch Utils extension (matching your GPU)" if torchLogic is not None
           else "PyTorch with pip (CPU/default build; install the PyTorch extension for a GPU-matched build)")
    text = ("MedSAM needs these Python packages, which are not installed in this Slicer:\n\n  "
            + "\n  ".join(missing) + "\n\n"
            + (f"{how} and the others with pip. " if torchRequirement else "They will be installed with pip. ")
            + "This needs a network connection and may take several minutes. Install now?")
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
                slicer.util.pip_install(torchRequirement)
        if others:
            slicer.util.pip_install(others)
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


def _torchLogic():
    try:
        import PyTorchUtils
    except ImportError:
        return None
    return PyTorchUtils.PyTorchUtilsLogic()
