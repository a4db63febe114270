"""
C{python -m tailmirror warm FILE... --mirror URL}: fill a mirror from
requirements and lock files.  C{python -m tailmirror export DIR}: write a
cache as a static index.  (The mirror itself runs as C{twistd tailmirror}.)
"""

from __future__ import annotations

import sys

USAGE = (
    "usage: python -m tailmirror warm FILE... --mirror URL\n"
    "       python -m tailmirror export DIR [--cache-dir PATH] [--project NAME...]\n"
    "(the mirror itself runs as: twistd -n tailmirror)"
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("warm", "export"):
        print(USAGE, file=sys.stderr)
        return 2
    if args[0] == "warm":
        from .offline import warm

        return warm(args[1:])
    from .offline import export

    return export(args[1:])


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
