"""
Real processes for integration tests and benchmarks: the fake index as a
loopback server, the real C{twistd tailmirror}, and clients run with every
site-wide pip and uv setting shut out.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

IMPORT_ALL = "import alpha, beta, gamma, delta; print(alpha.__version__, beta.__version__, gamma.__version__, delta.__version__)"
INSTALLED = "1.1 1.0 2.0 1.0"


def cleanEnv(**extra: str) -> dict[str, str]:
    """
    The environment for a client run: no PIP_*, UV_*, POETRY_* or PDM_*
    variables, no pip configuration file, so only the index we name is used.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "POETRY_", "PDM_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", UV_NO_CONFIG="1")
    env.update(extra)
    return env


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def waitForHTTP(url: str, seconds: float = 30.0) -> None:
    """
    Wait until something answers HTTP at C{url}.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError as e:
            if getattr(e, "code", None):
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class FakeUpstreamProcess:
    """
    C{python -m tests.fakeindex} on 127.0.0.1; over HTTPS as C{localhost}
    with C{tls}, a pair of PEM files: the server's certificate and key, and
    the authority that signed it.
    """

    def __init__(self, *args: str, port: int = 0, tls: tuple[Path, Path] | None = None) -> None:
        more = ("--tls", str(tls[0])) if tls is not None else ()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakeindex", "--port", str(port), *args, *more],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.authority = None if tls is None else tls[1]
        where = "http://127.0.0.1" if tls is None else "https://localhost"
        self.url = f"{where}:{self.port}/simple/"

    def stats(self) -> dict[str, int]:
        """
        The requests it was sent, by path (C{/_stats}).
        """
        import json
        import ssl

        context = None if self.authority is None else ssl.create_default_context(cafile=str(self.authority))
        with urllib.request.urlopen(self.url.replace("/simple/", "/_stats"), timeout=10, context=context) as r:
            return json.load(r)  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class MirrorProcess:
    """
    The real C{twistd -n tailmirror}, from the working tree (or another
    checkout, C{repo}).
    """

    def __init__(
        self, upstream: str, cacheDir: str | Path, *args: str, port: int | None = None, repo: Path = REPO,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or freePort()
        self.url = f"http://127.0.0.1:{self.port}/simple/"
        self.log = Path(cacheDir).parent / f"mirror-{self.port}.log"
        self.command = [
            str(BIN / "twistd"), "-n", "--pidfile=", "--logfile", str(self.log),
            "tailmirror", "--upstream", upstream, "--cache-dir", str(cacheDir),
            "--listen", f"tcp:{self.port}:interface=127.0.0.1", *args,
        ]
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.command, env=dict(os.environ, PYTHONPATH=str(repo), **(env or {})))
        waitForHTTP(self.url)
        self.ready = time.monotonic() - self.started

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)
        self.process.wait(20)

    def logText(self) -> str:
        """
        Everything the mirror logged, rotated log files included.
        """
        rotated = sorted(
            self.log.parent.glob(self.log.name + ".*"), key=lambda p: -int(p.suffix[1:])
        )
        return "".join(p.read_text() for p in [*rotated, self.log] if p.exists())


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """
    Run a client command with a clean environment, capturing its output.
    """
    kwargs.setdefault("env", cleanEnv())
    kwargs.setdefault("timeout", 300)
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def freshVenv(path: Path) -> Path:
    """
    A new virtual environment without pip; its python.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def pipInstall(python: Path, *args: str, authority: Path | None = None, env: dict[str, str] | None = None) -> None:
    """
    Install with pip into a venv: no cache, no configuration, no other index;
    trusting the authority of an HTTPS index if given; with C{env} besides.
    """
    trust = ("--cert", str(authority)) if authority is not None else ()
    # requests takes REQUESTS_CA_BUNDLE, where a machine sets it, over --cert.
    extra = dict(env or {}) if authority is None else dict(env or {}, REQUESTS_CA_BUNDLE=str(authority))
    result = run([
        sys.executable, "-m", "pip", "--python", str(python), "install",
        "--no-cache-dir", "--disable-pip-version-check", *trust, *args,
    ], env=cleanEnv(**extra))
    assert result.returncode == 0, result.stdout + result.stderr


def uvInstall(python: Path, *args: str, authority: Path | None = None, env: dict[str, str] | None = None) -> None:
    """
    Install with uv into a venv: no cache, no configuration, no other index;
    trusting the authority of an HTTPS index if given (C{SSL_CERT_FILE},
    which uv reads); with C{env} besides.
    """
    extra = dict(env or {}) if authority is None else dict(env or {}, SSL_CERT_FILE=str(authority))
    result = run([
        str(BIN / "uv"), "pip", "install", "--no-config", "--no-cache",
        "--python", str(python), *args,
    ], env=cleanEnv(**extra))
    assert result.returncode == 0, result.stdout + result.stderr


def imported(python: Path) -> str:
    result = run([str(python), "-c", IMPORT_ALL])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _project(directory: Path, tables: str) -> Path:
    """
    A project that depends on alpha, and nothing of its own to install.
    """
    directory.mkdir(parents=True)
    (directory / "pyproject.toml").write_text(
        '[project]\nname = "consumer"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
        'dependencies = ["alpha"]\n\n' + tables
    )
    return directory


def _isolated(project: Path, **extra: str) -> dict[str, str]:
    """
    A clean environment for a tool run in C{project}, with a new home
    beside it, and the tools' configuration, caches and data in it.
    """
    home = project.parent / (project.name + "-home")
    return cleanEnv(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"),
                    XDG_DATA_HOME=str(home / "data"), **extra)


