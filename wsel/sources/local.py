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


class LocalHandle(Handle):
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            raise self._fail(f"cannot read: {e.strerror or e}") from None
        if stat.S_ISDIR(mode):
            raise self._fail("is a directory, expected a .safetensors file")
        if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
            raise self._fail("is not a regular file")
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise self._fail(f"cannot read: {e.strerror or e}") from None
        self.size = os.fstat(self.fd).st_size

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
        return (self.path / name).is_file()

    def source(self, name: str) -> LocalFile:
        return LocalFile(self.path / name)

    def where(self, name: str) -> str:
        return str(self.path / name)

    def read_small(self, name: str) -> bytes:
        with LocalHandle(self.path / name) as handle:
            if handle.size > MAX_SMALL_FILE_BYTES:
                raise too_large(self.where(name), handle.size)
            return handle.read(0, handle.size)
