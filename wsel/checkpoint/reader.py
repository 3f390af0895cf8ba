"""Reading the selected part of one teacher tensor, in bounded blocks, without loading the rest.

Data is read into one reused buffer, by the file's source (pread() for a local file, HTTP range requests
for a remote one): resident memory is bounded by the block size, not by the tensor or the checkpoint, and
no file pages stay mapped into the process. Elements are viewed as
one unsigned integer each (any dtype of 1, 2, 4 or 8 bytes), strides are numpy slices (views), so each
block is copied once, into the chunk that is yielded.

A tensor is read as a sequence of blocks (`_blocks`): the byte ranges of the file that fill the buffer,
and how to pick the selected elements out of it. The same sequence gives the exact reads a run will make
(`read_ranges`), which `TensorReader.expect` turns into readahead: the source is asked to fetch the next
ranges (the kernel with posix_fadvise WILLNEED, or requests in flight) while this process selects and
writes the current ones, so the disk or the network works while we do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from wsel.checkpoint.dtypes import element_size
from wsel.checkpoint.header import TensorInfo
from wsel.checkpoint.stored import stored_read
from wsel.errors import CheckpointError
from wsel.select import Selection
from wsel.sources.base import Handle, Source

DEFAULT_BLOCK_BYTES = 16 << 20  # the working buffer: one block never exceeds this (unless a single row does)
DEFAULT_READAHEAD_BYTES = 64 << 20  # how far ahead of the current read the kernel is asked to fetch
MIN_SKIP_ROW_BYTES = Source.min_skip_bytes  # a local file's: dropped rows at least this large are not read
Chunk = bytes | memoryview  # a piece of a tensor's bytes, in order; each one is the consumer's to keep
Read = tuple[Source, int, int]  # (file, offset, length)


@dataclass(frozen=True)
class _Block:
    """One fill of the buffer: `ranges` (offset, length) read back to back, then `pick` selects from them.
    `pick` None: the bytes are wanted as they are."""

    ranges: list[tuple[int, int]]
    pick: Callable[[np.ndarray], np.ndarray] | None


class TensorReader:
    """Reads teacher bytes through one open handle per file (`wsel.sources`). Use as a context manager."""

    def __init__(self, block_bytes: int = DEFAULT_BLOCK_BYTES, readahead_bytes: int = DEFAULT_READAHEAD_BYTES) -> None:
        self.block_bytes = block_bytes
        self.readahead_bytes = readahead_bytes
        self.bytes_read = 0
        self._handles: dict[Source, Handle] = {}
        self._buffer = np.empty(0, dtype=np.uint8)  # grown on first use, reused by every block
        self._expected: Iterator[Read] = iter(())  # reads announced by expect(), not yet advised
        self._advised_bytes = 0  # bytes of announced reads already handed to the sources
        self.on_read: Callable[[int], None] | None = None  # called with the number of bytes of each read

    def __enter__(self) -> TensorReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def expect(self, reads: Iterable[Read]) -> None:
        """Announce the reads to come, in order (see `read_ranges`; consumed lazily), so that each read finds
        its bytes fetched already. Only a hint: what is then read may differ."""
        if self.readahead_bytes > 0:
            self._expected = iter(reads)

    def _advise(self, upto: int) -> None:
        """Hand the sources announced reads until `upto` bytes of them (counted from the start) are on their way."""
        while self._advised_bytes < upto:
            read = next(self._expected, None)
            if read is None:
                return
            file, offset, length = read
            self._handle(file).prefetch(offset, length)
            self._advised_bytes += length

    def _handle(self, file: Source) -> Handle:
        handle = self._handles.get(file)
        if handle is None:
            handle = self._handles[file] = file.open()
        return handle

    def _read_into(self, file: Source, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
        """The (offset, length) ranges, back to back, into the reused buffer (a view of it, valid until the
        next call)."""
        total = sum(length for _, length in ranges)
        self._advise(self.bytes_read + total + self.readahead_bytes)
        if len(self._buffer) < total:
            self._buffer = np.empty(max(total, self.block_bytes), dtype=np.uint8)
        self._handle(file).read_into(ranges, self._buffer.data[:total])
        self.bytes_read += total
        if self.on_read is not None:
            self.on_read(total)
        return self._buffer[:total]

    def read(self, file: Source, offset: int, length: int) -> bytes:
        """Exactly `length` bytes at `offset`, as the caller's own copy; a short read means the file
        changed under us."""
        return self._read_into(file, [(offset, length)]).tobytes()

    def iter_selected(self, info: TensorInfo, selections: Sequence[Selection]) -> Iterator[Chunk]:
        """The selected sub-tensor of `info`, as C-order byte chunks of at most about one block (a tensor stored
        in another order comes as one chunk: see `wsel.checkpoint.stored`)."""
        if info.stored is not None:
            read = stored_read(info, selections)
            yield from read.finish(self.iter_selected(read.plain, read.selections))
            return
        for block in _blocks(info, selections, self.block_bytes):
            data = self._read_into(info.file, block.ranges)
            if block.pick is None:
                yield data.tobytes()
                continue
            chunk = np.ascontiguousarray(block.pick(data))
            if np.may_share_memory(chunk, self._buffer):  # nothing was selected: never yield the reused buffer
                chunk = chunk.copy()
            yield chunk.data.cast("B")


def read_ranges(
    info: TensorInfo, selections: Sequence[Selection], block_bytes: int = DEFAULT_BLOCK_BYTES
) -> Iterator[tuple[int, int]]:
    """The (offset, length) reads that `iter_selected` makes for this tensor, in order."""
    if info.stored is not None:
        read = stored_read(info, selections)
        info, selections = read.plain, read.selections
    for block in _blocks(info, selections, block_bytes):
        yield from block.ranges


def _blocks(info: TensorInfo, selections: Sequence[Selection], block_bytes: int) -> Iterator[_Block]:
    """The blocks that read the selected part of `info`, in order (the order of its C-order bytes)."""
    if all(s.is_identity for s in selections):
        for offset in range(info.start, info.end, block_bytes):
            yield _Block([(offset, min(block_bytes, info.end - offset))], None)
        return
    esize = element_size(info.dtype)
    if esize is None:  # the plan refuses this; guard the invariant
        raise CheckpointError(f"{info.file}: tensor {info.name!r}: packed {info.dtype} cannot be selected")
    if math.prod(s.size for s in selections) == 0:
        return
    yield from _row_blocks(info.start, info.shape, esize, selections, block_bytes, info.file.min_skip_bytes)


def _row_blocks(
    offset: int, shape: tuple[int, ...], esize: int, sels: Sequence[Selection], block_bytes: int, skip_bytes: int
) -> Iterator[_Block]:
    """Blocks of whole rows (indices along dim 0) holding the kept rows.

    Rows of at least `skip_bytes` (the source's `min_skip_bytes`): only kept rows are read, one range per run
    of consecutive ones, so the buffer holds exactly the kept rows. Smaller rows: one range from a block's
    first kept row to its last (fewer, larger reads), and the kept ones are picked from it.
    """
    row_bytes = esize * math.prod(shape[1:])  # one index along dim 0
    kept = sels[0].indices()
    if row_bytes > block_bytes and len(shape) > 1:
        # One row alone exceeds the buffer: descend into each kept row.
        for i in kept.tolist():
            yield from _row_blocks(offset + i * row_bytes, shape[1:], esize, sels[1:], block_bytes, skip_bytes)
        return
    inner = _inner_pick(shape, esize, sels)
    rows_per_block = max(1, block_bytes // row_bytes)
    if row_bytes >= skip_bytes:
        for start in range(0, len(kept), rows_per_block):
            rows = kept[start : start + rows_per_block]
            run_starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)  # positions where a run begins
            run_lengths = np.diff(run_starts, append=len(rows))
            ranges = [
                (offset + int(rows[s]) * row_bytes, int(n) * row_bytes)
                for s, n in zip(run_starts.tolist(), run_lengths.tolist(), strict=True)
            ]
            yield _Block(ranges, partial(inner, n=len(rows), which=slice(None)))
        return
    start = 0
    while start < len(kept):
        end = int(np.searchsorted(kept, kept[start] + rows_per_block, side="left"))
        rows = kept[start:end]
        first, span = int(rows[0]), int(rows[-1] - rows[0] + 1)
        yield _Block([(offset + first * row_bytes, span * row_bytes)], partial(inner, n=span, which=_positions(rows)))
        start = end


def _positions(rows: np.ndarray) -> slice | np.ndarray:
    """Where sorted `rows` sit in the span from the first to the last: a stride when evenly spaced (a view)."""
    steps = np.diff(rows)
    if len(rows) == 1 or (steps == steps[0]).all():
        return slice(None, None, int(steps[0]) if len(rows) > 1 else 1)
    offsets: np.ndarray = rows - rows[0]
    return offsets


def _inner_pick(shape: tuple[int, ...], esize: int, sels: Sequence[Selection]) -> Callable[..., np.ndarray]:
    """pick(data, n, which): `data` as n rows of `shape[1:]`, rows `which` of them, then dims 1.. selected."""
    inner = tuple(_index(s) for s in sels[1:])  # per dim: a slice (a view) or an index array
    fancy = [(dim, idx) for dim, idx in enumerate(inner, start=1) if isinstance(idx, np.ndarray)]
    basic = tuple(slice(None) if isinstance(idx, np.ndarray) else idx for idx in inner)
    item = _ITEM.get(esize)
    element_shape = shape[1:] if item is not None else (*shape[1:], esize)

    def pick(data: np.ndarray, n: int, which: slice | np.ndarray) -> np.ndarray:
        rows = (data.view(item) if item is not None else data).reshape((n, *element_shape))  # [n, ...]
        rows = rows[which][(slice(None), *basic)]  # [kept rows, ...], strided dims selected (views)
        for dim, idx in fancy:
            rows = np.take(rows, idx, axis=dim)
        return rows

    return pick


_ITEM = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}  # one element as one integer


def _index(selection: Selection) -> slice | np.ndarray:
    """A selection as numpy indexing: a slice when it is a stride (a view, no copy), else the indices."""
    if selection.is_identity:
        return slice(None)
    if selection.explicit is None:
        return slice(selection.start, selection.start + selection.step * (selection.count - 1) + 1, selection.step)
    return selection.indices()
