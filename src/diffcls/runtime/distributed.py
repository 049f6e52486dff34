"""Running under ``torchrun``: process group, device per rank, sharding and gathering.

The same command line runs with and without torchrun. Without it (no ``WORLD_SIZE`` in the environment, or 1)
:func:`init_distributed` returns a single-process :class:`Dist` whose collectives are no-ops, so the training and
evaluation code has one path. Under torchrun each process joins a process group (``gloo`` on the CPU, ``nccl`` on
GPUs) and, on GPUs, takes the device of its ``LOCAL_RANK``.

Sharding is by whole batches (:meth:`Dist.shard_batches`): batch ``j`` of a fixed batch list goes to rank
``j mod world_size`` and keeps its global index, so per-batch seeds and batch compositions are those of a
single-process run and gathered results equal it exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from diffcls.errors import DiffclsError

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes checkpoints and results files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Elementwise sum of a few numbers over ranks (float64, on the CPU through gloo or on this rank's GPU)."""
        if not self.enabled:
            return [float(v) for v in values]
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj`` (any picklable object), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard_batches(self, batches: Sequence[T]) -> list[tuple[int, T]]:
        """This rank's ``(global index, batch)`` pairs: every ``world_size``-th batch from ``rank``."""
        return [(j, batches[j]) for j in range(self.rank, len(batches), self.world_size)]

    def rounds(self, num_batches: int) -> int:
        """Lock-step rounds needed so every rank has seen its batches (ranks with fewer batches idle in the
        last round but still join its collectives)."""
        return -(-num_batches // self.world_size)


SINGLE_PROCESS = Dist()


def _wants_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def init_distributed(device: str = "auto") -> Dist:
    """Join torchrun's process group if launched by it (``gloo`` for ``--device cpu``, ``nccl`` for GPUs)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE_PROCESS
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = _wants_cuda(device)
    if use_cuda:
        if not torch.cuda.is_available():
            raise DiffclsError(f"--device {device} requested but CUDA is not available")
        if local_rank >= torch.cuda.device_count():
            raise DiffclsError(
                f"rank {rank} has LOCAL_RANK {local_rank} but this node has only "
                f"{torch.cuda.device_count()} GPUs: lower --nproc_per_node"
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank)


def rank_device(device: str, this: Dist) -> str:
    """The device of this rank for the user's ``--device``: under torchrun each rank on GPUs takes
    ``cuda:LOCAL_RANK``; otherwise ``device`` itself."""
    if this.enabled and _wants_cuda(device):
        return f"cuda:{this.local_rank}"
    return device


def shutdown_distributed() -> None:
    """Leave the process group (at the end of a command, so torchrun sees a clean exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> Dist:
    """The :class:`Dist` of an already initialised process group (single-process otherwise)."""
    if dist.is_available() and dist.is_initialized():
        return Dist(
            rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
        )
    return SINGLE_PROCESS
