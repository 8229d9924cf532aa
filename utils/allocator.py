"""Keep freed memory in the process instead of handing it back to the operating system after every batch.

glibc's ``malloc`` gives the top of its heap back to the system as soon as more than ``M_TRIM_THRESHOLD``
is free (128 KiB at first, raised adaptively) and serves large blocks with fresh ``mmap`` calls. A
training, correction or LRP step frees and allocates tens of megabytes of activations every batch, so
every batch paid again for the page faults and zeroing of memory it had just returned. With freed memory
kept (:func:`keep_freed_memory`, called by every entry point), one run of the demo's training on two AVX2
cores took 2.3-2.9 s an epoch instead of 3.4-4.5 s in channels-last order (the default layout gained
nothing measurable). Only where the memory comes from changes: every number computed is the same, bit
for bit. The process keeps up to ``TRIM_THRESHOLD`` of freed memory
(its peak resident size can grow by that much); ``SHORTCUTLAB_KEEP_FREED_MEMORY=0`` turns it off.
"""
import ctypes
import os
import sys

ENV_SWITCH = "SHORTCUTLAB_KEEP_FREED_MEMORY"
# mallopt parameters (glibc's malloc.h) and the values set: free memory is returned to the system only
# above 256 MiB, the heap grows 64 MiB at a time, and blocks up to 32 MiB (glibc's largest allowed
# threshold) come from the heap, where they are reused, rather than from a fresh mmap each time
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
TRIM_THRESHOLD, TOP_PAD, MMAP_THRESHOLD = 256 * 2**20, 64 * 2**20, 32 * 2**20


def keep_freed_memory() -> bool:
    """Tune glibc's allocator as described in the module docstring; whether it was done (not on other
    systems or C libraries, nor when ``$SHORTCUTLAB_KEEP_FREED_MEMORY`` is ``0``)."""
    switch = os.environ.get(ENV_SWITCH, "").strip()
    if switch not in ("", "0", "1"):
        from utils.errors import UserError

        raise UserError(f"${ENV_SWITCH}: 0 (give freed memory back to the system) or 1 (keep it), got {switch!r}")
    if switch == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl): its allocator is left as it is
        return False
    settings = ((M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD), (M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return all(mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in settings)
