"""The version of tailmirror."""

__version__ = "0.1.0"
