"""Strict safetensors header parsing. Reads the header only; never a tensor's data.

The format: 8 bytes little-endian header length N, N bytes of UTF-8 JSON (an object mapping tensor
names to {dtype, shape, data_offsets}, plus an optional "__metadata__" of string to string), then
the data buffer. Offsets are relative to the data buffer and must tile it exactly.
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsel.checkpoint.dtypes import DTYPES, byte_length
from wsel.checkpoint.sniff import Kind, refusal, sniff
from wsel.errors import CheckpointError
from wsel.sources.base import Source
from wsel.sources.local import LocalFile

# The safetensors reference implementation refuses headers above 100 MB; so do we, before reading it.
MAX_HEADER_BYTES = 100_000_000
# wsel's own limits (README, "Limits"), far above any real checkpoint: beyond them a file is refused in one
# line rather than planned for minutes. Tensors per checkpoint (all shards together), and a name's length.
MAX_TENSORS = 1_000_000
MAX_NAME_BYTES = 4096

METADATA_KEY = "__metadata__"
TENSOR_KEYS = ("dtype", "shape", "data_offsets")


@dataclass(frozen=True, slots=True)
class Stored:
    """How a tensor's bytes lie in its file when they are not its elements in C order, as they always are in
    safetensors: a PyTorch view (strides) or a GGUF tensor (quantized blocks, llama.cpp's q/k row order).

    The file holds one C-contiguous array of `shape` from `TensorInfo.start`; the tensor is a window of it,
    its dims in another order, its dim-0 indices possibly mapped, its values possibly encoded.
    """

    shape: tuple[int, ...]  # the stored array, in storage order
    order: tuple[int, ...]  # order[d]: the stored dim holding the tensor's dim d (a permutation); the tensor's
    # dim d is indices [0, TensorInfo.shape[d]) of it
    quant: str | None = None  # a GGML block type ("Q4_1", ...): the stored last dim (in elements) is encoded
    # in blocks, whole rows only, and decodes to float32; None: elements of `TensorInfo.dtype`
    rows: tuple[int, ...] | None = None  # rows[i]: the stored index of the tensor's dim-0 index i
    offset: float | None = None  # added to every decoded value (in float32): GGUF's Gemma norms are stored + 1
    dtype: str | None = None  # the stored elements' dtype when `offset` changes them (the tensor's is then F32)


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor of a checkpoint, as its header describes it. `start`/`end` are absolute file offsets: of
    its C-order bytes, or (with `stored`) of the stored array that holds it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Source
    start: int
    end: int
    stored: Stored | None = None  # None: the bytes from start to end are the tensor's elements in C order

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """The tensor's bytes (as `dtype`, which for a stored tensor may differ from what the file holds)."""
        return self.end - self.start if self.stored is None else byte_length(self.dtype, self.numel)


@dataclass(frozen=True)
class Header:
    """A parsed, validated header: tensors in file order, metadata, file size. For a safetensors file its JSON
    header; for another format (`wsel.checkpoint.formats`) what stands for it."""

    source: Source
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, str]
    header_bytes: bytes  # the raw JSON (another format: its tensor table), kept for fingerprints
    file_size: int
    format: str = "safetensors"  # or "pytorch", "gguf"
    key: str | None = None  # a PyTorch checkpoint's state dict, when it is nested ("model", "state_dict", ...)
    config: dict[str, Any] | None = None  # a Hugging Face config.json the file carries (GGUF metadata)
    notes: tuple[str, ...] = ()  # what the file holds that wsel leaves out (GGUF: RoPE factor tensors), a line each


class OtherFormat(CheckpointError):
    """A file whose first bytes say another format than safetensors (`sniff.Kind`)."""

    def __init__(self, message: str, kind: Kind) -> None:
        super().__init__(message)
        self.kind = kind


class _Object(dict[str, Any]):
    """A JSON object that remembers the first key it saw twice (JSON allows it; safetensors must not)."""

    duplicate: str | None = None


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)  # a plain dict: this runs once per tensor entry, and headers may hold 1,000,000
    if len(obj) == len(pairs):
        return obj
    marked = _Object(pairs)  # rare: find the first repeated key only then
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked.duplicate = key
            break
        seen.add(key)
    return marked


def _duplicate(obj: dict[str, Any]) -> str | None:
    return obj.duplicate if type(obj) is _Object else None


