"""Draw the extension, module and effect icons with Pillow (run once; the PNGs are committed).

    python Resources/make_icons.py

A CT-like grey disc with an orange segmented lesion inside a yellow prompt box: what the effect does.
"""
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    ROOT / "Resources" / "MedSAM.png": 128,
    ROOT / "MedSAMSegment" / "Resources" / "Icons" / "MedSAMSegment.png": 128,
    ROOT / "MedSAMSegment" / "MedSAMSegmentLib" / "SegmentEditorEffect.png": 64,
}


def draw(size: int) -> Image.Image:
    s = 4 * size  # draw large, then downsample for smooth edges
    im = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle([0, 0, s - 1, s - 1], radius=s // 6, fill=(28, 38, 52, 255))
    d.ellipse([s * 0.10, s * 0.14, s * 0.90, s * 0.86], fill=(120, 128, 136, 255))      # body section
    d.ellipse([s * 0.22, s * 0.26, s * 0.46, s * 0.70], fill=(70, 76, 84, 255))          # lung
    d.ellipse([s * 0.54, s * 0.26, s * 0.78, s * 0.70], fill=(70, 76, 84, 255))          # lung
    d.ellipse([s * 0.58, s * 0.38, s * 0.72, s * 0.54], fill=(245, 120, 40, 255))        # segmented lesion
    w = max(2, s // 40)
    d.rectangle([s * 0.53, s * 0.33, s * 0.77, s * 0.59], outline=(255, 217, 26, 255), width=w)  # the box prompt
    return im.resize((size, size), Image.LANCZOS)


if __name__ == "__main__":
    for path, size in TARGETS.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(size).save(path, optimize=True)
        print(path.relative_to(ROOT), size, path.stat().st_size, "bytes")
