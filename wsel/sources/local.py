"""Local files: pread into the caller's buffer, and readahead hints to the kernel (posix_fadvise)."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsel.errors import CheckpointError
from wsel.sources.base import MAX_SMALL_FILE_BYTES, Folder, Handle, Source, too_large

_ADVISE_PIECE_BYTES = 1 << 20  # Linux caps one WILLNEED at the device's readahead window (128 KiB to MiBs)
_CAN_ADVISE = hasattr(os, "posix_fadvise")  # Linux and most Unixes; elsewhere readahead is the kernel's own


@dataclass(frozen=True)
class LocalFile(Source):
    path: Path

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def local_path(self) -> Path:
        return self.path

    def open(self) -> LocalHandle:
        return LocalHandle(self.path)


def read_small_file(path: Path, kind: str = "a JSON file") -> bytes:
    """The whole of a small local file wsel reads besides headers (an index, a config.json, a manifest):
    a regular file of at most MAX_SMALL_FILE_BYTES, read in one read of its size, so that a FIFO never
    blocks and a device (`/dev/zero`) never fills memory. Raises CheckpointError `<path>: <problem>`."""
    with LocalHandle(path, kind) as handle:
        if handle.size > MAX_SMALL_FILE_BYTES:
            raise too_large(str(path), handle.size)
        return handle.read(0, handle.size)


class LocalHandle(Handle):
    def __init__(self, path: Path, kind: str = "a .safetensors file") -> None:
        self.path = path
        self.fd = -1
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below); no effect on files
            self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            info = os.fstat(self.fd)
        except OSError as e:
            self.close()
            raise self._fail(f"cannot read: {e.strerror or e}") from None
        if not stat.S_ISREG(info.st_mode):  # checked on the open file: no swap between a check and the open
            self.close()
            # a directory is named as such; a FIFO or device would block or never end
            raise self._fail(
                f"is a directory, expected {kind}" if stat.S_ISDIR(info.st_mode) else "is not a regular file"
            )
        self.size = info.st_size

    def _fail(self, problem: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {problem}")

    def read_into(self, ranges: Sequence[tuple[int, int]], out: memoryview) -> None:
        at = 0
        for offset, length in ranges:
            done = 0
            while done < length:
                try:
                    got = os.preadv(self.fd, [out[at + done : at + length]], offset + done)
                except OSError as e:
                    raise self._fail(f"cannot read at byte {offset + done}: {e.strerror or e}") from None
                if got == 0:
                    raise self._fail(f"ended at byte {offset + done} while reading; was it truncated?")
                done += got
            at += length

    def prefetch(self, offset: int, length: int) -> None:
        if not _CAN_ADVISE:
            return
        for piece in range(offset, offset + length, _ADVISE_PIECE_BYTES):
            try:
                os.posix_fadvise(
                    self.fd, piece, min(_ADVISE_PIECE_BYTES, offset + length - piece), os.POSIX_FADV_WILLNEED
                )
            except OSError:
                return  # a hint the file system may refuse; the read itself reports real errors

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True)
class LocalFolder(Folder):
    path: Path

    @property
    def location(self) -> str:
        return str(self.path)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir())  # every entry: a broken link is named, then refused

    def has(self, name: str) -> bool:
        """Anything but a folder under that name: a FIFO or a device is found, then refused by the reader
        by name, rather than taken for a missing file."""
        path = self.path / name
        try:
            return path.exists() and not path.is_dir()
        except OSError:  # a name too long for the file system (ENAMETOOLONG), ...: no such file here
            return False

    def source(self, name: str) -> LocalFile:
        return LocalFile(self.path / name)

    def where(self, name: str) -> str:
        return str(self.path / name)

    def read_small(self, name: str) -> bytes:
        return read_small_file(self.path / name, "a file")
