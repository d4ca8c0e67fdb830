"""Volume nodes <-> numpy arrays with their IJK <-> RAS geometry, the slice a slice view shows, the
prompts drawn on it (in that slice's pixels) and the plain-data requests a worker gets.

Frames (as in :mod:`medsamkit.geometry`, the engine's single source of IJK <-> RAS):

- IJK: voxel index (i, j, k), voxel centres at integers; arrays are ``[k, j, i]``.
- RAS: Slicer's world millimetres. A node's ``GetIJKToRASMatrix`` maps IJK to the node's own frame;
  when the node sits under a linear transform, :func:`ijk_to_world` composes it, because slice views,
  markups and mouse positions are all in world RAS.
- Slice view: ``vtkMRMLSliceNode.GetSliceToRAS()`` columns 0, 1, 2 are the view's X (screen right),
  Y (screen up) and normal in RAS; column 3 is the slice centre.

Design note — which 2D image the model gets: the slice is cut from the voxel array in storage order
(numpy axis removed, see :mod:`medsamkit.volume`), not re-oriented to how the view displays it. That
is the image MedSAM was trained on (its preprocessing slices the stored array), and it is the image the
CLI, the batch and the marker workflow give the model, so one box gives the same mask everywhere.

A slice view whose plane is not a voxel plane of the volume (an oblique reformat) is refused with
:class:`InputError` telling the user how to align it; resampling an oblique plane and writing a thin
oblique mask back into voxels would not give the user what the view shows.

Prompts: a box or points drawn in world RAS become RAS (mm) -> continuous IJK -> the slice's XY
pixels (:meth:`VolumeGeometry.ijk_to_slice`): x and y are the slice array's column and row, as
everywhere in the engine (:mod:`medsamkit.prompts`). Nothing is rounded: a corner placed on a voxel
centre gives an integer pixel coordinate, one placed on a voxel edge gives ``n + 0.5``. Every point
must lie on the shown slice (within half a voxel along the slice axis); anything else is an
:class:`InputError`, because a prompt off the slice would silently segment the wrong image.

Requests (:class:`SliceRequest`, :class:`VolumeRequest`, :class:`ViewRequest`): what a worker gets
for one prompt, plain data cut from the scene on the main thread with no MRML nodes in it;
:mod:`medsamkit.mrml.interactive` builds them, runs them through a model session and applies the
result, and :mod:`medsamkit.mrml.records` records what they asked for.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import VolumeGeometry
from ..preprocess import Normalization
from ..volume import extract_slice

# A plane counts as a voxel plane when, across the whole volume, it drifts by less than this many
# voxels along the slice axis (0.5 voxel: every pixel of the plane still falls in one voxel slice).
MAX_PLANE_DRIFT_VOXELS = 0.5
ON_SLICE_TOLERANCE_VOXELS = 0.5


def matrix_to_numpy(matrix) -> np.ndarray:
    """vtkMatrix4x4 -> (4, 4) float64 array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def numpy_to_matrix(array):
    """(4, 4) array -> new vtkMatrix4x4."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    a = np.asarray(array, dtype=float).reshape(4, 4)
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    return m


def node_to_world(node) -> np.ndarray:
    """(4, 4) matrix from the node's own frame to world RAS (identity without a parent transform).

    Raises InputError for a non-linear (e.g. warping) parent transform.
    """
    import slicer
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    m = vtkMatrix4x4()
    if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(parent, None, m):
        raise InputError(f"'{node.GetName()}' is under a non-linear transform ('{parent.GetName()}'). "
                         "Harden the transform (Data module, right-click > Harden transform) and try again.")
    return matrix_to_numpy(m)


def ijk_to_node(node) -> np.ndarray:
    """(4, 4) IJK -> RAS matrix of a volume node, in the node's own frame."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return matrix_to_numpy(m)


def ijk_to_world(node) -> np.ndarray:
    """(4, 4) IJK -> world RAS matrix of a volume node (parent linear transforms included)."""
    return node_to_world(node) @ ijk_to_node(node)


def volume_shape(node) -> tuple[int, int, int]:
    """Numpy shape (K, J, I) of a scalar volume node; InputError when it holds no image."""
    image = node.GetImageData() if node is not None else None
    if image is None:
        raise InputError("The volume has no image data; load or select a volume first.")
    i, j, k = image.GetDimensions()
    return (k, j, i)


def volume_geometry(node) -> VolumeGeometry:
    """The engine's :class:`VolumeGeometry` of a volume node, in world RAS (see :func:`ijk_to_world`)."""
    return VolumeGeometry.from_ijk_to_ras(ijk_to_world(node), volume_shape(node))


