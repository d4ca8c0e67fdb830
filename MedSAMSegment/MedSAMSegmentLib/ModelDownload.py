"""Downloading a model's weights from Slicer: a progress dialog with Cancel over a separate process.

The download runs in ``PythonSlicer -m medsamkit models fetch KIND --progress json`` started by a
``qt.QProcess``; this file only reads its JSON lines and draws them. It never downloads in a Python thread:
Slicer's main thread holds the GIL inside the Qt event loop, so such a thread would crawl. Cancel terminates
the process; the partial file is kept (never loaded) and the next fetch resumes it.

Entry point for the effect (the model selector, before loading a local model without a checkpoint)::

    from MedSAMSegmentLib import ModelDownload
    if ModelDownload.needsDownload(kind):
        if ModelDownload.fetchModel(kind, parent=slicer.util.mainWindow()) is None:
            return  # cancelled or failed (the dialog said why); keep the previous model

Afterwards ``load_model(kind)`` finds the verified file in the cache. A model whose licence restricts use
shows the licence and citation first; accepting reruns the fetch with ``--accept-licence``.
"""
import json
import os
import shutil
import sys


def needsDownload(kind):
    """True for a catalog kind whose file is not in the cache yet (quick: no hashing)."""
    from medsamkit.mrml.choices import needs_download

    return needs_download(kind)


def pythonExecutable():
    """The interpreter for the helper process: PythonSlicer inside Slicer (as slicer.util does), else this one."""
    found = shutil.which("PythonSlicer")
    if found:
        return found
    candidate = os.path.join(os.path.dirname(sys.executable), "PythonSlicer" + (".exe" if os.name == "nt" else ""))
    return candidate if os.path.isfile(candidate) else sys.executable


def fetchCommand(kind, acceptLicence=False):
    """[program, args...] of the helper process."""
    args = ["-m", "medsamkit", "models", "fetch", kind, "--progress", "json"]
    return [pythonExecutable()] + args + (["--accept-licence"] if acceptLicence else [])


def packageParent():
    """The folder that holds the medsamkit package (put on the helper's PYTHONPATH)."""
    import medsamkit

    return os.path.dirname(os.path.dirname(os.path.abspath(medsamkit.__file__)))


class FetchProtocol:
    """State of one fetch, fed with the helper's stdout as it arrives (Qt-free, so it is tested without Slicer)."""

    def __init__(self):
        self.buffer = ""
        self.path = None        # set by the final 'done' event
        self.error = None       # message of an 'error' event
        self.licence = None     # the 'licence_required' event (licence, licence_url, citation, message)
        self.done = 0
        self.total = None
        self.speed = 0
        self.stage = "starting"

    def feed(self, text):
        """Consume a chunk of output; returns the events of the complete lines in it."""
        self.buffer += text
        lines = self.buffer.split("\n")
        self.buffer = lines.pop()
        events = []
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self._apply(event)
            events.append(event)
        return events

    def _apply(self, event):
        kind = event.get("event")
        if kind == "start":
            self.total, self.done, self.stage = event.get("total"), event.get("resumed_from", 0), "downloading"
        elif kind == "progress":
            self.done, self.total, self.speed = event["done"], event.get("total"), event.get("speed", 0)
        elif kind == "waiting":
            self.stage = "waiting for another download of this file"
        elif kind == "verify":
            self.stage = "verifying"
        elif kind == "done":
            self.path, self.stage = event["path"], "done"
        elif kind == "error":
            self.error = event.get("message", "the download failed")
        elif kind == "licence_required":
            self.licence = event

    def percent(self):
        """0-100, or -1 while the size is unknown."""
        if not self.total:
            return -1
        return min(100, int(100 * self.done / self.total))

    def statusText(self):
        if self.stage != "downloading":
            return self.stage.capitalize()
        size = f"{self.done / 1e6:,.1f} / {self.total / 1e6:,.1f} MB" if self.total else f"{self.done / 1e6:,.1f} MB"
        return f"{size} at {self.speed / 1e6:.1f} MB/s"


def fetchModel(kind, parent=None):
    """Download ``kind`` with a progress dialog; returns the file path, or None (cancelled / failed: shown)."""
    import slicer

    accept = False
    while True:
        protocol, cancelled = _runDialog(kind, accept, parent)
        if cancelled:
            slicer.util.showStatusMessage(f"Download of {kind} cancelled; it resumes next time.", 5000)
            return None
        if protocol.path:
            return protocol.path
        if protocol.licence and not accept:
            lic = protocol.licence
            text = (f"{lic['title']} is released under:\n{lic['licence']}\n{lic['licence_url']}\n\n"
                    f"Please cite:\n{lic['citation']}\n\nAccept this licence and download the model?")
            if not slicer.util.confirmYesNoDisplay(text, windowTitle="MedSAM: model licence"):
                return None
            accept = True
            continue
        slicer.util.errorDisplay(protocol.error or "The model download failed (no message from the helper "
                                 "process); run 'medsamkit models fetch " + kind + "' in a terminal to see why.",
                                 windowTitle="MedSAM: model download")
        return None


def _runDialog(kind, acceptLicence, parent):
    """Run one helper process under a modal progress dialog. Returns (FetchProtocol, cancelled)."""
    import qt

    protocol = FetchProtocol()
    command = fetchCommand(kind, acceptLicence)
    dialog = qt.QProgressDialog(f"Downloading the {kind} model…", "Cancel", 0, 100, parent)
    dialog.setWindowTitle("MedSAM: model download")
    dialog.setWindowModality(qt.Qt.WindowModal)
    dialog.setMinimumDuration(0)
    dialog.setValue(0)
    process = qt.QProcess()
    env = qt.QProcessEnvironment.systemEnvironment()
    env.insert("PYTHONPATH", os.pathsep.join(p for p in (packageParent(), env.value("PYTHONPATH")) if p))
    process.setProcessEnvironment(env)
    loop = qt.QEventLoop()
    state = {"cancelled": False}

    def onOutput():
        protocol.feed(_text(process.readAllStandardOutput()))
        percent = protocol.percent()
        if percent < 0:
            dialog.setMaximum(0)  # busy indicator while the size is unknown
        else:
            dialog.setMaximum(100)
            dialog.setValue(percent)
        dialog.setLabelText(f"{kind}: {protocol.statusText()}")

    def onCancel():
        state["cancelled"] = True
        process.terminate()  # SIGTERM: the helper keeps the .part for resuming
        if not process.waitForFinished(3000):
            process.kill()

    def onStateChanged(newState):
        if newState == qt.QProcess.NotRunning:  # finished, crashed or failed to start
            loop.quit()

    process.connect("readyReadStandardOutput()", onOutput)
    process.connect("stateChanged(QProcess::ProcessState)", onStateChanged)  # as Slicer's DICOMProcesses.py
    dialog.connect("canceled()", onCancel)
    process.start(command[0], command[1:])
    if process.waitForStarted(10000):
        if process.state() != qt.QProcess.NotRunning:  # 'finished' is delivered by the event loop: no race
            loop.exec_()
    else:
        protocol.error = f"Cannot start {command[0]} to download the model."
    onOutput()
    stderr = _text(process.readAllStandardError()).strip()
    if not protocol.path and not protocol.error and not protocol.licence and stderr:
        protocol.error = stderr.splitlines()[-1]
    dialog.close()
    return protocol, state["cancelled"]


def _text(byteArray):
    """A PythonQt QByteArray (``.data()`` gives bytes) as text."""
    data = byteArray.data() if hasattr(byteArray, "data") else bytes(byteArray)
    return data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else str(data)
