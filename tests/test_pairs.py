"""``flambient ingest --pairs``: every layout -> a dataset that load_dataset reads back."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

from flambient.cli import main
from flambient.colour import linear_to_srgb
from flambient.dataset import load_dataset
from flambient.errors import InputError
from flambient.io.images import write_exr, write_jpeg, write_png
from flambient.pairs import find_pairs, ingest_pairs
from test_ingest import make_dng_shoot


def _img(seed: int, h: int = 32, w: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.05, 0.8, (h, w, 3)).astype(np.float32)


def test_layout_a_set_folders_with_final(tmp_path):
    src = tmp_path / "pairs"
    make_dng_shoot(tmp_path / "raw", h=64, w=96)
    room = src / "kitchen"
    room.mkdir(parents=True)
    for name in ("IMG_0001.dng", "IMG_0002.dng", "IMG_0003.dng"):
        os.replace(tmp_path / "raw" / name, room / name)
    write_jpeg(room / "kitchen_final.jpg", _img(1, 64, 96))
    res = ingest_pairs(src, tmp_path / "ds")
    assert res.errors == [] and res.unmatched == []
    (item,) = load_dataset(tmp_path / "ds")
    assert item.name == "kitchen" and item.flash is not None and item.window is not None
    stack, target = item.load()
    assert stack.shape == (64, 96, 13) and target.shape == (64, 96, 3)
    assert any("IMG_0002.dng=flash" in n for n in item.notes)


def test_layout_b_exr_folders(tmp_path):
    src = tmp_path / "pairs"
    for k, with_flash in enumerate((True, False)):
        d = src / f"set{k}"
        d.mkdir(parents=True)
        write_exr(d / "ambient.exr", _img(k))
        if with_flash:
            write_exr(d / "flash.exr", _img(k + 10))
            mask = np.zeros((32, 48), np.float32)
            mask[4:12, 4:20] = 1.0
            write_png(d / "window_mask.png", mask)
        write_jpeg(d / "final.jpg", _img(k + 20))
    (src / "orphan").mkdir()
    write_exr(src / "orphan" / "ambient.exr", _img(5))
    res = ingest_pairs(src, tmp_path / "ds")
    items = {i.name: i for i in load_dataset(tmp_path / "ds")}
    assert set(items) == {"set0", "set1"}
    assert items["set0"].flash is not None and items["set0"].mask is not None
    assert items["set1"].flash is None and items["set1"].mask is None
    stack, _ = items["set0"].load()
    assert stack[4:12, 4:20, 9].min() == pytest.approx(1.0) and stack[20:, 30:, 9].max() == 0.0
    assert res.unmatched == ["orphan: ambient.exr without a final"]


def test_layout_c_folders_and_flat_with_unmatched_and_size_fit(tmp_path):
    src = tmp_path / "pairs"
    (src / "input").mkdir(parents=True)
    (src / "edited").mkdir()
    write_png(src / "input" / "a.png", linear_to_srgb(_img(1)))
    write_png(src / "edited" / "a.png", _img(2)[:31, :47])  # 1 px smaller: fitted and noted
    write_png(src / "input" / "lonely.png", _img(3))
    write_png(src / "edited" / "nosource.png", _img(4))
    write_jpeg(src / "room7_src.jpg", _img(5))
    write_jpeg(src / "room7_edited.jpg", _img(6))
    write_jpeg(src / "room8_input.jpg", _img(7))
    write_jpeg(src / "room9_tgt.jpg", _img(8))
    write_jpeg(src / "big_src.jpg", _img(9))
    write_jpeg(src / "big_target.jpg", _img(9, 64, 96))  # far off in size: an error, not a silent fix
    res = ingest_pairs(src, tmp_path / "ds")
    names = {i["name"]: i for i in res.items}
    assert set(names) == {"a", "room7"}
    assert any("resampled" in n for n in names["a"]["notes"])
    assert sorted(res.unmatched) == sorted([
        "input/lonely.png: source without a target", "edited/nosource.png: target without a source",
        "room8_input.jpg: source without a target", "room9_tgt.jpg: target without a source"])
    assert len(res.errors) == 1 and "big_target.jpg" in res.errors[0]
    doc = yaml.safe_load((tmp_path / "ds" / "dataset.yaml").read_text())
    assert len(doc["unmatched"]) == 5  # four unmatched + one failed pair, all listed
    for item in load_dataset(tmp_path / "ds"):
        stack, target = item.load()
        assert stack.shape[:2] == target.shape[:2] == (32, 48)
    assert main(["-q", "ingest", "--pairs", str(src), "--out", str(tmp_path / "ds2")]) == 1


def test_real_fivek_pairs(tmp_path, shared_data):
    src = tmp_path / "fivek"
    src.mkdir()
    for p in sorted((shared_data / "fivek-pairs-deeplpf").glob("a45*.png")):
        os.symlink(p, src / p.name)
    res = ingest_pairs(src, tmp_path / "ds")
    assert res.errors == [] and res.unmatched == []
    assert len(res.items) == len(list(src.iterdir())) // 2
    assert any(i["notes"] for i in res.items)  # FiveK pairs differ by 1-2 px


def test_pairs_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        find_pairs(tmp_path / "missing")
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match="no pairs"):
        find_pairs(tmp_path / "x")
    assert main(["-q", "ingest", "--pairs", str(tmp_path / "x")]) == 2  # --out missing


def _gradient(h: int, w: int) -> np.ndarray:
    """A smooth sRGB picture (JPEG keeps it well), HxWx3 in [0.1, 0.9]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([0.1 + 0.8 * x / w, 0.1 + 0.8 * y / h, 0.5 + 0.3 * np.sin(x / 97.0) * np.cos(y / 71.0)], -1)


