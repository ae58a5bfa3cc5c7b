"""``flambient ingest``: grouping, roles, exposure, alignment, manifest, cache and bad input."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, shared_file
from flambient.brackets import GroupingConfig
from flambient.cli import main
from flambient.errors import InputError
from flambient.ingest import (
    fresh_manifest,
    ingest_shoot,
    load_manifest,
    load_set_stack,
    manifest_is_fresh,
    set_input_files,
)
from flambient.io.exif_write import build_exif_bytes
from flambient.io.images import write_jpeg
from flambient.colour import linear_to_srgb
from flambient.stack import AMBIENT, FLASH, HAS_FLASH, HAS_WINDOW, WINDOW
from test_io_exif_raw import write_test_dng

DAVE = "flambient-brackets-small-davepeloso-prophoto"
T0 = datetime(2024, 6, 1, 14, 0, 0)


def _link_all(dst: Path, files: list[Path]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in files:
        os.symlink(f, dst / f.name)
    return dst


def _texture(seed: int, h: int, w: int) -> np.ndarray:
    """A smooth random scene (linear RGB reflectance-like values in 0.05..0.7)."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.random((h // 8, w // 8, 3)).astype(np.float32)
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):  # a few hard-edged boxes, like furniture and windows
        y, x = rng.integers(0, h - 20), rng.integers(0, w - 20)
        img[y : y + rng.integers(10, 40), x : x + rng.integers(10, 60)] = rng.random(3)
    return np.clip(0.05 + 0.65 * img, 0.05, 0.7)


