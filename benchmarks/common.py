"""
What the benchmarks share: wrk, and a process's resident memory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))


def wrk(url: str, accept: str = "*/*", connections: int = 8) -> float:
    """
    Requests per second that wrk sees at C{url}, over C{connections}
    keep-alive connections (one thread).
    """
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{SECONDS}s", "-H", f"Accept: {accept}", url],
        capture_output=True, text=True, check=True,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found is not None, out
    return float(found.group(1))


def rss(pid: int) -> float:
    """
    Resident memory of a process, in MB.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def peakRSS(pid: int) -> int:
    """
    The most memory a process has held, in bytes (Linux).
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def requireTools(script: str, *tools: str) -> None:
    """
    End the benchmark, saying what to install, if a tool it runs is missing.
    """
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"{script} needs {tool}: apt-get install {tool}")
