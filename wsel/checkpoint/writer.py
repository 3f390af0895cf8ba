"""A streaming safetensors writer whose header is fixed before any data arrives.

States: OPEN (header written to a temporary file) → DATA (tensors written in header order) →
FINISHED (size checked, fsynced) → COMMITTED (atomically renamed to the final name).
Leaving the context in any other state removes the temporary file, so a half-written
checkpoint never exists under its final name.
"""

from __future__ import annotations

import enum
import json
import math
import os
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from wsel.checkpoint.dtypes import byte_length
from wsel.errors import OutputError

PARTIAL_SUFFIX = ".wsel-partial"  # temporary files are `.{final name}.wsel-partial`: visibly not a checkpoint


@dataclass(frozen=True)
class OutputTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return byte_length(self.dtype, math.prod(self.shape))


def encode_header(tensors: Iterable[OutputTensor], metadata: dict[str, str]) -> bytes:
    """The header bytes (length prefix included): metadata first, tensors in the given order.

    Written by hand, keys in a fixed order, so identical inputs give identical bytes; padded with
    spaces to a multiple of 8 like the reference implementation, so tensor data is aligned.
    """
    doc: dict[str, object] = {}
    if metadata:
        doc["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    offset = 0
    for t in tensors:
        if t.name in doc or t.name == "__metadata__":
            raise ValueError(f"duplicate tensor name {t.name!r}")
        doc[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body += b" " * (-len(body) % 8)
    return len(body).to_bytes(8, "little") + body


class _State(enum.Enum):
    NEW = "new"
    DATA = "data"
    FINISHED = "finished"
    COMMITTED = "committed"
    FAILED = "failed"


class SafetensorsWriter:
    """Write one safetensors file: `with SafetensorsWriter(...) as w: w.write(name, chunks) ...; w.finish()`,
    then `w.commit()` (possibly after other writers finished, so that a set of shards appears together).
    """

    def __init__(
        self, path: Path, tensors: list[OutputTensor], metadata: dict[str, str], shown_as: Path | None = None
    ) -> None:
        self.path = Path(path)
        self.shown_as = Path(shown_as or path)  # the name errors give (the final path of a staged file)
        self.tensors = list(tensors)
        self.header = encode_header(self.tensors, metadata)
        self.size = len(self.header) + sum(t.nbytes for t in self.tensors)
        self.temp_path = self.path.with_name(f".{self.path.name}{PARTIAL_SUFFIX}")
        self._state = _State.NEW
        self._next = 0  # index of the next tensor expected
        self._file: BinaryIO | None = None
        self._writes: _WriteThread | None = None

    def __enter__(self) -> SafetensorsWriter:
        try:
            self._file = open(self.temp_path, "wb")  # noqa: SIM115 - closed in finish()/__exit__
            self._file.write(self.header)
        except OSError as e:
            self._fail()
            raise OutputError(f"{self.shown_as}: cannot write: {e.strerror or e}") from None
        self._writes = _WriteThread(self._file)
        self._state = _State.DATA
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._state not in (_State.FINISHED, _State.COMMITTED):
            self._fail()

    def write(self, name: str, chunks: Iterable[bytes | memoryview]) -> int:
        """Write the next tensor's bytes; it must be the next one in header order and exactly its size."""
        self._expect(_State.DATA)
        if self._next >= len(self.tensors):
            raise ValueError(f"{self.shown_as}: tensor {name!r} is not in the header")
        expected = self.tensors[self._next]
        if name != expected.name:
            raise ValueError(f"{self.shown_as}: tensor {name!r} written out of order; expected {expected.name!r}")
        assert self._file is not None
        written = 0
        try:
            for chunk in chunks:  # errors while producing chunks (teacher reads) propagate as they are
                written += len(chunk)
                if written > expected.nbytes:
                    break
                self._write(chunk)
        except BaseException:
            self._fail()
            raise
        if written != expected.nbytes:
            self._fail()
            raise ValueError(f"{self.shown_as}: tensor {name!r} got {written} bytes, header says {expected.nbytes}")
        self._next += 1
        return written

    def _write(self, chunk: bytes | memoryview) -> None:
        assert self._writes is not None
        try:
            self._writes.write(chunk)
        except OSError as e:
            raise OutputError(f"{self.shown_as}: cannot write: {e.strerror or e}") from None

    def finish(self) -> None:
        """Check every tensor arrived and the size is exact, then flush to disk."""
        self._expect(_State.DATA)
        assert self._file is not None
        if self._next != len(self.tensors):
            self._fail()
            raise ValueError(f"{self.shown_as}: {len(self.tensors) - self._next} tensors were never written")
        try:
            assert self._writes is not None
            self._writes.close()  # every queued chunk written (or its error raised here)
            self._file.flush()
            os.fsync(self._file.fileno())
            actual = os.fstat(self._file.fileno()).st_size
            self._file.close()
        except OSError as e:
            self._fail()
            raise OutputError(f"{self.shown_as}: cannot write: {e.strerror or e}") from None
        if actual != self.size:
            self._fail()
            raise OutputError(f"{self.shown_as}: wrote {actual} bytes, expected {self.size}")
        self._state = _State.FINISHED

    def commit(self) -> None:
        """Atomically move the finished file to its final name."""
        self._expect(_State.FINISHED)
        try:
            os.replace(self.temp_path, self.path)
        except OSError as e:
            self._fail()
            raise OutputError(
                f"{self.shown_as}: cannot rename the finished file into place: {e.strerror or e}"
            ) from None
        self._state = _State.COMMITTED

    def discard(self) -> None:
        """Drop a finished but uncommitted file (another shard of the same output failed)."""
        if self._state is not _State.COMMITTED:
            self._fail()

    def _expect(self, state: _State) -> None:
        if self._state is not state:
            raise ValueError(f"{self.shown_as}: writer is {self._state.value}, expected {state.value}")

    def _fail(self) -> None:
        self._state = _State.FAILED
        if self._writes is not None:
            self._writes.stop()
        if self._file is not None and not self._file.closed:
            self._file.close()
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass


class _WriteThread:
    """Does one file's write() calls on a thread of its own, so that writing a chunk overlaps reading and
    selecting the next ones (write() releases the GIL; on 2 cores this took a 16 GB teacher's cold run from
    10.3 to 8.8 s). At most DEPTH chunks wait, so memory stays bounded. An error of the thread is raised by
    the caller's next write() or close(), as if the write had failed there."""

    DEPTH = 4

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(self.DEPTH)
        self._error: BaseException | None = None
        self._stopped = False  # set by stop(): drop what is queued
        self._thread = threading.Thread(target=self._run, name="wsel-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None and not self._stopped:
                try:
                    self._file.write(chunk)
                except BaseException as e:  # raised in the caller's thread by its next call; keep draining
                    self._error = e

    def write(self, chunk: bytes | memoryview) -> None:
        self._raise()
        self._queue.put(chunk)

    def close(self) -> None:
        """Wait until every queued chunk is written; raise the first error."""
        self._join()
        self._raise()

    def stop(self) -> None:
        """Drop the queued chunks and end the thread (the file is being discarded)."""
        self._stopped = True
        self._join()

    def _join(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
