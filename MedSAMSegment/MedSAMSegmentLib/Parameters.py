"""Names and choices of the MedSAM effect's parameters (stored in the segment editor node).

Shared by SegmentEditorEffect.py and MarkerPanel.py; no Qt or slicer import.
"""

# Effect parameters (stored in the segment editor node under the effect's name). Units in the names.
MODEL = "Model"                        # model kind: litemedsam (default), medsam, sam-vit-b, ...
CHECKPOINT_PATH = "CheckpointPath"     # weights file; empty = the model's bundled weights
BACKEND = "Backend"                    # "local" or a server URL (http://host:8765)
SERVER_TOKEN_FILE = "ServerTokenFile"  # file holding the server's token (the token itself is never stored)
DEVICE = "Device"                      # auto, cpu, cuda, mps
WINDOW = "Window"                      # display, auto, soft-tissue, lung, brain, bone, percentile, "W,L"
PROMPT_MODE = "PromptMode"             # box, points, refine, propagate, markers
WRITE_MODE = "WriteMode"               # replace (the prompted slice/slab) or add
MARKER_MARGIN_MM = "MarkerMarginMm"    # margin around each marked slice's box
MARKER_REFINE = "MarkerRefine"         # 1: re-prompt slices that disagree with their neighbours
ADAPTER = "Adapter"                    # path of a registered adapter (MedSAMTraining); empty = none

PROMPT_MODES = (("box", "Box"), ("points", "+/- points"), ("refine", "Refine"), ("propagate", "Propagate"),
                ("markers", "Markers"))
MIN_DRAG_PIXELS = 4  # a press and release closer than this is a click, not a box
# While a job is pending (a prompt or the view prefetch), a timer fires every POLL_INTERVAL_MS and the main
# thread waits up to POLL_WAIT_MS on the worker with the GIL released (medsamkit.mrml.session.Worker.wait): inside
# Slicer the Qt event loop holds the GIL, so the worker thread runs only then. Nothing runs while nothing is pending.
POLL_INTERVAL_MS = 2
POLL_WAIT_MS = 10

# Keys the effect handles in slice views. None is a Segment Editor shortcut (qMRMLSegmentEditorWidget::
# installKeyboardShortcuts: 0-9, Shift+0-9, Escape, space, z, y, q, w, i (5.8), /, *, comma, period,
# <, >) nor a
# slice view key (vtkMRMLSliceIntersectionWidget: g, t, f, b, v, V, r, arrows, brackets, braces).
# Escape never reaches an effect: the editor's shortcut deactivates the effect, which cancels too.
CANCEL_KEY = "x"          # cancel the running segmentation and clear the prompts
RUN_MARKERS_KEY = "Return"  # markers mode: run
