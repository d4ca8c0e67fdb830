"""Training samples: split, foreground-favouring slice sampling, preprocessing identical to inference.

A *sample* is one structure (label) on one 2D image or one slice of a volume, with a simulated
prompt. Preprocessing is the inference path, call for call: the normalisation is resolved once per
case with :func:`medsamkit.preprocess.resolve_normalization` on the whole image/volume (as
``segment_image`` does), each slice goes through :func:`normalize_to_uint8` and the model's own
:class:`~medsamkit.preprocess.ModelTransform` (``image_to_input``, ``box_to_input``,
``coords_to_input``). Only the target mask is extra: it is put into the low-res logit frame
(resize like the image with nearest neighbour, zero pad, area-downsample when the logits are smaller).

Sampling (all reproducible from ``seed``, the epoch and the sample's position, so a resumed run
sees exactly the samples the uninterrupted run would have seen):

- 2D cases: every (image, structure) once per epoch.
- 3D cases: ``slices_per_volume`` slices per (volume, structure) per epoch along ``axis``; a share
  ``foreground_fraction`` contains the structure, the rest are background slices within
  ``background_margin`` slices of it, prompted with the box of the nearest foreground slice and
  trained towards an empty mask (what a propagation past the structure's end needs).
- Validation: whole cases (never slices of a training volume), ``val_fraction`` of them; with a
  single volume, the top block of its foreground slices (a gap of 2 slices from the training ones).
- Augmentation ``flip``: random horizontal/vertical flips of image and mask (LiteMedSAM's training
  augmentation); no intensity augmentation, so what the model sees stays what inference feeds it.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..embedding_cache import digest
from ..errors import InputError
from ..preprocess import ModelTransform, Normalization, normalize_to_uint8, resolve_normalization
from ..volume import extract_slice, numpy_axis
from .cases import Case, CaseSource, discover_cases, read_case
from .config import TrainConfig

SINGLE_VOLUME_GAP = 2  # slices left out between the training and validation blocks of a single volume


@dataclass(frozen=True)
class SampleRef:
    """case/structure indices; slice along the case's axis (-1 for 2D); prompt_slice: mask the prompt is drawn on."""

    case: int
    structure: int
    slice: int = -1
    prompt_slice: int = -1


