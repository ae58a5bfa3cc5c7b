"""Before/after pictures of real photographs for README.md (the demo photographs and real flash pairs).

Runs a model the way ``process`` does (:func:`flambient.inference.predict_srgb`) and writes
side-by-side JPEGs (source | final, each ``--height`` px high) into ``docs/images``:

- ``demo_<name>.jpg`` for the three photographs ``flambient demo`` ships (CC0 / CC BY);
- ``faid_<name>.jpg`` (ambient | luminosity blend | final) for FAID flash/ambient pairs from
  ``../shared/data`` when present (research terms: documentation pictures of a benchmark input);
- ``fivek_<name>.jpg`` (source | final | Expert C) for MIT-Adobe FiveK pairs from
  ``../shared/data`` when present (research terms, likewise);
- ``window_pull.jpg`` (ambient frame | the model with its window pull off | on | synthetic
  truth) for the synthetic studio sets with the largest windows (``--window-sets``; synthetic,
  made here, so no licence question), and ``bracket_frobisher.jpg`` (1 s frame | off | on) for
  the real frobisher exposure bracket of ``../shared/data`` (BSD-3-Clause as recorded in its
  MANIFEST);
- ``flash_fill_cap.jpg`` (ambient frame | flash fill as shot | capped): crops of the real
  flambient shoot of ``../shared/data`` (its terms as recorded in the MANIFEST, as the
  README's other pictures of that shoot).
- ``bracket_floor.jpg`` (ambient frame | the bracket floor at -1 EV | as shipped): sets of the
  same shoot, and ``bracket_highlight_floor.jpg`` (ambient frame | a plain floor at -0.5 EV |
  a plain floor at -0.2 EV | as shipped: -0.2 EV, giving way down to -0.5 EV where holding it
  would blow highlights).
- ``bracket_tone.jpg`` (ambient frame | ``--previous`` | the model) and
  ``bracket_previous_release.jpg`` (ambient frame | ``--previous-release`` | the model): the
  shoot's three sets under two models.
- ``ambient_wb_bound.jpg`` (ambient frame | ambient white balance within +-1 stop | within the
  current bound | the photograph): real photographs (``--relit-from``; skipped without it)
  re-lit at a fixed daylight balance.

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


def _ambient_srgb(stack: np.ndarray) -> np.ndarray:
    """The ambient frame of an HxWx13 linear stack as sRGB HxWx3 in [0, 1] (as shot)."""
    from flambient import colour

    return colour.linear_to_srgb(np.clip(stack[..., 0:3], 0.0, 1.0))


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
    from flambient import baselines
    from flambient.inference import predict_srgb
    from flambient.io.images import read_linear
    from flambient.stack import build_stack

    for name, (amb, fl) in _present(SHARED / "faid-flash-ambient-jozech", names, ("_ambient.png", "_flash.png")):
        stack = build_stack(read_linear(amb), read_linear(fl))
        blend = baselines.run_baselines(stack)["luminosity"]
        _write_row(out / f"faid_{name}.jpg",
                   [_ambient_srgb(stack), blend, predict_srgb(backend, stack)], height)


def fivek_pictures(backend: object, out: Path, names: list[str], height: int) -> None:
    """Source | final | Expert C of FiveK pairs (the edit resampled onto the source grid)."""
    from flambient.inference import predict_srgb
    from flambient.io.images import read_srgb
    from flambient.pairs import fit_target

    for name, (src_path, edit_path) in _present(SHARED / "fivek-pairs-deeplpf", names, ("_input.png", "_expertC.png")):
        src = read_srgb(src_path)[..., :3]
        edit, _note = fit_target(read_srgb(edit_path)[..., :3], src.shape[:2])
        _write_row(out / f"fivek_{name}.jpg", [src, predict_srgb(backend, src), edit], height)


def _pull_off_on(model: str) -> tuple[object, object]:
    """The model twice: with its window pull switched off (as a file saved before it) and on."""
    import torch

    from flambient.nets.registry import load_model

    net_off, net_on = load_model(model)[0], load_model(model)[0]
    with torch.no_grad():
        net_off.window_strength.zero_()
        for p in net_off.window_fc.parameters():
            p.zero_()
    return net_off, net_on


def window_pictures(model: str, out: Path, count: int, height: int) -> None:
    """Window-pull pictures (pull off | on), written only where their inputs exist.

    - ``window_pull.jpg``: ambient frame | off | on | truth, one row per synthetic studio set
      (seed 2, as the synthetic benchmark), the ``count`` sets with a window-pull frame and the
      largest windows (synthetic, made here);
    - ``bracket_frobisher.jpg``: the real frobisher exposure bracket of ``../shared/data``
      (1/8, 1 and 8 s; the 1/8 s frame is its window pull) through ``ingest`` as ``process``
      reads it: 1 s frame | off | on.
    """
    import shutil
    import tempfile

    import torch

    from flambient.data import drop_mask
    from flambient.dataset import load_dataset
    from flambient.ingest import ingest_shoot, load_set_stack
    from flambient.io.images import write_jpeg
    from flambient.stack import HAS_WINDOW
    from flambient.synth.shoot import synth_pairs
    from flambient.training import predict

    net_off, net_on = _pull_off_on(model)
    cpu = torch.device("cpu")

    with tempfile.TemporaryDirectory() as tmp:
        synth_pairs(Path(tmp) / "syn", pairs=16, size=(384, 256), seed=2, style="studio", workers=1)
        sets = [(drop_mask(st), t) for st, t in (it.load() for it in load_dataset(Path(tmp) / "syn"))]
        sets = [(st, t) for st, t in sets if st[..., HAS_WINDOW].max() > 0.5]
        sets.sort(key=lambda p: -float((p[0][..., 0:3].max(-1) >= 0.95).mean()))
        rows = [np.concatenate([_ambient_srgb(st), predict(net_off, st, cpu), predict(net_on, st, cpu), truth], axis=1)
                for st, truth in sets[:count]]
        if rows:
            write_jpeg(out / "window_pull.jpg", np.concatenate(rows, axis=0), quality=88)
            print(out / "window_pull.jpg")
        frob = sorted((SHARED / "bracket-colour-hdri-frobisher").glob("*.jpg"))
        if not frob:
            print(f"skipped bracket_frobisher: not in {SHARED}")
            return
        shoot = Path(tmp) / "frobisher"
        shoot.mkdir()
        for f in frob:
            shutil.copy(f, shoot / f.name)
        manifest = ingest_shoot(shoot, n_jobs=1)
        st = load_set_stack(shoot, manifest.sets[0], use_cache=False)
        _write_row(out / "bracket_frobisher.jpg", [_ambient_srgb(st), predict(net_off, st, cpu), predict(net_on, st, cpu)],
                   height)


#: Crops (top, bottom, left, right as shares of the picture) of the real shoot's sets for
#: ``flash_fill_cap.jpg``: set01's door glass, set03's windows.
FILL_CROPS = {"set01": (0.0, 0.75, 0.62, 1.0), "set03": (0.15, 0.85, 0.72, 1.0)}


SHOOT = SHARED / "flambient-brackets-small-davepeloso-prophoto"


def _shoot_stack(name: str, tmp: Path, long_edge: int) -> np.ndarray:
    """Set ``name`` of the real flambient shoot read by ``ingest`` as ``process`` reads it,
    resized to ``long_edge`` px (HxWx13 linear)."""
    import shutil

    from flambient.data import resize_stack
    from flambient.ingest import ingest_shoot, load_set_stack

    shoot = tmp / name
    shoot.mkdir()
    for f in sorted((SHOOT / name).glob("*.jpg")):
        shutil.copy(f, shoot / f.name)
    return resize_stack(load_set_stack(shoot, ingest_shoot(shoot, n_jobs=1).sets[0], use_cache=False), long_edge)


def floor_pictures(model: str, out: Path, height: int, variants: list[tuple[float, float | None] | None],
                   file: str = "bracket_floor.jpg", names: tuple[str, ...] = ("set02", "set03")) -> None:
    """``file``: sets of the real flambient shoot, one row each: ambient frame | the model under
    each of ``variants`` (``(bracket_ev_floor, bracket_highlight_floor)``; None: as shipped)."""
    import tempfile

    import torch

    from flambient.io.images import write_jpeg
    from flambient.nets.registry import load_model
    from flambient.training import predict

    if not all((SHOOT / name).is_dir() for name in names):
        print(f"skipped {file}: the flambient shoot is not in {SHARED}")
        return
    net, cpu = load_model(model)[0], torch.device("cpu")
    shipped = (net.bracket_ev_floor, net.bracket_highlight_floor)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            st = _shoot_stack(name, Path(tmp), 4 * height)
            finals = [_ambient_srgb(st)]
            try:
                for v in variants:
                    net.bracket_ev_floor, net.bracket_highlight_floor = shipped if v is None else v
                    finals.append(predict(net, st, cpu))
            finally:
                net.bracket_ev_floor, net.bracket_highlight_floor = shipped
            rows.append(np.concatenate([_fit_height(im, height) for im in finals], axis=1))
    write_jpeg(out / file, np.concatenate(rows, axis=0), quality=88)
    print(out / file)


def tone_pictures(model: str, previous: str, out: Path, height: int,
                  names: tuple[str, ...] = ("set01", "set02", "set03"), file: str = "bracket_tone.jpg") -> None:
    """``file``: sets of the real flambient shoot, one row each: ambient frame | ``previous`` |
    ``model`` (``bracket_tone.jpg``: the release before the default's tone stage, stage 6;
    ``bracket_previous_release.jpg``: the release before this one)."""
    import tempfile

    import torch

    from flambient.io.images import write_jpeg
    from flambient.nets.registry import load_model
    from flambient.training import predict

    if not all((SHOOT / name).is_dir() for name in names):
        print(f"skipped {file}: the flambient shoot is not in {SHARED}")
        return
    cpu = torch.device("cpu")
    nets = [load_model(previous)[0], load_model(model)[0]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            st = _shoot_stack(name, Path(tmp), 4 * height)
            rows.append(np.concatenate([_fit_height(im, height) for im in
                                        [_ambient_srgb(st)] + [predict(n, st, cpu) for n in nets]], axis=1))
    write_jpeg(out / file, np.concatenate(rows, axis=0), quality=88)
    print(out / file)


def flash_fill_pictures(model: str, out: Path, height: int, long_edge: int = 1000) -> None:
    """``flash_fill_cap.jpg``: crops of the real flambient shoot (``FILL_CROPS``, sets read by
    ``ingest`` as ``process`` reads them, ``long_edge`` px): ambient frame | the flash fill as
    shot (the previous release) | capped at :data:`~flambient.nets.adaptive.FLASH_FILL_MAX`."""
    import tempfile

    import torch

    from flambient.io.images import write_jpeg
    from flambient.nets import adaptive
    from flambient.nets.registry import load_model
    from flambient.training import predict

    if not all((SHOOT / name).is_dir() for name in FILL_CROPS):
        print(f"skipped flash_fill_cap: the flambient shoot is not in {SHARED}")
        return
    net, cpu, cap = load_model(model)[0], torch.device("cpu"), adaptive.FLASH_FILL_MAX
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (t, b, l, r) in FILL_CROPS.items():
            st = _shoot_stack(name, Path(tmp), long_edge)
            try:
                adaptive.FLASH_FILL_MAX = 1e30  # the fill as shot
                as_shot = predict(net, st, cpu)
            finally:
                adaptive.FLASH_FILL_MAX = cap
            h, w = st.shape[:2]
            crop = (slice(round(t * h), round(b * h)), slice(round(l * w), round(r * w)))
            row = [_ambient_srgb(st), as_shot, predict(net, st, cpu)]
            rows.append([im[crop] for im in row])
    height_each = min(height, min(r[0].shape[0] for r in rows))
    parts = [np.concatenate([_fit_height(im, height_each) for im in row], axis=1) for row in rows]
    width = max(p.shape[1] for p in parts)
    write_jpeg(out / "flash_fill_cap.jpg", np.concatenate(
        [np.pad(p, ((0, 4), (0, width - p.shape[1]), (0, 0))) for p in parts], axis=0), quality=88)
    print(out / "flash_fill_cap.jpg")


def tungsten_pictures(model: str, out: Path, height: int, finals: Path, names: list[str] | None = None,
                      count: int = 3, seed: int = 7) -> None:
    """``ambient_wb_bound.jpg``: real photographs (the folder ``finals``; only ``names`` when
    given) re-lit into shoots at the flash's fixed white balance
    (``synth --from``, ``seed``) and read as two-frame sets (ambient + flash, the window frame
    left out); the ``count`` sets with the strongest tungsten cast, one row each: ambient frame
    | the ambient white balance bounded to +-1 stop (the previous release) | to
    :data:`~flambient.nets.adaptive.AMBIENT_GAIN_MAX` | the photograph itself (the truth)."""
    import tempfile

    import torch

    from flambient.dataset import load_dataset
    from flambient.io.images import write_jpeg
    from flambient.nets import adaptive
    from flambient.nets.registry import load_model
    from flambient.stack import AMBIENT, FLASH, build_stack
    from flambient.synth.from_finals import synth_from_finals
    from flambient.training import predict

    net, cpu, bound = load_model(model)[0], torch.device("cpu"), adaptive.AMBIENT_GAIN_MAX
    sets: list[tuple[float, np.ndarray, np.ndarray]] = []
    with tempfile.TemporaryDirectory() as tmp:
        synth_from_finals(finals, Path(tmp) / "relit", size=(384, 256), seed=seed, pairs=True)
        for item in load_dataset(Path(tmp) / "relit"):
            if names and item.name not in names:
                continue
            full, truth = item.load()
            st = build_stack(full[..., AMBIENT], full[..., FLASH])  # a two-frame shoot
            x = torch.from_numpy(st).permute(2, 0, 1)[None]
            cast = float(adaptive.ambient_cast(x, torch.ones_like(x[:, :1]))[0, 2])  # ln blue, < 0: warm
            sets.append((cast, st, truth))
    rows = []
    for _cast, st, truth in sorted(sets, key=lambda r: r[0])[:count]:
        try:
            adaptive.AMBIENT_GAIN_MAX = 2.0  # the previous release's bound
            before = predict(net, st, cpu)
        finally:
            adaptive.AMBIENT_GAIN_MAX = bound
        rows.append(np.concatenate([_fit_height(im, height) for im in
                                    (_ambient_srgb(st), before,
                                     predict(net, st, cpu), truth)], axis=1))
    if not rows:
        return
    write_jpeg(out / "ambient_wb_bound.jpg", np.concatenate(rows, axis=0), quality=88)
    print(out / "ambient_wb_bound.jpg")


def main(argv: list[str] | None = None) -> int:
    from flambient.inference import load_backend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--faid", default="Toys_141,People_014,it4", help="FAID pair names (comma list; '' for none)")
    ap.add_argument("--fivek", default="a4514,a4869,a4933", help="FiveK pair names (comma list; '' for none)")
    ap.add_argument("--window-sets", type=int, default=3, help="synthetic sets in window_pull.jpg (0: none)")
    ap.add_argument("--relit-from", default="", help="folder of real photographs for ambient_wb_bound.jpg "
                    "(README: the default model's training photographs, models/default/data_sources.tsv)")
    ap.add_argument("--relit-names", default="", help="only these photographs (stems, comma list) of --relit-from")
    ap.add_argument("--previous", default="", help="the default before its tone stage (stage 6) for "
                    "bracket_tone.jpg, e.g. `git show 37308de:models/default/model.pt` saved as DIR/model.pt")
    ap.add_argument("--previous-release", default="", help="the default of the release before this one for "
                    "bracket_previous_release.jpg, e.g. `git show 0ef53bf:models/default/model.pt` saved as DIR/model.pt")
    ap.add_argument("--height", type=int, default=300)
    ap.add_argument("--out", default=str(REPO / "docs" / "images"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = load_backend(args.model)
    demo_pictures(backend, out, args.height)
    faid_pictures(backend, out, [n for n in args.faid.split(",") if n], min(args.height, 240))
    fivek_pictures(backend, out, [n for n in args.fivek.split(",") if n], min(args.height, 240))
    if args.window_sets:
        window_pictures(args.model, out, args.window_sets, args.height)
    flash_fill_pictures(args.model, out, args.height)
    floor_pictures(args.model, out, min(args.height, 240), [(-1.0, None), None])
    floor_pictures(args.model, out, min(args.height, 240), [(-0.5, None), (-0.2, None), None],
                   "bracket_highlight_floor.jpg", ("set01", "set02", "set03"))
    if args.previous:
        tone_pictures(args.model, args.previous, out, min(args.height, 240))
    else:
        print("skipped bracket_tone: no --previous model")
    if args.previous_release:
        tone_pictures(args.model, args.previous_release, out, min(args.height, 240),
                      file="bracket_previous_release.jpg")
    else:
        print("skipped bracket_previous_release: no --previous-release model")
    if args.relit_from:
        tungsten_pictures(args.model, out, min(args.height, 240), Path(args.relit_from),
                          [n for n in args.relit_names.split(",") if n])
    else:
        print("skipped ambient_wb_bound: no --relit-from folder")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
