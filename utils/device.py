"""Device selection from the config's ``device`` key, mixed precision and the memory layout on it."""
import contextlib
import sys

import torch

from utils.errors import UserError


def resolve_device(name="auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("'device': cuda requested but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


def autocast(device: torch.device, mixed_precision: bool):
    """The context of a training forward pass: bfloat16 autocast on CUDA with ``mixed_precision``.

    bfloat16 keeps float32's exponent range, so neither a gradient scaler nor any change to the
    correction losses (which differentiate through input gradients) is needed. On a CPU the
    request is ignored (see :func:`mixed_precision_enabled`): CPU autocast is slow on most
    processors and would change results without speeding anything up.
    """
    if mixed_precision and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def differentiable_attention(enabled=True):
    """The context of a forward pass whose loss differentiates through gradients (RRR, RR-ClArC):
    attention runs on PyTorch's composite ("math") kernel, whose backward is itself differentiable.
    The fused flash and memory-efficient kernels have no second derivative, so a transformer's input
    gradient could not be penalised through them. Other layers are unaffected."""
    if not enabled:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def use_memory_format(model, name="contiguous"):
    """``model`` with its 4-D parameters and buffers in the layout ``name`` (``MEMORY_FORMATS``); lower-
    dimensional ones (1-D convolutions, linear layers) are unchanged. Convolutions follow their weights'
    layout, so a channels-last model computes channels-last whatever the layout of its input."""
    return model.to(memory_format=MEMORY_FORMATS[name])


def trained_memory_format(checkpoint) -> str:
    """The layout a checkpoint's model was trained (or corrected) in, its config's ``memory_format``; the
    default for a checkpoint without one. The steps that load it compute in that layout too: the faster one
    on a CPU, and the one the model's validation and selection numbers were computed in."""
    return (checkpoint.get("config") or {}).get("memory_format") or "contiguous"


def mixed_precision_enabled(requested: bool, device: torch.device, warn=True) -> bool:
    """Whether mixed precision is used on ``device``; a request on a CPU is ignored with a warning,
    so one config runs on a laptop and on a GPU cluster."""
    if requested and device.type != "cuda":
        if warn:
            print(f"warning: 'mixed_precision' needs a CUDA device; training in float32 on {device.type}",
                  file=sys.stderr)
        return False
    return bool(requested)


@contextlib.contextmanager
def cpu_threads(n=None):
    """torch's CPU thread count set to ``n`` inside the block (unchanged for ``None``) and restored after.

    Benchmarks fix the count for comparable timings; restoring it matters because a different count
    changes the order of floating-point sums, so whatever runs next in the process would give other bits.
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
