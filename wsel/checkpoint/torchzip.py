"""PyTorch zip checkpoints (what `torch.save` writes since 1.6), read without running anything from the file.

The archive is one folder (`<archive>/data.pkl`, `<archive>/data/<key>` per storage, `<archive>/byteorder`, ...),
every entry stored uncompressed. Only byte ranges are read: the end records and central directory, the local
header of each entry used (where its data starts), and data.pkl whole; never a tensor's data. The pickle is
read by `wsel.checkpoint.unpickle` (an opcode scan, then an unpickler that calls nothing from the file), and
each tensor of the chosen state dict becomes a TensorInfo into its storage's entry: its C-order bytes, or,
for a view (a transpose, a slice, channels_last), the window of a stored C-order array (`Stored`).
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wsel.checkpoint import unpickle
from wsel.checkpoint.dtypes import DTYPES
from wsel.checkpoint.header import MAX_TENSORS, Stored, TensorInfo, name_problem, short_repr
from wsel.checkpoint.sniff import conversion, refusal, sniff
from wsel.errors import CheckpointError
from wsel.sources.base import MAX_SMALL_FILE_BYTES, Handle, Source


@dataclass(frozen=True)
class TorchCheckpoint:
    """The tensors of one state dict of a PyTorch zip checkpoint."""

    tensors: tuple[TensorInfo, ...]  # sorted by (start, end, name); names as in the chosen state dict
    fingerprint: bytes  # the archive's data.pkl bytes (provenance hashes it)
    key: str | None  # the nested key used ("model", "state_dict", ...); None for a top-level state dict
    format: str = "pytorch"


def read_torch(source: Source, key: str | None = None) -> TorchCheckpoint:
    """The tensors of `source`'s state dict: the top-level object when it is a dict holding tensors, else the
    one top-level key whose value is (`key` chooses among several). Raises CheckpointError
    `<source>: <problem and fix>`, one line, for anything wrong."""
    where = str(source)
    with source.open() as handle:
        archive = _Archive(handle, where)
        pickled = archive.read_whole(archive.data_pkl, MAX_SMALL_FILE_BYTES)
        tensors, chosen = _choose(unpickle.load(pickled, where), key, where)
        infos = archive.locate(tensors, source)
    infos.sort(key=lambda t: (t.start, t.end, t.name))
    return TorchCheckpoint(tuple(infos), pickled, chosen)


# The zip structures torch.save writes (always with zip64 end records), little-endian.
_EOCD = struct.Struct("<4sHHHHIIH")  # end of central directory
_LOCATOR = struct.Struct("<4sIQI")  # zip64 end of central directory locator
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")  # zip64 end of central directory
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # central directory file header
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # local file header
_FULL32, _FULL16 = 0xFFFFFFFF, 0xFFFF  # "see the zip64 record"


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    raw_name: bytes
    method: int
    size: int
    header: int  # where its local header starts
    limit: int  # where the next entry's local header (or the central directory) starts


class _Archive:
    """The central directory of a torch.save archive, checked: one top-level folder, entries stored, in
    order, without overlap, inside the file."""

    def __init__(self, handle: Handle, where: str) -> None:
        self.handle, self.where = handle, where
        head = handle.read(0, min(handle.size, 4))
        if head != b"PK\x03\x04":
            raise self._not_zip(head)
        count, cd_at, cd_size = self._end_records()
        if cd_size > MAX_SMALL_FILE_BYTES:
            raise self.fail(f"has a {cd_size}-byte zip central directory, more than wsel reads")
        if count * _CENTRAL.size > cd_size:
            raise self.fail(f"has a zip central directory too short for its {count} entries (truncated?)")
        self.entries = self._entries(handle.read(cd_at, cd_size), count, cd_at)
        names = list(self.entries)
        self.prefix = names[0].split("/", 1)[0] if names and "/" in names[0] else ""
        if not self.prefix or not all(n.startswith(self.prefix + "/") for n in names):
            raise self.fail("is a zip archive but not a torch.save checkpoint (its entries are not in one folder)")
        if any(n.startswith(f"{self.prefix}/code/") for n in names):
            raise self.fail(
                "is a TorchScript archive (torch.jit.save), not a state dict; in an environment you trust, save "
                "torch.jit.load(...).state_dict() with torch.save or safetensors"
            )
        compressed = next((e for e in self.entries.values() if e.method != 0), None)
        if compressed is not None:
            raise self.fail(
                f"entry {compressed.name!r} is compressed (zip method {compressed.method}), and wsel reads tensors "
                "by byte ranges; " + conversion(where)
            )
        self.data_pkl = self._entry(f"{self.prefix}/data.pkl", "is a zip archive but not a torch.save checkpoint")
        byteorder = self.entries.get(f"{self.prefix}/byteorder")  # absent before torch 1.10: little-endian
        self.starts = self.data_starts([self.data_pkl] + ([byteorder] if byteorder is not None else []))
        if byteorder is not None:
            order = self.read_whole(byteorder, 16)
            if order == b"big":
                raise self.fail(
                    "was saved on a big-endian machine (byteorder 'big'); wsel reads little-endian checkpoints; "
                    + conversion(where)
                )
            if order != b"little":
                raise self.fail(f"has a byteorder entry of {short_repr(order)}, expected 'little'")

    def _end_records(self) -> tuple[int, int, int]:
        """The entry count, start and size of the central directory, from the end record (and the zip64 one,
        which torch.save always writes), checked: the central directory ends where the end records start."""
        size = self.handle.size
        tail_at = max(0, size - (_EOCD64.size + _LOCATOR.size + _EOCD.size))  # torch.save's end records, whole
        tail = self.handle.read(tail_at, size - tail_at)
        at = len(tail) - _EOCD.size
        if at < 0 or tail[at : at + 4] != b"PK\x05\x06" or tail[-2:] != b"\0\0":  # a comment after the record
            tail_at = max(0, size - (_EOCD.size + 0xFFFF))  # ... of at most 64 KiB
            tail = self.handle.read(tail_at, size - tail_at)
            at = tail.rfind(b"PK\x05\x06")
            while at >= 0 and (
                at + _EOCD.size > len(tail) or at + _EOCD.size + struct.unpack_from("<H", tail, at + 20)[0] != len(tail)
            ):
                at = tail.rfind(b"PK\x05\x06", 0, at)  # a signature in the comment (or in data): not the record
            if at < 0:
                raise self.fail("has no zip end record (truncated?)")
        _, disk, cd_disk, count_here, count, cd_size, cd_at, _ = _EOCD.unpack_from(tail, at)
        records_at = tail_at + at
        locator_at = at - _LOCATOR.size
        if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
            _, _, eocd64_at, _ = _LOCATOR.unpack_from(tail, locator_at)
            records_at = tail_at + locator_at
            if eocd64_at + _EOCD64.size > records_at:
                raise self.fail("has a zip64 end record outside the archive (truncated?)")
            record = (
                tail[eocd64_at - tail_at : eocd64_at - tail_at + _EOCD64.size]
                if eocd64_at >= tail_at
                else self.handle.read(eocd64_at, _EOCD64.size)
            )
            sig, length, _, _, *fields = _EOCD64.unpack(record)
            if sig != b"PK\x06\x06" or eocd64_at + 12 + length != records_at:
                raise self.fail("has a malformed zip64 end record")
            short = (count, cd_size, cd_at)
            disk, cd_disk, count_here, count, cd_size, cd_at = fields
            if any(
                s not in (full, ones)
                for s, full, ones in zip(short, fields[3:], (_FULL16, _FULL32, _FULL32), strict=True)
            ):
                raise self.fail("has zip end records that disagree")
            records_at = eocd64_at
        if disk or cd_disk or count_here != count:
            raise self.fail("is a multi-part zip archive, which torch.save never writes")
        if cd_at + cd_size != records_at:
            raise self.fail("has a zip central directory that does not end at its end record (truncated?)")
        return count, cd_at, cd_size

    def fail(self, problem: str) -> CheckpointError:
        return CheckpointError(f"{self.where}: {problem}")

    def _not_zip(self, head: bytes) -> CheckpointError:
        kind = sniff(head + self.handle.read(len(head), min(self.handle.size, 8) - len(head)))
        if kind == "torch":
            return self.fail(
                f"the legacy PyTorch format (not a zip archive), which wsel does not read; {conversion(self.where)}"
            )
        if kind == "gguf":
            return self.fail(refusal(self.where, "gguf") + ", not a PyTorch checkpoint")
        return self.fail("is not a PyTorch zip checkpoint (it does not start as a zip archive)")

    def _entries(self, directory: bytes, count: int, cd_at: int) -> dict[str, _Entry]:
        found: list[tuple[str, bytes, int, int, int]] = []  # name, raw name, bytes in the archive, header, method
        names: set[str] = set()
        at = 0
        for _ in range(count):
            if at + _CENTRAL.size > len(directory) or directory[at : at + 4] != b"PK\x01\x02":
                raise self.fail(f"has a malformed zip central directory (entry {len(found)})")
            fields = _CENTRAL.unpack_from(directory, at)
            flags, method, compressed, size, name_len, extra_len, comment_len, disk, header = (
                fields[3], fields[4], fields[8], fields[9], fields[10], fields[11], fields[12], fields[13], fields[16]
            )  # fmt: skip
            raw_name = directory[at + _CENTRAL.size : at + _CENTRAL.size + name_len]
            extra_at = at + _CENTRAL.size + name_len
            at = extra_at + extra_len + comment_len
            if at > len(directory):
                raise self.fail(f"has a malformed zip central directory (entry {len(found)})")
            size, compressed, header, disk = self._zip64(
                directory[extra_at : extra_at + extra_len], size, compressed, header, disk
            )
            name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
            if flags & 1 or disk:
                raise self.fail(f"has an encrypted or multi-part entry {name!r}, which torch.save never writes")
            if method == 0 and compressed != size:
                raise self.fail(f"entry {name!r} is stored with {compressed} bytes for {size}")
            if name in names:
                raise self.fail(f"holds the entry {name!r} twice")
            names.add(name)
            found.append((name, raw_name, compressed, header, method))  # stored: compressed == size
        if at != len(directory):
            raise self.fail("has a zip central directory longer than its entries")
        entries: dict[str, _Entry] = {}
        ordered = sorted(found, key=lambda f: f[3])
        for i, (name, raw_name, size, header, method) in enumerate(ordered):
            limit = ordered[i + 1][3] if i + 1 < len(ordered) else cd_at
            if header + _LOCAL.size + len(raw_name) + size > limit:
                raise self.fail(f"entry {name!r} overlaps the next one or runs past its data (truncated?)")
            entries[name] = _Entry(name, raw_name, method, size, header, limit)
        return entries

    def _zip64(self, extra: bytes, size: int, compressed: int, header: int, disk: int) -> tuple[int, int, int, int]:
        """Sizes and offset from a zip64 extra field, for those the central record marks as in it."""
        at = 0
        while at < len(extra):
            if at + 4 > len(extra):
                raise self.fail("has a malformed zip extra field")
            tag, length = struct.unpack_from("<HH", extra, at)
            body = extra[at + 4 : at + 4 + length]
            if len(body) != length:
                raise self.fail("has a malformed zip extra field")
            at += 4 + length
            if tag != 1:
                continue
            values = [size == _FULL32, compressed == _FULL32, header == _FULL32]
            wanted = 8 * sum(values) + 4 * (disk == _FULL16)
            if length < wanted:
                raise self.fail("has a zip64 extra field too short for its entry")
            read = iter(struct.unpack_from(f"<{sum(values)}Q", body))
            size = next(read) if values[0] else size
            compressed = next(read) if values[1] else compressed
            header = next(read) if values[2] else header
            disk = struct.unpack_from("<I", body, 8 * sum(values))[0] if disk == _FULL16 else disk
        return size, compressed, header, disk

    def _entry(self, name: str, problem: str) -> _Entry:
        entry = self.entries.get(name)
        if entry is None:
            raise self.fail(f"{problem} (it has no entry {name!r})")
        return entry

    def data_starts(self, entries: Iterable[_Entry]) -> dict[str, int]:
        """Where each entry's data starts, from its local header (all read at once), checked."""
        wanted = sorted(set(entries), key=lambda e: e.header)
        for e in wanted:
            self.handle.prefetch(e.header, _LOCAL.size + len(e.raw_name))
        out = bytearray(sum(_LOCAL.size + len(e.raw_name) for e in wanted))
        self.handle.read_into([(e.header, _LOCAL.size + len(e.raw_name)) for e in wanted], memoryview(out))
        starts: dict[str, int] = {}
        at = 0
        for e in wanted:
            sig, _, flags, method, _, _, _, _, _, name_len, extra_len = _LOCAL.unpack_from(out, at)
            local_name = bytes(out[at + _LOCAL.size : at + _LOCAL.size + len(e.raw_name)])
            at += _LOCAL.size + len(e.raw_name)
            if sig != b"PK\x03\x04" or name_len != len(e.raw_name) or local_name != e.raw_name or method != e.method:
                raise self.fail(f"entry {e.name!r} has a local header that does not match the central directory")
            start = e.header + _LOCAL.size + name_len + extra_len
            if start + e.size > e.limit:
                raise self.fail(f"entry {e.name!r} overlaps the next one or runs past its data (truncated?)")
            starts[e.name] = start
        return starts

    def read_whole(self, entry: _Entry, limit: int) -> bytes:
        if entry.size > limit:
            raise self.fail(f"entry {entry.name!r} is {entry.size} bytes, more than the {limit} wsel reads")
        start = self.starts[entry.name] if entry.name in self.starts else self.data_starts([entry])[entry.name]
        return self.handle.read(start, entry.size)

    def locate(self, tensors: dict[str, unpickle.Tensor], source: Source) -> list[TensorInfo]:
        """Each tensor as a TensorInfo into its storage's entry of `source` (this archive)."""
        entries: dict[str, _Entry] = {}
        for name, t in tensors.items():
            problem = _problem(t)
            if problem is not None:
                raise self.fail(f"tensor {short_repr(name)}: {problem}")
            entry = self.entries.get(f"{self.prefix}/data/{t.storage.key}")
            if entry is None:
                raise self.fail(
                    f"tensor {short_repr(name)}: its storage {short_repr(t.storage.key)} has no entry in the archive"
                )
            nbytes = _storage_bytes(t.storage)
            if entry.size != nbytes:
                raise self.fail(
                    f"tensor {short_repr(name)}: its storage {short_repr(t.storage.key)} is {nbytes} bytes "
                    f"but its entry holds {entry.size}"
                )
            entries[t.storage.key] = entry
        starts = self.data_starts(entries.values())
        infos = []
        for name, t in tensors.items():
            entry = entries[t.storage.key]
            placed = _place(t)
            if isinstance(placed, str):
                raise self.fail(f"tensor {short_repr(name)}: {placed}; save it with .contiguous()")
            first, end, reach, stored = placed
            key, start = short_repr(t.storage.key), starts[entry.name]
            if reach > entry.size:
                raise self.fail(
                    f"tensor {short_repr(name)}: its elements (bytes {first}..{reach}) run past the end of its "
                    f"storage {key} ({entry.size} bytes); the checkpoint is corrupt"
                )
            # A view's stored array may end after its storage (a window of the last columns: the last row's
            # tail), in bytes the window never uses; they must still be bytes of the file.
            if start + end > self.handle.size:
                raise self.fail(
                    f"tensor {short_repr(name)}: the rows it is a window of (bytes {first}..{end} of its storage "
                    f"{key}) run past the end of the file; save it with .contiguous()"
                )
            infos.append(TensorInfo(name, _DTYPES[t.dtype], t.shape, source, start + first, start + end, stored))
        return infos


