"""
Real, installable distributions for the fake index: wheels built in
memory, and an sdist whose in-tree build backend needs nothing from any
index, so pip and uv can build it offline.

The tree they form::

    alpha 1.0, 1.1  ->  beta>=1.0, gamma
    beta 1.0        ->  delta
    gamma 2.0
    delta 1.0 (sdist only)
"""

from __future__ import annotations

import base64
import gzip
import io
import random
import tarfile
import textwrap
from typing import Any
from urllib.parse import quote

from .fakeindex import FakeFile, FakeProject

#: Builds a wheel; the same code is the sdist's build backend.
WHEEL_BUILDER = textwrap.dedent(
    '''
    import base64, hashlib, io, zipfile

    def metadataText(name, version, requires):
        lines = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version]
        lines += ["Requires-Dist: " + r for r in requires]
        return "\\n".join(lines) + "\\n"

    def wheelBytes(name, version, requires, modules):
        """A pure-Python wheel: its file name and bytes."""
        dist = name.replace("-", "_")
        info = dist + "-" + version + ".dist-info"
        files = dict(modules)
        files[info + "/METADATA"] = metadataText(name, version, requires)
        files[info + "/WHEEL"] = (
            "Wheel-Version: 1.0\\nGenerator: tailmirror-tests\\n"
            "Root-Is-Purelib: true\\nTag: py3-none-any\\n"
        )
        record = []
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(path + ",sha256=" + digest.decode() + "," + str(len(data)))
        files[info + "/RECORD"] = "\\n".join(record + [info + "/RECORD,,"]) + "\\n"
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, text in files.items():
                archive.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), text)
        return dist + "-" + version + "-py3-none-any.whl", out.getvalue()
    '''
)

_BACKEND = WHEEL_BUILDER + textwrap.dedent(
    '''
    import os

    NAME, VERSION, REQUIRES, MODULES = {spec!r}

    def get_requires_for_build_wheel(config_settings=None):
        return []

    def get_requires_for_build_sdist(config_settings=None):
        return []

    def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
        info = NAME.replace("-", "_") + "-" + VERSION + ".dist-info"
        os.makedirs(os.path.join(metadata_directory, info))
        with open(os.path.join(metadata_directory, info, "METADATA"), "w") as f:
            f.write(metadataText(NAME, VERSION, REQUIRES))
        return info

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        filename, data = wheelBytes(NAME, VERSION, REQUIRES, MODULES)
        with open(os.path.join(wheel_directory, filename), "wb") as f:
            f.write(data)
        return filename
    '''
)

_builder: dict[str, Any] = {}
exec(WHEEL_BUILDER, _builder)


def _module(name: str, version: str) -> dict[str, str]:
    return {f"{name}/__init__.py": f'__version__ = "{version}"\n'}


def wheel(name: str, version: str, requires: tuple[str, ...] = (), padding: int = 0, **markers: Any) -> FakeFile:
    """
    A real wheel, with its core metadata file; with C{padding}, a data
    file of that many random characters in it too, so that the wheel is
    about that big (incompressible, as real native wheels are).
    """
    modules = _module(name, version)
    if padding:
        modules[f"{name}/data.txt"] = base64.b85encode(random.Random(name).randbytes(padding * 4 // 5)).decode()
    filename, data = _builder["wheelBytes"](name, version, list(requires), modules)
    metadata = _builder["metadataText"](name, version, list(requires)).encode()
    return FakeFile(filename, data, metadata=metadata, **markers)


def buildableSdist(name: str, version: str, requires: tuple[str, ...] = ()) -> FakeFile:
    """
    A real sdist, built by a backend inside it.
    """
    root = f"{name}-{version}"
    spec = (name, version, list(requires), _module(name, version))
    members = {
        f"{root}/PKG-INFO": _builder["metadataText"](name, version, list(requires)),
        f"{root}/pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        ),
        f"{root}/backend.py": _BACKEND.format(spec=spec),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 1577836800, 0o644
            archive.addfile(info, io.BytesIO(data))
    # The same bytes in every process: no time in the gzip header.
    return FakeFile(f"{root}.tar.gz", gzip.compress(out.getvalue(), mtime=0))


def tree() -> list[FakeProject]:
    """
    The projects of the dependency tree.
    """
    return [
        FakeProject("alpha", [
            wheel("alpha", "1.0", requiresPython=">=3.8"),
            wheel("alpha", "1.1", ("beta>=1.0", "gamma"), requiresPython=">=3.8"),
        ]),
        FakeProject("beta", [wheel("beta", "1.0", ("delta",))]),
        FakeProject("gamma", [wheel("gamma", "2.0")]),
        FakeProject("delta", [buildableSdist("delta", "1.0")]),
    ]


def layered(count: int = 60, heavy: int = 0, heavySize: int = 0) -> list[FakeProject]:
    """
    A tree of about C{count} projects of real wheels with core metadata,
    in four layers under project C{app}: each project of a layer depends
    on a few of the next, two releases each (the newer one with the
    dependencies).  With C{heavy}, the newer wheel of every C{heavy}th
    project is about C{heavySize} bytes, as a tree's native wheels are.
    """
    sizes = [1, max(1, count // 12), max(1, count // 4)]
    sizes.append(max(1, count - sum(sizes)))
    layers = [[f"l{depth}p{i}" for i in range(size)] for depth, size in enumerate(sizes)]
    layers[0] = ["app"]
    projects: list[FakeProject] = []
    for depth, names in enumerate(layers):
        below = layers[depth + 1] if depth + 1 < len(layers) else []
        for i, name in enumerate(names):
            if below:
                per = max(1, -(-len(below) // len(names)))
                requires = tuple(below[(i * per + k) % len(below)] for k in range(per + 1))
            else:
                requires = ()
            padding = heavySize if heavy and len(projects) % heavy == heavy - 1 else 0
            projects.append(FakeProject(name, [wheel(name, "1.0"), wheel(name, "1.1", requires, padding)]))
    return projects


def torchLike(filesAt: str) -> list[FakeProject]:
    """
    The projects of an index shaped like the PyTorch wheel indexes: real
    wheels with local versions (C{+cu121}), linked at another host
    (C{filesAt}, escaped as those indexes escape them), with and without a
    hash, and no core metadata on the page::

        torchlike 2.0.0+cu118 (no hash), 2.1.0+cu121  ->  tritonlike
        tritonlike 3.0.0
    """

    def hosted(name: str, version: str, requires: tuple[str, ...] = (), hashed: bool = True) -> FakeFile:
        f = wheel(name, version, requires)
        f.metadata, f.hashed, f.uploadTime = None, hashed, None
        f.href = filesAt + quote(f.filename)
        return f

    return [
        FakeProject("torchlike", [
            hosted("torchlike", "2.0.0+cu118", hashed=False),
            hosted("torchlike", "2.1.0+cu121", ("tritonlike",)),
        ], versions=["2.0.0+cu118", "2.1.0+cu121"]),
        FakeProject("tritonlike", [hosted("tritonlike", "3.0.0")], versions=["3.0.0"]),
    ]
