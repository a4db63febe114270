"""Sphinx configuration for tailmirror's documentation."""

import ast
from pathlib import Path

project = "tailmirror"
#: The package's own version (read without importing it), so that the
#: docs and C{tailmirror --version} say the same.
release = version = ast.literal_eval(
    (Path(__file__).resolve().parent.parent / "tailmirror" / "_version.py")
    .read_text()
    .split("__version__ =", 1)[1]
    .split("\n", 1)[0]
    .strip()
)
author = "the tailmirror developers"
extensions: list[str] = []
html_theme = "alabaster"
exclude_patterns = ["_build"]
