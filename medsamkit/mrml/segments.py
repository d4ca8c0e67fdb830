"""An engine mask -> the selected segment, through the Segment Editor's editing rules.

The single place where model output becomes segment voxels. :func:`write_mask` turns a mask placed on
the source volume's voxel grid into a modifier labelmap on the segmentation's lattice and hands it to a
:class:`SegmentTarget` — the one function taking a modifier labelmap and a mode:

- in Slicer, the effect's target calls ``scriptedEffect.modifySelectedSegmentByLabelmap(modifier, mode)``
  (MedSAMSegmentLib/SegmentEditorEffect.py);
- headless (tests, batch), :class:`EditorLogicTarget` calls
  ``vtkSlicerSegmentEditorLogic.ModifySegmentByLabelmap``, the same editing algorithm.

Both apply the editor node's masking settings (editable area, intensity range) and overwrite mode.

Modes (what happens inside the mask's region — one slice for a 2D result, the processed slab for 3D):

- ``replace``: inside the region the segment becomes the mask, within the editable area; voxels outside
  the editable area and outside the region are kept. The editor's Set mode always empties the *whole*
  segment first (its modification-extent argument limits only the adding step; read in
  vtkSlicerSegmentEditorLogic and reproduced with slicer-core), and with a mask active it keeps what
  lies outside the editable area. So the modifier handed to Set is the current segment with the region
  replaced by the mask: one Set call, one undo step, and the result is exactly
  ``region ? (mask & editable) | (segment & ~editable) : segment``. (Remove-then-Add was tried first:
  Slicer's Erase rule lets Remove erase the selected segment outside an "inside one segment" area.)
- ``add``: union with the mask. ``remove``: the mask's voxels are erased (Slicer's Erase rules).

Failure contract: everything that can fail (mode, mask shape/region, segment, lattice) is checked before
the undo state is saved and before the segment is touched, so an error leaves the segment unchanged and
adds no undo step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import InputError
from .volumes import ViewSlice, ijk_to_world, matrix_to_numpy, node_to_world, numpy_to_matrix

# vtkSlicerSegmentEditorLogic / qSlicerSegmentEditorAbstractEffect ModificationMode values (equal in both).
MODIFICATION_SET, MODIFICATION_ADD, MODIFICATION_REMOVE = 0, 1, 2
MODES = ("replace", "add", "remove")
# Two lattices are the same when their IJK->RAS matrices agree to this (mm); files store geometry as
# float32 (NIfTI) or text, differences seen were ~1e-7.
SAME_LATTICE_ATOL = 1e-4


class SegmentTarget(Protocol):
    """Where an edit goes: the selected segment of a segmentation, under the editor's rules."""

    segmentation_node: Any   # vtkMRMLSegmentationNode
    segment_id: str          # the selected segment

    def default_modifier_labelmap(self) -> Any:
        """A vtkOrientedImageData on the segmentation's lattice (its geometry is what matters)."""

    def save_state_for_undo(self) -> None:
        """Record the segmentation so that one Undo restores it."""

    def modify_selected_segment(self, modifier: Any, mode: int) -> None:
        """Apply a uint8 modifier labelmap to the selected segment with a ModificationMode value."""


@dataclass
class MaskPlacement:
    """A binary mask on the source volume's voxel grid.

    mask: (nk, nj, ni) uint8 0/1; offset_kji: index of mask[0, 0, 0] in the volume's (K, J, I) array;
    ijk_to_target: (4, 4) source-volume IJK -> the segmentation node's RAS frame.
    """

    mask: np.ndarray
    offset_kji: tuple
    ijk_to_target: np.ndarray

    @property
    def extent(self) -> tuple:
        """VTK extent (i0, i1, j0, j1, k0, k1) of the region in volume IJK."""
        (k0, j0, i0), (nk, nj, ni) = self.offset_kji, self.mask.shape
        return (i0, i0 + ni - 1, j0, j0 + nj - 1, k0, k0 + nk - 1)


def ijk_to_segmentation(volume_node, segmentation_node) -> np.ndarray:
    """(4, 4) source-volume IJK -> segmentation-node RAS (parent linear transforms of both included)."""
    return np.linalg.inv(node_to_world(segmentation_node)) @ ijk_to_world(volume_node)


