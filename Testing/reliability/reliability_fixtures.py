"""Fixtures of the reliability suite: a full disk, a read-only folder, small synthetic inputs.

Imported by the test modules (``from reliability_fixtures import ...``), not a conftest.py: other
test modules do ``from conftest import ...`` and expect Testing/conftest.py.

Full disk: a 64 KiB tmpfs filled to the last byte (needs root to mount; where it cannot be
mounted the test skips and the always-run injected-failure tests cover the same code path).
Read-only folder: a read-only tmpfs as root (root ignores permission bits), else a chmod 0555
folder. Every mount is unmounted at the end of its test.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, timeout=30)
    return r.returncode == 0


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture()
def full_disk(tmp_path):
    """A folder on a 64 KiB file system with no free byte left (holds one file, 'filler')."""
    mnt = tmp_path / "full"
    if not _mount_tmpfs(mnt, "size=64k,mode=0777"):
        pytest.skip("cannot mount a small tmpfs here (needs root); the injected-failure tests cover this path")
    try:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            for block in (4096, 1):  # whole blocks, then the last bytes
                with contextlib.suppress(OSError):
                    while os.write(fd, b"\0" * block):
                        pass
        finally:
            os.close(fd)
        yield mnt
    finally:
        _unmount(mnt)


@pytest.fixture()
def readonly_dir(tmp_path):
    """A folder nothing can be written into (as root: a read-only tmpfs)."""
    mnt = tmp_path / "readonly"
    if _mount_tmpfs(mnt, "size=64k,ro"):
        try:
            yield mnt
        finally:
            _unmount(mnt)
        return
    mnt.mkdir()
    mnt.chmod(0o555)
    try:
        yield mnt
    finally:
        mnt.chmod(0o755)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir())


def sphere_volume(shape=(12, 64, 64), radius=10.0) -> np.ndarray:
    """(K, J, I) int16 volume: a bright ball (value 400) on a dark background (0) with a little noise."""
    k, j, i = np.indices(shape)
    c = [(s - 1) / 2 for s in shape]
    ball = ((k - c[0]) * 3) ** 2 + (j - c[1]) ** 2 + (i - c[2]) ** 2 <= radius ** 2
    noise = np.random.default_rng(0).integers(0, 20, shape)
    return (ball * 400 + noise).astype(np.int16)


def write_volume(array: np.ndarray, path: Path) -> Path:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    img.SetSpacing((1.0, 1.0, 3.0))
    sitk.WriteImage(img, str(path), True)
    return path
