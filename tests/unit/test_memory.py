"""
The C library gives a page's megabytes back once they are freed
(L{tailmirror.base._memory}).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tailmirror.base._memory import returnBigBlocks

from ..processes import REPO

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(os, "confstr") or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""),
    reason="glibc's malloc only",
)

#: After a big block is freed, how far the heap grows for a smaller one.
HEAP_GROWTH = """
import ctypes, sys
sys.path.insert(0, sys.argv[2])
libc = ctypes.CDLL(None)
libc.sbrk.restype = ctypes.c_void_p
libc.sbrk.argtypes = (ctypes.c_ssize_t,)
if sys.argv[1] == "fixed":
    from tailmirror.base._memory import returnBigBlocks
    assert returnBigBlocks({})
first = bytearray(8 << 20)  # mapped on its own: bigger than any threshold
del first  # by default, the threshold is raised to its size here
before = libc.sbrk(0)
second = bytearray(4 << 20)
print(libc.sbrk(0) - before)
"""


def heapGrowth(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", HEAP_GROWTH, mode, str(REPO)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@glibc
def test_bigBlocksGoBack() -> None:
    """
    With glibc's default, a 4 MB block made after an 8 MB one was freed
    comes from the heap, which keeps it once freed; with the threshold
    fixed, it is mapped on its own, and unmapped when freed.
    """
    assert heapGrowth("default") >= 4 << 20
    assert heapGrowth("fixed") < 1 << 20


@glibc
def test_operatorsChoice() -> None:
    """
    An operator's own C{MALLOC_MMAP_THRESHOLD_} is left as it is.
    """
    assert returnBigBlocks({"MALLOC_MMAP_THRESHOLD_": "1048576"}) is False
