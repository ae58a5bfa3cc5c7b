"""Where a training process runs: the device and, under ``torchrun``, its DDP rank."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from ..errors import DeviceError


@dataclass
class Dist:
    """Where this process trains: rank, world size, device; ``owned`` if we initialised DDP."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owned: bool = False

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the process that validates and writes)."""
        return self.rank == 0


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU raises DeviceError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no GPU is available", hint="use --devices cpu or auto")
    return torch.device(name)


def setup_distributed(device: str) -> Dist:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if world <= 1:
        return Dist(device=dev)
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    owned = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owned = True
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), device=dev, owned=owned)


def teardown_distributed(d: Dist) -> None:
    """Leave the process group if :func:`setup_distributed` created it."""
    if d.owned:
        import torch.distributed as dist

        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    """Wait for every rank (no-op on one process)."""
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def all_agree(flag: bool, d: Dist) -> bool:
    """Rank 0's decision, broadcast to every rank (so all stop at the same step)."""
    if d.world <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.broadcast(t, src=0)
    return bool(t.item() > 0.5)
