"""
How the C library gives memory back: big blocks on their own mappings, at
a fixed size, so that a page's megabytes go back to the system once freed.

glibc maps a block of at least its threshold on its own, and unmaps it when
it is freed; but each such block freed raises the threshold to its size,
up to 32 MB.  A mirror makes and frees a big page's bodies (its upstream
bytes, its JSON, its renders: megabytes each) over and over, so after the
first few every one of them came from the heap, which kept them long after
they were freed: over the benchmark's 2.9 MB pages the peak resident
memory was 147 MB with glibc's default, 129 MB with the threshold fixed.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Mapping

__all__ = ["MMAP_THRESHOLD", "returnBigBlocks"]

#: Blocks of at least this many bytes are mapped on their own.
MMAP_THRESHOLD = 256 * 1024
#: glibc's C{mallopt} parameter for it.
_M_MMAP_THRESHOLD = -3
#: What an operator sets to choose for themselves (glibc reads it).
_OWN_CHOICE = "MALLOC_MMAP_THRESHOLD_"


def returnBigBlocks(environ: Mapping[str, str] = os.environ) -> bool:
    """
    Fix the C library's threshold for blocks mapped on their own at
    L{MMAP_THRESHOLD}, where it is glibc and the operator did not choose
    one (C{MALLOC_MMAP_THRESHOLD_}).  Whether it was set.
    """
    if not sys.platform.startswith("linux") or _OWN_CHOICE in environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # musl's mallopt does nothing and says so (0), as glibc does for a
    # value it refuses.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
