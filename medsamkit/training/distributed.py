"""Multi-GPU training with the standard launcher: ``torchrun --nproc_per_node=N -m medsamkit train ...``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; when ``WORLD_SIZE`` > 1 the same
command initialises a process group (NCCL on CUDA, Gloo on CPU), each rank uses ``cuda:LOCAL_RANK``
and trains on its shard of every epoch, gradients are averaged by DistributedDataParallel, and only
rank 0 validates and writes checkpoints, metrics and the adapter. Nothing else changes for users.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(device_preference: str | None) -> tuple[DistInfo, str | None]:
    """Start the process group when launched by torchrun. Returns (info, device override or None)."""
    info = from_env()
    if not info.enabled:
        return info, None
    import torch
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available() and (device_preference or "auto").lower() not in ("cpu",)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
        return info, f"cuda:{info.local_rank}"
    return info, "cpu"


def shard(indices: list, info: DistInfo) -> list:
    """This rank's share of an epoch: padded (by wrapping) to a multiple of the world size, then strided,
    so every rank runs the same number of steps (DDP needs matching collectives)."""
    if not info.enabled or not indices:
        return list(indices)
    total = -(-len(indices) // info.world) * info.world
    padded = list(indices) + list(indices)[: total - len(indices)]
    return padded[info.rank::info.world]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def broadcast(value, info: DistInfo):
    """Rank 0's ``value`` on every rank (small picklable objects: decisions, metrics)."""
    if not info.enabled:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean(value: float, info: DistInfo, device) -> float:
    if not info.enabled:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(value)], device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world


def cleanup(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
