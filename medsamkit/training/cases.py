"""Training cases: finding (image, label) file pairs, reading them, checking they belong together.

Single source of truth for which dataset layouts ``medsamkit train`` accepts and for the errors a
user gets about bad input (missing partner file, empty labels, image/label geometry mismatch).

Accepted layouts (any mix, one or more folders/files):

- a shared-format folder or ``manifest.json`` (``cases: [{image, mask, modality, labels, ...}]``,
  paths relative to the manifest; what the MedSAMTraining Slicer module exports);
- a folder of pairs named ``<case>.img.<ext>`` + ``<case>.mask|seg|label.<ext>`` (also ``_seg``,
  ``_label``, ``-label``; an image without a role suffix pairs with ``<case>.seg.nrrd`` etc.);
- a folder with ``images/`` (or ``imagesTr/``) and ``labels/``/``masks/`` (``labelsTr/``) holding the
  same file names (nnU-Net's ``_0000`` channel suffix is ignored);
- explicit ``pairs: [[image, label], ...]``.

Images: 2D PNG/JPEG/TIFF/BMP (grey or RGB) or 3D NIfTI/NRRD/MHA (read with medsamkit.io, so the
arrays and geometry are exactly what inference sees). Labels: integer label images; Slicer
``.seg.nrrd`` files keep their segment names, and overlapping segments stored in layers are read
per layer. A label volume on the image's voxel lattice but with a smaller extent (Slicer crops
``.seg.nrrd`` to the segments) is padded onto the image grid; any other geometry difference is an error.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import IMAGE_2D_SUFFIXES, ImageData, read_image, suffix_of

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha", ".mhd")
LABEL_TOKENS = ("mask", "seg", "label", "labels", "gt", "segmentation")
IMAGE_TOKENS = ("img", "image")
_ROLE = re.compile(r"^(?P<stem>.+?)(?:[._-](?P<role>" + "|".join(LABEL_TOKENS + IMAGE_TOKENS) + r"))?$", re.I)
GEOMETRY_TOL = 1e-3  # mm / direction cosine: NIfTI stores float32 geometry (errors ~1e-5)


@dataclass
class CaseSource:
    """One (image, label) file pair, not read yet."""

    case_id: str
    image: Path
    label: Path
    modality: str | None = None
    window: str | None = None                          # per-case normalisation (Slicer export, manifest)
    label_names: dict = field(default_factory=dict)    # label value -> name


@dataclass(frozen=True)
class Structure:
    """One binary training target inside a case: voxels of ``layer`` equal to ``value``."""

    value: int
    layer: int
    name: str


@dataclass
class Case:
    """A read case. image: 2D (H, W) / (H, W, 3) or 3D (K, J, I) as medsamkit.io reads it;
    layers: (L, H, W) or (L, K, J, I) integer labels on the same grid; structures: the targets."""

    source: CaseSource
    image: ImageData
    layers: np.ndarray
    structures: list

    @property
    def is_3d(self) -> bool:
        return self.image.is_3d

    def mask(self, structure: Structure) -> np.ndarray:
        return self.layers[structure.layer] == structure.value


# ------------------------------------------------------------------------------------------------
# discovery
def discover_cases(data: list, pairs: list, default_modality: str | None = None) -> tuple[list, list]:
    """Folders/manifests + explicit pairs -> (sorted unique CaseSource list, warnings).

    Raises InputError when a path does not exist or nothing usable is found.
    """
    found: list[CaseSource] = []
    warnings: list[str] = []
    for entry in data:
        path = Path(entry)
        if not path.exists():
            raise InputError(f"Training data not found: {path}")
        if path.is_file() and path.suffix.lower() == ".json":
            found += _from_manifest(path)
        elif path.is_dir() and (path / "manifest.json").is_file():
            found += _from_manifest(path / "manifest.json")
        elif path.is_dir():
            cases, warn = _from_folder(path)
            found += cases
            warnings += warn
        else:
            raise InputError(f"{path} is a file; list training data as folders, manifest.json files, or "
                             "explicit pairs ('pairs: [[image, label], ...]' in the config).")
    for image, label in pairs:
        for p in (image, label):
            if not Path(p).is_file():
                raise InputError(f"Training pair file not found: {p}")
        found.append(CaseSource(_stem_of(Path(image))[0], Path(image), Path(label)))
    if not found:
        raise InputError(f"No (image, label) pairs found in {', '.join(map(str, data)) or 'the config'}. Name them "
                         "<case>.img.png + <case>.mask.png (or X.nii.gz + X.seg.nrrd), use images/ + labels/ "
                         "folders, or a manifest.json (see docs/training.md).")
    seen: dict[str, int] = {}
    for case in found:  # unique ids: the split and the logs refer to cases by id
        if case.modality is None:
            case.modality = default_modality
        n = seen.get(case.case_id, 0)
        seen[case.case_id] = n + 1
        if n:
            case.case_id = f"{case.case_id}#{n + 1}"
    return sorted(found, key=lambda c: c.case_id), warnings


def _from_manifest(path: Path) -> list[CaseSource]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"Cannot read {path}: {exc}") from exc
    cases = manifest.get("cases") if isinstance(manifest, dict) else None
    if not isinstance(cases, list) or not cases:
        raise InputError(f"{path} has no 'cases' list; expected the shared data format "
                         "({'cases': [{'image': ..., 'mask': ...}, ...]}).")
    out = []
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or "image" not in case or "mask" not in case:
            raise InputError(f"{path}: case #{i} needs 'image' and 'mask' paths.")
        image, label = path.parent / case["image"], path.parent / case["mask"]
        for p in (image, label):
            if not p.is_file():
                raise InputError(f"{path}: case '{case.get('case_id', i)}' refers to a missing file {p}.")
        names = {int(k): str(v) for k, v in (case.get("labels") or {}).items()}
        cid = str(case.get("case_id") or _stem_of(image)[0])
        if case.get("dataset"):
            cid = f"{case['dataset']}/{cid}"
        out.append(CaseSource(cid, image, label, case.get("modality"), case.get("window"), names))
    return out


def _stem_of(path: Path) -> tuple[str, str | None]:
    """File name -> (case stem, role 'image'|'label'|None)."""
    name = path.name
    suf = suffix_of(path)
    if suf == ".seg.nrrd":
        return name[: -len(suf)], "label"
    base = name[: -len(suf)] if suf else name
    m = _ROLE.match(base)
    role = (m.group("role") or "").lower()
    stem = m.group("stem") if role else base
    if role in IMAGE_TOKENS:
        return stem, "image"
    if role in LABEL_TOKENS:
        return stem, "label"
    return re.sub(r"_0000$", "", base), None


def _is_data_file(path: Path) -> bool:
    return path.is_file() and suffix_of(path) in IMAGE_2D_SUFFIXES + VOLUME_SUFFIXES and not path.name.startswith(".")


def _from_folder(folder: Path) -> tuple[list[CaseSource], list[str]]:
    subdirs = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    img_dir = subdirs.get("images") or subdirs.get("imagestr")
    lab_dir = subdirs.get("labels") or subdirs.get("masks") or subdirs.get("labelstr")
    if img_dir is not None and lab_dir is not None:
        labels = {_stem_of(p)[0]: p for p in sorted(lab_dir.iterdir()) if _is_data_file(p)}
        out, warnings = [], []
        for p in sorted(img_dir.iterdir()):
            if _is_data_file(p):
                stem = _stem_of(p)[0]
                if stem in labels:
                    out.append(CaseSource(stem, p, labels[stem]))
                else:
                    warnings.append(f"{p.name}: no label file named like it in {lab_dir.name}/; skipped")
        return out, warnings
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    plain: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not _is_data_file(p):
            continue
        stem, role = _stem_of(p)
        {"image": images, "label": labels}.get(role, plain)[stem] = p
    out, warnings = [], []
    for stem, label in labels.items():
        image = images.get(stem) or plain.pop(stem, None)
        if image is None:
            warnings.append(f"{label.name}: no image named {stem}.* beside it; skipped")
            continue
        out.append(CaseSource(stem, image, label))
    unpaired = sorted(set(images) - set(labels))
    if unpaired:
        warnings.append(f"{len(unpaired)} image(s) without a label file skipped (e.g. {images[unpaired[0]].name})")
    return out, warnings


# ------------------------------------------------------------------------------------------------
# reading
def read_case(source: CaseSource, labels_wanted: list | None = None) -> Case:
    """Read and check one case. Raises InputError for unreadable files, an image/label geometry
    mismatch, non-integer labels, or a label file with no foreground at all."""
    image = read_image(source.image)
    if image.modality is None:
        image.modality = source.modality
    layers, structures = read_labels(source.label, source.label_names)
    layers = _align(layers, source, image)
    present = []
    for s in structures:
        if s.value != 0 and np.any(layers[s.layer] == s.value):
            present.append(s)
    if not present:
        raise InputError(f"Case '{source.case_id}': the label file {source.label} holds no foreground (every voxel "
                         "is 0). Remove this case or give it a non-empty segmentation.")
    if labels_wanted:
        present = [s for s in present if _matches(s, labels_wanted)]
    return Case(source, image, layers, present)


def _matches(s: Structure, wanted: list) -> bool:
    for w in wanted:
        if isinstance(w, (int, np.integer)) or (isinstance(w, str) and w.strip().isdigit()):
            if int(w) == s.value:
                return True
        elif str(w).strip().lower() == s.name.lower():
            return True
    return False


def read_labels(path: Path, names: dict | None = None) -> tuple[np.ndarray, list[Structure]]:
    """Label file -> (layers (L, ...) int array, structures). 2D masks: PNG etc.; 3D: SimpleITK."""
    names = dict(names or {})
    path = Path(path)
    if suffix_of(path) in IMAGE_2D_SUFFIXES:
        data = read_image(path)
        arr = data.array
        if arr.ndim == 3:
            if not (np.all(arr[..., 0] == arr[..., 1]) and np.all(arr[..., 0] == arr[..., 2])):
                raise InputError(f"Label image {path} is in colour; save the mask as a grey image whose pixel "
                                 "values are the label numbers (0 = background).")
            arr = arr[..., 0]
        layers = _as_int_labels(arr, path)[None]
        return layers, _structures_from_values(layers, names)
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"Cannot read label file {path}: {str(exc).strip().splitlines()[-1][:200]}") from exc
    arr = sitk.GetArrayFromImage(img)
    if img.GetNumberOfComponentsPerPixel() > 1:  # .seg.nrrd with overlapping segments: one layer per component
        arr = np.moveaxis(arr, -1, 0)
    else:
        arr = arr[None]
    layers = _as_int_labels(arr, path)
    meta = {k: img.GetMetaData(k) for k in img.GetMetaDataKeys()}
    segs = _seg_nrrd_segments(meta)
    if segs:
        return layers, segs
    return layers, _structures_from_values(layers, names)


def _as_int_labels(arr: np.ndarray, path: Path) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError(f"Label file {path} holds non-integer values; a label image must hold label numbers "
                             "(0 = background). Did you pass the image as the label?")
    if arr.min() < 0:
        raise InputError(f"Label file {path} holds negative values; labels must be 0 (background) or positive.")
    return arr.astype(np.int32, copy=False) if arr.dtype != np.int32 else arr


def _structures_from_values(layers: np.ndarray, names: dict) -> list[Structure]:
    out = []
    for layer in range(layers.shape[0]):
        for v in np.unique(layers[layer]):
            if v != 0:
                out.append(Structure(int(v), layer, names.get(int(v), f"label {int(v)}")))
    return out


def _seg_nrrd_segments(meta: dict) -> list[Structure]:
    """Slicer .seg.nrrd metadata (Segment<N>_Name/_LabelValue/_Layer) -> structures."""
    out = []
    n = 0
    while f"Segment{n}_ID" in meta or f"Segment{n}_Name" in meta:
        name = meta.get(f"Segment{n}_Name", f"Segment_{n + 1}")
        value = int(meta.get(f"Segment{n}_LabelValue", n + 1))
        layer = int(meta.get(f"Segment{n}_Layer", 0))
        out.append(Structure(value, layer, name))
        n += 1
    return out


def _align(layers: np.ndarray, source: CaseSource, image: ImageData) -> np.ndarray:
    """Put the label layers on the image grid or raise a geometry-mismatch error."""
    img_shape = image.array.shape[:2] if image.is_rgb or image.array.ndim == 2 else image.array.shape
    lab_shape = layers.shape[1:]
    if len(lab_shape) != len(img_shape):
        raise InputError(f"Case '{source.case_id}': the image is {len(img_shape)}D {tuple(img_shape)} but the label is "
                         f"{len(lab_shape)}D {tuple(lab_shape)}; give a label with the image's dimensions.")
    if len(img_shape) == 2:
        if lab_shape != tuple(img_shape):
            raise InputError(f"Case '{source.case_id}': image size {img_shape[1]}x{img_shape[0]} (width x height) differs "
                             f"from the mask size {lab_shape[1]}x{lab_shape[0]}; masks must match their image pixel "
                             "for pixel.")
        return layers
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()  # geometry only; the voxels were read already
    reader.SetFileName(str(source.label))
    reader.ReadImageInformation()
    l_sp, l_or, l_dir = np.array(reader.GetSpacing()), np.array(reader.GetOrigin()), np.array(reader.GetDirection())
    i_sp, i_or, i_dir = np.array(image.spacing), np.array(image.origin), np.array(image.direction)
    same_lattice = (np.allclose(l_sp, i_sp, atol=GEOMETRY_TOL) and np.allclose(l_dir, i_dir, atol=GEOMETRY_TOL))
    if same_lattice and lab_shape == tuple(img_shape) and np.allclose(l_or, i_or, atol=GEOMETRY_TOL * 10):
        return layers
    if same_lattice:
        # offset of the label's first voxel in image voxel units (i, j, k)
        offset = np.linalg.solve(i_dir.reshape(3, 3) * i_sp, l_or - i_or)
        off = np.round(offset).astype(int)
        end = off + np.array(lab_shape[::-1])
        if np.allclose(offset, off, atol=1e-2) and np.all(off >= 0) and np.all(end <= np.array(img_shape[::-1])):
            full = np.zeros((layers.shape[0], *img_shape), dtype=layers.dtype)
            full[:, off[2]:end[2], off[1]:end[1], off[0]:end[0]] = layers
            return full
    raise InputError(
        f"Case '{source.case_id}': the label does not lie on the image grid (image size {tuple(img_shape[::-1])} "
        f"spacing {tuple(np.round(i_sp, 4))} origin {tuple(np.round(i_or, 3))}; label size {tuple(lab_shape[::-1])} "
        f"spacing {tuple(np.round(l_sp, 4))} origin {tuple(np.round(l_or, 3))}). Resample the label onto the image "
        "(in Slicer: export the segmentation with this volume as reference geometry).")


def case_summary(sources: list[CaseSource]) -> list[dict]:
    """JSON-friendly list of the cases (for dataset_split.json and logs)."""
    return [{"case_id": c.case_id, "image": os.fspath(c.image), "label": os.fspath(c.label),
             "modality": c.modality} for c in sources]