def _falloff(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2
    return (1.0 / (1.0 + 1.5 * r2))[:, :, None]


def make_dng_shoot(folder: Path, shift: tuple[int, int] = (0, 0), h: int = 128, w: int = 192) -> dict:
    """Two bracket sets (ambient 1/8 s, flash 1/125 s, window pull 1/32 s) as DNGs with EXIF.

    The second set's window frame is shifted by ``shift`` pixels (handheld). Returns truth.
    """
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict = {"sets": []}
    t = T0
    for k, seed in enumerate((1, 2)):
        scene = _texture(seed, h + 16, w + 16)
        crop = scene[8 : 8 + h, 8 : 8 + w]
        frames = []
        for role, expo, flash in (("ambient", 1 / 8, False), ("flash", 1 / 125, True), ("window", 1 / 32, False)):
            if role == "flash":
                img = crop * 0.9 * _falloff(h, w) + crop * (8 / 125) * 0.5
            elif role == "window":
                dy, dx = shift if k == 1 else (0, 0)
                img = scene[8 + dy : 8 + dy + h, 8 + dx : 8 + dx + w] * (8 / 32)
            else:
                img = crop
            name = f"IMG_{k * 3 + len(frames) + 1:04d}.dng"
            write_test_dng(folder / name, img, {"ExposureTime": expo, "FNumber": 8.0, "ISO": 100,
                                                "DateTimeOriginal": t, "Flash": flash, "FocalLength": 16.0})
            frames.append({"path": name, "role": role, "image": img})
            t += timedelta(seconds=40)
        truth["sets"].append({"frames": frames, "ambient": crop})
    return truth


# ----------------------------------------------------------------------------- real shoots


def test_real_shoot_all_frames_in_one_folder(tmp_path, shared_data):
    files = sorted((shared_data / DAVE).glob("set*/*.jpg"))
    shoot = _link_all(tmp_path / "shoot", files)
    m = ingest_shoot(shoot)
    got = [[f.path.name for f in s.frames] for s in m.sets]
    truth = [sorted(p.name for p in (shared_data / DAVE / d).glob("*.jpg")) for d in ("set01", "set02", "set03")]
    assert got == truth
    for s in m.sets:
        assert [f.role for f in s.frames] == ["ambient"] + ["flash"] * (len(s.frames) - 1)
        assert s.reference == 0 and s.frames[0].ev == 0.0
        assert all(f.ev < -4 for f in s.frames[1:])  # flash frames: 1/125 s vs 1/6 s at ISO 400
    assert m.errors == []
    # the pictures alone (no focal length, no pauses) tell the three rooms apart too
    m2 = ingest_shoot(shoot, config=GroupingConfig(use_exif_geometry=False, max_gap_s=1e9,
                                                       split_on_repeated_ambient=False))
    assert [[f.path.name for f in s.frames] for s in m2.sets] == truth


def test_frobisher_exposure_bracket_is_one_set(tmp_path, shared_data):
    shoot = _link_all(tmp_path / "s", sorted((shared_data / "bracket-colour-hdri-frobisher").glob("*.jpg")))
    m = ingest_shoot(shoot)
    assert len(m.sets) == 1
    s = m.sets[0]
    assert [round(f.ev) for f in s.frames] == [-3, 0, 3]
    assert [f.role for f in s.frames] == ["window", "ambient", "ambient"]
    assert s.reference_frame.path.name == "IMG_2601.jpg"


def test_faid_pairs_flash_from_pixels_without_exif(tmp_path, shared_data):
    files = sorted((shared_data / "faid-flash-ambient-jozech").glob("*.png"))
    # rename so the file names carry no hint: the pixel rule alone must find the flash frame
    shoot = tmp_path / "faid"
    shoot.mkdir()
    truth = {}
    for i, f in enumerate(files):
        stem = f.stem.rsplit("_", 1)[0]
        name = f"{stem}_{'x' if f.stem.endswith('ambient') else 'y'}.png"
        os.symlink(f, shoot / name)
        truth[name] = "ambient" if f.stem.endswith("ambient") else "flash"
    m = ingest_shoot(shoot)
    # Without EXIF, frames join only when features confirm one composition (issue 12). The
    # Toys_141 scene (also in the folder as it105) gives 4-5 SIFT inliers across flash: those
    # two pairs stay apart as single images (the safe failure); the other ten pairs group.
    hard = {"Toys_141", "it105"}
    pairs = [s for s in m.sets if len(s.frames) == 2]
    assert sorted(s.frames[0].path.stem.rsplit("_", 1)[0] for s in pairs) == \
        sorted({f.stem.rsplit("_", 1)[0] for f in files} - hard)
    assert len(m.sets) == len(pairs) + 2 * len(hard)
    for s in pairs:
        assert len({f.path.stem.rsplit("_", 1)[0] for f in s.frames}) == 1  # never two scenes
        for f in s.frames:
            assert f.role == truth[f.path.name], f.path.name
            assert f.role_source == "pixels"


def test_handheld_phone_pairs_are_registered(tmp_path, shared_data):
    from flambient.align import masked_ncc, estimate_alignment, warp_to_reference
    from flambient.brackets import log_gradient, luminance_thumb
    from flambient.io.images import read_preview

    shoot = _link_all(tmp_path / "phone", sorted((shared_data / "flash-noflash-phone-akdeb").glob("*.tif")))
    m = ingest_shoot(shoot)
    assert [[f.role for f in s.frames] for s in m.sets] == [["flash", "ambient"]] * 2  # JPEGs named .tif
    for s in m.sets:
        assert s.handheld
        ref, other = s.reference_frame, s.frames[0]
        assert other.align is not None and other.align.applied and other.align.shift_px > 2
        # the registration brings the frames' edges closer together than leaving them as shot
        pa, pb = read_preview(ref.path, 384)[0], read_preview(other.path, 384)[0]
        small = estimate_alignment(pa, pb, pa.shape[:2], size=384, tripod_px=0.0)
        ga, va = log_gradient(luminance_thumb(pa, 384))
        before = masked_ncc(ga, log_gradient(luminance_thumb(pb, 384))[0], va)
        after = masked_ncc(ga, log_gradient(luminance_thumb(warp_to_reference(pb, small), 384))[0], va)
        assert after > before


# ----------------------------------------------------------------------------- synthetic DNG shoot


def test_dng_shoot_roles_ev_alignment_and_stack(tmp_path):
    truth = make_dng_shoot(tmp_path / "shoot", shift=(4, 6))
    m = ingest_shoot(tmp_path / "shoot", n_jobs=2)
    assert len(m.sets) == 2
    for s, t in zip(m.sets, truth["sets"]):
        assert [f.path.name for f in s.frames] == [fr["path"] for fr in t["frames"]]
        assert [f.role for f in s.frames] == ["ambient", "flash", "window"]
        assert [round(f.ev, 2) for f in s.frames] == [0.0, round(np.log2(8 / 125), 2), -2.0]
        assert set_input_files(s) == [f.path for f in s.frames]
    assert m.sets[0].handheld is False and m.sets[1].handheld is True
    win = m.sets[1].frames[2].align
    assert win is not None and win.applied and win.shift_px == pytest.approx(np.hypot(4, 6), abs=1.0)
    for s, t in zip(m.sets, truth["sets"]):
        stack = load_set_stack(m.shoot, s)
        assert stack.shape == (128, 192, 13) and stack.dtype == np.float32
        inner = (slice(12, -12), slice(12, -12))
        amb = t["ambient"]
        # demosaicing blurs hard edges: compare typical, not worst-case, pixels
        assert np.median(np.abs(stack[inner][..., AMBIENT] - amb[inner])) < 0.01
        # window pull (-2 EV) normalised back to the reference exposure, and aligned when handheld
        assert np.median(np.abs(stack[inner][..., WINDOW] - amb[inner])) < 0.02
        # flash frame normalised by 2**-ev: its ambient part matches the ambient frame's level
        expect_flash = t["frames"][1]["image"] * 125 / 8
        np.testing.assert_allclose(np.median(stack[inner][..., FLASH]), np.median(expect_flash[inner]), rtol=0.05)
        assert stack[0, 0, HAS_FLASH] == 1 and stack[0, 0, HAS_WINDOW] == 1


def test_ingest_returns_what_a_rerun_reads(tmp_path):
    """The first process after an ingest must see the same EV/alignment as every rerun."""
    make_dng_shoot(tmp_path / "shoot", shift=(4, 6))
    fresh = ingest_shoot(tmp_path / "shoot", n_jobs=2)
    stored = load_manifest(tmp_path / "shoot")
    assert stored is not None
    for a, b in zip(fresh.sets, stored.sets):
        assert [f.ev for f in a.frames] == [f.ev for f in b.frames]
        assert [f.align.to_dict() if f.align else None for f in a.frames] == \
            [f.align.to_dict() if f.align else None for f in b.frames]
        assert np.array_equal(load_set_stack(fresh.shoot, a), load_set_stack(stored.shoot, b))


def test_cache_freshness_and_reuse(tmp_path, monkeypatch):
    make_dng_shoot(tmp_path / "shoot")
    shoot = tmp_path / "shoot"
    m = ingest_shoot(shoot, cache=True, n_jobs=1)
    cached = sorted(p.name for p in (shoot / ".flambient" / "cache").rglob("*.exr"))
    assert len(cached) == 6
    direct = load_set_stack(shoot, m.sets[0], use_cache=False)
    m2 = load_manifest(shoot)
    assert m2 is not None and manifest_is_fresh(m2) and fresh_manifest(shoot) is not None
    assert [s.name for s in m2.sets] == [s.name for s in m.sets]
    import flambient.ingest.cache as ing

    def boom(*a, **k):
        raise AssertionError("decoded although the cache is fresh")

    monkeypatch.setattr(ing, "read_linear", boom)
    monkeypatch.setattr(ing, "decode_raw_u16", boom)
    from_cache = load_set_stack(shoot, m2.sets[0])
    np.testing.assert_allclose(from_cache, direct, rtol=2e-3, atol=2e-4)  # half-float EXR
    monkeypatch.undo()
    # a changed file makes the manifest stale and bypasses that frame's cache
    f = m2.sets[0].frames[0].path
    os.utime(f, (f.stat().st_atime, f.stat().st_mtime + 10))
    assert not manifest_is_fresh(load_manifest(shoot)) and fresh_manifest(shoot) is None


def test_assemble_stack_matches_build_stack():
    from flambient.stack import assemble_stack
    from flambient.stack import build_stack

    rng = np.random.default_rng(1)
    amb = rng.integers(0, 65535, (37, 23, 3), dtype=np.uint16)
    f1, f2 = rng.random((37, 23, 3), dtype=np.float32), rng.integers(0, 65535, (37, 23, 3), dtype=np.uint16)
    win = rng.random((37, 23, 3), dtype=np.float32)
    got = assemble_stack((amb, 2 / 65535), [(f1, 8.0), (f2, 16 / 65535)], (win, 4.0), band_bytes=4000)
    want = build_stack(amb * np.float32(2 / 65535), (f1 * 8 + f2 * np.float32(16 / 65535)) / 2, win * 4)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    solo = assemble_stack((win, 1.0), [], None)
    np.testing.assert_array_equal(solo, build_stack(win))


def test_unreadable_frame_at_load_names_the_file(tmp_path):
    make_dng_shoot(tmp_path / "shoot")
    m = ingest_shoot(tmp_path / "shoot", n_jobs=1)
    bad = m.sets[1].frames[1].path
    bad.write_bytes(bad.read_bytes()[:2000])
    with pytest.raises(InputError, match=bad.name):
        load_set_stack(m.shoot, m.sets[1], use_cache=False)


def test_single_frame_set_is_ambient_only(tmp_path):
    rng = np.random.default_rng(0)
    write_jpeg(tmp_path / "merged.jpg", rng.random((40, 60, 3)).astype(np.float32))
    m = ingest_shoot(tmp_path)
    (s,) = m.sets
    assert [f.role for f in s.frames] == ["ambient"]
    stack = load_set_stack(tmp_path, s)
    assert stack.shape == (40, 60, 13) and stack[..., HAS_FLASH].max() == 0 and stack[..., FLASH].max() == 0


# ----------------------------------------------------------------------------- bad input and CLI


def _jpeg_with_exif(path: Path, seed: int, model: str, when: datetime) -> None:
    img = _texture(seed, 48, 64)
    exif = build_exif_bytes({"ExposureTime": 1 / 8, "FNumber": 8.0, "ISO": 100, "DateTimeOriginal": when,
                             "Flash": False, "FocalLength": 20.0}, make="Cam", model=model)
    write_jpeg(path, linear_to_srgb(img), exif=exif)


def _snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime) for p in folder.iterdir() if p.name != ".flambient"}


