"""
C{tailmirror} (or C{python -m tailmirror}): the mirror's tools that run
without it.  C{tailmirror warm FILE... --mirror URL} fills a mirror from
requirements and lock files; C{tailmirror export DIR} writes a cache as a
static index; C{tailmirror token NAME} makes a bearer token for
C{--auth tokens:PATH}; C{tailmirror --version} says the version.  (The mirror itself
runs as C{twistd tailmirror}.)
"""

from __future__ import annotations

import sys

USAGE = (
    "usage: tailmirror warm FILE... --mirror URL\n"
    "       tailmirror export DIR [--cache-dir PATH] [--project NAME...]\n"
    "       tailmirror token NAME\n"
    "       tailmirror --version\n"
    "(the mirror itself runs as: twistd -n tailmirror)"
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--version"]:
        from ._version import __version__

        print(f"tailmirror {__version__}")
        return 0
    if args[:1] == ["token"]:
        return token(args[1:])
    if not args or args[0] not in ("warm", "export"):
        print(USAGE, file=sys.stderr)
        return 2
    if args[0] == "warm":
        from .offline import warm

        return warm(args[1:])
    from .offline import export

    return export(args[1:])


def token(args: list[str]) -> int:
    """
    C{tailmirror token NAME}: a new bearer token on standard output, and on
    standard error the line to add to the tokens file (its digest: the
    token itself is kept nowhere).
    """
    from .base import canonicalName

    if len(args) != 1 or not args[0] or ":" in args[0] or canonicalName(args[0]) is None:
        print("usage: tailmirror token NAME (letters, digits, '-', '_' and '.'; the access log shows it)", file=sys.stderr)
        return 2
    from .web import newToken

    secret, line = newToken(args[0])
    print(f"add this line to the file of --auth tokens:PATH (the mirror reads it again by itself):\n{line}", file=sys.stderr)
    print(secret)
    return 0


def consoleMain() -> None:
    """
    The console script C{tailmirror}.
    """
    sys.exit(main())


def warmMain() -> None:
    """
    The console script C{tailmirror-warm}.
    """
    sys.exit(main(["warm", *sys.argv[1:]]))


def exportMain() -> None:
    """
    The console script C{tailmirror-export}.
    """
    sys.exit(main(["export", *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
