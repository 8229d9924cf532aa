"""Multi-process training with ``torch.distributed``, launched by ``torchrun``.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op and a run
is exactly the single-process run. With it, every rank takes its share of each *global* batch
(the same batches a single process would see), gradients are averaged across ranks after each
backward pass, rank 0 writes files, and metrics are summed across ranks.

Gradients are averaged with an explicit all-reduce instead of the ``DistributedDataParallel``
wrapper: the correction losses (RRR, RR-ClArC, ISNet) differentiate through input gradients
(double backpropagation), which DDP's bucketed reducer does not support. Averaging after the full
backward is mathematically what DDP does, for every loss.
"""
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from utils.errors import UserError

# a rank that died must not leave the others waiting for ever in a collective
COLLECTIVE_TIMEOUT = timedelta(seconds=int(os.environ.get("SHORTCUTLAB_DIST_TIMEOUT", "120")))


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def sum(self, values, device="cpu"):
        """Sum a list of numbers over ranks."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast_value(self, value, device="cpu"):
        """Rank 0's float, on every rank."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value if self.is_main else 0.0], dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return tensor.item()

    def broadcast_parameters(self, model):
        if self.enabled:
            for tensor in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters):
        if not self.enabled:
            return
        for param in parameters:
            if param.grad is not None:
                dist.all_reduce(param.grad)
                param.grad /= self.world_size

    def shard(self, items):
        """This rank's contiguous share of ``items`` (equal shares; the first ranks take the rest)."""
        n = len(items)
        per_rank, extra = divmod(n, self.world_size)
        start = self.rank * per_rank + min(self.rank, extra)
        return items[start:start + per_rank + (self.rank < extra)]


_CONTEXT = None


def get_context(device_name="auto") -> DistContext:
    """Initialise the process group once when launched by ``torchrun``; else a single-process context."""
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        _CONTEXT = DistContext()
        return _CONTEXT
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    _CONTEXT = DistContext(rank, world_size, local_rank)
    return _CONTEXT


def training_device(context: DistContext, device_name="auto"):
    """The device of this rank: its own GPU under torchrun, else the configured device."""
    from utils.device import resolve_device

    device = resolve_device(device_name)
    if context.enabled and device.type == "cuda":
        return torch.device("cuda", context.local_rank)
    return device


def global_batches(n_samples, batch_size, seed, drop_last):
    """The shuffled batches of one epoch, identical on every rank and to a single-process loader."""
    generator = torch.Generator().manual_seed(seed)
    indices = torch.utils.data.DataLoader(range(n_samples), batch_size=batch_size, shuffle=True,
                                          generator=generator, drop_last=drop_last)
    return [batch.tolist() for batch in indices]


class RankBatchSampler(torch.utils.data.Sampler):
    """This rank's slice of each global batch (a global batch of B holds B / world_size per rank)."""

    def __init__(self, batches, context: DistContext):
        if context.enabled and any(len(b) % context.world_size for b in batches[:-1] or batches):
            raise UserError(f"'batch_size' must be divisible by the number of processes ({context.world_size})")
        self.batches = [context.shard(b) for b in batches]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)