def place_slice_mask(mask2d: np.ndarray, view: ViewSlice, ijk_to_target: np.ndarray) -> MaskPlacement:
    """A 2D engine mask (H, W) of ``view``'s slice -> a one-voxel-thick placement on the volume grid."""
    mask2d = _binary(mask2d)
    expected = tuple(s for a, s in enumerate(view.shape) if a != view.axis)
    if mask2d.shape != expected:
        raise InputError(f"The mask has shape {mask2d.shape} but slice {view.index} has shape {expected}; "
                         "the volume changed since the prompt was drawn. Draw the prompt again.")
    mask3d = np.expand_dims(mask2d, view.axis)
    offset = [0, 0, 0]
    offset[view.axis] = view.index
    return MaskPlacement(mask3d, tuple(offset), np.asarray(ijk_to_target, dtype=float))


def place_volume_mask(mask: np.ndarray, ijk_to_target: np.ndarray, axis: int | None = None,
                      slices: "list[int] | None" = None) -> MaskPlacement:
    """A 3D engine mask (K, J, I) -> placement; with ``axis``/``slices``, only the slab they span.

    Restricting to the processed slab keeps ``replace`` from erasing slices the engine never looked at.
    """
    mask = _binary(mask)
    if mask.ndim != 3:
        raise InputError(f"Expected a 3D mask, got shape {mask.shape}.")
    if axis is None or not slices:
        return MaskPlacement(mask, (0, 0, 0), np.asarray(ijk_to_target, dtype=float))
    lo, hi = int(min(slices)), int(max(slices))
    region = [slice(None)] * 3
    region[axis] = slice(lo, hi + 1)
    offset = [0, 0, 0]
    offset[axis] = lo
    return MaskPlacement(np.ascontiguousarray(mask[tuple(region)]), tuple(offset),
                         np.asarray(ijk_to_target, dtype=float))


def _binary(mask) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype != np.bool_ and not np.isin(np.unique(arr), (0, 1)).all():
        raise InputError("The model mask must be binary (0/1).")
    return np.ascontiguousarray(arr.astype(np.uint8))


def _oriented_image(ijk_to_ras: np.ndarray, extent: tuple, values: np.ndarray | None):
    """uint8 vtkOrientedImageData with geometry ``ijk_to_ras`` and ``extent``, filled from (nk, nj, ni) values."""
    import slicer
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR

    image = slicer.vtkOrientedImageData()
    image.SetImageToWorldMatrix(numpy_to_matrix(ijk_to_ras))
    image.SetExtent(*extent)
    image.AllocateScalars(VTK_UNSIGNED_CHAR, 1)
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    scalars.reshape(shape)[:] = 1 if values is None else values
    return image


def _clip(placement: MaskPlacement, extent: tuple) -> MaskPlacement | None:
    """The part of ``placement`` inside a lattice extent (same lattice), or None when nothing is inside."""
    e = placement.extent
    lo = [max(e[0], extent[0]), max(e[2], extent[2]), max(e[4], extent[4])]  # i, j, k
    hi = [min(e[1], extent[1]), min(e[3], extent[3]), min(e[5], extent[5])]
    if any(h < l for l, h in zip(lo, hi)):
        return None
    k0, j0, i0 = placement.offset_kji
    sub = placement.mask[lo[2] - k0:hi[2] - k0 + 1, lo[1] - j0:hi[1] - j0 + 1, lo[0] - i0:hi[0] - i0 + 1]
    return MaskPlacement(np.ascontiguousarray(sub), (lo[2], lo[1], lo[0]), placement.ijk_to_target)


def build_modifiers(template, placement: MaskPlacement) -> tuple[Any, Any]:
    """(mask modifier, region modifier) on the lattice of ``template`` (the default modifier labelmap).

    Same lattice as the source volume (the usual case): cropped to the region, voxel for voxel. Another
    lattice (a segmentation with its own geometry): resampled there with nearest neighbour, because the
    editor silently ignores a modifier on another lattice when the intensity mask is on.
    """
    import slicer
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    template.GetImageToWorldMatrix(m)
    lattice = matrix_to_numpy(m)
    extent = tuple(template.GetExtent())
    if extent[1] < extent[0]:
        raise InputError("The segmentation has no geometry yet; select a source volume in the Segment Editor.")
    if np.allclose(lattice, placement.ijk_to_target, atol=SAME_LATTICE_ATOL):
        clipped = _clip(placement, extent)
        if clipped is None:
            raise InputError("The result lies outside the segmentation's extent; check the segmentation geometry.")
        return (_oriented_image(lattice, clipped.extent, clipped.mask),
                _oriented_image(lattice, clipped.extent, None))
    out = []
    for values in (placement.mask, None):
        src = _oriented_image(placement.ijk_to_target, placement.extent, values)
        dst = slicer.vtkOrientedImageData()
        if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(src, template, dst, False):
            raise InputError("Could not resample the result onto the segmentation's geometry.")
        out.append(dst)
    return out[0], out[1]


