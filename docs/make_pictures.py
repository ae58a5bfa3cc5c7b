"""Before/after pictures of real photographs for README.md (the demo photographs and real flash pairs).

Runs a model the way ``process`` does (:func:`flambient.inference.predict_srgb`) and writes
side-by-side JPEGs (source | final, each ``--height`` px high) into ``docs/images``:

- ``demo_<name>.jpg`` for the three photographs ``flambient demo`` ships (CC0 / CC BY);
- ``faid_<name>.jpg`` (ambient | luminosity blend | final) for FAID flash/ambient pairs from
  ``../shared/data`` when present (research terms: documentation pictures of a benchmark input);
- ``fivek_<name>.jpg`` (source | final | Expert C) for MIT-Adobe FiveK pairs from
  ``../shared/data`` when present (research terms, likewise).

Usage: ``python docs/make_pictures.py [--model default] [--faid Toys_141,People_014,it4] [--fivek a4514,a4869,a4933]``
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def _fit_height(srgb: np.ndarray, height: int) -> np.ndarray:
    """Resize an sRGB HxWx3 image to ``height`` rows (area filter), aspect kept."""
    import cv2

    h, w = srgb.shape[:2]
    return cv2.resize(srgb, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)


def _write_row(path: Path, images: list[np.ndarray], height: int) -> None:
    from flambient.io.images import write_jpeg

    gap = np.ones((height, 6, 3), np.float32)
    row: list[np.ndarray] = []
    for im in images:
        row += [_fit_height(np.clip(im, 0.0, 1.0).astype(np.float32), height), gap]
    write_jpeg(path, np.concatenate(row[:-1], axis=1), quality=88)
    print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def _present(folder: Path, names: list[str], suffixes: tuple[str, ...]) -> Iterator[tuple[str, list[Path]]]:
    """``(name, [folder/name+suffix ...])`` for each name whose files all exist; says which are skipped."""
    for name in names:
        paths = [folder / f"{name}{suffix}" for suffix in suffixes]
        if all(p.is_file() for p in paths):
            yield name, paths
        else:
            print(f"skipped {name}: not in {folder}")


def demo_pictures(backend: object, out: Path, height: int) -> None:
    """Source | final of every shipped demo photograph."""
    from flambient.inference import predict_srgb
    from flambient.io.images import read_srgb

    for res in sorted(resources.files("flambient").joinpath("demo_photos").iterdir(), key=lambda r: r.name):
        if not res.name.endswith(".jpg"):
            continue
        with resources.as_file(res) as p:
            src = read_srgb(p)[..., :3]
        _write_row(out / f"demo_{Path(res.name).stem}.jpg", [src, predict_srgb(backend, src)], height)


def faid_pictures(backend: object, out: Path, names: list[str], height: int) -> None:
    """Ambient | luminosity blend | final of FAID flash/ambient pairs (frames as decoded, no EXIF)."""
    from flambient import baselines, colour
    from flambient.inference import predict_srgb
    from flambient.io.images import read_linear
    from flambient.stack import build_stack

    for name, (amb, fl) in _present(SHARED / "faid-flash-ambient-jozech", names, ("_ambient.png", "_flash.png")):
        stack = build_stack(read_linear(amb), read_linear(fl))
        blend = baselines.run_baselines(stack)["luminosity"]
        _write_row(out / f"faid_{name}.jpg",
                   [colour.linear_to_srgb(stack[..., 0:3]), blend, predict_srgb(backend, stack)], height)


def fivek_pictures(backend: object, out: Path, names: list[str], height: int) -> None:
    """Source | final | Expert C of FiveK pairs (the edit resampled onto the source grid)."""
    from flambient.inference import predict_srgb
    from flambient.io.images import read_srgb
    from flambient.pairs import fit_target

    for name, (src_path, edit_path) in _present(SHARED / "fivek-pairs-deeplpf", names, ("_input.png", "_expertC.png")):
        src = read_srgb(src_path)[..., :3]
        edit, _note = fit_target(read_srgb(edit_path)[..., :3], src.shape[:2])
        _write_row(out / f"fivek_{name}.jpg", [src, predict_srgb(backend, src), edit], height)


def main(argv: list[str] | None = None) -> int:
    from flambient.inference import load_backend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--faid", default="Toys_141,People_014,it4", help="FAID pair names (comma list; '' for none)")
    ap.add_argument("--fivek", default="a4514,a4869,a4933", help="FiveK pair names (comma list; '' for none)")
    ap.add_argument("--height", type=int, default=300)
    ap.add_argument("--out", default=str(REPO / "docs" / "images"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = load_backend(args.model)
    demo_pictures(backend, out, args.height)
    faid_pictures(backend, out, [n for n in args.faid.split(",") if n], min(args.height, 240))
    fivek_pictures(backend, out, [n for n in args.fivek.split(",") if n], min(args.height, 240))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
