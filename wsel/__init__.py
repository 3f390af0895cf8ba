"""wsel: weight selection from a large pretrained checkpoint into a smaller student, streaming."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wsel")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
