"""What a run did, and how it reports progress: shared by the engine (`wsel.execute`) and by what
presents it (`wsel.report`, `wsel.console`), so that presentation never imports the engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ProgressCallback = Callable[[int], None]  # called with the number of tensor bytes just written


@dataclass(frozen=True)
class Stats:
    files: tuple[Path, ...]  # written, index last (then the files beside the weights of a folder)
    tensor_bytes: int  # tensor data written
    file_bytes: int  # including headers (and the index)
    bytes_read: int  # teacher bytes read
    seconds: float
    bytes_fetched: int = 0  # a remote teacher: bytes received over the network (range requests)
    requests: int = 0  # ... requests made
    retries: int = 0  # ... requests retried after a transient failure