def _to_numpy(image) -> np.ndarray:
    """(nk, nj, ni) view of a uint8 vtkOrientedImageData's scalars."""
    from vtkmodules.util import numpy_support

    e = image.GetExtent()
    shape = (e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)


def _window(extent: tuple, inner: tuple) -> tuple:
    """numpy index of ``inner`` (a VTK extent) inside an array covering ``extent``."""
    return (slice(inner[4] - extent[4], inner[5] - extent[4] + 1), slice(inner[2] - extent[2], inner[3] - extent[2] + 1),
            slice(inner[0] - extent[0], inner[1] - extent[0] + 1))


def _current_segment(target: SegmentTarget, template):
    """(uint8 0/1 array, VTK extent) of the selected segment on the template's lattice, or None if empty."""
    import slicer
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    segment = target.segmentation_node.GetSegmentation().GetSegment(target.segment_id)
    if segment is None:
        raise InputError(f"Segment '{target.segment_id}' no longer exists; select a segment.")
    layer = slicer.vtkOrientedImageData()
    if not slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            target.segmentation_node, target.segment_id, layer, False):
        return None
    extent = tuple(layer.GetExtent())
    if extent[1] < extent[0] or layer.GetPointData().GetScalars() is None:
        return None
    a, b = vtkMatrix4x4(), vtkMatrix4x4()
    layer.GetImageToWorldMatrix(a)
    template.GetImageToWorldMatrix(b)
    if not np.allclose(matrix_to_numpy(a), matrix_to_numpy(b), atol=SAME_LATTICE_ATOL):
        resampled = slicer.vtkOrientedImageData()
        if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
                layer, template, resampled, False):
            raise InputError("Could not read the segment on the segmentation's geometry.")
        layer, extent = resampled, tuple(resampled.GetExtent())
    # The layer may be shared with other segments: this segment's voxels hold its label value.
    values = (_to_numpy(layer) == segment.GetLabelValue()).astype(np.uint8)
    return (values, extent) if values.any() else None


