"""Grouping on real files (issue 12): unrelated images never merge, real brackets stay whole,
mixed cameras of single images, every input accounted for. Skips without ``../shared/data``."""

from __future__ import annotations

import functools
import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from flambient.brackets import Evidence, GroupingConfig
from flambient.cli import main
from flambient.colour import linear_to_srgb
from flambient.ingest import ingest_shoot, load_set_stack
from flambient.io.exif_write import build_exif_bytes
from flambient.io.images import read_linear, read_preview, write_jpeg, write_png
from flambient.stack import AMBIENT, HAS_FLASH, HAS_WINDOW, WINDOW

from conftest import latest_summary, sidecar_file

DAVE = "flambient-brackets-small-davepeloso-prophoto"
T0 = datetime(2024, 6, 1, 14, 0, 0)


@functools.lru_cache(maxsize=1)
def _bench_grouping() -> Any:
    """``benchmarks/bench_grouping.py`` as a module (its ``fit`` makes the test images)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_grouping", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_grouping.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Centre-crop ``img`` to the aspect w:h and resize to w x h (an export at one size)."""
    return _bench_grouping().fit(img, w, h)


def _unrelated_sources(data: Path) -> list[Path]:
    """Real single images of different scenes: interiors of one house, FiveK, FAID, phone."""
    srcs = [data / DAVE / "set02" / "mariposa-0009.jpg",
            data / "bracket-colour-hdri-frobisher" / "IMG_2600.jpg",
            data / DAVE / "set01" / "mariposa-0001.jpg",
            data / DAVE / "set03" / "mariposa-0012.jpg"]
    srcs += sorted((data / "fivek-pairs-deeplpf").glob("*_input.png"))
    faid = data / "faid-flash-ambient-jozech"
    # it15 and it105 are the same scenes as Objects_148 and Toys_141 in that data set
    srcs += [p for p in sorted(faid.glob("*_ambient.png")) if not p.stem.startswith(("it15_", "it105_"))]
    srcs += [data / "flash-noflash-phone-akdeb" / f"{b}_ambient.tif" for b in ("bottle1", "bottle4")]
    return srcs


def _write_merges(folder: Path, sources: list[Path], w: int = 480, h: int = 320) -> list[str]:
    """Each source exported at one size as a PNG without EXIF (like a folder of edited merges)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k, src in enumerate(sources):
        name = f"merge_{k:02d}.png"
        write_png(folder / name, linear_to_srgb(_fit(read_linear(src), w, h)))
        names.append(name)
    return names


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained bilateral model in a tmp folder (tests only)."""
    from flambient.nets.registry import create_model, save_model

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model") / "bil"
    save_model(create_model("bilateral"), d)
    return d


def _opts(model_dir: Path):  # type: ignore[no-untyped-def]
    from flambient.config import load_preset
    from flambient.process import ProcessOptions

    return ProcessOptions(preset=load_preset("studio"), model=str(model_dir), devices="cpu", decode_jobs=1)


# ----------------------------------------------------------------------------- unrelated images


def test_unrelated_single_images_never_share_a_set(tmp_path: Path, shared_data: Path) -> None:
    """Real pictures of different scenes, exported at one size without EXIF: one set each.

    Before issue 12, thumbnail similarity alone (0.35) joined several of these neighbours
    (the frobisher 1/8 s frame and a room of the Dave shoot score 0.52).
    """
    names = _write_merges(tmp_path / "merges", _unrelated_sources(shared_data))
    m = ingest_shoot(tmp_path / "merges")
    assert [[f.path.name for f in s.frames] for s in m.sets] == [[n] for n in names]
    assert all(not g["joined"] for g in m.grouping)


# ----------------------------------------------------------------------------- real brackets


