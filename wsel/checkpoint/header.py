"""Strict safetensors header parsing. Reads the header only; never a tensor's data.

The format: 8 bytes little-endian header length N, N bytes of UTF-8 JSON (an object mapping tensor
names to {dtype, shape, data_offsets}, plus an optional "__metadata__" of string to string), then
the data buffer. Offsets are relative to the data buffer and must tile it exactly.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsel.checkpoint.dtypes import DTYPES, byte_length
from wsel.checkpoint.sniff import refusal, sniff
from wsel.errors import CheckpointError
from wsel.sources.base import Source
from wsel.sources.local import LocalFile

# The safetensors reference implementation refuses headers above 100 MB; so do we, before reading it.
MAX_HEADER_BYTES = 100_000_000

METADATA_KEY = "__metadata__"
TENSOR_KEYS = ("dtype", "shape", "data_offsets")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a checkpoint, as its header describes it. `start`/`end` are absolute file offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Source
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Header:
    """A parsed, validated safetensors header: tensors in file order, metadata, file size."""

    source: Source
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, str]
    header_bytes: bytes  # the raw JSON, kept for fingerprints
    file_size: int


class _Object(dict[str, Any]):
    """A JSON object that remembers the first key it saw twice (JSON allows it; safetensors must not)."""

    duplicate: str | None = None


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):  # rare: find the first repeated key only then (headers may hold 100k entries)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                obj.duplicate = key
                break
            seen.add(key)
    return obj


def read_header(file: Source | str | os.PathLike[str]) -> Header:
    """Parse and validate the header of one safetensors file (a Source, or a local path): one read of the
    handle's `first_read_bytes` (a remote file's header usually comes whole in it), then the rest of the
    header if any. Raises CheckpointError naming the file."""
    source = file if isinstance(file, Source) else LocalFile(Path(file))

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{source}: {problem}")

    with source.open() as handle:
        file_size = handle.size
        if file_size < 8:
            raise fail(f"file is {file_size} bytes, too short for a safetensors header (truncated?)")
        head = handle.read(0, min(file_size, max(8, handle.first_read_bytes)))
        kind = sniff(head)
        if kind is not None:  # another format under a safetensors name: say which, not a nonsense length
            raise fail(refusal(str(source), kind))
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len > MAX_HEADER_BYTES:
            raise fail(f"header length {header_len} exceeds the {MAX_HEADER_BYTES} byte limit")
        if header_len > file_size - 8:
            raise fail(f"header length {header_len} runs past the end of the file ({file_size} bytes; truncated?)")
        if 8 + header_len > len(head):
            head += handle.read(len(head), 8 + header_len - len(head))
    raw = head[8 : 8 + header_len]

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"header is not valid UTF-8 (byte {e.start})") from None
    if not text.startswith("{"):
        raise fail("header is not a JSON object")
    try:
        doc = json.loads(text, object_pairs_hook=_object_pairs)
    except (ValueError, RecursionError) as e:  # ValueError: JSONDecodeError, or an integer too long to parse
        raise fail(f"header is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise fail("header is not a JSON object")
    duplicate = getattr(doc, "duplicate", None)
    if duplicate is not None:
        raise fail(f"duplicate tensor name {duplicate!r} in header")

    for name in doc:
        if not _encodable(name):
            raise fail(f"tensor name {name.encode('utf-8', 'backslashreplace').decode()!r} is not valid UTF-8")
    metadata = _parse_metadata(doc.pop(METADATA_KEY, {}), fail)
    data_start = 8 + header_len
    data_size = file_size - data_start
    tensors = [_parse_entry(name, entry, source, data_start, fail) for name, entry in doc.items()]
    _check_tiling(tensors, data_start, data_size, fail)
    tensors.sort(key=lambda t: (t.start, t.end))
    return Header(source, tuple(tensors), metadata, raw, file_size)


def _parse_metadata(meta: Any, fail: Any) -> dict[str, str]:
    if not isinstance(meta, dict):
        raise fail(f"{METADATA_KEY} must be an object of strings")
    duplicate = getattr(meta, "duplicate", None)
    if duplicate is not None:
        raise fail(f"duplicate key {duplicate!r} in {METADATA_KEY}")
    for key, value in meta.items():
        if not isinstance(value, str):
            raise fail(f"{METADATA_KEY} value for {key!r} is not a string")
        if not (_encodable(key) and _encodable(value)):
            raise fail(f"{METADATA_KEY} holds a string that is not valid UTF-8")
    return dict(meta)


def _parse_entry(name: str, entry: Any, source: Source, data_start: int, fail: Any) -> TensorInfo:
    if not isinstance(entry, dict):
        raise fail(f"tensor {name!r}: entry is not an object")
    duplicate = getattr(entry, "duplicate", None)
    if duplicate is not None:
        raise fail(f"tensor {name!r}: duplicate field {duplicate!r}")
    missing = [k for k in TENSOR_KEYS if k not in entry]
    if missing:
        raise fail(f"tensor {name!r}: missing {', '.join(missing)}")
    extra = sorted(set(entry) - set(TENSOR_KEYS))
    if extra:
        raise fail(f"tensor {name!r}: unknown field {', '.join(extra)}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise fail(f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise fail(f"tensor {name!r}: shape {_short_repr(shape)} is not a list of non-negative integers")
    numel = _element_count(shape)
    if numel is None or numel * DTYPES[dtype].bits >= 8 * _U64:
        raise fail(f"tensor {name!r}: shape overflows 64-bit sizes")
    if (numel * DTYPES[dtype].bits) % 8:
        raise fail(f"tensor {name!r}: {numel} {dtype} elements do not fill whole bytes")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise fail(f"tensor {name!r}: data_offsets {offsets!r} is not [begin, end] with 0 <= begin <= end")
    expected = byte_length(dtype, numel)
    if offsets[1] - offsets[0] != expected:
        raise fail(
            f"tensor {name!r}: data_offsets span {offsets[1] - offsets[0]} bytes but {dtype}{shape} needs {expected}"
        )
    return TensorInfo(name, dtype, tuple(shape), source, data_start + offsets[0], data_start + offsets[1])


_U64 = 2**64


def _element_count(shape: list[int]) -> int | None:
    """The product of the dims, or None once it passes 2**64 (as the reference implementation refuses),
    computed without ever building a huge integer."""
    count = 1
    for d in shape:
        if d >= _U64:
            return None
        count *= d
        if count >= _U64:
            return None
    return count


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "(too large to print)"
    return text if len(text) <= 200 else text[:200] + "..."


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a `\ud800` escape
        return False
    return True


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_tiling(tensors: list[TensorInfo], data_start: int, data_size: int, fail: Any) -> None:
    """Offsets must cover the data buffer from 0 with no gap, no overlap and nothing after."""
    position = data_start
    for t in sorted(tensors, key=lambda t: (t.start, t.end)):
        if t.start > position:
            raise fail(f"tensor {t.name!r}: gap of {t.start - position} bytes before its data")
        if t.start < position:
            raise fail(f"tensor {t.name!r}: data overlaps the previous tensor")
        position = t.end
    end = data_start + data_size
    if position > end:
        raise fail(f"data ends at byte {position - data_start} but the file holds {data_size} (truncated?)")
    if position < end:
        raise fail(f"{end - position} unexpected trailing bytes after the last tensor")