def test_bad_inputs_are_reported_per_file_and_the_rest_is_ingested(tmp_path):
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    _jpeg_with_exif(shoot / "good1.jpg", 1, "One", T0)
    _jpeg_with_exif(shoot / "good2.jpg", 1, "One", T0 + timedelta(seconds=20))
    _jpeg_with_exif(shoot / "other_camera.jpg", 3, "Two", T0 + timedelta(seconds=40))
    (shoot / "empty.jpg").write_bytes(b"")
    (shoot / "garbage.cr2").write_bytes(b"\x00\x01garbage" * 50)
    data = (shoot / "good1.jpg").read_bytes()
    (shoot / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (shoot / "notes.txt").write_text("not an image, ignored")
    expected_bad = {"empty.jpg", "garbage.cr2", "truncated.jpg", "other_camera.jpg"}
    if SHARED_DATA.is_dir():
        for name in ("Nikon.nef", "DNG.dng", "CanonRaw.cr3"):
            os.symlink(shared_file("raw-metadata-stubs-exiftool", name), shoot / f"stub_{name}")
            expected_bad.add(f"stub_{name}")
        os.symlink(shared_file("edge-cases-metadata-extractor", "jpeg-named-as-nef_issue247-1.nef"),
                   shoot / "phone.nef")
        expected_bad.add("phone.nef")  # a JPEG named .nef reads fine, but it is from another camera
    before = _snapshot(shoot)
    assert main(["-q", "ingest", str(shoot)]) == 1
    assert _snapshot(shoot) == before  # nothing in SHOOT changes except .flambient/
    m = load_manifest(shoot)
    assert m is not None
    assert {e["path"] for e in m.errors} == expected_bad
    assert all(e["error"] for e in m.errors)
    assert [[f.path.name for f in s.frames] for s in m.sets] == [["good1.jpg", "good2.jpg"]]
    msgs = {e["path"]: e["error"] for e in m.errors}
    assert "empty" in msgs["empty.jpg"] and "truncated" in msgs["truncated.jpg"]
    assert "Cam Two" in msgs["other_camera.jpg"]
    if "phone.nef" in msgs:
        assert any(w["path"] == "phone.nef" and "JPEG" in w["warning"] for w in m.warnings)
    # with --allow-mixed-cameras the other camera's frame is kept in a set of its own
    assert main(["-q", "ingest", "--allow-mixed-cameras", str(shoot)]) == 1
    m = load_manifest(shoot)
    assert ["other_camera.jpg"] in [[f.path.name for f in s.frames] for s in m.sets]


def test_missing_or_empty_folder_exits_2(tmp_path):
    assert main(["-q", "ingest", str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    assert main(["-q", "ingest", str(tmp_path / "empty")]) == 2
    with pytest.raises(InputError, match="sub-folders"):
        (tmp_path / "empty" / "sub").mkdir()
        _jpeg_with_exif(tmp_path / "empty" / "sub" / "a.jpg", 1, "One", T0)
        ingest_shoot(tmp_path / "empty")
    m = ingest_shoot(tmp_path / "empty", recursive=True)
    assert [f.path.name for s in m.sets for f in s.frames] == ["a.jpg"]
    assert m.sets[0].frames[0].path.parent.name == "sub"


def test_cli_ingest_ok_exits_0(tmp_path):
    _jpeg_with_exif(tmp_path / "a.jpg", 1, "One", T0)
    assert main(["-q", "ingest", "--cache", str(tmp_path)]) == 0
    assert (tmp_path / ".flambient" / "manifest.yaml").is_file()
    assert list((tmp_path / ".flambient" / "cache").rglob("*.exr"))


@pytest.mark.slow
@pytest.mark.parametrize("seed,fmt", [(0, "dng"), (2, "jpg")])
def test_synth_truth_grouping(tmp_path, seed, fmt):
    synth = pytest.importorskip("flambient.synth.shoot")
    import yaml

    out = tmp_path / "syn"
    synth.synth_shoot(out, sets=6, size=(256, 170), seed=seed, fmt=fmt, workers=1)
    truth = yaml.safe_load((out / "truth" / "sets.yaml").read_text())
    m = ingest_shoot(out)
    got = [(s.name, [(f.path.name, f.role) for f in s.frames]) for s in m.sets]
    want = [(s["name"], [(fr["file"], fr["role"]) for fr in s["frames"]]) for s in truth["sets"]]
    assert got == want
    for s, ts in zip(m.sets, truth["sets"]):
        assert [f.ev for f in s.frames] == pytest.approx([fr["ev"] for fr in ts["frames"]], abs=0.05)