def _bracket_from_real(src: Path, folder: Path, evs: list[int], gaps_s: list[float]) -> list[str]:
    """A tripod exposure bracket of one real picture: linear light scaled by 2**ev, clipped, JPEG.

    Exposure times 1 s * 2**ev (ISO 100, f/8), capture times ``gaps_s`` apart, one camera.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lin = read_linear(src)
    t = T0
    names = []
    for k, ev in enumerate(evs):
        if k:
            t += timedelta(seconds=gaps_s[k - 1])
        exif = build_exif_bytes({"ExposureTime": 2.0 ** ev, "FNumber": 8.0, "ISO": 100, "DateTimeOriginal": t,
                                 "Flash": False, "FocalLength": 16.0}, make="Canon", model="EOS R5")
        name = f"IMG_{k + 1:04d}.jpg"
        write_jpeg(folder / name, linear_to_srgb(np.clip(lin * 2.0 ** ev, 0, 1)), exif=exif)
        names.append(name)
    return names


def test_wide_tripod_bracket_minutes_apart_is_one_set(tmp_path: Path, shared_data: Path) -> None:
    """4 frames of one real room, 1/32 s to 16 s (9 EV), 1 to 3.5 minutes apart: one set.

    Before issue 12 the bracket fell apart: frames 3 EV apart share too few pixels that are
    neither clipped nor black for the thumbnail similarity to measure anything.
    """
    src = shared_data / DAVE / "set02" / "mariposa-0009.jpg"
    names = _bracket_from_real(src, tmp_path / "b", [-5, -2, 1, 4], [60, 150, 210])
    m = ingest_shoot(tmp_path / "b")
    assert [[f.path.name for f in s.frames] for s in m.sets] == [names]
    s = m.sets[0]
    assert [round(f.ev) for f in s.frames] == [-6, -3, 0, 3]
    assert s.window_frame is not None and s.window_frame.path.name == names[0]
    assert [f.path.name for f in s.ambient_frames()] == [names[2], names[1], names[3]]
    stack = load_set_stack(m.shoot, s)
    assert stack[0, 0, HAS_FLASH] == 0 and stack[0, 0, HAS_WINDOW] == 1
    # the merged ambient recovers what the reference clips: close to the real picture's light
    truth = read_linear(src) * 2.0 ** 1  # the reference frame's exposure (+1 EV)
    ref_only = np.clip(truth, 0, 1)
    clipped = truth.max(axis=2) > 1.0
    assert clipped.mean() > 0.01
    err_merged = np.abs(stack[..., AMBIENT] - truth)[clipped].mean()
    err_ref = np.abs(ref_only - truth)[clipped].mean()
    assert err_merged < 0.5 * err_ref
    assert np.median(np.abs(stack[..., WINDOW] - truth)) < 0.05


def test_real_brackets_without_exif_group_by_features(tmp_path: Path, shared_data: Path) -> None:
    """The Canon 1/8-1-8 s bracket and the handheld phone flash/no-flash pairs, EXIF stripped."""
    folder = tmp_path / "noexif"
    folder.mkdir()
    frob = sorted((shared_data / "bracket-colour-hdri-frobisher").glob("*.jpg"))
    for p in frob:
        write_png(folder / f"a_{p.stem}.png", linear_to_srgb(read_linear(p)))
    for b in ("bottle1", "bottle4"):  # 4608x3456 phone frames: downscaled copies keep the test fast
        for role in ("ambient", "flash"):
            img = read_preview(shared_data / "flash-noflash-phone-akdeb" / f"{b}_{role}.tif", 1024)[0]
            write_png(folder / f"b_{b}_{role}.png", linear_to_srgb(_fit(img, 768, 576)))
    m = ingest_shoot(folder)
    got = [[f.path.name for f in s.frames] for s in m.sets]
    assert got == [[f"a_{p.stem}.png" for p in frob],
                   ["b_bottle1_ambient.png", "b_bottle1_flash.png"],
                   ["b_bottle4_ambient.png", "b_bottle4_flash.png"]]
    assert all(g["sure"] for g in m.grouping)


def test_real_shoot_sets_stay_exact(tmp_path: Path, shared_data: Path) -> None:
    """The real Dave shoot (pause inside a set 49 s, between two rooms 57 s) groups exactly,
    also when the pause limit is far below the pause inside a set: features confirm."""
    shoot = tmp_path / "dave"
    shoot.mkdir()
    for p in sorted((shared_data / DAVE).glob("set*/*.jpg")):
        os.symlink(p, shoot / p.name)
    truth = [sorted(p.name for p in (shared_data / DAVE / d).glob("*.jpg")) for d in ("set01", "set02", "set03")]
    for cfg in (GroupingConfig(), GroupingConfig(max_gap_s=20.0, use_exif_geometry=False)):
        m = ingest_shoot(shoot, config=cfg)
        assert [[f.path.name for f in s.frames] for s in m.sets] == truth


# ----------------------------------------------------------------------------- cameras, accounting


def test_single_images_from_two_cameras_get_one_final_each(tmp_path: Path, shared_data: Path,
                                                             model_dir: Path) -> None:
    """Edited single images of several cameras: no refusal, one final per image."""
    from flambient.process import process_shoot

    src = shared_data / "exif-camera-jpegs-exif-samples"
    files = ["Canon_40D.jpg", "Nikon_D70.jpg", "Olympus_C8080WZ.jpg", "Pentax_K10D.jpg"]
    folder = tmp_path / "cams"
    folder.mkdir()
    for f in files:
        shutil.copy(src / f, folder / f)
    s = process_shoot(folder, _opts(model_dir))
    assert s.exit_code == 0
    assert sorted(r.status for r in s.results) == ["done"] * len(files)
    assert len(list((folder / "final").glob("*.jpg"))) == len(files)
    assert [e["path"] for e in s.inputs] == sorted(files)


def test_summary_accounts_for_every_input(tmp_path: Path, shared_data: Path, model_dir: Path) -> None:
    """The run summary names every input file: its set, role and final, or why it has none."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    dave = sorted((shared_data / DAVE / "set03").glob("*.jpg"))
    for p in dave:  # one real flambient set, downscaled
        img = read_linear(p)
        exif = build_exif_bytes({"ExposureTime": 1 / 6 if p.stem.endswith("12") else 1 / 125, "FNumber": 8.0,
                                 "ISO": 400, "DateTimeOriginal": T0 + timedelta(seconds=int(p.stem[-2:])),
                                 "Flash": not p.stem.endswith("12"), "FocalLength": 15.0},
                                make="NIKON", model="Z 6_2")
        write_jpeg(folder / p.name, linear_to_srgb(_fit(img, 384, 256)), exif=exif)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["-q", "process", str(folder), "--model", str(model_dir), "--devices", "cpu"]) == 1
    doc = latest_summary(folder / "final")
    by_path = {e["path"]: e for e in doc["inputs"]}
    assert sorted(by_path) == sorted([p.name for p in dave] + ["broken.jpg"])
    for p in dave:
        e = by_path[p.name]
        assert e["set"] == "mariposa-0012" and e["status"] == "done" and e["frames_in_set"] == 2
        assert Path(e["final"]).is_file()
    assert by_path["mariposa-0012.jpg"]["role"] == "ambient" and by_path["mariposa-0013.jpg"]["role"] == "flash"
    assert by_path["mariposa-0013.jpg"]["grouping"]["joined"] is True
    assert by_path["broken.jpg"]["status"] == "failed" and by_path["broken.jpg"]["reason"]
    side = json.loads(sidecar_file(Path(by_path["mariposa-0012.jpg"]["final"])).read_text())
    assert [(i["path"], i["role"]) for i in side["inputs"]] == [("mariposa-0012.jpg", "ambient"),
                                                                ("mariposa-0013.jpg", "flash")]


