"""
C{python -m tailmirror export DIR}: what a cache holds, as a static index
that any web server, or a C{file://} URL, serves to pip and uv where no
tailmirror runs and no network reaches.

The export reads the journal and the tree and changes neither, so it may
run beside a running mirror.  It lists only the files the cache holds,
with every marker and hash the mirror serves, in the mirror's own layout
(C{simple/<project>/index.html}, C{index.json} beside it, and the files
under C{root/pypi/+f/}), its links relative so the tree can be moved.  A
second run copies only what is new, hard-linking where the export is on
the cache's filesystem.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any

from ..base import METADATA, PROVENANCE, FileKey, canonicalName, defaultCacheDir, shardOf
from ..pages import Journal, renderProjectHTML, renderProjectJSON, renderRootHTML, renderRootJSON

__all__ = ["Export", "export", "main"]

NOTE = "exported by tailmirror: only the files the mirror's cache held are listed"


@dataclass
class Export:
    """
    What an export did.
    """

    projects: int = 0
    files: int = 0
    copied: int = 0
    linked: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)


def _place(source: str, target: str, done: Export) -> None:
    """
    Put a file of the tree in the export, unless it is there already: a
    hard link where the filesystem allows, else a copy (made whole under
    another name first).
    """
    try:
        if os.path.getsize(target) == os.path.getsize(source):
            return
    except OSError:
        pass
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = target + ".part"
    try:
        if os.path.exists(target):
            os.unlink(target)
        os.link(source, target)
        done.linked += 1
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(source, partial)
        os.replace(partial, target)
        done.copied += 1
    done.bytes += os.path.getsize(target)


def _write(path: str, data: bytes) -> None:
    """
    Write a page of the export, unless it holds these bytes already.
    """
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.replace(path + ".part", path)


def _held(tree: str, page: dict[str, Any]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """
    The files of a page the tree holds, with the markers of the files
    beside them that it does not hold removed; and what to copy, as
    C{(path in the tree, path below the export)}.
    """
    kept, copies = [], []
    for entry in page.get("files", ()):
        key = FileKey(shardOf(entry["url"], entry.get("hashes")), entry["filename"], False)
        source = os.path.join(tree, *key.storeParts)
        if not os.path.isfile(source):
            continue
        entry = dict(entry)
        copies.append((source, os.path.join(*key.parts)))
        for suffix, keys in ((METADATA, ("core-metadata", "dist-info-metadata")), (PROVENANCE, ("provenance",))):
            beside = source + suffix
            if os.path.isfile(beside):
                copies.append((beside, os.path.join(*key.parts) + suffix))
            else:
                # A marker of a file the export does not carry would send
                # installers after a file that is not there.
                for name in keys:
                    entry.pop(name, None)
        kept.append(entry)
    return kept, copies


def export(cacheDir: str, target: str, projects: list[str] | None = None) -> Export:
    """
    Export the cache in C{cacheDir} to the directory C{target}.

    @raise OSError: if the cache cannot be read or the export written.
    """
    journal = Journal(os.path.join(cacheDir, "journal.jsonl"))
    index = journal.openForReading()
    tree = os.path.join(cacheDir, "+files")
    done = Export()
    names = []
    try:
        wanted = sorted(index) if projects is None else [n for n in projects if n in index]
        done.skipped = [] if projects is None else [n for n in projects if n not in index]
        for name in wanted:
            try:
                page = journal.readPage(index[name])
            except (OSError, ValueError) as e:
                done.skipped.append(f"{name} ({e})")
                continue
            files, copies = _held(tree, page)
            if not files:
                continue
            for source, relative in copies:
                _place(source, os.path.join(target, relative), done)
            page = dict(page, files=files)
            page["meta"] = dict(page.get("meta", {}), **{"_tailmirror": NOTE})
            html = renderProjectHTML(page).replace(b"<!DOCTYPE html>\n", f"<!DOCTYPE html>\n<!-- {NOTE} -->\n".encode(), 1)
            _write(os.path.join(target, "simple", name, "index.html"), html)
            _write(os.path.join(target, "simple", name, "index.json"), renderProjectJSON(page))
            names.append(name)
            done.files += len(files)
    finally:
        journal.close()
    done.projects = len(names)
    if projects is not None:
        # A partial export keeps the projects an earlier run exported.
        simple = os.path.join(target, "simple")
        names = sorted(
            {*names, *(n for n in os.listdir(simple) if os.path.isfile(os.path.join(simple, n, "index.html")))}
        )
    _write(os.path.join(target, "simple", "index.html"), renderRootHTML(names))
    _write(os.path.join(target, "simple", "index.json"), renderRootJSON(names))
    return done


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tailmirror export",
        description="Write what a tailmirror cache holds as a static index (PEP 503 and 691) in DIR, "
        "for any web server or a file:// URL: pip install --index-url file://DIR/simple/ ...",
    )
    parser.add_argument("dir", help="where the export goes (made if need be; a second run adds what is new)")
    parser.add_argument("--cache-dir", default=defaultCacheDir(),
                        help="the mirror's --cache-dir (default: its own default, %(default)s)")
    parser.add_argument("--project", action="append", metavar="NAME", help="export only this project (repeatable)")
    args = parser.parse_args(argv)
    projects = None
    if args.project:
        projects = [canonicalName(p.strip()) or p for p in args.project]
    try:
        done = export(args.cache_dir, args.dir, projects)
    except OSError as e:
        print(f"tailmirror export: {e.strerror or e}: {e.filename or args.cache_dir}", file=sys.stderr)
        return 1
    print(
        f"exported {done.projects} projects, {done.files} files to {args.dir} "
        f"({done.linked} linked, {done.copied} copied, {done.bytes:,} bytes new)"
    )
    for skipped in done.skipped:
        print(f"not exported (not in the cache): {skipped}", file=sys.stderr)
    return 0
