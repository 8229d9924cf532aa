"""Multi-process training with ``torch.distributed``, launched by ``torchrun``.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op and a run
is exactly the single-process run. With it, every rank takes its share of each *global* batch
(the same batches a single process would see), gradients are averaged across ranks after each
backward pass, rank 0 writes files, and metrics are summed across ranks.

Gradients are averaged with an explicit all-reduce instead of the ``DistributedDataParallel``
wrapper: the correction losses (RRR, RR-ClArC, ISNet) differentiate through input gradients
(double backpropagation), which DDP's bucketed reducer does not support. Averaging after the full
backward is mathematically what DDP does, for every loss.

Anything a loss draws at random per sample, or averages over a data-dependent number of samples,
must be computed for the *global* batch to give the single-process trajectory: see
:meth:`DistContext.batch_span` (draw for the whole batch, keep this rank's rows) and
:meth:`DistContext.mean_share` (a mean whose denominator is summed over ranks).
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

    def gather(self, obj):
        """Every rank's ``obj``, in rank order, on every rank (picklable objects)."""
        if not self.enabled:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def gather_rows(self, rows):
        """All ranks' rows of a computation sharded with :meth:`shard`, in sample order, on every rank."""
        if not self.enabled:
            return rows
        parts = [torch.as_tensor(part) for part in self.gather(rows) if len(part)]
        return torch.cat(parts)

    def same_on_all_ranks(self, value, what):
        """``value``, checked to be the same on every rank (one-line error otherwise).

        Decisions taken from files (is there a checkpoint to resume from?) must be the same on
        every rank, or the ranks run different loops and wait on each other until the timeout.
        """
        values = self.gather(value)
        if any(other != values[0] for other in values):
            raise UserError(f"the processes disagree on {what} ({values} by rank); with several machines "
                            "'output_dir' must be a folder every machine shares")
        return value

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank.

        Results that every rank computes from the same inputs (C1/C2, CAVs) are still taken from
        rank 0: machines of a multi-node run may round differently, and the ranks must agree.
        """
        if not self.enabled:
            return obj
        holder = [obj if self.is_main else None]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def broadcast_rng_state(self):
        """Give every rank rank 0's CPU random state.

        Needed after work that rank 0 alone does (evaluation draws a DataLoader seed): random
        draws in the losses must stay in step with one process's on every rank.
        """
        if self.enabled:
            torch.set_rng_state(self.broadcast_object(torch.get_rng_state()))

    def batch_span(self, n_local):
        """``(total, rows)``: the global batch size and the slice of it this rank holds.

        ``RankBatchSampler`` gives each rank a contiguous slice in rank order, so drawing random
        numbers for ``total`` samples and keeping ``rows`` reproduces one process's draws, and
        every rank's generator advances exactly as that process's does.
        """
        if not self.enabled:
            return n_local, slice(0, n_local)
        sizes = [int(n) for n in self.gather(int(n_local))]
        start = sum(sizes[:self.rank])
        return sum(sizes), slice(start, start + int(n_local))

    def mean_share(self, local_sum, global_weight):
        """This rank's share of a mean over the global batch: ``local_sum * world_size / global_weight``.

        Gradients are averaged over ranks, so these shares add up to ``sum of all terms / sum of all
        weights``, the mean of one process, even when ranks hold different weights (class-weighted
        losses) or numbers of counted samples (RRR's masked samples). ``global_weight`` is the
        denominator summed over ranks (:meth:`sum`).
        """
        return local_sum * (self.world_size / global_weight)

    def shard(self, items):
        """This rank's contiguous share of ``items`` (equal shares; the first ranks take the rest)."""
        n = len(items)
        per_rank, extra = divmod(n, self.world_size)
        start = self.rank * per_rank + min(self.rank, extra)
        return items[start:start + per_rank + (self.rank < extra)]


def get_context() -> DistContext:
    """This process's place among the ranks: read from ``torchrun``'s environment, joining the process
    group on the first call; a single-process context without ``torchrun``.

    No state is kept here: ``torch.distributed`` owns the process group, and the context is derived
    from the environment, so every caller sees the same one. The device is chosen per run by
    :func:`training_device`: the process group carries both CPU and CUDA tensors when CUDA exists.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        # on GPUs, CUDA tensors (gradients, parameters) go through NCCL and the small CPU tensors and
        # objects of the metric sums and broadcasts through gloo: NCCL cannot reduce CPU tensors
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    return DistContext(rank, world_size, local_rank)


def training_device(context: DistContext, device_name="auto"):
    """The device of this rank: its own GPU under torchrun, else the configured device."""
    from utils.device import resolve_device

    device = resolve_device(device_name)
    if context.enabled and device.type == "cuda":
        if context.local_rank >= torch.cuda.device_count():
            raise UserError(f"rank {context.rank} has LOCAL_RANK {context.local_rank} but this machine has "
                            f"{torch.cuda.device_count()} GPU(s); start at most that many processes per "
                            "machine (--nproc_per_node) or set 'device: cpu'")
        torch.cuda.set_device(context.local_rank)
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
