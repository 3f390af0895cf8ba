"""Typed errors. The library raises these; only `wsel.cli` turns them into exit codes.

Every message is one line that names the file or tensor at fault and, where there is one, the fix.
"""

from __future__ import annotations


class WselError(Exception):
    """Base of every error a user can cause with bad input. Exit code 1."""

    exit_code = 1


class CheckpointError(WselError):
    """A safetensors file or sharded index is malformed, missing or inconsistent."""


class SpecError(WselError):
    """The student config cannot be read or does not describe a valid student."""


class PlanError(WselError):
    """The student cannot be selected from this teacher (missing tensor, larger dim, ...)."""


class OutputError(WselError):
    """The output path is unusable: it exists, is the teacher, or cannot be written."""


class ArchDataError(WselError):
    """wsel's own packaged data (architecture families, name sets) is missing or malformed: a broken
    installation or a bug in wsel, never the user's input. A one-line error all the same."""