def array_from_volume(node, copy: bool = True) -> np.ndarray:
    """Voxels of a scalar volume node as a (K, J, I) array (a copy by default: safe to hand to a worker)."""
    import slicer.util

    volume_shape(node)
    arr = slicer.util.arrayFromVolume(node)
    if arr.ndim != 3:
        raise InputError(f"'{node.GetName()}' has {arr.shape[-1]} components per voxel; MedSAM needs a "
                         "scalar volume (convert it with the Vector to Scalar Volume module).")
    return arr.copy() if copy else arr


def load_volume(ctx, path: "str | Path", name: str | None = None, labelmap: bool = False):
    """Load a volume file with Slicer's own reader (vtkSlicerVolumesLogic.AddArchetypeVolume).

    Raises InputError naming the file when it is missing or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Volume file not found: {path}")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        from ..io import check_nifti_complete

        check_nifti_complete(path)  # Slicer's reader, like SimpleITK's, zero-fills a truncated file
    node = ctx.volumes.AddArchetypeVolume(str(path), name or _stem(path), 1 if labelmap else 0)
    if node is None or node.GetImageData() is None:
        raise InputError(f"Slicer could not read the volume {path}; give a NRRD, NIfTI or MHA file.")
    return node


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def display_window_normalization(node) -> Normalization:
    """The volume's current display window/level as the engine's intensity mapping ("use display window")."""
    display = node.GetDisplayNode() if node is not None else None
    if display is None or not hasattr(display, "GetWindow"):
        raise InputError("The volume has no scalar display; choose a window preset instead of the display window.")
    width, level = float(display.GetWindow()), float(display.GetLevel())
    return Normalization.window(width, level, label=f"display W{width:g}/L{level:g}")


@dataclass(frozen=True)
class ViewSlice:
    """Which voxel slice a slice view shows.

    axis: numpy axis of the (K, J, I) array the view cuts (0 = k, 1 = j, 2 = i);
    index: slice index along that axis; position: the plane's continuous coordinate along that voxel
    axis (index = round(position)); shape: the volume's (K, J, I).
    """

    axis: int
    index: int
    position: float
    shape: tuple

    @property
    def ijk_component(self) -> int:
        """Which IJK component is constant on this slice (0 = i, 1 = j, 2 = k)."""
        return 2 - self.axis


def slice_in_view(geometry: VolumeGeometry, slice_to_ras) -> ViewSlice:
    """The voxel slice of a volume that a slice view with ``slice_to_ras`` (4, 4, world RAS) shows.

    Works for axial/coronal/sagittal views of volumes in any orientation, as long as the view's plane
    is a voxel plane of the volume (drifting by < 0.5 voxel across the volume). Raises InputError for an
    oblique plane (with the angle and the fix) or a plane outside the volume.
    """
    m = np.asarray(slice_to_ras, dtype=float).reshape(4, 4)
    ras_to_ijk = np.linalg.inv(geometry.ijk_to_ras)
    in_plane = ras_to_ijk[:3, :3] @ (m[:3, :2] / np.linalg.norm(m[:3, :2], axis=0))  # voxels per mm, (3, 2)
    extent_mm = float(np.linalg.norm((np.array(geometry.shape[::-1]) - 1) * np.array(geometry.spacing)))
    drift = np.abs(in_plane).sum(axis=1) * max(extent_mm, 1.0)  # worst drift of each IJK component
    component = int(np.argmin(drift))
    if drift[component] >= MAX_PLANE_DRIFT_VOXELS:
        normal = np.cross(m[:3, 0], m[:3, 1])
        grads = ras_to_ijk[:3, :3] / np.linalg.norm(ras_to_ijk[:3, :3], axis=1, keepdims=True)
        angle = float(np.degrees(np.arccos(np.clip(np.abs(grads @ normal) / np.linalg.norm(normal), 0, 1))).min())
        raise InputError(
            f"The slice view is oblique to the volume's voxel grid ({angle:.1f} degrees off the nearest voxel "
            "plane), so its pixels are not voxels of one slice. Align the view with the volume: click the "
            "'Slice views orientation' warning button in the Segment Editor, or choose 'Rotate to volume "
            "plane' in the slice view's menu.")
    axis = 2 - component
    position = float((ras_to_ijk @ m[:, 3])[component])
    n = geometry.shape[axis]
    if not (-0.5 <= position <= n - 0.5):
        raise InputError(f"The slice view shows a plane outside the volume (slice {position:.1f} of 0..{n - 1} "
                         "along that axis). Scroll the view onto the volume.")
    return ViewSlice(axis, int(np.clip(np.rint(position), 0, n - 1)), position, tuple(geometry.shape))


def volume_plane_slice_to_ras(geometry: VolumeGeometry, axis: int, index: float) -> np.ndarray:
    """(4, 4) slice-to-RAS of a view showing slice ``index`` along numpy ``axis`` (as "Rotate to volume plane").

    The view's X and Y follow the slice's pixel X and Y (see :mod:`medsamkit.volume`); the origin is the
    slice centre. Used by tests and by code that needs a view for a known slice.
    """
    from ..geometry import SLICE_XY_IJK

    m = geometry.ijk_to_ras
    ax_x, ax_y = SLICE_XY_IJK[axis]
    comp = 2 - axis
    out = np.eye(4)
    x = m[:3, ax_x] / np.linalg.norm(m[:3, ax_x])
    y = m[:3, ax_y] / np.linalg.norm(m[:3, ax_y])
    normal = np.cross(x, y)
    out[:3, 0], out[:3, 1], out[:3, 2] = x, y, normal / np.linalg.norm(normal)
    centre = (np.array(geometry.shape[::-1], dtype=float) - 1) / 2
    centre[comp] = index
    out[:3, 3] = (m @ np.append(centre, 1.0))[:3]
    return out


def slice_image(volume: np.ndarray, view: ViewSlice) -> np.ndarray:
    """The (H, W) image of ``view`` cut from a (K, J, I) array (storage order; see the module note)."""
    if tuple(volume.shape) != tuple(view.shape):
        raise InputError(f"The volume changed shape ({view.shape} -> {volume.shape}) since the view was read.")
    return extract_slice(volume, view.index, view.axis)


@dataclass
class SlicePrompt:
    """Prompts for one slice, in that slice's XY pixels.

    box: (4,) XYXY (x0 < x1, y0 < y1) or None; points: (N, 2) XY or None; labels: (N,) 1 = foreground,
    0 = background, or None.
    """

    view: ViewSlice
    box: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None


def ras_to_slice_pixels(geometry: VolumeGeometry, view: ViewSlice, points_ras) -> np.ndarray:
    """(N, 3) world RAS mm -> (N, 2) XY pixels of ``view``'s slice; InputError for points off the slice."""
    pts = np.asarray(points_ras, dtype=float).reshape(-1, 3)
    if not np.isfinite(pts).all():
        raise InputError("A prompt position is not a finite RAS coordinate.")
    ijk = geometry.ras_to_ijk_points(pts)
    along, xy = geometry.ijk_to_slice(ijk, view.axis)
    off = np.abs(along - view.index)
    if (off > ON_SLICE_TOLERANCE_VOXELS).any():
        worst = float(off.max())
        raise InputError(f"A prompt lies {worst:.1f} voxels away from the slice shown (slice {view.index}); "
                         "draw boxes and points in the slice view you are segmenting.")
    return xy


