"""Open an HTML page (an evaluation's report.html) in headless Chromium, wait for its
images and audio, say whether all loaded, and save a screenshot.

    python tools/screenshot.py musicpairs-quickstart/eval/report.html docs/report.png

Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install selenium``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import open_page  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("screenshot", type=Path)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    state = open_page(args.page, args.screenshot, height=args.height)
    images = sum(c and w > 0 for c, w in state["images"])
    audio = sum(r >= 1 and e == 0 and d > 0 for r, e, d in state["audio"])
    print(f"{args.page}: {images} of {len(state['images'])} images and {audio} of "
          f"{len(state['audio'])} audio elements loaded; screenshot {args.screenshot}")
    return 0 if images == len(state["images"]) and audio == len(state["audio"]) else 1


if __name__ == "__main__":
    sys.exit(main())
