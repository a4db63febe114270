"""
The operator's guide, run: every command of its console blocks, in order,
with its paths moved into a temporary directory and its port to a free
one.  The install commands are what C{.ci/run} itself runs; C{systemctl}
and C{journalctl}, which need a running systemd, are stood in for by the
check: C{start} runs the shipped service's command line under
C{systemd-socket-activate}, C{stop} stops it, C{status} and
C{journalctl} read it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from ..processes import BIN, REPO, FakeUpstreamProcess, freePort, waitForHTTP

GUIDE = REPO / "docs" / "operating.rst"


def guideCommands() -> list[str]:
    """
    The commands of the guide's console blocks, in order, continued lines
    joined.
    """
    commands = []
    inBlock = False
    for line in GUIDE.read_text().splitlines():
        if line.startswith(".. code-block::"):
            inBlock = line.split("::")[1].strip() == "console"
            continue
        if inBlock and line and not line.startswith(" "):
            inBlock = False
        if inBlock and line.strip().startswith("$ "):
            commands.append(line.strip()[2:])
    return commands


class Service:
    """
    What C{systemctl} does to tailmirror.service here: its command line,
    from the unit, under C{systemd-socket-activate} on the socket's port.
    """

    def __init__(self, root: Path, port: int, upstream: str, unit: Path) -> None:
        self.root, self.port, self.upstream, self.unit = root, port, upstream, unit
        self.process: subprocess.Popen[str] | None = None
        self.log = root / "journal.log"

    def command(self) -> list[str]:
        text = self.unit.read_text().replace("\\\n", " ")
        (line,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
        words = shlex.split(line.removeprefix("ExecStart="))
        words[1:1] = ["--logfile", str(self.log)]
        return words

    def start(self) -> None:
        if self.process is not None:
            return
        tool = shutil.which("systemd-socket-activate")
        if tool is None:
            pytest.skip("needs systemd-socket-activate")
        env = dict(os.environ, PYTHONPATH=str(REPO), TAILMIRROR_UPSTREAM=self.upstream)
        self.process = subprocess.Popen(
            [tool, "-l", f"127.0.0.1:{self.port}", "--fdname=tailmirror.socket",
             # It passes the child only the variables it is told to.
             "-E", "PYTHONPATH", "-E", "TAILMIRROR_UPSTREAM", *self.command()], env=env, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        waitForHTTP(f"http://127.0.0.1:{self.port}/simple/")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(20)
            self.process = None

    def systemctl(self, args: list[str]) -> None:
        verb = args[0]
        if verb == "daemon-reload":
            return
        if verb in ("enable", "start"):
            self.start()
        elif verb == "stop":
            self.stop()
        elif verb == "restart":
            self.stop()
            self.start()
        elif verb == "status":
            assert self.process is not None and self.process.poll() is None
        else:
            raise AssertionError(f"the check has no stand-in for systemctl {verb}")


@pytest.fixture
def upstream() -> Iterator[FakeUpstreamProcess]:
    process = FakeUpstreamProcess("--projects", "2")
    yield process
    process.stop()


def test_guideCommands(tmp_path: Path, upstream: FakeUpstreamProcess) -> None:
    """
    Every command of the guide runs and does what the guide says.
    """
    port = freePort()
    prefix = BIN.parent
    moved = {
        "/opt/tailmirror": str(prefix),
        "/var/lib/tailmirror": str(tmp_path / "state"),
        "/etc/systemd/system/": str(tmp_path / "etc-systemd") + "/",
        "/var/backups/": str(tmp_path / "backups") + "/",
        "3141": str(port),
    }
    work = tmp_path / "work"
    (work / "contrib" / "systemd").mkdir(parents=True)
    for unit in ("tailmirror.service", "tailmirror.socket"):
        text = (REPO / "contrib" / "systemd" / unit).read_text()
        for old, new in moved.items():
            text = text.replace(old, new)
        (work / "contrib" / "systemd" / unit).write_text(text)
    for directory in ("state", "etc-systemd", "backups"):
        (tmp_path / directory).mkdir()
    service = Service(tmp_path, port, upstream.url, work / "contrib" / "systemd" / "tailmirror.service")
    ran: list[str] = []
    try:
        for command in guideCommands():
            for old, new in moved.items():
                command = command.replace(old, new)
            words = shlex.split(command)
            if words[0] == "systemctl":
                service.systemctl(words[1:])
            elif words[0] == "journalctl":
                assert "mirroring" in service.log.read_text()
            elif words[0] == "python3" or "pip install" in command:
                # What .ci/run does: python3 -m venv, pip install of the checkout.
                assert words[:3] == ["python3", "-m", "venv"] or "./tailmirror" in command, command
            elif "--listen" in words:
                _runServer(service, words, tmp_path)
            else:
                if words[0] == "curl":
                    # The mirror has something to say first.
                    subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/simple/project0/"], check=True,
                                   capture_output=True, timeout=30)
                result = subprocess.run(command, shell=True, cwd=work, capture_output=True, text=True, timeout=120,
                                        env=dict(os.environ, PYTHONPATH=str(REPO)))
                assert result.returncode == 0, (command, result.stdout + result.stderr)
                assert not result.stderr.strip() or words[0] == "curl", (command, result.stderr)
                _check(command, result.stdout, tmp_path)
            ran.append(words[0])
    finally:
        service.stop()
    assert ran.count("systemctl") >= 5 and "curl" in ran and "kill" in ran, ran
    log = service.log.read_text()
    assert "compacting the journal" in log
    assert "Traceback" not in log


def _check(command: str, output: str, root: Path) -> None:
    """
    What the guide says a command does.
    """
    if "--version" in command:
        assert output.startswith("tailmirror ")
    elif "+metrics" in command:
        assert re.search(r'^tailmirror_http_requests_total\{route="page",status="200"\} [1-9]', output, re.M), output
    elif "+status" in command:
        assert json.loads(output)["projectsKnown"] >= 1
    elif "systemd-analyze" in command:
        assert not output.strip()
    elif command.startswith("cp ") and "journal" in command:
        assert '"name":"project0"' in (root / "backups" / "tailmirror-journal.jsonl").read_text()
    elif command.startswith("cp "):
        assert (root / "etc-systemd" / "tailmirror.socket").exists()
    elif command.startswith("kill "):
        time.sleep(1)
    elif command.startswith("rm "):
        assert not (root / "state" / "+files").exists()


def _runServer(service: Service, words: list[str], root: Path) -> None:
    """
    A command that runs the mirror in the foreground: run it while the
    service is stopped, ask it for a page, stop it, and read its JSON log.
    """
    running = service.process is not None
    service.stop()
    env = dict(os.environ, PYTHONPATH=str(REPO), TAILMIRROR_UPSTREAM=service.upstream)
    process = subprocess.Popen(words, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        waitForHTTP(f"http://127.0.0.1:{service.port}/simple/")
        subprocess.run(["curl", "-sf", f"http://127.0.0.1:{service.port}/simple/project1/"], check=True,
                       capture_output=True, timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    records = [json.loads(r) for r in out.split("\x1e") if r.strip()]
    assert any(r.get("path") == "/simple/project1/" and r.get("status") == 200 for r in records), out + err
    assert any(r.get("source") == "TAILMIRROR_UPSTREAM" and r.get("upstream") == service.upstream for r in records)
    if running:
        service.start()
