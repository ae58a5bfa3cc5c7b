"""flambient synth: determinism, readable DNG/JPEG frames with EXIF, truth that ingest recovers, styles."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rawpy
import yaml

from flambient.cli import main
from flambient.colour import luminance, srgb_to_linear
from flambient.io.exif import read_exif
from flambient.io.images import read_linear, read_srgb
from flambient.synth import synth_pairs, synth_shoot
from flambient.synth.styles import STYLES, apply_style, style_stats

from conftest import synth_finals

SIZE = (320, 214)


@pytest.fixture(scope="module")
def shoot(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shoot")
    synth_shoot(out, sets=6, size=SIZE, seed=11, fmt="dng", style="studio")
    return out


def _truth(out: Path) -> dict:
    return yaml.safe_load((out / "truth" / "sets.yaml").read_text())


def test_layout_and_truth_document(shoot):
    doc = _truth(shoot)
    assert doc["format"] == "flambient-synth-truth" and len(doc["sets"]) == 6
    files = [f["file"] for s in doc["sets"] for f in s["frames"]]
    assert files == [f"SYN_{i:04d}.dng" for i in range(1, len(files) + 1)]  # capture order
    assert sorted(p.name for p in shoot.glob("*.dng")) == files
    for s in doc["sets"]:
        assert s["name"] == Path(s["frames"][0]["file"]).stem
        roles = [f["role"] for f in s["frames"]]
        assert roles[0] == "ambient" and "flash" in roles and set(roles) <= {"ambient", "flash", "window"}
        assert s["frames"][0]["ev"] == 0.0
        assert all(f["ev"] < -2 for f in s["frames"][1:])  # flash and window pulls are far darker
        final = read_srgb(shoot / s["final"])
        assert final.shape == (SIZE[1], SIZE[0], 3)
        assert 0.15 < float(final.mean()) < 0.85
        mask = read_srgb(shoot / s["mask"])
        assert mask.shape[:2] == final.shape[:2]
        assert ("window" in roles) == bool((mask > 0.5).any())
    times = [f["time"] for s in doc["sets"] for f in s["frames"]]
    assert times == sorted(times)


def test_same_seed_same_bytes_other_seed_differs(shoot, tmp_path):
    again = tmp_path / "again"
    synth_shoot(again, sets=6, size=SIZE, seed=11, fmt="dng", style="studio", workers=1)
    for p in sorted(shoot.rglob("*.*")):
        rel = p.relative_to(shoot)
        if rel.parts[0].startswith("."):
            continue
        assert (again / rel).read_bytes() == p.read_bytes(), rel
    other = tmp_path / "other"
    synth_shoot(other, sets=1, size=SIZE, seed=12)
    assert (other / "SYN_0001.dng").read_bytes() != (shoot / "SYN_0001.dng").read_bytes()


def test_every_dng_decodes_and_exif_reads_back(shoot):
    doc = _truth(shoot)
    for s in doc["sets"]:
        for f in s["frames"]:
            p = shoot / f["file"]
            with rawpy.imread(str(p)) as raw:
                rgb = raw.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True,
                                      adjust_maximum_thr=0, output_color=rawpy.ColorSpace.sRGB)
                assert rgb.shape == (SIZE[1], SIZE[0], 3)
                assert raw.other.iso_speed == f["iso"]
                assert raw.other.shutter_speed == pytest.approx(f["exposure_time"], rel=1e-3)
                assert raw.other.timestamp.replace(tzinfo=None).isoformat()[:19] == f["time"][:19]
            info = read_exif(p)  # exifread
            assert info.iso == f["iso"] and info.f_number == f["f_number"]
            assert info.exposure_time == pytest.approx(f["exposure_time"], rel=1e-3)
            assert info.flash_fired is f["flash_fired"]
            assert info.capture_time.isoformat()[:23] == f["time"][:23]
            assert info.make and info.model and info.focal_length


def test_ingest_recovers_truth(shoot):
    ingest = pytest.importorskip("flambient.ingest")
    doc = _truth(shoot)
    manifest = ingest.ingest_shoot(shoot)
    got = [(s.name, [(f.path.name, f.role) for f in s.frames]) for s in manifest.sets]
    want = [(s["name"], [(f["file"], f["role"]) for f in s["frames"]]) for s in doc["sets"]]
    assert got == want
    for s, t in zip(manifest.sets, doc["sets"]):
        for f, tf in zip(s.frames, t["frames"]):
            assert f.ev == pytest.approx(tf["ev"], abs=0.02)


def test_ingest_stack_matches_truth_exposure(shoot):
    """Decoded, exposure-normalised ambient frames sit where the camera model metered them."""
    ingest = pytest.importorskip("flambient.ingest")
    doc = _truth(shoot)
    manifest = ingest.load_manifest(shoot) or ingest.ingest_shoot(shoot)
    for s, t in zip(manifest.sets[:2], doc["sets"][:2]):
        stack = ingest.load_set_stack(shoot, s, use_cache=False)
        mask = read_srgb(shoot / t["mask"])[:, :, 0] > 0.5
        amb = float(np.median(luminance(stack[:, :, 0:3])[~mask]))
        want = 0.18 * 2 ** t["frames"][0]["exposure_bias"]
        assert amb == pytest.approx(want, rel=0.25)
        flash_only = float(np.median(luminance(stack[:, :, 3:6] - stack[:, :, 0:3])[~mask]))
        assert flash_only > 4 * amb  # flash frames are normalised up by their ~6 EV shorter exposure


def test_jpg_format_frames_have_exif(tmp_path):
    doc = synth_shoot(tmp_path, sets=1, size=(160, 106), seed=3, fmt="jpg")
    for f in doc["sets"][0]["frames"]:
        p = tmp_path / f["file"]
        assert p.suffix == ".jpg"
        img = read_linear(p)
        assert img.shape == (106, 160, 3)
        info = read_exif(p)
        assert info.iso == f["iso"] and info.flash_fired is f["flash_fired"]
        assert info.capture_time.isoformat()[:23] == f["time"][:23]


def _warmth(srgb: np.ndarray) -> float:
    lin = srgb_to_linear(srgb)
    return float(lin[:, :, 0].mean() / max(lin[:, :, 2].mean(), 1e-6))


def test_finals_differ_by_style(tmp_path):
    a, b = tmp_path / "studio", tmp_path / "natural"
    synth_shoot(a, sets=2, size=(192, 128), seed=5, style="studio")
    synth_shoot(b, sets=2, size=(192, 128), seed=5, style="natural")
    for s in _truth(a)["sets"]:
        fa, fb = read_srgb(a / s["final"]), read_srgb(b / s["final"])
        assert float(np.abs(fa - fb).mean()) > 0.03
        assert _warmth(fb) > _warmth(fa) * 1.1  # natural keeps the warm ambient cast
    # frames are identical: only the truth depends on the style
    assert (a / "SYN_0001.dng").read_bytes() == (b / "SYN_0001.dng").read_bytes()


def test_style_follows_its_formula():
    """More flash weight -> the final follows the flash component; ambient cast neutralised."""
    rng = np.random.default_rng(0)
    h, w = 32, 48
    amb = (rng.uniform(0.05, 0.4, (h, w, 1)) * np.array([1.8, 0.85, 0.3])).astype(np.float32)  # tungsten cast
    fl = np.zeros((h, w, 3), np.float32)
    fl[:, : w // 2] = 2.0
    fl[:, w // 2:] = 0.5
    mask = np.zeros((h, w), np.float32)
    st = style_stats(amb, fl, mask)
    studio = apply_style("studio", amb, fl, mask, st)
    natural = apply_style("natural", amb, fl, mask, st)
    left, right = studio[:, : w // 2].mean(), studio[:, w // 2:].mean()
    nl, nr = natural[:, : w // 2].mean(), natural[:, w // 2:].mean()
    assert left - right > nl - nr > 0  # studio follows the flash more than natural
    assert _warmth(studio) < 1.3 < _warmth(natural)
    assert set(STYLES) >= {"studio", "natural"}


def test_pairs_dataset_loads_and_is_deterministic(tmp_path):
    from flambient.dataset import load_dataset

    idx = synth_pairs(tmp_path / "d1", pairs=3, size=(96, 64), seed=2, style="studio")
    synth_pairs(tmp_path / "d2", pairs=3, size=(96, 64), seed=2, style="studio")
    items = load_dataset(idx.parent)
    assert len(items) == 3
    for it in items:
        stack, target = it.load()
        assert stack.shape == (64, 96, 13) and target.shape == (64, 96, 3)
        assert stack[:, :, 10].min() == 1.0  # has flash
        assert 0.1 < float(target.mean()) < 0.9
        amb = float(np.median(luminance(stack[:, :, 0:3])))
        assert 0.1 < amb < 0.8  # exposure-normalised like ingest: interior near 0.18 * 2**bias
        other = (tmp_path / "d2" / it.target.relative_to(idx.parent)).read_bytes()
        assert other == it.target.read_bytes()


def _far_near(lin: np.ndarray) -> float:
    """Luminance ratio of the far field (frame centre) to the near field (frame edges)."""
    h, w = lin.shape[:2]
    lum = luminance(lin)
    centre = lum[h // 3: 2 * h // 3, w // 3: 2 * w // 3]
    edge = np.concatenate([lum[:, : w // 8].ravel(), lum[:, -w // 8:].ravel(), lum[-h // 8:].ravel()])
    return float(np.median(centre) / max(np.median(edge), 1e-6))


def _check_relit(out: Path, doc: dict) -> None:
    for s in doc["sets"]:
        final = srgb_to_linear(read_srgb(out / s["final"]))
        frames = {f["role"]: read_linear(out / f["file"]) for f in reversed(s["frames"])}
        amb, fl = frames["ambient"], frames["flash"]
        mask = read_srgb(out / s["mask"])[:, :, 0] > 0.5
        # flash: falls off into the far field faster than the final does
        assert _far_near(fl) < 0.8 * _far_near(final), s["name"]
        # ambient: warmer (more red than blue) than the final, on the interior
        warm = lambda x: float(x[~mask][:, 0].mean() / max(x[~mask][:, 2].mean(), 1e-6))  # noqa: E731
        assert warm(amb) > 1.25 * warm(final), s["name"]


def test_from_finals_relights_plausibly(tmp_path):
    from flambient.synth.from_finals import synth_from_finals

    finals = tmp_path / "finals"
    src = tmp_path / "src"
    synth_shoot(src, sets=2, size=(256, 170), seed=4, fmt="jpg", style="studio")
    finals.mkdir()
    for p in (src / "truth").glob("*.jpg"):
        (finals / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    doc = synth_from_finals(finals, out, size=(256, 170), seed=1, fmt="dng")
    assert len(doc["sets"]) == 2
    _check_relit(out, doc)
    # the truth is the given final itself
    for s in doc["sets"]:
        got, want = read_srgb(out / s["final"]), read_srgb(finals / s["source"])
        assert float(np.abs(got - want).mean()) < 0.02


def test_awb_gains_take_a_share_of_the_cast_and_keep_luminance():
    from flambient.colour import luminance
    from flambient.synth.from_finals import awb_gains

    rng = np.random.default_rng(0)
    amb = rng.uniform(0.05, 0.5, (32, 48, 3)).astype(np.float32) * np.array([1.6, 1.0, 0.45], np.float32)
    assert np.allclose(awb_gains(amb, 0.0), 1.0, atol=1e-6)
    for share in (0.5, 1.0):
        g = awb_gains(amb, share)
        assert float(luminance(g)) == pytest.approx(1.0, abs=1e-5)
        mean = (amb * g).reshape(-1, 3).mean(axis=0)
        raw = amb.reshape(-1, 3).mean(axis=0)
        before, after = raw[0] / raw[2], mean[0] / mean[2]
        assert after == pytest.approx(before ** (1.0 - share), rel=1e-3)  # share 1: grey on average


def test_from_finals_camera_awb_gives_milder_ambient_casts(tmp_path):
    """``--camera-awb`` ambient frames keep some warmth but far less than a fixed daylight
    balance; the default is what it was (same seed, same pairs)."""
    from flambient.dataset import load_dataset
    from flambient.stack import AMBIENT, FLASH
    from flambient.synth.from_finals import synth_from_finals

    finals = synth_finals(tmp_path)

    runs = iter(range(10))

    def casts(**kw):
        out = tmp_path / f"out{next(runs)}"
        synth_from_finals(finals, out, size=(192, 128), seed=3, pairs=True, **kw)
        rb = []
        for item in load_dataset(out):
            stack, _ = item.load()
            a, f = stack[:, :, AMBIENT].reshape(-1, 3).mean(0), stack[:, :, FLASH].reshape(-1, 3).mean(0)
            rb.append((a[0] / a[2]) / (f[0] / f[2]))   # the ambient's red/blue against the flash's
        return np.array(rb)

    fixed, awb = casts(), casts(camera_awb=True)
    assert np.all(fixed > 1.5) and np.all(awb < 0.8 * fixed) and np.all(awb > 0.5)
    assert np.array_equal(casts(), fixed)


def test_flatten_ambient_scales_log_contrast_around_the_median():
    """``flatten_ambient`` multiplies every pixel's log-luminance distance to the interior median
    by ``c`` and keeps its chromaticity."""
    from flambient.synth.from_finals import flatten_ambient

    rng = np.random.default_rng(1)
    light = rng.uniform(0.01, 0.9, (24, 32, 3)).astype(np.float32)
    interior = np.ones((24, 32), bool)
    interior[:, :4] = False
    y = luminance(light)
    m = float(np.median(y[interior]))
    for c in (0.5, 0.85, 1.0):
        out = flatten_ambient(light, interior, c)
        assert np.allclose(np.log2(luminance(out) / m), c * np.log2(y / m), atol=1e-4)
        assert np.allclose(out / luminance(out)[:, :, None], light / y[:, :, None], rtol=1e-4)


def test_from_finals_flat_ambient_and_window_threshold(tmp_path):
    """``flat_ambient`` narrows the ambient frames' upper tones (same seed, same lighting
    otherwise); ``window_luma`` above every pixel finds no window; the default is unchanged."""
    from flambient.dataset import load_dataset
    from flambient.stack import AMBIENT
    from flambient.synth.from_finals import synth_from_finals

    finals = synth_finals(tmp_path)
    runs = iter(range(10))

    def items(**kw):
        out = tmp_path / f"out{next(runs)}"
        synth_from_finals(finals, out, size=(192, 128), seed=3, pairs=True, **kw)
        return [(it, *it.load()) for it in load_dataset(out)]

    def spread(stack):  # stops from the median to the 90th percentile of the ambient's luminance
        y = luminance(stack[:, :, AMBIENT]).ravel()
        return float(np.log2(np.percentile(y, 90) / np.median(y)))

    plain, flat = items(), items(flat_ambient=True)
    assert all(spread(f) < spread(p) - 0.05 for (_, p, _), (_, f, _) in zip(plain, flat))
    assert all(np.array_equal(tp, tf) for (_, _, tp), (_, _, tf) in zip(plain, flat))  # the truth is the final
    assert any(it.mask is not None for it, _, _ in plain)
    assert all(it.mask is None for it, _, _ in items(window_luma=1.0))
    assert all(np.array_equal(a, b) for (_, a, _), (_, b, _) in zip(items(), plain))


def test_from_finals_metered_exposes_the_ambient_frame_from_the_final(tmp_path):
    """``metered`` scales each ambient frame so that it sits a little over its final (the
    re-lit light alone meters it about a stop over); nothing else of the pair changes."""
    from flambient.colour import srgb_to_linear
    from flambient.dataset import load_dataset
    from flambient.stack import AMBIENT
    from flambient.synth.from_finals import METERED_EV, synth_from_finals

    finals = synth_finals(tmp_path)
    runs = iter(range(10))

    def evs(**kw):
        out = tmp_path / f"out{next(runs)}"
        synth_from_finals(finals, out, size=(192, 128), seed=3, pairs=True, **kw)
        res = []
        for it in load_dataset(out):
            stack, final = it.load()
            y_amb = np.median(luminance(stack[:, :, AMBIENT]))
            res.append((float(np.log2(y_amb / np.median(luminance(srgb_to_linear(final))))), final))
        return res

    plain, metered = evs(), evs(metered=True)
    for (ev_p, fp), (ev_m, fm) in zip(plain, metered):
        assert np.array_equal(fp, fm)                                   # the truth is the final
        assert METERED_EV[0] - 0.3 <= ev_m <= METERED_EV[1] + 0.3, ev_m
        assert abs(ev_m - ev_p) > 0.1                                   # the plain plan meters otherwise
    assert [e for e, _ in evs(metered=True)] == [e for e, _ in metered]  # same seed, same pairs


def test_from_finals_on_real_retouch(tmp_path, shared_data):
    from conftest import shared_file

    from flambient.synth.from_finals import synth_from_finals

    finals = tmp_path / "finals"
    finals.mkdir()
    for name in ("a4514_expertC.png", "a4521_expertC.png"):
        (finals / name).write_bytes(shared_file("fivek-pairs-deeplpf", name).read_bytes())
    out = tmp_path / "out"
    doc = synth_from_finals(finals, out, size=(256, 170), seed=0, fmt="jpg")
    _check_relit(out, doc)


def test_cli(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), "--sets", "1", "--size", "128x86", "--format", "jpg",
                 "--style", "natural", "--seed", "9"]) == 0
    assert (tmp_path / "s" / "truth" / "sets.yaml").is_file()
    assert main(["synth", str(tmp_path / "p"), "--pairs", "--sets", "2", "--size", "64x48"]) == 0
    assert (tmp_path / "p" / "dataset.yaml").is_file()
    for bad in (["--size", "12xfoo"], ["--style", "baroque"], ["--format", "png"]):
        assert main(["synth", str(tmp_path / "x"), *bad]) == 2, bad
    assert main(["synth", str(tmp_path / "s"), "--sets", "1", "--size", "128x86", "--format", "jpg"]) == 2
    assert main(["synth", str(tmp_path / "y"), "--pairs", "--camera-awb"]) == 2  # needs --from
    assert main(["synth", str(tmp_path / "y"), "--pairs", "--flat-ambient"]) == 2  # needs --from
    assert main(["synth", str(tmp_path / "y"), "--pairs", "--window-luma", "0.9"]) == 2  # needs --from
    assert main(["synth", str(tmp_path / "y"), "--pairs", "--metered"]) == 2  # needs --from
    assert "already" in capsys.readouterr().err
    finals = tmp_path / "finals"
    finals.mkdir()
    (finals / "good.jpg").write_bytes((tmp_path / "s" / "truth" / "SYN_0001.jpg").read_bytes())
    (finals / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["synth", str(tmp_path / "f"), "--from", str(finals), "--pairs", "--size", "64x48"]) == 1
    assert yaml.safe_load((tmp_path / "f" / "dataset.yaml").read_text())["items"][0]["name"] == "good"


def test_megapixels_parse():
    from flambient.errors import InputError
    from flambient.synth.shoot import parse_size

    w, h = parse_size(None, 24.0)
    assert abs(w * h / 1e6 - 24) < 0.1 and w % 2 == 0 and h % 2 == 0 and math.isclose(w / h, 1.5, rel_tol=0.01)
    with pytest.raises(InputError):
        parse_size("100x100", 2.0)
