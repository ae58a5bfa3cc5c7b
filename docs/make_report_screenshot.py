"""Make ``docs/images/report.png``: the eval report of real photographs, as Chromium shows it.

Real pairs: the MIT-Adobe FiveK inputs and their Expert C retouches in
``../shared/data/fivek-pairs-deeplpf`` (never copied into the repository: everything is made
in a temporary folder). The inputs are processed by the shipped default model
(``flambient process``), the finals scored against the retouches with the baselines
(``flambient eval --inputs --baselines --report``), and the top of the report is captured at
1400 px wide in headless Chromium and stored as an optimised PNG.

    python docs/make_report_screenshot.py [--data ../shared/data] [--out docs/images/report.png]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pairs(data: Path, shoot: Path, truth: Path) -> int:
    """Copy each FiveK ``<id>_input.png`` to SHOOT/<id>.png and its ``_expertC`` to TRUTH; the count."""
    src = data / "fivek-pairs-deeplpf"
    if not src.is_dir():
        sys.exit(f"error: {src} not found (pass --data)")
    shoot.mkdir(parents=True)
    truth.mkdir(parents=True)
    n = 0
    for inp in sorted(src.glob("*_input.png")):
        stem = inp.name[: -len("_input.png")]
        edit = src / f"{stem}_expertC.png"
        if edit.is_file():
            shutil.copy(inp, shoot / f"{stem}.png")
            shutil.copy(edit, truth / f"{stem}.png")
            n += 1
    return n


def _store_png(shot: Path, out: Path) -> None:
    """Save the screenshot as an optimised RGB PNG (full colour: the report is about colour)."""
    from PIL import Image

    with Image.open(shot) as im:
        rgb = im.convert("RGB")
    out.parent.mkdir(parents=True, exist_ok=True)
    rgb.save(out, optimize=True)


def main() -> int:
    """Build the report of real pairs and save its screenshot; the process exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "report.png")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1560)
    ap.add_argument("--keep", type=Path, help="Also copy report.html and metrics.json here.")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from flambient.cli import main as flambient
    from flambient.report_render import screenshot

    with tempfile.TemporaryDirectory(prefix="flambient-report-") as tmp:
        shoot, truth = Path(tmp) / "shoot", Path(tmp) / "truth"
        print(f"{_pairs(args.data, shoot, truth)} real pairs", file=sys.stderr)
        if flambient(["-q", "process", str(shoot), "--devices", "cpu"]) != 0:
            return 1
        report, doc = Path(tmp) / "report.html", Path(tmp) / "metrics.json"
        flambient(["-q", "eval", str(shoot / "final"), str(truth), "--inputs", str(shoot), "--baselines",
                   "--json", str(doc), "--report", str(report)])
        shot = screenshot(report, Path(tmp) / "shot.png", width=args.width, height=args.height)
        _store_png(shot, args.out)
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(report, args.keep / "report.html")
            shutil.copy(doc, args.keep / "metrics.json")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
