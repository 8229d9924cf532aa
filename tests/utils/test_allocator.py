"""utils.allocator: freed memory stays in the process (checked in a fresh interpreter, whose allocator
has not been tuned by anything else)."""
import subprocess
import sys

import pytest

from utils import allocator

PROBE = """
import ctypes
from utils.allocator import keep_freed_memory

done = keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
fields = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in fields]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(16 << 20)  # an activation-sized block, freed again
libc.free(ctypes.c_void_p(block))
print(done, libc.mallinfo2().fordblks >= 16 << 20)
"""


def _probe(env_value):
    env = {"PATH": "/usr/bin:/bin", allocator.ENV_SWITCH: env_value}
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                          cwd=allocator.__file__.rsplit("/utils/", 1)[0])


def test_freed_memory_is_kept_in_the_process_unless_switched_off():
    kept = _probe("")
    if kept.returncode != 0 and ("libc.so.6" in kept.stderr or "mallinfo2" in kept.stderr):
        pytest.skip("not glibc 2.33 or later: mallinfo2 cannot be read here")
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.split() == ["True", "True"]  # tuned, and the freed 16 MiB stayed in the heap
    default = _probe("0")
    assert default.stdout.split() == ["False", "False"]  # glibc as it is: the block went back to the system


def test_other_systems_keep_their_allocator(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False


def test_a_bad_switch_is_refused_in_one_line(monkeypatch, capsys):
    from utils.cli import main_entry

    monkeypatch.setenv(allocator.ENV_SWITCH, "yes")
    with pytest.raises(SystemExit) as stop:
        main_entry(lambda: pytest.fail("ran despite the bad setting"))()
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"${allocator.ENV_SWITCH}: 0 (give freed memory back to the system) or 1 (keep it), got 'yes'\n"
