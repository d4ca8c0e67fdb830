"""Refusing outputs before any work: an output that would overwrite an input or another output, a file
where a folder is asked for, an output folder that holds or lies inside an input."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError


def check_outputs(outputs, inputs=(), companions=()) -> None:
    """Refuse outputs that would overwrite an input or each other, before any work.

    outputs / inputs: ``(label, path)`` pairs, e.g. ``("--out", "mask.nii.gz")``,
    ``("the input image", "ct.nii.gz")``; paths may be None (skipped). Compares resolved paths and,
    for files that exist, file identity (hard links, symlinks, case-insensitive file systems).
    Also refuses an output that names an existing folder. Raises InputError.
    companions: suffixes of files written beside each output as one unit with it (e.g.
    ``(".prompts.json",)``: ``mask.nii.gz.prompts.json``); they are checked like the outputs.
    """
    outs = [(label, Path(p)) for label, p in outputs if p is not None]
    outs += [(f"{label}'s {suf} file", out.with_name(out.name + suf)) for label, out in list(outs) for suf in companions]
    ins = [(label, Path(p)) for label, p in inputs if p is not None]
    for n, (label, out) in enumerate(outs):
        if out.is_dir():
            raise InputError(f"{label} {out} is a folder; give a file name (e.g. {out / 'mask.nii.gz'}).")
        for other_label, other in ins + outs[:n]:
            if _same_file(out, other):
                what = "would overwrite" if (other_label, other) in ins else "is the same file as"
                raise InputError(f"{label} {out} {what} {other_label} ({other}). Choose another file name; "
                                 "nothing was written.")


def check_output_folder(label: str, folder, inputs=()) -> None:
    """Refuse an output folder that is a file, is an input, holds an input or lies inside an input folder
    (its files could be replaced or mixed with the results), before any work. inputs: ``(label, path)`` pairs (None skipped). InputError."""
    if folder is None:
        return
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{label} {folder} is a file; give a folder for the results.")
    try:
        where = folder.resolve()
    except OSError:
        return
    for in_label, path in inputs:
        if path is None:
            continue
        path = Path(path)
        try:
            src = path.resolve()
        except OSError:
            continue
        same = _same_file(folder, path)
        if same or where in src.parents or (path.is_dir() and src in where.parents):
            how = "is the same folder as" if same else ("holds" if where in src.parents else "lies inside")
            raise InputError(f"{label} {folder} {how} {in_label} ({path}); results written there could replace or "
                             "mix with the input. Choose another folder; nothing was written.")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
    except OSError:
        pass
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False