class TrainingData:
    """Cases read and checked once, their split, and per-epoch sample lists.

    transform: the model's ModelTransform; low_res_size: side of its low-res logits (target frame).
    Raises InputError (with what to do) for bad data; ``warnings`` lists skipped files/cases.
    """

    def __init__(self, cfg: TrainConfig, transform: ModelTransform, low_res_size: int,
                 sources: list[CaseSource] | None = None, max_loaded: int = 8):
        self.cfg = cfg
        self.transform = transform
        self.low_res_size = int(low_res_size)
        self.warnings: list[str] = []
        if sources is None:
            sources, self.warnings = discover_cases(cfg.data, cfg.pairs, cfg.modality)
        self.sources = list(sources)
        self._loaded: OrderedDict[int, Case] = OrderedDict()
        self._max_loaded = max(1, int(max_loaded))
        self.norms: list[Normalization] = []
        self.axes: list[int] = []
        self.is_3d: list[bool] = []
        self.structures: list[list] = []
        self.fg: dict[tuple[int, int], np.ndarray] = {}      # (case, structure) -> usable foreground slices
        self.bg: dict[tuple[int, int], np.ndarray] = {}      # (case, structure) -> background slices near it
        for i, src in enumerate(self.sources):
            self._index_case(i, read_case(src, cfg.labels or None))
        if not any(self.structures):
            raise InputError(f"None of the {len(self.sources)} cases holds the requested labels {cfg.labels}. "
                             "Check the label values/segment names (e.g. --labels 1 2, or a segment name).")
        self.train_cases, self.val_cases, self.val_slices = self._split()

    # -------------------------------------------------------------------------------- cases
    def _index_case(self, i: int, case: Case) -> None:
        src = case.source
        arr = case.image.array
        norm = resolve_normalization(src.window or self.cfg.window, arr, case.image.modality)
        self.norms.append(norm)
        self.is_3d.append(case.is_3d)
        self.structures.append(list(case.structures))
        if not case.structures:
            self.warnings.append(f"{src.case_id}: none of the requested labels present; not used")
        if not case.is_3d:
            self.axes.append(-1)
            normalize_to_uint8(arr, norm)  # raises now (with a remedy) rather than mid-training
        else:
            axis = numpy_axis(self.cfg.axis, case.image.direction)
            self.axes.append(axis)
            n = arr.shape[axis]
            usable = {}
            for si, s in enumerate(case.structures):
                on = np.flatnonzero(np.any(case.mask(s), axis=tuple(a for a in range(3) if a != axis)))
                near = set()
                for k in on:
                    near.update(range(max(0, k - self.cfg.background_margin), min(n, k + self.cfg.background_margin + 1)))
                bg = np.array(sorted(near - set(on.tolist())), dtype=np.int64)
                for k in set(on.tolist()) | set(bg.tolist()):
                    if k not in usable:
                        usable[k] = self._slice_ok(arr, k, axis, norm)
                fg = np.array([k for k in on if usable[k]], dtype=np.int64)
                self.fg[(i, si)] = fg
                self.bg[(i, si)] = np.array([k for k in bg if usable[k]], dtype=np.int64)
                if fg.size < on.size:
                    self.warnings.append(f"{src.case_id}/{s.name}: {on.size - fg.size} slice(s) are constant after "
                                         f"normalisation '{norm.label}' and are not used")
        self._remember(i, case)

    @staticmethod
    def _slice_ok(arr, k, axis, norm) -> bool:
        try:
            normalize_to_uint8(extract_slice(arr, k, axis), norm)
            return True
        except InputError:
            return False

    def _remember(self, i: int, case: Case) -> None:
        self._loaded[i] = case
        self._loaded.move_to_end(i)
        while len(self._loaded) > self._max_loaded:
            self._loaded.popitem(last=False)

    def case(self, i: int) -> Case:
        """The read case ``i`` (re-read when it was evicted from the small in-memory cache)."""
        case = self._loaded.get(i)
        if case is None:
            case = read_case(self.sources[i], self.cfg.labels or None)
            self._remember(i, case)
        else:
            self._loaded.move_to_end(i)
        return case

    # -------------------------------------------------------------------------------- split
    def _split(self):
        usable = [i for i, s in enumerate(self.structures) if s]
        ids = {self.sources[i].case_id: i for i in usable}
        val_slices: dict[tuple[int, int], np.ndarray] = {}
        if self.cfg.val_cases:
            val = []
            for name in self.cfg.val_cases:
                hits = [i for cid, i in ids.items() if cid == name or cid.split("/")[-1] == name]
                if not hits:
                    raise InputError(f"Validation case '{name}' is not among the cases ({', '.join(list(ids)[:8])}...).")
                val += hits
            val = sorted(set(val))
            train = [i for i in usable if i not in val]
        elif self.cfg.val_fraction > 0 and len(usable) >= 2:
            perm = np.random.default_rng([self.cfg.seed, 0]).permutation(len(usable))
            n_val = int(min(len(usable) - 1, max(1, round(self.cfg.val_fraction * len(usable)))))
            val = sorted(usable[j] for j in perm[:n_val])
            train = [i for i in usable if i not in val]
        else:
            train, val = list(usable), []
            if self.cfg.val_fraction > 0 and len(usable) == 1 and self.is_3d[usable[0]]:
                val_slices = self._split_single_volume(usable[0])
                if not val_slices:
                    self.warnings.append("single volume with too few labelled slices for a validation block; "
                                         "no validation")
            elif self.cfg.val_fraction > 0:
                self.warnings.append("only one 2D case: no validation split (early stopping is off)")
        if not train:
            raise InputError("Every case was put into validation; leave at least one training case.")
        return train, val, val_slices

    def _split_single_volume(self, ci: int) -> dict:
        out = {}
        for si in range(len(self.structures[ci])):
            fg = self.fg[(ci, si)]
            n_val = int(round(self.cfg.val_fraction * fg.size))
            if fg.size < 4 or n_val < 1:
                continue
            val = fg[-n_val:]
            self.fg[(ci, si)] = fg[fg < val[0] - SINGLE_VOLUME_GAP]
            self.bg[(ci, si)] = self.bg[(ci, si)][self.bg[(ci, si)] < val[0] - SINGLE_VOLUME_GAP]
            if self.fg[(ci, si)].size == 0:
                self.fg[(ci, si)] = fg[:-n_val]
            out[(ci, si)] = val
        return out

    @property
    def has_validation(self) -> bool:
        return bool(self.val_cases or self.val_slices)

    # -------------------------------------------------------------------------------- sample lists
    def train_refs(self, epoch: int) -> list[SampleRef]:
        """The epoch's training samples in training order (a pure function of seed and epoch)."""
        rng = np.random.default_rng([self.cfg.seed, 1, epoch])
        refs: list[SampleRef] = []
        for ci in self.train_cases:
            for si in range(len(self.structures[ci])):
                if not self.is_3d[ci]:
                    refs.append(SampleRef(ci, si))
                    continue
                fg, bg = self.fg[(ci, si)], self.bg[(ci, si)]
                if fg.size == 0:
                    continue
                n = self.cfg.slices_per_volume
                n_fg = n if bg.size == 0 else int(round(n * self.cfg.foreground_fraction))
                for k in rng.choice(fg, size=n_fg, replace=n_fg > fg.size):
                    refs.append(SampleRef(ci, si, int(k), int(k)))
                if n - n_fg > 0:
                    for k in rng.choice(bg, size=n - n_fg, replace=(n - n_fg) > bg.size):
                        nearest = int(fg[np.argmin(np.abs(fg - k))])
                        refs.append(SampleRef(ci, si, int(k), nearest))
        order = rng.permutation(len(refs))
        return [refs[j] for j in order]

    def val_refs(self) -> list[SampleRef]:
        """Fixed validation samples: whole validation cases (evenly spaced foreground slices of volumes)."""
        refs = []
        for ci in self.val_cases:
            for si in range(len(self.structures[ci])):
                if not self.is_3d[ci]:
                    refs.append(SampleRef(ci, si))
                else:
                    refs += self._spaced(ci, si, self.fg[(ci, si)])
        for (ci, si), slices in sorted(self.val_slices.items()):
            refs += self._spaced(ci, si, slices)
        return refs

    def _spaced(self, ci, si, slices):
        if slices.size == 0:
            return []
        pick = np.unique(np.linspace(0, slices.size - 1, min(self.cfg.val_slices_per_volume, slices.size)).round())
        return [SampleRef(ci, si, int(slices[int(j)]), int(slices[int(j)])) for j in pick]

    def describe(self, ref: SampleRef) -> str:
        s = self.structures[ref.case][ref.structure]
        where = f"/slice{ref.slice}" if ref.slice >= 0 else ""
        return f"{self.sources[ref.case].case_id}/{s.name}{where}"

    # -------------------------------------------------------------------------------- one sample
    def display_and_masks(self, ref: SampleRef):
        """(display (H, W, 3) uint8 exactly as inference makes it, target mask, prompt mask) — both (H, W) bool."""
        case = self.case(ref.case)
        s = self.structures[ref.case][ref.structure]
        norm = self.norms[ref.case]
        if ref.slice < 0:
            return normalize_to_uint8(case.image.array, norm), case.mask(s), case.mask(s)
        axis = self.axes[ref.case]
        plane = extract_slice(case.image.array, ref.slice, axis)
        mask = extract_slice(case.layers[s.layer], ref.slice, axis) == s.value
        prompt_mask = mask if ref.prompt_slice == ref.slice else (
            extract_slice(case.layers[s.layer], ref.prompt_slice, axis) == s.value)
        return normalize_to_uint8(plane, norm), mask, prompt_mask

    def sample(self, ref: SampleRef, rng: np.random.Generator, prompt, augment: bool = False,
               with_gt: bool = False) -> dict:
        """Build one sample. Returns a dict of numpy arrays:

        image (3, S, S) float32 model input; target (1, L, L) float32; box (4,) float32 model-frame
        XYXY or None; points (N, 2) float32 model-frame XY or None; point_labels (N,) int64 or None;
        key: content digest of ``image`` (embedding-cache key); hw: original (H, W); gt (H, W) bool
        when ``with_gt``; id: readable name.
        """
        display, mask, prompt_mask = self.display_and_masks(ref)
        flips = ""
        if augment and self.cfg.augment == "flip":
            if rng.random() < 0.5:
                display, mask, prompt_mask = display[:, ::-1], mask[:, ::-1], prompt_mask[:, ::-1]
                flips += "h"
            if rng.random() < 0.5:
                display, mask, prompt_mask = display[::-1], mask[::-1], prompt_mask[::-1]
                flips += "v"
            display, mask, prompt_mask = (np.ascontiguousarray(a) for a in (display, mask, prompt_mask))
        h, w = mask.shape
        p = prompt(prompt_mask, rng)
        tf = self.transform
        image = tf.image_to_input(display)
        out = {
            "image": image,
            "target": self.mask_to_low_res(mask)[None],
            "box": None if p.box is None else tf.box_to_input(p.box, h, w),
            "points": None if p.points is None else tf.coords_to_input(p.points, h, w),
            "point_labels": None if p.labels is None else np.asarray(p.labels, dtype=np.int64),
            "key": digest(image),
            "hw": (h, w),
            "id": self.describe(ref) + (f"/flip-{flips}" if flips else ""),
        }
        if with_gt:
            out["gt"] = mask
        return out

    def mask_to_low_res(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) bool in the original frame -> (L, L) float32 0/1 in the low-res logit frame."""
        import cv2

        s, low = self.transform.spec.size, self.low_res_size
        h, w = mask.shape
        nh, nw = self.transform.resized_hw(h, w)
        frame = np.zeros((s, s), dtype=np.float32)
        frame[:nh, :nw] = cv2.resize(mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST)
        if low != s:  # area average then threshold: thin structures survive better than nearest
            frame = (cv2.resize(frame, (low, low), interpolation=cv2.INTER_AREA) >= 0.5).astype(np.float32)
        return frame


class SampleDataset:
    """``torch.utils.data.Dataset``-compatible view of a list of refs (map-style, deterministic).

    Each item's random generator is seeded with (seed, stream, epoch, position), so results do not
    depend on worker processes or on where a run was resumed.
    """

    def __init__(self, data: TrainingData, refs: list[SampleRef], prompt, epoch: int, train: bool):
        self.data, self.refs, self.prompt, self.epoch, self.train = data, refs, prompt, epoch, train

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> dict:
        stream = 2 if self.train else 3
        rng = np.random.default_rng([self.data.cfg.seed, stream, self.epoch if self.train else 0, i])
        return self.data.sample(self.refs[i], rng, self.prompt, augment=self.train, with_gt=not self.train)


def collate(samples: list[dict]) -> dict:
    """Stack images/targets into tensors; prompts stay per-sample lists (their point counts differ)."""
    import torch

    batch = {
        "image": torch.from_numpy(np.stack([s["image"] for s in samples])),
        "target": torch.from_numpy(np.stack([s["target"] for s in samples])),
    }
    for key in ("box", "points", "point_labels", "key", "hw", "id", "gt"):
        if key in samples[0]:
            batch[key] = [s[key] for s in samples]
    return batch