# torch dtype name -> safetensors dtype, for those wsel reads (a tensor of another is refused by `_problem`)
_DTYPES = {name: dtype for name, dtype in unpickle.TORCH_DTYPES.items() if dtype is not None}


def _esize(torch_dtype: str) -> int:
    return DTYPES[_DTYPES[torch_dtype]].bits // 8


def _storage_bytes(storage: unpickle.Storage) -> int:
    return storage.numel if storage.dtype is None else storage.numel * _esize(storage.dtype)


def _problem(t: unpickle.Tensor) -> str | None:
    """Why a tensor record cannot be read as safetensors bytes, or None."""
    if unpickle.TORCH_DTYPES[t.dtype] is None:
        return f"torch.{t.dtype} has no safetensors dtype wsel reads; convert the tensor or leave it out"
    if t.flags:
        return (
            f"saved as a lazy {'/'.join(t.flags)} view (its bytes are not its values); "
            "save it with .resolve_conj().resolve_neg()"
        )
    return None


def _place(t: unpickle.Tensor) -> tuple[int, int, int, Stored | None] | str:
    """Where a tensor lies in its storage: bytes [first, end) from the storage's start, the end of its last
    element, and how (None: C order; a Stored: a window of a C-order array whose dims are the tensor's,
    reordered). Or why it cannot be read."""
    shape, stride, esize = t.shape, t.stride, _esize(t.dtype)
    first = t.offset * esize
    numel = math.prod(shape)
    if numel == 0:
        return first, first, first, None
    reach = (t.offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True)) + 1) * esize
    dims = [d for d in range(len(shape)) if shape[d] > 1]  # dims of size 1 have any stride
    expected = 1
    for d in reversed(dims):
        if stride[d] != expected:
            break
        expected *= shape[d]
    else:
        return first, first + numel * esize, reach, None
    if any(stride[d] == 0 for d in dims):
        return f"it is expanded (stride {list(stride)} repeats elements)"
    outer_first = sorted(dims, key=lambda d: (-stride[d], d))
    container = {outer_first[0]: shape[outer_first[0]]}
    for outer, inner in zip(outer_first, outer_first[1:], strict=False):
        if stride[outer] < stride[inner] * shape[inner] or stride[outer] % stride[inner]:
            return f"its elements overlap or interleave (shape {list(shape)}, stride {list(stride)})"
        container[inner] = stride[outer] // stride[inner]
    ones = [d for d in range(len(shape)) if shape[d] == 1]  # any stride: placed where their stride says
    innermost = stride[outer_first[-1]]
    unit = []
    if innermost != 1:  # a column: a dim of size 1 stands for the stored row it is the first element of
        if not ones:
            return f"it skips elements (stride {list(stride)}: its innermost dim steps by {innermost})"
        unit = [ones.pop()]
        container[unit[0]] = innermost
    stored_dims = sorted(dims + ones, key=lambda d: (-stride[d], d)) + unit
    stored_shape = tuple(container.get(d, 1) for d in stored_dims)
    order = tuple(stored_dims.index(d) for d in range(len(shape)))
    return first, first + math.prod(stored_shape) * esize, reach, Stored(stored_shape, order)


