"""The GGUF header walked and checked by wsel before gguf-py's `GGUFReader` parses it, so that a damaged or
hostile file is refused in one line (truncated, wrong magic, absurd counts, bytes past the end) and never
makes the reader build millions of objects."""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from gguf import GGMLQuantizationType

from wsel.checkpoint import ggml
from wsel.checkpoint.header import MAX_TENSORS, short_repr

# Metadata values (keys, array items) a file may hold: the largest vocabularies give under 1,000,000 (Gemma 3:
# 262,144 tokens, scores and types); past this limit gguf-py would build gigabytes of small arrays.
MAX_METADATA_VALUES = 4_000_000
MAX_DIMS = 4  # GGML_MAX_DIMS


_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUFValueType -> size
_STRING, _ARRAY = 8, 9
_GGML_TYPES = {t.value: t.name for t in GGMLQuantizationType}


class HeaderProblem(Exception):
    """A problem found while walking the header (the message, after the file's name)."""


@dataclass
class _Walk:
    """The header's layout, checked: offsets in bounds, counts within limits, types known."""

    view: mmap.mmap
    size: int
    pos: int = 0
    values: int = 0
    alignment: int = 32  # GGUF_DEFAULT_ALIGNMENT, unless general.alignment says otherwise

    def take(self, n: int) -> int:
        if n > self.size - self.pos:
            raise HeaderProblem(
                f"the GGUF header runs past the end of the file ({self.size} bytes); is it truncated? download it again"
            )
        at, self.pos = self.pos, self.pos + n
        return at

    def u32(self) -> int:
        return cast(int, struct.unpack_from("<I", self.view, self.take(4))[0])

    def u64(self) -> int:
        return cast(int, struct.unpack_from("<Q", self.view, self.take(8))[0])

    def string(self) -> bytes:
        length = self.u64()
        at = self.take(length)
        return self.view[at : at + length]

    def name(self, what: str, seen: set[str]) -> str:
        """A metadata key or tensor name: UTF-8, and not seen before."""
        raw = self.string()
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HeaderProblem(f"{what} {short_repr(raw)} is not valid UTF-8") from None
        if name in seen:
            raise HeaderProblem(f"{what} {short_repr(name)} appears twice")
        seen.add(name)
        return name

    def count(self, n: int) -> None:
        self.values += n
        if self.values > MAX_METADATA_VALUES:
            raise HeaderProblem(f"metadata holds more than wsel's limit of {MAX_METADATA_VALUES} values")

    def value(self, key: str, kind: int, in_array: bool = False) -> None:
        if kind in _SCALAR_BYTES:
            at = self.take(_SCALAR_BYTES[kind])
            if key == "general.alignment" and kind == 4 and not in_array:
                self.alignment = cast(int, struct.unpack_from("<I", self.view, at)[0])
        elif kind == _STRING:
            self.take(self.u64())
        elif kind == _ARRAY and not in_array:
            item, n = self.u32(), self.u64()
            self.count(n)
            if item in _SCALAR_BYTES:
                self.take(n * _SCALAR_BYTES[item])
            else:
                for _ in range(n):
                    self.value(key, item, in_array=True)
        else:
            raise HeaderProblem(f"metadata {short_repr(key)} has value type {kind}, which GGUF does not define")


def _walk(view: mmap.mmap, size: int) -> int:
    """Check the header from the file's bytes; return where the data section starts. Raises HeaderProblem."""
    walk = _Walk(view, size)
    if size < 4 or view[:4] != b"GGUF":
        raise HeaderProblem(f"not a GGUF file (it starts {short_repr(bytes(view[:4]))}, not b'GGUF')")
    walk.take(4)
    version = walk.u32()
    if version & 0xFFFF == 0 and version:  # as gguf-py tells: a version written in the other byte order
        raise HeaderProblem(
            "a big-endian GGUF file; wsel reads little-endian ones: convert a copy with gguf-convert-endian COPY little"
        )
    if version not in (2, 3):
        raise HeaderProblem(
            f"GGUF version {version}; wsel reads versions 2 and 3 (convert it again with a current llama.cpp)"
        )
    tensors, keys = walk.u64(), walk.u64()
    if tensors > MAX_TENSORS:
        raise HeaderProblem(f"header lists {tensors} tensors, more than wsel's limit of {MAX_TENSORS}")
    walk.count(keys)
    keys_seen: set[str] = set()
    names_seen: set[str] = set()
    for _ in range(keys):
        key = walk.name("metadata key", keys_seen)
        walk.value(key, walk.u32())
    if walk.alignment <= 0 or walk.alignment & (walk.alignment - 1):
        raise HeaderProblem(f"general.alignment {walk.alignment} is not a power of two")
    table = []
    for _ in range(tensors):
        name = walk.name("tensor name", names_seen)
        ndim = walk.u32()
        if not 1 <= ndim <= MAX_DIMS:
            raise HeaderProblem(f"tensor {short_repr(name)} has {ndim} dims; GGUF tensors have 1 to {MAX_DIMS}")
        dims = [walk.u64() for _ in range(ndim)]
        kind, offset = walk.u32(), walk.u64()
        table.append((name, dims, kind, offset))
    start = -(-walk.pos // walk.alignment) * walk.alignment
    spans = [(_span(name, dims, kind, offset, start, size, walk.alignment), name) for name, dims, kind, offset in table]
    spans.sort()
    for ((_, end), before), ((begin, _), name) in zip(spans, spans[1:], strict=False):
        if begin < end:
            raise HeaderProblem(f"tensor {short_repr(name)} overlaps tensor {short_repr(before)}")
    return start


def _span(name: str, dims: list[int], kind: int, offset: int, data: int, size: int, alignment: int) -> tuple[int, int]:
    """The absolute byte range of one tensor, checked."""
    quant = _GGML_TYPES.get(kind)
    if quant is None:
        raise HeaderProblem(f"tensor {short_repr(name)} has GGML type {kind}, which gguf-py does not know")
    elements, block_bytes = ggml.block(quant)
    if dims[0] % elements:
        raise HeaderProblem(
            f"tensor {short_repr(name)}: {quant} rows of {dims[0]} elements are not whole {elements}-element blocks"
        )
    numel = 1
    for d in dims:
        numel *= d
    if offset % alignment:
        raise HeaderProblem(f"tensor {short_repr(name)} starts at data offset {offset}, not a multiple of {alignment}")
    start = data + offset
    end = start + numel // elements * block_bytes
    if end > size:
        raise HeaderProblem(
            f"tensor {short_repr(name)} lies at bytes {start}..{end}, past the end of the file ({size} bytes); "
            "is it truncated? download it again"
        )
    return start, end


def walk_header(path: Path, size: int) -> tuple[int, bytes]:
    """Where the data section starts, and the bytes before it (the fingerprint). Raises HeaderProblem."""
    if size == 0:
        raise HeaderProblem("file is empty, not GGUF; download it again")
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        start = _walk(view, size)
        return start, bytes(view[: min(start, size)])
