"""The source interfaces: a file (`Source`, opened into a `Handle`) and a folder of files (`Folder`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from wsel.errors import CheckpointError

# Small files (config.json, an index, tokenizer files) are read whole, but never more than this: a hostile
# or mistaken "config.json" of gigabytes must not fill memory.
MAX_SMALL_FILE_BYTES = 256_000_000


@dataclass
class Traffic:
    """What remote reads cost: bytes received over the network, requests made, requests retried."""

    bytes_fetched: int = 0
    requests: int = 0
    retries: int = 0


class Handle(ABC):
    """An open file: its size, and reads of byte ranges. Use as a context manager, or `close()` it."""

    size: int
    # How much a header parser reads first: a remote file takes a large first range so that one request
    # brings the whole header; a local one reads the 8-byte length, then exactly the header.
    first_read_bytes: int = 8

    @abstractmethod
    def read_into(self, ranges: Sequence[tuple[int, int]], out: memoryview) -> None:
        """The (offset, length) ranges, back to back, into `out` (exactly their total length). Raises
        CheckpointError naming the file when a range cannot be read whole."""

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray(length)
        self.read_into([(offset, length)], memoryview(out))
        return bytes(out)

    def prefetch(self, offset: int, length: int) -> None:  # noqa: B027 - optional for a source
        """A hint that the range will be read soon (sources that can fetch ahead do)."""

    def close(self) -> None:  # noqa: B027 - optional for a source
        """Release what the handle holds."""

    def __enter__(self) -> Handle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Source(ABC):
    """One file of a checkpoint, described. Subclasses are frozen dataclasses, so sources compare by value."""

    # Rows a selection drops are left unread only from this size: below it, reading through them costs less
    # than starting another read (a system call on a local disk, a request over the network).
    min_skip_bytes: ClassVar[int] = 16 << 10

    @property
    @abstractmethod
    def location(self) -> str:
        """What messages name: a path or a URL."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The file's name (what the provenance and the report record)."""

    @property
    def local_path(self) -> Path | None:
        """The file on this machine, when it is one (an output may then never replace it)."""
        return None

    @abstractmethod
    def open(self) -> Handle:
        """Open for reading. Raises CheckpointError naming the file."""

    def __str__(self) -> str:
        return self.location


class Folder(ABC):
    """Where a checkpoint's files are: a local folder, a Hub repo (folder), or a URL's folder."""

    @property
    @abstractmethod
    def location(self) -> str:
        """What messages name: a path, `hf://org/name`, or a URL."""

    @abstractmethod
    def names(self) -> list[str] | None:
        """The files directly in the folder, sorted; None when it cannot be listed (a plain URL)."""

    @abstractmethod
    def has(self, name: str) -> bool:
        """Whether the folder holds a file of this name."""

    @abstractmethod
    def source(self, name: str) -> Source:
        """The file `name`, to read by ranges."""

    @abstractmethod
    def read_small(self, name: str) -> bytes:
        """The whole file `name` (at most MAX_SMALL_FILE_BYTES). Raises CheckpointError naming it."""

    def where(self, name: str) -> str:
        """How messages name a file of the folder."""
        return f"{self.location.rstrip('/')}/{name}"

    def traffic(self) -> Traffic:
        """What reading from this folder has cost so far (nothing for a local folder)."""
        return Traffic()

    def describe(self) -> dict[str, Any] | None:
        """Where a remote folder is, for the report and the provenance (None for a local folder)."""
        return None


@dataclass(frozen=True)
class Companion:
    """A small file of the teacher's folder copied beside a folder output (tokenizer, generation config)."""

    folder: Folder = field(compare=False)
    name: str
    location: str  # compared instead of the folder

    def read(self) -> bytes:
        return self.folder.read_small(self.name)


def too_large(where: str, size: int) -> CheckpointError:
    return CheckpointError(f"{where}: {size} bytes is too large for a {MAX_SMALL_FILE_BYTES}-byte small file")