def _choose(obj: object, key: str | None, where: str) -> tuple[dict[str, unpickle.Tensor], str | None]:
    """The state dict to read: `obj` when it is a dict holding tensors (and no key is given), else the value of
    `key`, or of the one top-level key whose value is such a dict."""

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{where}: {problem}")

    if not isinstance(obj, dict):
        raise fail(f"holds {_kind(obj)}, not a state dict (a dict of tensors)")
    if key is None and _holds_tensors(obj):
        return _tensors(obj, fail), None
    nested = [k for k, v in obj.items() if type(k) is str and _holds_tensors(v)]
    listed = ", ".join(_quote(k) for k in nested[:20]) + (", ..." if len(nested) > 20 else "")
    choose = "choose one with --teacher-key NAME"
    if key is not None:
        if key in obj and _holds_tensors(obj[key]):
            return _tensors(obj[key], fail), key
        if _holds_tensors(obj) and not nested:
            raise fail(
                f"is itself a state dict (its tensors are at the top level), with no {_quote(key)}; "
                "leave out --teacher-key"
            )
        found = f"holds {_kind(obj[key])}, not a state dict" if key in obj else "is not a key of the checkpoint"
        there = f"its state dicts are under {listed}; {choose}" if nested else "it holds no state dict"
        raise fail(f"{_quote(key)} {found}; {there}")
    if len(nested) == 1:
        return _tensors(obj[nested[0]], fail), nested[0]
    if nested:
        raise fail(f"holds several state dicts ({listed}); {choose}")
    keys = [k for k in obj if type(k) is str]
    shown = ", ".join(_quote(k) for k in keys[:20]) + (", ..." if len(keys) > 20 else "")
    raise fail(
        f"holds no tensors at its top level or under a top-level key ({'keys: ' + shown if keys else 'no keys'})"
    )


