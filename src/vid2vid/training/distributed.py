"""Data parallel by hand: torchrun's environment, one flat all-reduce of the gradients per update, the first
replica's weights broadcast at start."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    owns_group: bool = False  # this process group was made by init_distributed, and is ended by close()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """End the process group we started: a process leaving with it alive can abort in gloo's or NCCL's
        teardown (SIGABRT, "terminate called without an active exception"), hiding the line it stopped with."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def init_distributed(device: torch.device) -> Distributed:
    """torchrun sets WORLD_SIZE; NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), world, owns_group)


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce the gradients of a model in one flat fp32 buffer, with one flag a parameter saying whether this
    rank used it.

    A parameter no rank used keeps no gradient, so the optimizer leaves it alone as in one process: zeros
    would advance Adam's step count and decay its moments, and the first real gradient after 3000 idle
    updates then stepped about 30 times the learning rate. A parameter some ranks used is averaged over all
    ranks, the others counting as zero, as torch's DDP does: that is the gradient of the loss averaged over the
    whole global batch, on whose samples the parameter was used or not.
    fp32 whatever the gradients' dtype: gloo has no bf16 sum, and a sum of world bf16 values loses the low
    bits that an average over replicas is for. Each gradient comes back in its own dtype."""
    if world == 1:
        return
    used = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.float().flatten() for g in grads] + [used])
    dist.all_reduce(flat)
    used_anywhere = (flat[-len(params):] > 0).tolist()
    flat /= world
    offset = 0
    for p, g, anywhere in zip(params, grads, used_anywhere, strict=True):
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(g.dtype).clone() if anywhere else None
        offset += n


def broadcast_parameters(model: torch.nn.Module) -> None:
    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=0)


def all_agree(flag: bool, device: torch.device, world: int) -> bool:
    """True on every process when it is True on any (every process stops at the same iteration)."""
    if world == 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value)
    return bool(value.item() > 0)


def first_rank_where(flag: bool, device: torch.device, world: int) -> int | None:
    """The lowest rank whose flag is True, on every rank (None where no rank's is): one small all-reduce."""
    if world == 1:
        return 0 if flag else None
    value = torch.tensor([dist.get_rank() if flag else world], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    rank = int(value.item())
    return rank if rank < world else None


def from_rank(value, rank: int, world: int):
    """`value` as rank `rank` holds it, on every rank (any picklable object)."""
    if world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=rank)
    return box[0]


class ClipIndices(Sampler):
    """Dataset indices for batches first_batch, first_batch + 1, ... on this rank, without end; with
    `references` (batch -> K), (index, K) pairs, so that the dataset loads only the references a batch keeps."""

    def __init__(self, first_batch: int, batch_size: int, rank: int, world: int,
                 references: Callable[[int], int] | None = None):
        self.first_batch, self.batch_size, self.rank, self.world = first_batch, batch_size, rank, world
        self.references = references

    def __iter__(self):
        batch = self.first_batch
        while True:
            start = (batch * self.world + self.rank) * self.batch_size
            if self.references is None:
                yield from range(start, start + self.batch_size)
            else:
                k = self.references(batch)
                yield from ((i, k) for i in range(start, start + self.batch_size))
            batch += 1
