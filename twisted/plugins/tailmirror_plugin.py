"""The twistd dropin for ``twistd tailmirror``."""

from twisted.application.service import ServiceMaker

tailmirror = ServiceMaker(
    "tailmirror",
    "tailmirror.tap",
    "An incremental caching mirror of a Python package index.",
    "tailmirror",
)