def _holds_tensors(value: object) -> bool:
    return isinstance(value, dict) and any(isinstance(v, unpickle.Tensor) for v in value.values())


def _tensors(state: dict[Any, Any], fail: Any) -> dict[str, unpickle.Tensor]:
    """The tensors of a state dict by name (other values, such as numbers beside them, are left out)."""
    tensors = {}
    for name, value in state.items():
        if not isinstance(value, unpickle.Tensor):
            continue
        if type(name) is not str:
            raise fail(f"holds a tensor under the key {short_repr(name)}, which is not a name")
        problem = name_problem(name)
        if problem is not None:
            raise fail(problem)
        tensors[name] = value
        if len(tensors) > MAX_TENSORS:
            raise fail(f"holds more than {MAX_TENSORS} tensors, wsel's limit")
    return tensors


def _kind(value: object) -> str:
    if isinstance(value, unpickle.Tensor):
        return "a single tensor"
    if isinstance(value, unpickle.Inert):
        return "an object"
    if value is None:
        return "None"
    name = "dict" if isinstance(value, dict) else type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # and lone surrogates, which no terminal prints


def _quote(text: str) -> str:
    """A key from the file, in double quotes, one line (control characters escaped), at most 200 characters."""
    quoted = json.dumps(text if len(text) <= 200 else text[:200] + "...", ensure_ascii=False)
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)
