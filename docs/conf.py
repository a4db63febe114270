"""Sphinx configuration for tailmirror's documentation."""

project = "tailmirror"
author = "the tailmirror developers"
extensions: list[str] = []
html_theme = "alabaster"
exclude_patterns = ["_build"]