def test_max_side_builds_small_items_that_keep_the_pair_relation(tmp_path):
    src = tmp_path / "pairs"
    src.mkdir()
    pic = _gradient(800, 1200)
    write_jpeg(src / "room_src.jpg", pic, quality=97)
    write_jpeg(src / "room_edited.jpg", np.sqrt(pic), quality=97)      # a known edit: sRGB square root
    write_jpeg(src / "near_src.jpg", pic, quality=97)
    write_jpeg(src / "near_edited.jpg", pic[:798, :1198], quality=97)    # 2 px smaller at full size: fitted
    write_jpeg(src / "off_src.jpg", pic, quality=97)
    write_jpeg(src / "off_edited.jpg", pic[:, :1180], quality=97)       # 20 px off at full size: an error,
    res = ingest_pairs(src, tmp_path / "small", max_side=96)           # though only 2 px at the reduced size
    assert len(res.errors) == 1 and "off_edited.jpg" in res.errors[0] and "1180x800" in res.errors[0]
    items = {i.name: i for i in load_dataset(tmp_path / "small")}
    assert set(items) == {"room", "near"}
    assert any("resampled" in n for n in items["near"].notes)
    assert any("downscaled from 1200x800" in n for n in items["room"].notes)
    stack, target = items["room"].load()
    assert stack.shape[:2] == target.shape[:2] == (64, 96)
    # the relation survives the reduction: target = sqrt(source) in sRGB, away from the borders
    src_srgb = linear_to_srgb(stack[..., :3])
    assert np.abs(target - np.sqrt(src_srgb))[4:-4, 4:-4].mean() < 0.01
    # and the small item is the full-size item downscaled (the decoder's DCT scaling costs little)
    ingest_pairs(src, tmp_path / "full")
    full_stack, full_target = {i.name: i for i in load_dataset(tmp_path / "full")}["room"].load()
    from flambient.data import resize_stack

    assert np.abs(resize_stack(full_stack[..., :3], 96) - stack[..., :3]).mean() < 0.005
    assert main(["-q", "ingest", "--pairs", str(src), "--out", str(tmp_path / "cli"), "--max-side", "64"]) == 1
    assert max(load_dataset(tmp_path / "cli")[0].load()[0].shape[:2]) == 64


def test_max_side_downscales_exr_sets_and_their_mask(tmp_path):
    src = tmp_path / "pairs"
    d = src / "set0"
    d.mkdir(parents=True)
    write_exr(d / "ambient.exr", _img(1, 64, 96))
    write_exr(d / "flash.exr", _img(2, 64, 96))
    mask = np.zeros((64, 96), np.float32)
    mask[8:40, 8:56] = 1.0
    write_png(d / "window_mask.png", mask)
    write_jpeg(d / "final.jpg", _img(3, 64, 96))
    ingest_pairs(src, tmp_path / "ds", max_side=48)
    (item,) = load_dataset(tmp_path / "ds")
    stack, target = item.load()
    assert stack.shape == (32, 48, 13) and target.shape == (32, 48, 3)
    assert stack[4:20, 4:28, 9].min() == pytest.approx(1.0) and stack[24:, 32:, 9].max() == 0.0
