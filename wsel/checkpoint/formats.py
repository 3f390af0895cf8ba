"""One checkpoint file of any format wsel reads, as a Header: safetensors, a PyTorch zip archive
(`torchzip`, read without running its pickle), or GGUF (`gguf`). The first bytes decide, never the name."""

from __future__ import annotations

import math

from wsel.checkpoint.dtypes import DTYPES, byte_length
from wsel.checkpoint.header import (
    MAX_TENSORS,
    Header,
    OtherFormat,
    Stored,
    TensorInfo,
    name_problem,
    read_header,
    short_repr,
)
from wsel.checkpoint.sniff import refusal
from wsel.errors import CheckpointError
from wsel.sources.base import Source

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".tar")  # timm's training script saves .pth.tar
OTHER_FORMATS = (*PICKLE_SUFFIXES, ".gguf")  # names of checkpoints in other formats than safetensors


def read_file(source: Source, key: str | None = None) -> Header:
    """The header of one checkpoint file. `key`: which nested state dict of a PyTorch checkpoint to read
    (`--teacher-key`). Raises CheckpointError naming the file."""
    try:
        header = read_header(source)
    except OtherFormat as e:
        if e.kind == "torch":
            return _torch(source, key)
        if e.kind == "gguf" and key is None:
            return _gguf(source)
        if e.kind != "gguf":
            raise
        header = None
    except CheckpointError:
        if source.name.endswith(OTHER_FORMATS):  # a .bin of another runtime (CTranslate2, ...): say so
            raise CheckpointError(f"{source}: {refusal(str(source), 'other')}") from None
        raise
    if key is not None:
        kind = "GGUF" if header is None else "safetensors"
        raise CheckpointError(
            f"{source}: --teacher-key {key} applies to PyTorch checkpoints, not to this {kind} file; leave it out"
        )
    assert header is not None
    return header


def _torch(source: Source, key: str | None) -> Header:
    from wsel.checkpoint.torchzip import read_torch  # deferred: safetensors runs never need it

    found = read_torch(source, key)
    return _checked(Header(source, found.tensors, {}, found.fingerprint, _size(source), "pytorch", found.key))


def _gguf(source: Source) -> Header:
    from wsel.checkpoint.gguf import read_gguf  # deferred: it imports the gguf package

    found = read_gguf(source)
    return _checked(
        Header(source, found.tensors, {}, found.fingerprint, _size(source), "gguf", None, found.config, found.notes)
    )


def _size(source: Source) -> int:
    with source.open() as handle:
        return handle.size


def _checked(header: Header) -> Header:
    """The format readers' tensors, checked again where every format meets: names unique and within the
    limits, byte ranges inside the file, stored layouts consistent."""
    if len(header.tensors) > MAX_TENSORS:
        raise CheckpointError(
            f"{header.source}: holds {len(header.tensors)} tensors, more than wsel's limit of {MAX_TENSORS}"
        )
    seen: set[str] = set()
    for t in header.tensors:
        problem = name_problem(t.name)
        if problem is not None:
            raise CheckpointError(f"{header.source}: {problem}")
        problem = _problem(t, header.file_size) if t.name not in seen else "appears twice"
        if problem is not None:
            raise CheckpointError(f"{header.source}: tensor {short_repr(t.name)}: {problem}")
        seen.add(t.name)
    return header


def _problem(t: TensorInfo, file_size: int) -> str | None:
    if t.dtype not in DTYPES:
        return f"unknown dtype {t.dtype!r}"
    if t.stored is not None:
        return _stored_problem(t, t.stored, file_size)
    if not 0 <= t.start <= t.end <= file_size:
        return f"bytes {t.start}..{t.end} lie outside the file ({file_size} bytes)"
    if t.end - t.start != byte_length(t.dtype, t.numel):
        return f"{t.end - t.start} bytes do not hold {t.dtype}{list(t.shape)}"
    return None


def _stored_problem(info: TensorInfo, stored: Stored, file_size: int) -> str | None:
    """Why a stored tensor's description cannot be read (a problem for the message), or None."""
    ndim = len(info.shape)
    if len(stored.shape) != ndim or sorted(stored.order) != list(range(ndim)):
        return f"stored as {stored.shape} in dim order {stored.order}, which does not match its shape {info.shape}"
    if any(info.shape[d] > stored.shape[stored.order[d]] for d in range(ndim)):
        return f"shape {info.shape} does not fit in its stored array {stored.shape}"
    if stored.rows is not None and (
        len(stored.rows) != info.shape[0] or len(set(stored.rows)) != len(stored.rows)
        or not all(0 <= r < stored.shape[stored.order[0]] for r in stored.rows)
    ):  # fmt: skip
        return "its row order is not a mapping into the stored rows"
    if info.end > file_size or info.start > info.end:
        return f"bytes {info.start}..{info.end} lie outside the file ({file_size} bytes)"
    if stored.quant is not None:
        from wsel.checkpoint import ggml

        if stored.quant not in ggml.SUPPORTED or stored.order[-1] != ndim - 1:
            return f"{stored.quant} blocks cannot be read (wsel dequantizes {', '.join(sorted(ggml.SUPPORTED))})"
        size = math.prod(stored.shape[:-1]) * ggml.row_bytes(stored.quant, stored.shape[-1])
    elif (stored.dtype or info.dtype) in DTYPES:
        size = byte_length(stored.dtype or info.dtype, math.prod(stored.shape))
    else:
        return f"unknown dtype {stored.dtype!r}"
    if info.end - info.start != size:
        return f"{info.end - info.start} bytes do not hold its stored array {stored.shape} ({size} bytes)"
    return None
