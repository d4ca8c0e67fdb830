"""Reading images/volumes with their geometry and writing masks atomically.

- reading.py: :class:`ImageData` and :func:`read_image` (NIfTI, NRRD, MHA/MHD, a DICOM series folder,
  PNG/JPEG/TIFF/BMP), arrays in SimpleITK's numpy order with LPS geometry.
- atomic.py: :func:`atomic_output`, :func:`output_group` and :func:`partial_dir`: a file or folder is
  built beside its target, checked, then renamed into place; partial files of killed runs are removed.
- verify.py: a written image file is read back and compared before it replaces its target.
- writing.py: masks and overlays (:func:`write_mask`, :func:`write_overlay_png`, :func:`sitk_write`).
- output_checks.py: outputs that would overwrite an input or each other are refused before any work.
- formats.py: the suffixes read and written, and :func:`suffix_of`.
"""
from ..file_checks import check_nifti_complete, nifti_layout
from .atomic import (STALE_PARTIAL_S, OutputGroup, atomic_output, output_group, partial_dir,
                     remove_stale_partial_dirs, remove_stale_partials)
from .formats import IMAGE_2D_SUFFIXES, MASK_SUFFIXES, VOLUME_SUFFIXES, suffix_of
from .output_checks import check_output_folder, check_outputs
from .reading import MAX_2D_PIXELS, ImageData, read_image
from .verify import verify_image_file
from .writing import sitk_write, write_mask, write_overlay_png

__all__ = ["IMAGE_2D_SUFFIXES", "MASK_SUFFIXES", "VOLUME_SUFFIXES", "MAX_2D_PIXELS", "STALE_PARTIAL_S",
           "ImageData", "OutputGroup", "atomic_output", "check_nifti_complete", "check_output_folder",
           "check_outputs", "nifti_layout", "output_group", "partial_dir", "read_image",
           "remove_stale_partial_dirs", "remove_stale_partials", "sitk_write", "suffix_of", "verify_image_file",
           "write_mask", "write_overlay_png"]