def poetryInstall(directory: Path, index: str, **env: str) -> Path:
    """
    C{poetry install} of a project whose only source is C{index} (a
    primary source named C{mirror}: Poetry then uses no other index), with
    C{env} besides; its venv's python.
    """
    project = _project(directory, (
        "[tool.poetry]\npackage-mode = false\n\n"
        f'[[tool.poetry.source]]\nname = "mirror"\nurl = "{index}"\npriority = "primary"\n'
    ))
    environ = _isolated(project, POETRY_VIRTUALENVS_IN_PROJECT="true", POETRY_NO_INTERACTION="1", **env)
    result = run([str(BIN / "poetry"), "install"], cwd=project, env=environ)
    assert result.returncode == 0, result.stdout + result.stderr
    return project / ".venv" / "bin" / "python"


def pdmInstall(directory: Path, index: str) -> Path:
    """
    C{pdm install} of a project whose source named C{pypi} is C{index}
    (which replaces the default index); its venv's python.
    """
    project = _project(directory, (
        "[tool.pdm]\ndistribution = false\n\n"
        f'[[tool.pdm.source]]\nname = "pypi"\nurl = "{index}"\n'
    ))
    env = _isolated(project, PDM_CHECK_UPDATE="false", PDM_NON_INTERACTIVE="1",
                    PDM_IGNORE_SAVED_PYTHON="1", PDM_PYTHON=sys.executable)
    result = run([str(BIN / "pdm"), "install"], cwd=project, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return project / ".venv" / "bin" / "python"


NGINX_CONF = REPO / "contrib" / "nginx" / "tailmirror.conf"
NGINX_FLEET_CONF = REPO / "contrib" / "nginx" / "tailmirror-fleet.conf"


class NginxProcess:
    """
    The real nginx, with C{contrib/nginx/tailmirror.conf} as it is shipped
    but for its paths and ports, in front of a mirror on 127.0.0.1.
    """

    def __init__(
        self, mirrorPort: int, cacheDir: str | Path, where: Path, port: int | None = None,
        fleet: list[int] | None = None,
    ) -> None:
        self.port = port or freePort()
        self.url = f"http://127.0.0.1:{self.port}/simple/"
        where.mkdir(parents=True, exist_ok=True)
        self.where = where
        if fleet is None:
            shipped = NGINX_CONF.read_text()
            changes = [
                ("/var/cache/nginx/tailmirror", str(where / "pages")),
                ("server 127.0.0.1:3141;", f"server 127.0.0.1:{mirrorPort};"),
                ("listen 80;", f"listen 127.0.0.1:{self.port};"),
                ("/var/cache/tailmirror", str(Path(cacheDir))),
            ]
        else:
            # The fleet's tier, contrib/nginx/tailmirror-fleet.conf, in front
            # of the nodes at these ports.
            shipped = NGINX_FLEET_CONF.read_text()
            servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;\n" for p in fleet)
            shipped = re.sub(r"(    server 127\.0\.0\.1:314\d [^\n]*\n)+", lambda m: servers, shipped)
            changes = [("listen 80;", f"listen 127.0.0.1:{self.port};")]
        for old, new in changes:
            assert old in shipped, old
            shipped = shipped.replace(old, new)
        (where / "tailmirror.conf").write_text(shipped)
        temps = "".join(
            f"    {kind}_temp_path {where / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (where / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"daemon off;\nworker_processes 2;\npid {where / 'nginx.pid'};\n"
            + f"error_log {where / 'error.log'} warn;\n"
            + "events { worker_connections 1024; }\n"
            + "http {\n    access_log off;\n" + temps
            + f"    include {where / 'tailmirror.conf'};\n}}\n"
        )
        self.process = subprocess.Popen(
            [nginx(), "-p", str(where), "-c", str(where / "nginx.conf")],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            waitForHTTP(f"http://127.0.0.1:{self.port}/+health/live", 15)
        except BaseException:
            self.stop()
            raise

    def errors(self) -> str:
        log = self.where / "error.log"
        return log.read_text() if log.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)



def nginx() -> str:
    """
    The nginx binary (see L{tool}).
    """
    return tool("nginx", "nginx-light")


def tool(name: str, package: str) -> str:
    """
    The path of a tool a test needs; under CI, which installs it, its
    absence fails the test, elsewhere it skips it.
    """
    import shutil

    import pytest

    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/packages installs {package}")
        pytest.skip(f"{name} is not installed (bash .ci/packages installs {package})")
    return found


class S3Process:
    """
    A real S3 API server on 127.0.0.1 (moto's, in server mode), with one
    bucket; the environment a mirror reads its credentials from.  With
    C{checked}, it checks credentials as S3 does: only a key it made (an
    IAM user's, allowed every S3 action) is taken.
    """

    def __init__(self, where: Path, bucket: str = "fleet-test", checked: bool = False) -> None:
        self.port = freePort()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.log = where / f"s3-{self.port}.log"
        environment = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="4") if checked else None
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], stdout=out, stderr=out,
                env=environment,
            )
        waitForHTTP(self.endpoint + "/")
        self.key, self.secret = "fleet", "fleet-secret"
        if checked:
            import json

            import boto3

            iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1",
                               aws_access_key_id="setup", aws_secret_access_key="setup")
            iam.create_user(UserName="node")
            made = iam.create_access_key(UserName="node")["AccessKey"]
            self.key, self.secret = made["AccessKeyId"], made["SecretAccessKey"]
            iam.put_user_policy(UserName="node", PolicyName="s3", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }))
        self.env = {
            "AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        self.client().create_bucket(Bucket=bucket)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.key, aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )

    def keys(self, prefix: str = "") -> dict[str, int]:
        """
        The bucket's objects, by key: their sizes.
        """
        found = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: o["Size"] for o in found}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
