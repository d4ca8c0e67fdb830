"""The MRML layer: everything that touches a Slicer scene, and nothing that needs Qt or ``slicer.app``.

This is the only package of medsamkit that imports ``slicer``; it uses only what PyPI ``slicer-core``
provides (MRML nodes and the Volumes / Segmentations / Markups / segment-editor logic), so it runs
inside the Slicer application and, unchanged, in plain Python for tests and the headless batch.
The Segment Editor effect (``MedSAMSegment/``) is a thin Qt shell over these modules.

Modules, one job each:

- :mod:`~medsamkit.mrml.context`   a scene with the module logics wired as the application would
- :mod:`~medsamkit.mrml.volumes`   volume node <-> numpy (IJK <-> RAS), the slice shown in a slice view, a box /
  points drawn on it in RAS -> engine pixel prompts, and the plain-data requests a worker gets
- :mod:`~medsamkit.mrml.segments`  an engine mask -> the selected segment through the editor rules (undo,
  masking, overwrite), one function for the effect and the tests
- :mod:`~medsamkit.mrml.session`    the model as a medsamkit.backend Backend (a model process, a server)
  plus the volume it holds, and the one worker thread that talks to it
- :mod:`~medsamkit.mrml.interactive` prepare (main thread) / run (worker) / apply (main thread) one prompt
- :mod:`~medsamkit.mrml.markups`   markups line nodes <-> the engine's markers, lines from reader clicks
- :mod:`~medsamkit.cli.batch`     the headless runner (``Slicer --no-main-window --python-script`` or python)

Importing this package does not import ``slicer``; each module imports it where it is needed.
"""
