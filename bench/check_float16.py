"""Does a member's shipped float16 weights.npz predict like its float32 checkpoint?

    python bench/check_float16.py [--member models/vgg_s] [--data PATH]

Needs the member's training checkpoint (ckpt/best.weights.h5, kept where it was trained, never
committed). Prints accuracy of both on PublicTest and PrivateTest (flip TTA) and how many labels differ.
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--member", default="models/vgg_s")
    ap.add_argument("--data")
    args = ap.parse_args(argv)
    import numpy as np

    from fer_core import store
    from fer_core.data import load_fer2013
    from fer_core.models import build
    from fer_core.predict import probabilities
    from fer_core.tta import TTA

    member = Path(args.member)
    m16, side = store.load_member(member)
    m32 = build(side["arch"], **side["kwargs"])
    m32.load_weights(member / "ckpt" / "best.weights.h5")
    data = load_fer2013(args.data)
    for s in ("PublicTest", "PrivateTest"):
        p16, p32 = probabilities(m16, data[s].x, TTA.FLIP), probabilities(m32, data[s].x, TTA.FLIP)
        y = data[s].y
        print(f"{s}: float16 {100 * (p16.argmax(1) == y).mean():.2f}%, float32 {100 * (p32.argmax(1) == y).mean():.2f}%, "
              f"max |dp| {np.abs(p16 - p32).max():.4f}, labels changed {(p16.argmax(1) != p32.argmax(1)).sum()} of {len(y)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
