# MedSAM Segment Editor effect: the Qt shell over medsamkit.mrml (see SegmentEditorEffect.py).