def _replace_modifier(target: SegmentTarget, template, mask_mod, region_mod):
    """Current segment with the region replaced by the mask, on the lattice (for one Set call)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    mask_mod.GetImageToWorldMatrix(m)
    mask_ext = tuple(mask_mod.GetExtent())
    current = _current_segment(target, template)
    extent = mask_ext
    if current is not None:
        c = current[1]
        extent = (min(c[0], extent[0]), max(c[1], extent[1]), min(c[2], extent[2]), max(c[3], extent[3]),
                  min(c[4], extent[4]), max(c[5], extent[5]))
    values = np.zeros((extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1), np.uint8)
    if current is not None:
        values[_window(extent, current[1])] = current[0]
    window = _window(extent, mask_ext)
    values[window] &= (_to_numpy(region_mod) == 0).astype(np.uint8)
    values[window] |= (_to_numpy(mask_mod) > 0).astype(np.uint8)
    return _oriented_image(matrix_to_numpy(m), extent, values)


@dataclass
class WriteReport:
    mode: str
    voxels: int          # foreground voxels in the mask written
    extent: tuple        # VTK extent of the region on the volume grid


def write_mask(target: SegmentTarget, placement: MaskPlacement, mode: str = "replace") -> WriteReport:
    """Write ``placement`` into the target's selected segment as ONE undo step (see module docstring).

    Raises InputError before touching anything when the mode, the placement or the segment is invalid.
    """
    if mode not in MODES:
        raise InputError(f"Unknown write mode '{mode}'; use one of {', '.join(MODES)}.")
    template = target.default_modifier_labelmap()
    if template is None:
        raise InputError("No segment is selected; add or select a segment in the Segment Editor.")
    mask_mod, region_mod = build_modifiers(template, placement)
    if mode == "replace":
        modifier, modification = _replace_modifier(target, template, mask_mod, region_mod), MODIFICATION_SET
    else:
        modifier, modification = mask_mod, (MODIFICATION_ADD if mode == "add" else MODIFICATION_REMOVE)
    target.save_state_for_undo()  # only now: everything above may raise and must leave no undo step
    target.modify_selected_segment(modifier, modification)
    return WriteReport(mode, int(placement.mask.sum()), placement.extent)


class EditorLogicTarget:
    """:class:`SegmentTarget` over slicer-core's vtkSlicerSegmentEditorLogic (headless tests and batch).

    Setter order matters: the editor node first (the other setters write into it and silently do
    nothing without it). The segment being modified is selected before every modify, because the
    editable-area mask is computed relative to the *selected* segment.
    """

    def __init__(self, ctx, segmentation_node, source_volume_node, segment_id: str, editor_node=None):
        import slicer

        if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
            raise InputError(f"Segment '{segment_id}' is not in '{segmentation_node.GetName()}'.")
        self.editor_node = editor_node or ctx.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(ctx.scene)
        self.logic.SetMRMLApplicationLogic(ctx.app)
        self.ctx = ctx  # the logic keeps raw pointers to the application logic: keep it alive with us
        self.logic.SetSegmentEditorNode(self.editor_node)
        self.logic.SetSegmentationNode(segmentation_node)
        self.logic.SetSourceVolumeNode(source_volume_node)
        self.segmentation_node = segmentation_node
        self.segment_id = segment_id
        self.logic.SetCurrentSegmentID(segment_id)

    def default_modifier_labelmap(self):
        if self.segmentation_node.GetSegmentation().GetSegment(self.segment_id) is None:
            return None
        self.logic.SetCurrentSegmentID(self.segment_id)
        if not self.logic.ResetModifierLabelmapToDefault():
            raise InputError("The segment editor could not create a modifier labelmap; select a source volume.")
        return self.logic.GetModifierLabelmap()

    def save_state_for_undo(self) -> None:
        self.logic.SaveStateForUndo()

    def modify_selected_segment(self, modifier, mode: int) -> None:
        import slicer

        self.logic.SetCurrentSegmentID(self.segment_id)
        E = slicer.vtkSlicerSegmentEditorLogic  # the wrapper wants its enum type, not an int
        enum = {MODIFICATION_SET: E.ModificationModeSet, MODIFICATION_ADD: E.ModificationModeAdd,
                MODIFICATION_REMOVE: E.ModificationModeRemove}[int(mode)]
        self.logic.ModifySegmentByLabelmap(self.segmentation_node, self.segment_id, modifier, enum, True, False)

    def undo(self) -> None:
        self.logic.Undo()

    def redo(self) -> None:
        self.logic.Redo()


def new_segmentation(ctx, volume_node, name: str = "MedSAM", segment_name: str = "MedSAM",
                     color=(0.95, 0.45, 0.2)):
    """A segmentation node on ``volume_node``'s geometry with one empty segment -> (node, segment ID)."""
    node = ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    sid = node.GetSegmentation().AddEmptySegment(segment_name, segment_name, list(color))
    if not sid:
        raise InputError("Could not add a segment: the Segmentations logic was not set up on this scene "
                         "(create the scene with medsamkit.mrml.context.make_context()).")
    return node, sid


def set_segment_from_array(segmentation_node, segment_id: str, mask: np.ndarray, volume_node) -> None:
    """Replace a segment by a (K, J, I) mask on ``volume_node``'s grid, without editor rules (new segmentations)."""
    import slicer

    mask = _binary(mask)
    ijk = ijk_to_segmentation(volume_node, segmentation_node)
    image = _oriented_image(ijk, (0, mask.shape[2] - 1, 0, mask.shape[1] - 1, 0, mask.shape[0] - 1), mask)
    L = slicer.vtkSlicerSegmentationsModuleLogic
    if not L.SetBinaryLabelmapToSegment(image, segmentation_node, segment_id, L.MODE_REPLACE):
        raise InputError(f"Could not write the mask into segment '{segment_id}'.")


def segment_array(ctx, segmentation_node, segment_id: str, reference_volume) -> np.ndarray:
    """One segment as a (K, J, I) uint8 0/1 array on ``reference_volume``'s grid (a copy)."""
    import slicer.util

    labelmap = ctx.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "medsam_export")
    try:
        if not ctx.segmentations.ExportSegmentsToLabelmapNode(segmentation_node, [segment_id], labelmap,
                                                              reference_volume):
            raise InputError(f"Could not export segment '{segment_id}'.")
        return (slicer.util.arrayFromVolume(labelmap) > 0).astype(np.uint8)
    finally:
        ctx.scene.RemoveNode(labelmap)
