"""
End to end: real pip and uv install through the real C{twistd tailmirror}
from a second index shaped like the PyTorch ones (HTML only, files at
another host, links with and without hashes, local versions, no core
metadata), alone and beside the first index.
"""

from __future__ import annotations

from pathlib import Path
import pytest

from ..processes import FakeUpstreamProcess, MirrorProcess, freshVenv, pipInstall, run, uvInstall
from .test_install import upstream as main  # noqa: F401 (a fixture: the test tree's index)

TORCH_IMPORT = "import torchlike, tritonlike; print(torchlike.__version__, tritonlike.__version__)"


def versions(python: Path, code: str = TORCH_IMPORT) -> str:
    result = run([str(python), "-c", code])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("ranges", [True, False], ids=["ranges", "no-ranges"])
def test_torchLikeIndex(main: FakeUpstreamProcess, tmp_path: Path, ranges: bool) -> None:
    """
    pip and uv install from the second index alone (C{--index-url}), and
    uv from both (C{--extra-index-url}): the metadata they read is the
    mirror's own, out of the wheels, by ranges where upstream answers
    them; each wheel comes from the file host once at most.
    """
    torch = FakeUpstreamProcess("--torch", *([] if ranges else ["--no-ranges"]))
    # Its file host is on loopback, at another port: allowed by name.
    mirror = MirrorProcess(
        main.url, tmp_path / "cache", "--index", f"torch={torch.url}", "--allow-file-host", "localhost"
    )
    torchURL = f"http://127.0.0.1:{mirror.port}/torch/simple/"
    try:
        python = freshVenv(tmp_path / "pip")
        pipInstall(python, "--index-url", torchURL, "torchlike")
        assert versions(python) == "2.1.0+cu121 3.0.0"
        python = freshVenv(tmp_path / "uv")
        uvInstall(python, "--index-url", torchURL, "torchlike")
        assert versions(python) == "2.1.0+cu121 3.0.0"
        python = freshVenv(tmp_path / "uv-extra")
        uvInstall(python, "--index-url", torchURL, "--extra-index-url", mirror.url, "torchlike", "gamma")
        code = TORCH_IMPORT.replace("import torchlike", "import gamma, torchlike").replace(
            "print(", "print(gamma.__version__, "
        )
        assert versions(python, code) == "2.0 2.1.0+cu121 3.0.0"
        python = freshVenv(tmp_path / "pinned")
        uvInstall(python, "--index-url", torchURL, "torchlike==2.0.0+cu118")
        assert versions(python, "import torchlike; print(torchlike.__version__)") == "2.0.0+cu118"
        seen = torch.stats()
        wheels = {path: n for path, n in seen.items() if path.startswith("files:/files/")}
        assert wheels, seen
        if ranges:
            # One range for each metadata file, then each wheel itself.
            assert seen["files:range"] >= 2
            assert all(n <= 2 for n in wheels.values()), wheels
        else:
            assert all(n <= 2 for n in wheels.values()), wheels
        assert not any(path.endswith(".metadata") for path in seen), seen
        # The first index's project came from the first index.
        assert main.stats().get("/simple/gamma/") == 1
    finally:
        mirror.stop()
        torch.stop()
    assert "Traceback" not in mirror.logText()