def test_unsure_join_warns_and_explain_shows_cues(tmp_path: Path, shared_data: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A join on weak evidence (moderate similarity, no feature confirmation) gives a warning,
    and ``ingest --explain`` prints the cues of every decision."""
    folder = tmp_path / "weak"
    _bracket_from_real(shared_data / DAVE / "set01" / "mariposa-0001.jpg", folder, [0, -1], [20])
    monkeypatch.setattr(Evidence, "similarity", lambda self, cur, nxt: 0.45)
    monkeypatch.setattr(Evidence, "confirms", lambda self, m: False)
    m = ingest_shoot(folder)
    assert len(m.sets) == 1
    assert [w["path"] for w in m.warnings] == ["IMG_0002.jpg"] and "weak evidence" in m.warnings[0]["warning"]
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["ingest", "--explain", str(folder)]) == 0
    cap = capsys.readouterr()
    out = cap.out + cap.err
    assert "joined (unsure)" in out and "0.45" in out and "inliers" in out


def test_merge_exposures_weights_well_exposed_pixels() -> None:
    """Synthetic: the merge takes each pixel from the exposures that hold it unclipped."""
    from flambient.hdr import merge_exposures

    light = np.array([[0.01, 0.2, 3.0, 25.0]], dtype=np.float32).reshape(1, 4, 1).repeat(3, axis=2)
    evs = [-5.0, 0.0, 3.0]
    shots = [np.clip(light * 2.0 ** ev, 0, 1) for ev in evs]  # as shot: clipped at 1
    parts = [(s * np.float32(2.0 ** -ev), 1.0) for s, ev in zip(shots, evs)]  # normalised
    merged = merge_exposures(parts, evs)
    np.testing.assert_allclose(merged[0, :, 0], light[0, :, 0], rtol=1e-5)
    # uint16 RAW parts with their factor give the same result
    u16 = [(np.round(s * 65535).astype(np.uint16), 2.0 ** -ev / 65535) for s, ev in zip(shots, evs)]
    np.testing.assert_allclose(merge_exposures(u16, evs)[0, :, 0], light[0, :, 0], rtol=2e-3)
    # every frame clipped: the darkest frame's value is the best there is
    hot = [(np.ones((1, 1, 3), np.float32) * np.float32(2.0 ** -ev), 1.0) for ev in evs]
    assert merge_exposures(hot, evs)[0, 0, 0] == pytest.approx(2.0 ** 5)