def read_header(file: Source | str | os.PathLike[str]) -> Header:
    """Parse and validate the header of one safetensors file (a Source, or a local path): one read of the
    handle's `first_read_bytes` (a remote file's header usually comes whole in it), then the rest of the
    header if any. Raises CheckpointError naming the file."""
    source = file if isinstance(file, Source) else LocalFile(Path(file))

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{source}: {problem}")

    with source.open() as handle:
        file_size = handle.size
        head = handle.read(0, min(file_size, max(8, handle.first_read_bytes)))
        kind = sniff(head)
        if kind is not None:  # another format: say which, not a nonsense length (`formats` reads some)
            raise OtherFormat(f"{source}: {refusal(str(source), kind)}", kind)
        if file_size < 8:
            raise fail(f"file is {file_size} bytes, too short for a safetensors header (truncated?)")
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
    if not text.lstrip(" \t\n\r").startswith("{"):  # whitespace first is JSON, and the reference reads it
        raise fail("header is not a JSON object")
    # `-0` is no unsigned integer (the reference refuses it); JSON reads it as 0, so such a header is parsed
    # with a hook that keeps it apart (only then: the hook costs a Python call per number).
    parse_int = _parse_int if _NEGATIVE_ZERO.search(text) else None
    try:
        with _cyclic_gc_paused():
            doc = json.loads(text, object_pairs_hook=_object_pairs, parse_int=parse_int)
    except (ValueError, RecursionError) as e:  # ValueError: JSONDecodeError, or an integer too long to parse
        raise fail(f"header is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise fail("header is not a JSON object")
    duplicate = _duplicate(doc)
    if duplicate is not None:
        raise fail(f"duplicate tensor name {short_repr(duplicate)} in header")
    if len(doc) - (METADATA_KEY in doc) > MAX_TENSORS:
        raise fail(f"header lists {len(doc) - (METADATA_KEY in doc)} tensors, more than wsel's limit of {MAX_TENSORS}")
    for name in doc:
        problem = name_problem(name)
        if problem is not None:
            raise fail(problem)
    metadata = _parse_metadata(doc.pop(METADATA_KEY, {}), fail)
    data_start = 8 + header_len
    data_size = file_size - data_start
    with _cyclic_gc_paused():
        tensors = [_parse_entry(name, entry, source, data_start, fail) for name, entry in doc.items()]
    tensors.sort(key=lambda t: (t.start, t.end))  # file order
    _check_tiling(tensors, data_start, data_size, fail)
    return Header(source, tuple(tensors), metadata, raw, file_size)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Parsing builds several objects per tensor and never a reference cycle: Python's cyclic collector would
    walk the growing heap again and again for nothing (half the parse time of 300,000 tensors)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse_metadata(meta: Any, fail: Any) -> dict[str, str]:
    if not isinstance(meta, dict):
        raise fail(f"{METADATA_KEY} must be an object of strings")
    duplicate = _duplicate(meta)
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
    duplicate = _duplicate(entry)
    if duplicate is not None:
        raise fail(f"tensor {name!r}: duplicate field {duplicate!r}")
    if len(entry) != 3 or "dtype" not in entry or "shape" not in entry or "data_offsets" not in entry:
        missing = [k for k in TENSOR_KEYS if k not in entry]
        if missing:
            raise fail(f"tensor {name!r}: missing {', '.join(missing)}")
        raise fail(f"tensor {name!r}: unknown field {', '.join(sorted(set(entry) - set(TENSOR_KEYS)))}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise fail(f"tensor {name!r}: unknown dtype {dtype!r}")
    # `type(d) is int`: not a bool, and not the `-0` marker
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise fail(f"tensor {name!r}: shape {short_repr(shape)} is not a list of non-negative integers")
    numel = _element_count(shape)
    if numel is None or numel * DTYPES[dtype].bits >= 8 * _U64:
        raise fail(f"tensor {name!r}: shape overflows 64-bit sizes")
    if (numel * DTYPES[dtype].bits) % 8:
        raise fail(f"tensor {name!r}: {numel} {dtype} elements do not fill whole bytes")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int and o >= 0 for o in offsets)
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


def short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "(too large to print)"
    return text if len(text) <= 200 else text[:200] + "..."


def name_problem(name: str) -> str | None:
    """Why a tensor name is refused (not valid UTF-8, or longer than MAX_NAME_BYTES), or None."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return f"tensor name {short_repr(name.encode('utf-8', 'backslashreplace').decode())} is not valid UTF-8"
    if size > MAX_NAME_BYTES:
        return f"tensor name {short_repr(name)} is {size} bytes long, more than wsel's limit of {MAX_NAME_BYTES}"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a `\ud800` escape
        return False
    return True


_NEGATIVE_ZERO = re.compile(r"-0(?![0-9.eE])")


class _NegativeZero:
    """A `-0` in a header, kept apart from 0 so that the shape or offset holding it is refused."""

    def __repr__(self) -> str:
        return "-0"


def _parse_int(text: str) -> int | _NegativeZero:
    return _NegativeZero() if text == "-0" else int(text)


def _check_tiling(tensors: list[TensorInfo], data_start: int, data_size: int, fail: Any) -> None:
    """Offsets (of `tensors`, in file order) must cover the data buffer from 0 with no gap, no overlap and
    nothing after."""
    position = data_start
    for t in tensors:
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