def box_from_ras(geometry: VolumeGeometry, view: ViewSlice, corner_a_ras, corner_b_ras) -> np.ndarray:
    """Two opposite corners of a box dragged in a slice view (world RAS mm) -> (4,) XYXY slice pixels.

    The corners may come in any order (drag direction does not matter); the box is their pixel
    bounding rectangle. The engine clips it to the image and rejects one without area.
    """
    xy = ras_to_slice_pixels(geometry, view, np.vstack([corner_a_ras, corner_b_ras]))
    return np.array([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()])


@dataclass
class SliceRequest:
    """Everything a worker needs to segment one slice (plain data, no MRML)."""

    image: np.ndarray                # (H, W) raw intensities of the slice (storage order)
    normalization: Normalization
    prompt: SlicePrompt              # XY pixels of ``image``
    mask_input: object               # previous Prediction on this slice (or its (L, L) logits), or None
    ijk_to_target: np.ndarray        # (4, 4) volume IJK -> segmentation node RAS
    volume_key: tuple | None = None  # (volume node ID, image data MTime): which voxels the slice was cut from
    volume: np.ndarray | None = None  # a copy of the whole volume, when the session does not hold it yet


@dataclass
class VolumeRequest:
    """A 3D run: ``kind`` "markers" (``plan`` = BoxPlan) or "propagate" (``prompt`` on one slice)."""

    kind: str
    volume: np.ndarray               # (K, J, I) raw intensities
    normalization: Normalization
    ijk_to_target: np.ndarray
    plan: object = None
    prompt: SlicePrompt | None = None
    refine: bool = False
    volume_key: tuple | None = None  # (volume node ID, image data MTime): the backend keeps the volume by it
    markers: list | None = None      # markers runs: the marker lines (medsamkit.markers.Marker), for the record


@dataclass
class ViewRequest:
    """Encode the slice a view shows, ahead of a prompt (plain data, no MRML)."""

    view: ViewSlice
    normalization: Normalization
    volume_key: tuple
    volume: np.ndarray | None = None  # a copy of the volume, when the session does not hold it yet
