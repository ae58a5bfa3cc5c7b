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
