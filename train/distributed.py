"""The training loop on one process or many (torchrun): process group, model wrapping, collectives.

    torchrun --nproc_per_node 2 cli.py train --data laion_subset --out runs/base      # 2 CPU processes
    torchrun --nproc_per_node 8 cli.py train --data laion_subset --out runs/base      # 8 GPUs

Backend: gloo on CPU, nccl on GPU. Every rank computes the same global batch order and takes its own
contiguous shard of each global batch; the loss gathers the whole global batch's features (see
train.losses), so N processes follow the single-process run on the same global batch (up to float rounding).
BatchNorm statistics (ResNet towers) are taken over the global batch too: torch's SyncBatchNorm on GPU, and
on CPU, where torch's SyncBatchNorm refuses to run, GlobalBatchNorm2d below.

Example:
    >>> from train.distributed import init_distributed
    >>> world = init_distributed("cpu")          # no torchrun variables: one process
    >>> world.rank, world.world_size, world.is_main
    (0, 1, True)
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn as nn

from dataio.errors import UsageError


@dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA GPU visible; use --device cpu")
        return torch.device("cuda", local_rank)
    return torch.device(preference)


def init_distributed(device: str = "auto") -> World:
    """Join the torchrun process group if there is one (gloo on CPU, nccl on GPU); else one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return World(rank, world_size, local_rank, chosen)


def wrap_model(model: nn.Module, world: World) -> nn.Module:
    """Global-batch BatchNorm and DistributedDataParallel when distributed; the model itself otherwise."""
    if not world.distributed:
        return model
    # torch.distributed.nn's autograd collectives (ours and open_clip's gather_features) work but warn on every
    # call that they are deprecated: nothing a user of this command can act on.
    warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.\w+ is deprecated",
                            category=FutureWarning)
    if world.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[world.device.index])
    # device_ids must stay unset on CPU: DDP treats any value as a GPU index.
    return nn.parallel.DistributedDataParallel(convert_global_batchnorm(model))


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the whole global batch, through autograd-aware
    all_reduce (any backend, CPU included). Same parameters and buffers as BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, 2, 3]
        local_count = x.numel() // x.shape[1]
        sums = torch.stack([x.sum(dims), (x * x).sum(dims)])
        sums = dist_nn.all_reduce(sums)
        count = local_count * dist.get_world_size()
        mean = sums[0] / count
        var = (sums[1] / count - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * count / max(count - 1, 1), momentum)
        shape = (1, -1, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by a GlobalBatchNorm2d holding the same parameters and buffers."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
        replacement = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                        module.track_running_stats)
        replacement.load_state_dict(module.state_dict())
        replacement.train(module.training)
        return replacement
    for name, child in module.named_children():
        module.add_module(name, convert_global_batchnorm(child))
    return module


def gather_rows(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate every rank's rows in rank order (no gradient); the tensor itself on one process."""
    if not world.distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def broadcast_object(value, world: World):
    """Rank 0's `value` (any picklable object) on every rank."""
    if not world.distributed:
        return value
    holder = [value if world.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(value, world: World) -> list:
    """Every rank's `value` in rank order, on every rank (small objects: counters, names)."""
    if not world.distributed:
        return [value]
    values = [None] * world.world_size
    dist.all_gather_object(values, value)
    return values


def shard(global_batch: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous share of a global batch whose length divides by the world size."""
    per_rank = len(global_batch) // world.world_size
    return global_batch[world.rank * per_rank:(world.rank + 1) * per_rank]


def mean_over_ranks(value: float, world: World) -> float:
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor) / world.world_size


__all__ = ["World", "init_distributed", "wrap_model", "unwrap", "GlobalBatchNorm2d", "convert_global_batchnorm",
           "gather_rows", "barrier", "broadcast_object", "gather_objects", "shard", "pick_device", "mean_over_ranks"]
