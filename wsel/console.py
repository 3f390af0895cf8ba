"""People-facing output: a rich console on stderr (stdout is kept for --json data), and progress."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from wsel.execute import ProgressCallback


def make_console(quiet: bool = False) -> Console:
    """stderr console; rich itself honours NO_COLOR and drops colour when stderr is not a terminal."""
    return Console(stderr=True, quiet=quiet, highlight=False)


@contextmanager
def byte_progress(console: Console, total: int, description: str) -> Iterator[ProgressCallback | None]:
    """A progress bar counting written bytes; none when quiet or when stderr is not a terminal."""
    if console.quiet or not console.is_terminal:
        yield None
        return
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
