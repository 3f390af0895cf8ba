"""People-facing output: a rich console on stderr (stdout is kept for --json data), and progress.

rich is imported only when something is shown: a quiet run (`-q`, pipelines) has no console at all and
starts a tenth of a second sooner.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from wsel.stats import ProgressCallback

if TYPE_CHECKING:
    from rich.console import Console


# C0 controls, DEL and C1 controls (ESC starts terminal escape sequences, 0x9b is a one-byte CSI). A file's
# names are shown with these escaped: one message stays one line, and no file writes to the user's terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` with control characters escaped as Python writes them (`\\n`, `\\x1b`). For every line shown
    to people; `--json` keeps the exact names (JSON escapes them itself)."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def make_console(quiet: bool = False) -> Console | None:
    """stderr console, or None when quiet; rich honours NO_COLOR and drops colour when stderr is not a terminal."""
    if quiet:
        return None
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@contextmanager
def byte_progress(console: Console | None, total: int, description: str) -> Iterator[ProgressCallback | None]:
    """A progress bar counting written bytes; none when quiet or when stderr is not a terminal."""
    if console is None or not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
