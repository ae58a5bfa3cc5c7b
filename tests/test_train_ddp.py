"""DDP path of the trainer: two CPU processes on the gloo backend train together."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from test_train_helpers import make_dataset

TINY = {"width": 8, "hidden": 8, "grid_size": 4, "luma_bins": 4}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, dataset: str, out: str) -> None:
    """One DDP rank: what torchrun would set up, then the library's own fit()."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from flambient.data import split_items
    from flambient.dataset import load_dataset
    from flambient.nets.registry import create_model
    from flambient.training import fit, make_config

    cfg = make_config(None, steps=3, batch=2, crop=32, val_every=3, model_config=TINY, previews=0,
                      device="cpu", seed=5)
    torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
    net = create_model("bilateral", **TINY)
    tr, va = split_items(load_dataset(dataset), 0.2)
    res = fit(net, tr, va, cfg, out)
    torch.save({"net": net.state_dict(), "ema": res.net.state_dict(), "steps": res.steps,
                "images": res.images}, Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
def test_ddp_two_cpu_processes_hold_equal_weights(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    ds = make_dataset(tmp_path / "ds", n=6, h=32, w=48)
    out = tmp_path / "run"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(ds), str(out)), nprocs=2, join=True)
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0["steps"] == r1["steps"] == 3
    assert 3 * 2 < r0["images"] <= 3 * 2 * 2  # both ranks' batches counted
    for key in ("net", "ema"):
        for name, v in r0[key].items():
            assert torch.equal(v, r1[key][name]), f"{key}.{name} differs between ranks"
    # training moved the weights away from rank 0's initial ones
    torch.manual_seed(100)
    from flambient.nets.registry import create_model

    init = create_model("bilateral", **TINY).state_dict()
    assert any(not torch.equal(init[k], r0["net"][k]) for k in init)
    assert (out / "log.csv").is_file() and (out / "checkpoint.pt").is_file()
