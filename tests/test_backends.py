"""The Backend contract: typed out-of-memory errors, and a retry that keeps the finished tiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from flambient.backends import Backend, BackendOOM
from flambient.devices import Device
from flambient.inference import TorchBackend, backend_class, infer_image, load_backend
from flambient.nets.registry import create_model
from flambient.stack import build_stack
from flambient.tiling import plan_tiles


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = create_model("bilateral")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return net


def _stack(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    amb = (0.2 + 0.1 * rng.random((h, w, 3))).astype(np.float32)
    return build_stack(amb, amb * np.float32(1.6))


class OOMAfter:
    """A backend that fails with :class:`BackendOOM` on every tile larger than ``big`` pixels a side
    once ``k`` tiles have been computed; records the (y0, x0, h, w) of every computed tile."""

    def __init__(self, inner: TorchBackend, k: int, big: int) -> None:
        self.inner, self.k, self.big = inner, k, big
        self.name, self.spec, self.files = inner.name, inner.spec, inner.files
        self.done: list[tuple[int, int, int, int]] = []
        self.refused = 0

    device_for = staticmethod(TorchBackend.device_for)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def context(self, low: np.ndarray) -> np.ndarray:
        return self.inner.context(low)

    def bind_context(self, ctx: np.ndarray) -> Any:
        return self.inner.bind_context(ctx)

    def apply(self, x: np.ndarray, ctx: Any, pos: np.ndarray) -> np.ndarray:
        if len(self.done) >= self.k and max(x.shape[2:]) > self.big:
            self.refused += 1
            raise BackendOOM("a test device")
        self.done.append((int(pos[0]), int(pos[1]), int(x.shape[2]), int(x.shape[3])))
        return self.inner.apply(x, ctx, pos)

    def describe(self) -> str:
        return "oom-after test backend"


@pytest.mark.parametrize("k", [0, 1, 3])
def test_oom_retry_keeps_finished_tiles(k: int) -> None:
    inner = load_backend(_net())
    st = _stack(520, 520)
    plan = plan_tiles(520, 520, 512, 0, inner.spec.size_multiple, margin=inner.spec.overlap)
    assert len(plan) == 4 and max(max(t.h, t.w) for t in plan) == 260
    whole = infer_image(inner, st, tile=512)
    flaky = OOMAfter(inner, k, big=200)
    assert isinstance(flaky, Backend)
    got = infer_image(flaky, st, tile=512)
    assert flaky.refused == 1  # one failed attempt; later big tiles are split straight away
    big = [d for d in flaky.done if max(d[2:]) > 200]
    small = [d for d in flaky.done if max(d[2:]) <= 200]
    assert big == [(t.y0, t.x0, t.h, t.w) for t in list(plan)[:k]]  # finished tiles never redone
    assert len(small) == 4 * (len(plan) - k)  # each unfinished tile as 2 x 2 tiles of 130 px
    assert len(set(flaky.done)) == len(flaky.done)  # no tile computed twice
    assert float(np.abs(got - whole).max()) <= 1.0 / 255.0


def test_oom_that_cannot_shrink_is_raised_typed() -> None:
    flaky = OOMAfter(load_backend(_net()), 0, big=0)
    with pytest.raises(BackendOOM, match="out of memory on a test device") as info:
        infer_image(flaky, _stack(64, 64), tile=512)
    assert "smaller --tile" in str(info.value)
    with pytest.raises(BackendOOM):  # one tile asked for: never split
        infer_image(OOMAfter(load_backend(_net()), 0, big=0), _stack(300, 300), tile=None)


def test_torch_out_of_memory_becomes_backend_oom(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = load_backend(_net())

    def boom(*a: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(backend.net, "apply", boom)
    ctx = backend.bind_context(backend.context(np.zeros((1, 13, 64, 64), np.float32)))
    with pytest.raises(BackendOOM):
        backend.apply(np.zeros((1, 13, 32, 32), np.float32), ctx, np.zeros(4, np.float32))


def test_backend_owns_files_fingerprint_and_device_rule(tmp_path: Path) -> None:
    from flambient.nets.registry import save_model

    net = _net()
    mem = load_backend(net)
    assert isinstance(mem, Backend) and mem.name == "torch" and mem.files == ()
    save_model(net, tmp_path / "m")
    disk = load_backend(tmp_path / "m")
    assert disk.files and all(p.is_file() for p in disk.files)
    assert len(mem.fingerprint()) == len(disk.fingerprint()) == 64
    assert disk.fingerprint() == load_backend(tmp_path / "m").fingerprint()
    cpu = [Device("cpu", "CPU")]
    assert backend_class(tmp_path / "m").device_for(cpu[0], cpu, "auto") == "cpu"
    assert backend_class(tmp_path / "m.onnx").device_for(cpu[0], cpu, "auto") == "auto"
    assert backend_class(tmp_path / "m", "onnx").device_for(cpu[0], cpu, "cpu") == "cpu"
