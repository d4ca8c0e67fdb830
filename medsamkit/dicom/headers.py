"""What an image series says about itself, read from its headers: shared by classic (one file per slice) and
enhanced multi-frame series."""
from __future__ import annotations


class SeriesHeaders:
    """Mixin for a series holding ``headers`` (pydicom Datasets without pixel data, one per slice)."""

    @property
    def sop_uids(self) -> list[str]:
        return [str(h.SOPInstanceUID) for h in self.headers]

    @property
    def frame_of_reference(self) -> str:
        return str(getattr(self.headers[0], "FrameOfReferenceUID", "") or "")

    @property
    def modality(self) -> str:
        return str(getattr(self.headers[0], "Modality", "") or "")
