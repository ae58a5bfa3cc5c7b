"""The dataset format: write, index, load back, and the few-pixel size fit."""

from __future__ import annotations

import numpy as np
import pytest

from flambient.dataset import fit_to, load_dataset, write_index, write_item
from flambient.errors import InputError


def test_dataset_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    amb = rng.random((16, 24, 3)).astype(np.float32)
    fl = 2 * amb
    tgt = rng.random((16, 24, 3)).astype(np.float32)
    e1 = write_item(tmp_path, "a", amb, tgt, flash=fl, mask=np.ones((16, 24), np.float32))
    e2 = write_item(tmp_path, "b", amb, tgt)
    write_index(tmp_path, [e1, e2], unmatched=["x.jpg: no target"])
    items = load_dataset(tmp_path)
    assert [i.name for i in items] == ["a", "b"]
    stack, target = items[0].load()
    assert stack.shape == (16, 24, 13)
    assert np.allclose(stack[..., 3:6], fl, atol=2e-2 * fl.max())
    assert stack[..., 10].min() == 1 and stack[..., 12].min() == 1
    assert np.abs(target - tgt).max() < 1e-4
    stack_b, _ = items[1].load()
    assert stack_b[..., 10].max() == 0


def test_missing_dataset_is_clear(tmp_path) -> None:
    with pytest.raises(InputError, match="dataset.yaml"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.yaml").write_text("format: [unclosed")
    with pytest.raises(InputError, match="malformed YAML"):
        load_dataset(tmp_path)


def test_fit_to_crops_and_pads() -> None:
    img = np.arange(5 * 7 * 1, dtype=np.float32).reshape(5, 7, 1)
    assert fit_to(img, (4, 6)).shape == (4, 6, 1)
    assert fit_to(img, (6, 8)).shape == (6, 8, 1)
    assert fit_to(img, (5, 7)) is img
