"""The screenshots in docs/img/, from the browser test's artifacts. Run the test on the shipped
weights first, so that the pictures show real numbers:

    FER_BROWSER_MODELS=models python -m pytest tests/test_browser.py -k "desktop or class_view or why"
    python scripts/docs_images.py

Each picture is cropped, scaled and stored with a 256-colour palette (the interface's flat colours
kept exactly, the rest for the photo) to stay well under 200 KB.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ART, OUT = ROOT / "test-artifacts", ROOT / "docs" / "img"
PAGE_COLUMN = (250, 1030)  # the live page's 760 px column in the 1280 px wide screenshot, and a margin


def small_png(im: Image.Image, path: Path, flat: int = 64) -> None:
    """A palette PNG: the ``flat`` most frequent exact colours (backgrounds, text, class colours)
    plus an octree palette for everything else (the camera picture)."""
    im = im.convert("RGB")
    common = [c for _, c in sorted(im.getcolors(1 << 24), reverse=True)[:flat]]
    rest = im.quantize(256 - len(common), method=Image.Quantize.FASTOCTREE).getpalette()[:3 * (256 - len(common))]
    pal = [v for c in common for v in c] + rest
    p = Image.new("P", (1, 1))
    p.putpalette(pal + [0] * (768 - len(pal)))
    im.quantize(palette=p, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    print(f"{path.relative_to(ROOT)}: {im.width}x{im.height}, {path.stat().st_size // 1024} KB")


def main() -> int:
    need = ["index-desktop.png", "results-desktop.png", "admin-key.png", "admin-table.png", "admin-class.png", "why-desktop.png"]
    missing = [n for n in need if not (ART / n).is_file()]
    if missing:
        print(f"missing in {ART}: {', '.join(missing)} (run the browser test first, see this file's doc)",
              file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    page = Image.open(ART / "index-desktop.png")
    col = page.crop((PAGE_COLUMN[0], 0, PAGE_COLUMN[1], page.height))
    small_png(col.resize((col.width * 3 // 4, col.height * 3 // 4), Image.LANCZOS), OUT / "live.png")
    small_png(Image.open(ART / "results-desktop.png"), OUT / "timeline.png")
    key, table = Image.open(ART / "admin-key.png").convert("RGB"), Image.open(ART / "admin-table.png").convert("RGB")
    both = Image.new("RGB", (max(key.width, table.width), key.height + 12 + table.height), (244, 245, 248))
    both.paste(key, (0, 0))
    both.paste(table, (0, key.height + 12))
    small_png(both.resize((both.width * 3 // 4, both.height * 3 // 4), Image.LANCZOS), OUT / "admin-chosen.png")
    cls = Image.open(ART / "admin-class.png")  # the class view: four test clients, their counts and periods
    small_png(cls.resize((cls.width * 3 // 4, cls.height * 3 // 4), Image.LANCZOS), OUT / "classview.png")
    # the Why? panel at full size: scaling would blur the 48x48 pixels it is there to show
    small_png(Image.open(ART / "why-desktop.png"), OUT / "why.png", flat=96)
    return 0


if __name__ == "__main__":
    sys.exit(main())
