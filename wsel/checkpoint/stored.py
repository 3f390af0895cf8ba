"""Reading a selection of a tensor that is not stored as its own elements in C order (`header.Stored`): a
PyTorch view (a window of a stored array, its dims in another order), or a GGUF tensor (quantized rows,
llama.cpp's q/k row order, Gemma's norms stored + 1).

The selection is mapped to the stored array, dim by dim, and read there by the ordinary reader (whole rows
of blocks for a quantized tensor); what comes back is decoded as it streams (dequantized, offset). Only when
the stored order differs from the tensor's (dims permuted, or dim-0 rows mapped) is the selected tensor
gathered whole, at the student's size, to be put in order: memory for that is one student tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from wsel.checkpoint.dtypes import DTYPES
from wsel.checkpoint.header import TensorInfo
from wsel.errors import CheckpointError
from wsel.select import Selection, from_indices, identity

Chunk = bytes | memoryview
_ITEM = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}  # one element as one integer


@dataclass(frozen=True)
class StoredRead:
    """How to read a selection of a stored tensor: `selections` of the plain array `plain` (C-order elements,
    as the reader reads any tensor), then `finish` turns those bytes into the tensor's selected elements."""

    plain: TensorInfo
    selections: tuple[Selection, ...]
    finish: Callable[[Iterable[Chunk]], Iterator[Chunk]]


def stored_read(info: TensorInfo, selections: Sequence[Selection]) -> StoredRead:
    stored = info.stored
    assert stored is not None
    ndim = len(info.shape)
    # wanted[j]: the stored indices the selection needs on stored dim j, in the tensor's order
    wanted: list[np.ndarray] = [np.empty(0, np.int64)] * ndim
    for dim, selection in enumerate(selections):
        indices = selection.indices()  # [kept], ascending
        if dim == 0 and stored.rows is not None:
            indices = np.asarray(stored.rows, dtype=np.int64)[indices]
        wanted[stored.order[dim]] = indices
    needed = [np.unique(w) for w in wanted]  # ascending: what the reader reads
    positions = [np.searchsorted(n, w) for n, w in zip(needed, wanted, strict=True)]  # where each wanted one is
    reorder = stored.order != tuple(range(ndim)) or any(
        not np.array_equal(p, np.arange(len(p))) for p in positions
    )  # fmt: skip
    read_sels = [
        identity(size) if len(n) == size else from_indices(size, n.tolist())
        for size, n in zip(stored.shape, needed, strict=True)
    ]
    selected_shape = tuple(len(n) for n in needed)  # the stored array's selection, in storage order

    steps: list[Callable[[Iterable[Chunk]], Iterable[Chunk]]] = []
    if stored.quant is not None:
        if stored.order[-1] != ndim - 1:
            raise CheckpointError(f"{info.file}: tensor {info.name!r}: quantized rows must be its last dim")
        from wsel.checkpoint import ggml  # deferred: only GGUF teachers need it

        ncols = stored.shape[-1]
        row_bytes = ggml.row_bytes(stored.quant, ncols)
        plain = replace(info, dtype="U8", shape=(*stored.shape[:-1], row_bytes), stored=None)
        columns = needed[-1]
        read_sels[-1] = identity(row_bytes)  # whole rows are decoded; the columns are picked after
        quant = stored.quant
        steps.append(lambda chunks: _dequantized(chunks, row_bytes, quant, ncols, columns))
        element = "F32"
    else:
        element = stored.dtype or info.dtype
        plain = replace(info, dtype=element, shape=stored.shape, stored=None)
    if stored.offset is not None:
        offset, source_dtype = stored.offset, element
        steps.append(lambda chunks: _offset(chunks, source_dtype, offset))
        element = "F32"
    if element != info.dtype:
        raise CheckpointError(f"{info.file}: tensor {info.name!r}: decodes to {element}, not {info.dtype}")
    if reorder:
        esize = DTYPES[element].bits // 8
        steps.append(lambda chunks: _reordered(chunks, selected_shape, esize, positions, stored.order))

    def finish(chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        for step in steps:
            chunks = step(chunks)
        yield from chunks

    return StoredRead(plain, tuple(read_sels), finish)


def _dequantized(
    chunks: Iterable[Chunk], row_bytes: int, quant: str, ncols: int, columns: np.ndarray
) -> Iterator[Chunk]:
    """Chunks of whole stored rows (blocks) as float32 elements, only `columns` of each row."""
    from wsel.checkpoint import ggml

    keep = slice(None) if len(columns) == ncols else columns
    for rows in _whole_rows(chunks, row_bytes):
        values = ggml.dequantize_rows(rows, quant, ncols)  # [n, ncols] float32
        yield np.ascontiguousarray(values[:, keep], dtype=np.float32).data.cast("B")


def _whole_rows(chunks: Iterable[Chunk], row_bytes: int) -> Iterator[np.ndarray]:
    """The bytes of `chunks` cut into [n, row_bytes] uint8 arrays of whole rows (a row may span chunks)."""
    pending = b""
    for chunk in chunks:
        data = pending + bytes(chunk) if pending else chunk
        whole = len(data) // row_bytes * row_bytes
        if whole:
            yield np.frombuffer(data, dtype=np.uint8, count=whole).reshape(-1, row_bytes)
        pending = bytes(data[whole:])
    if pending:
        raise CheckpointError(f"a quantized tensor's data ends inside a row ({len(pending)} of {row_bytes} bytes)")


def _offset(chunks: Iterable[Chunk], dtype: str, offset: float) -> Iterator[Chunk]:
    """Elements of `dtype` as float32, `offset` added."""
    import torch  # deferred: numpy has no bfloat16

    source = getattr(torch, DTYPES[dtype].torch_name)
    for chunk in chunks:
        if len(chunk):
            values = torch.frombuffer(bytearray(chunk), dtype=source).to(torch.float32) + offset  # [elements]
            yield values.numpy().tobytes()


def _reordered(
    chunks: Iterable[Chunk],
    selected_shape: tuple[int, ...],
    esize: int,
    positions: Sequence[np.ndarray],
    order: tuple[int, ...],
) -> Iterator[Chunk]:
    """The whole selected stored array (in storage order, indices ascending) put in the tensor's order: on
    each stored dim the wanted indices in the wanted order, then the dims as the tensor has them."""
    data = b"".join(bytes(c) for c in chunks)
    if len(data) != math.prod(selected_shape) * esize:
        raise CheckpointError(f"read {len(data)} bytes for a selection of {math.prod(selected_shape) * esize}")
    array = np.frombuffer(data, dtype=_ITEM[esize]).reshape(selected_shape)  # [stored dims...]
    for dim, where in enumerate(positions):
        if not np.array_equal(where, np.arange(selected_shape[dim])):
            array = np.take(array, where, axis=dim)
    yield np.ascontiguousarray(array.transpose(order)).data.cast("B")  # [tensor dims...]
