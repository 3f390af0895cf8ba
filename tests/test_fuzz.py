"""Fuzzing the header parser and the whole `init` path with hypothesis.

1. Any bytes, mutated valid files and valid files with hostile JSON tokens spliced in: `read_header` either
   returns a header that tiles the file exactly (and that the reference implementation, safetensors, opens with
   the same tensors) or raises CheckpointError naming the file. Never another exception.
2. Random small teachers (every byte-sized and packed dtype, random shapes, layer-indexed names, one file or
   shards + index, any storage order) and random student manifests (shapes within the teacher's or not, missing
   tensors, deeper students, exclusions, --dtype) through `wsel.build_plan` + `wsel.write_student`: either a
   WselError, exactly when the student is invalid, or output whose every tensor equals the paper's reference
   selection (tests/reference.py) applied to the teacher's raw elements, in the teacher's storage order.

CI runs a bounded, derandomized number of examples; `make fuzz` (WSEL_FUZZ_EXAMPLES=N) runs N random ones.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from reference import uniform_element_selection
from safetensors import safe_open

import wsel
from wsel.checkpoint.dtypes import DTYPES, byte_length, element_size
from wsel.checkpoint.header import read_header
from wsel.errors import CheckpointError, WselError

EXAMPLES = int(os.environ.get("WSEL_FUZZ_EXAMPLES", "100"))
LONG_RUN = "WSEL_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG_RUN,  # CI: the same examples every run; `make fuzz`: new ones each time
    database=None if not LONG_RUN else settings.default.database,
    # CI: no shrinking, so a failure costs seconds, not minutes (the failing example is printed all the same)
    phases=tuple(Phase) if LONG_RUN else (Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)

ALL_DTYPES = sorted(DTYPES)
BYTE_DTYPES = [d for d in ALL_DTYPES if element_size(d) is not None]
PACKED_DTYPES = [d for d in ALL_DTYPES if element_size(d) is None]
INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}  # raw elements, any dtype
CASTS = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def counter() -> Iterator[list[int]]:
    yield [0]


def fresh_dir(scratch: Path, counter: list[int]) -> Path:
    counter[0] += 1
    folder = scratch / f"ex{counter[0]}"
    folder.mkdir()
    return folder


# ============================================================================ 1. the header parser


@dataclass
class FileSpec:
    """A valid safetensors file: tensors (name, dtype, shape) in storage order, header key order, metadata."""

    tensors: list[tuple[str, str, tuple[int, ...]]]
    key_order: list[int]
    metadata: dict[str, str] | None
    padding: int
    ensure_ascii: bool
    seed: int

    def header_text(self) -> str:
        offsets, position = {}, 0
        for name, dtype, shape in self.tensors:
            n = byte_length(dtype, math.prod(shape))
            offsets[name] = (position, position + n)
            position += n
        doc: dict[str, Any] = {}
        if self.metadata is not None:
            doc["__metadata__"] = self.metadata
        for i in self.key_order:
            name, dtype, shape = self.tensors[i]
            doc[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets[name])}
        return json.dumps(doc, ensure_ascii=self.ensure_ascii) + " " * self.padding

    def data(self) -> bytes:
        size = sum(byte_length(d, math.prod(s)) for _, d, s in self.tensors)
        return random.Random(self.seed).randbytes(size)

    def blob(self) -> bytes:
        header = self.header_text().encode("utf-8")
        return struct.pack("<Q", len(header)) + header + self.data()


names = st.text(st.characters(exclude_categories=("Cs",)), min_size=0, max_size=10).filter(
    lambda s: s != "__metadata__"
)


def whole_bytes(dtype: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A packed (4/6-bit) tensor must fill whole bytes, or the reference implementation refuses the file:
    widen its shape by a trailing dim that makes it so."""
    bits = DTYPES[dtype].bits
    if math.prod(shape) * bits % 8:
        return (*shape, 8 // math.gcd(bits, 8))
    return shape


@st.composite
def file_specs(draw: st.DrawFn) -> FileSpec:
    tensor_names = draw(st.lists(names, max_size=6, unique=True))
    tensors = []
    for n in tensor_names:
        dtype = draw(st.sampled_from(ALL_DTYPES))
        tensors.append((n, dtype, whole_bytes(dtype, tuple(draw(st.lists(st.integers(0, 6), max_size=3))))))
    order = draw(st.permutations(range(len(tensors))))
    metadata = draw(st.none() | st.dictionaries(names, st.text(max_size=8), max_size=3))
    return FileSpec(
        tensors, list(order), metadata, draw(st.integers(0, 9)), draw(st.booleans()), draw(st.integers(0, 2**32))
    )


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """A valid file with 1-4 byte-level mutations: flips, overwrites, insertions, deletions, cuts, a new length."""
    blob = bytearray(draw(file_specs()).blob())
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append", "length"]))
        pos = draw(st.integers(0, max(0, len(blob) - 1)))
        if kind == "flip" and blob:
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and blob:
            blob[pos] = draw(st.sampled_from(b'{}[]",:0129-. \x00\xff\xc3e'))
        elif kind == "insert":
            blob[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del blob[pos : pos + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del blob[pos:]
        elif kind == "append":
            blob += draw(st.binary(min_size=1, max_size=8))
        elif kind == "length" and len(blob) >= 8:
            n = draw(st.integers(0, len(blob) + 16) | st.integers(0, 2**64 - 1))
            blob[:8] = struct.pack("<Q", n)
    return bytes(blob)


# JSON tokens crafted against parsers: numbers too large for u64 or for Python's int/str limits, floats,
# booleans, nulls, NaN/Infinity (Python accepts them), lone surrogates, deep nesting.
HOSTILE_TOKENS = [
    "-1",
    "0",
    "-0",
    "1.0",
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "true",
    "null",
    '"1"',
    "[]",
    "{}",
    str(2**32),
    str(2**53 + 1),
    str(2**63),
    str(2**64),
    str(2**64 + 1),
    str(2**100),
    "9" * 4000,
    "9" * 5000,
    '"\\ud800"',
    '"\\udfff\\ud800"',
    "[" * 5000 + "]" * 5000,
]


@st.composite
def spliced_files(draw: st.DrawFn) -> bytes:
    """A valid file whose header has one or two JSON values (numbers, strings) replaced by hostile tokens,
    with the length prefix fixed, so the parser's validation rules (not the length check) see them."""
    spec = draw(file_specs())
    text = spec.header_text()
    for _ in range(draw(st.integers(1, 2))):
        spans = [m.span() for m in re.finditer(r'-?\d+|"(?:[^"\\]|\\.)*"', text)]
        if not spans:
            break
        start, end = draw(st.sampled_from(spans))
        token = draw(st.sampled_from(HOSTILE_TOKENS))
        if text[start] == '"' and text[end:].lstrip().startswith(":"):
            token = token if token.startswith('"') else f'"{token}"'  # keys stay strings
        text = text[:start] + token + text[end:]
    header = text.encode("utf-8", "surrogatepass")
    data = spec.data()
    extra = draw(st.sampled_from([b"", b"\0" * 4, data[: len(data) // 2]]))
    return struct.pack("<Q", len(header)) + header + (data if not extra else extra)


def check_header(path: Path, blob: bytes) -> None:
    """read_header returns a header that tiles the file, or raises CheckpointError naming the file."""
    path.write_bytes(blob)
    try:
        header = read_header(path)
    except CheckpointError as e:
        message = str(e)
        assert message.startswith(f"{path}: "), message
        assert "\n" not in message
        return
    (header_len,) = struct.unpack("<Q", blob[:8])
    position = 8 + header_len
    assert header.file_size == len(blob)
    assert header.header_bytes == blob[8:position]
    for t in header.tensors:
        assert t.dtype in DTYPES
        assert all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in t.shape)
        assert t.start == position, "tensors must tile the data from its start, in file order"
        assert t.nbytes == byte_length(t.dtype, math.prod(t.shape))
        position = t.end
    assert position == len(blob), "nothing may follow the last tensor"
    assert len({t.name for t in header.tensors}) == len(header.tensors)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in header.metadata.items())
    # The names survive a round trip through UTF-8 (what the writer does with them).
    for t in header.tensors:
        t.name.encode("utf-8")
    # What wsel accepts, the reference implementation accepts too, with the same tensors.
    with safe_open(str(path), "pt") as f:
        assert sorted(f.keys()) == sorted(t.name for t in header.tensors)
        assert (f.metadata() or {}) == header.metadata
        for t in header.tensors:
            view = f.get_slice(t.name)
            assert (view.get_dtype(), tuple(view.get_shape())) == (t.dtype, t.shape)


@FUZZ
@given(blob=st.binary(max_size=300))
def test_random_bytes(scratch: Path, blob: bytes) -> None:
    check_header(scratch / "random.safetensors", blob)


@FUZZ
@given(blob=st.binary(max_size=64).map(lambda b: struct.pack("<Q", len(b)) + b))
def test_random_header_bytes_with_a_correct_length(scratch: Path, blob: bytes) -> None:
    check_header(scratch / "random_header.safetensors", blob)


@FUZZ
@given(spec=file_specs())
def test_valid_files_parse_exactly(scratch: Path, spec: FileSpec) -> None:
    path = scratch / "valid.safetensors"
    blob = spec.blob()
    check_header(path, blob)
    header = read_header(path)  # a valid file is never refused
    assert [(t.name, t.dtype, t.shape) for t in header.tensors if t.nbytes] == [
        x for x in spec.tensors if byte_length(x[1], math.prod(x[2]))
    ]
    assert header.metadata == (spec.metadata or {})


@FUZZ
@given(blob=mutated_files())
def test_mutated_files(scratch: Path, blob: bytes) -> None:
    check_header(scratch / "mutated.safetensors", blob)


@FUZZ
@given(blob=spliced_files())
def test_hostile_json_tokens(scratch: Path, blob: bytes) -> None:
    check_header(scratch / "spliced.safetensors", blob)


# PyTorch archives: a real torch.save file (views, a transposed tensor, an int tensor, a nested dict), mutated
# anywhere (zip records, data.pkl, tensor bytes), or with only its data.pkl mutated and the archive kept sound.
def _torch_archive(scratch: Path) -> bytes:
    path = scratch / "archive.pt"
    if not path.exists():
        base = torch.arange(48, dtype=torch.float32).reshape(6, 8)
        state = {"a": base[:3], "b": base[3:], "t": base.t(), "i": torch.arange(5), "h": base.half()[:, 2:5]}
        torch.save({"model": state, "epoch": 3}, path)
    return path.read_bytes()


def _mutated(data: st.DataObject, blob: bytes) -> bytes:
    """`blob` with 1-4 byte-level mutations: flips, overwrites, insertions, deletions, a cut."""
    mutated = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, max(0, len(mutated) - 1)))
        kind = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip" and mutated:
            mutated[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and mutated:
            mutated[pos] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del mutated[pos : pos + data.draw(st.integers(1, 8))]
        elif kind == "truncate":
            del mutated[max(1, pos) :]
    return bytes(mutated)


def check_torch(path: Path, blob: bytes) -> None:
    """A PyTorch archive is read into tensors that lie inside the file, or refused naming the file."""
    from wsel.checkpoint.formats import read_file
    from wsel.sources.local import LocalFile

    path.write_bytes(blob)
    try:
        header = read_file(LocalFile(path))
    except CheckpointError as e:
        message = str(e)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        return
    assert header.format == "pytorch"
    assert all(0 <= t.start <= t.end <= len(blob) for t in header.tensors)


@FUZZ
@given(data=st.data())
def test_mutated_torch_archives(scratch: Path, data: st.DataObject) -> None:
    check_torch(scratch / "mutated.pt", _mutated(data, _torch_archive(scratch)))


@FUZZ
@given(data=st.data())
def test_torch_archives_with_a_mutated_pickle(scratch: Path, data: st.DataObject) -> None:
    import io
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(_torch_archive(scratch)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for info in source.infolist():
            content = source.read(info)
            if info.filename.endswith("/data.pkl"):
                content = _mutated(data, content)
            archive.writestr(info.filename, content)
    check_torch(scratch / "pickle.pt", out.getvalue())


# ============================================================================ 2. the whole init path


@dataclass
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    data: bytes = b""


@dataclass
class Case:
    teacher: list[Tensor]  # storage order
    shards: int
    key_seed: int
    student: dict[str, tuple[int, ...]]
    exclude: list[str]
    dtype: str | None
    output: str  # "file" or "folder"
    max_shard_size: int
    notes: list[str] = field(default_factory=list)


GROUPS = ["layers", "model.layers", "h", "blocks", "encoder.layer"]
ROLES = ["w1", "b1", "ln", "qkv", "ids", "scale"]
GLOBALS = ["tok.emb", "final.ln", "out.proj", "x"]


def dtype_strategy() -> st.SearchStrategy[str]:
    # floats most often (what selection is for), every other dtype too
    return st.sampled_from(["F32", "F16", "BF16"]) | st.sampled_from(ALL_DTYPES)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    group = draw(st.sampled_from(GROUPS))
    n_layers = draw(st.integers(0, 4))
    roles = draw(st.lists(st.sampled_from(ROLES), min_size=1 if n_layers else 0, max_size=3, unique=True))
    globals_ = draw(
        st.lists(st.sampled_from(GLOBALS), min_size=0 if roles and n_layers else 1, max_size=3, unique=True)
    )
    shape_st = st.lists(st.integers(0, 9), max_size=3).map(tuple)
    teacher: list[Tensor] = []
    for role in roles:
        dtype, shape = draw(dtype_strategy()), draw(shape_st)
        for i in range(n_layers):
            if draw(st.integers(0, 9)) == 0:  # now and then a layer whose tensor differs from the others
                dtype, shape = draw(dtype_strategy()), draw(shape_st)
            teacher.append(Tensor(f"{group}.{i}.{role}", dtype, whole_bytes(dtype, shape)))
    for name in globals_:
        dtype = draw(dtype_strategy())
        teacher.append(Tensor(name, dtype, whole_bytes(dtype, draw(shape_st))))
    teacher = [teacher[i] for i in draw(st.permutations(range(len(teacher))))]
    seed = draw(st.integers(0, 2**32))
    rng = random.Random(seed)
    for t in teacher:
        t.data = rng.randbytes(byte_length(t.dtype, math.prod(t.shape)))

    # The student: some layers (usually the first ones), some roles, some globals, shapes within the teacher's.
    # One case in four is then broken in one way: a deeper student, a grown or extra dim, a subsampled integer
    # tensor, a tensor the teacher lacks, or everything excluded.
    broken = draw(st.sampled_from([None, None, None, "deeper", "grow", "rank", "int", "missing", "exclude-all"]))
    by_name = {t.name: t for t in teacher}
    student: dict[str, tuple[int, ...]] = {}
    if n_layers:
        kind = "deeper" if broken == "deeper" else draw(st.sampled_from(["first", "first", "subset", "shifted"]))
        if kind == "first":
            layers = list(range(draw(st.integers(1, n_layers))))
        elif kind == "subset":
            layers = sorted(draw(st.sets(st.integers(0, n_layers - 1), min_size=1)))
        elif kind == "shifted":  # indices the teacher lacks: mapped in order to the teacher's first layers
            layers = [n_layers + i for i in range(draw(st.integers(1, n_layers)))]
        else:
            layers = list(range(n_layers + 1))
        for role in draw(st.lists(st.sampled_from(roles), min_size=1, unique=True)):
            for i in layers:
                student[f"{group}.{i}.{role}"] = ()  # shape below
    if globals_:
        for name in draw(st.lists(st.sampled_from(globals_), unique=True, min_size=0 if student else 1)):
            student[name] = ()
    if broken == "missing":
        student["not.in.teacher"] = (1,)
    layer_map = _layer_map(group, list(student), [t.name for t in teacher])
    for name in list(student):
        source = by_name.get(layer_map.get(name, name))
        if source is None:
            continue
        if DTYPES[source.dtype].kind in ("int", "bool") or element_size(source.dtype) is None:
            student[name] = tuple(d if draw(st.integers(0, 5)) else 0 for d in source.shape)  # same, or empty
        elif draw(st.integers(0, 4)) == 0:
            student[name] = source.shape
        else:
            student[name] = tuple(draw(st.integers(min(1, d), d)) for d in source.shape)
    resolved = [n for n in student if layer_map.get(n, n) in by_name]
    if broken in ("grow", "rank", "int") and resolved:
        name = draw(st.sampled_from(resolved))
        source = by_name[layer_map.get(name, name)]
        if broken == "grow" and source.shape:
            dim = draw(st.integers(0, len(source.shape) - 1))
            student[name] = tuple(d + (i == dim) for i, d in enumerate(source.shape))
        elif broken == "int" and any(d > 1 for d in source.shape):
            source.dtype = draw(st.sampled_from(["I64", "I32", "U8", "BOOL"]))
            source.data = rng.randbytes(byte_length(source.dtype, math.prod(source.shape)))
            student[name] = tuple(d // 2 if d > 1 else d for d in source.shape)
        else:
            student[name] = (*source.shape, 1)
    if broken == "exclude-all":
        exclude = sorted(student)
    else:
        exclude = draw(st.lists(st.sampled_from(sorted(student)), unique=True, max_size=min(1, len(student) - 1)))
    return Case(
        teacher=teacher,
        shards=draw(st.integers(1, min(3, max(1, len(teacher))))),
        key_seed=draw(st.integers(0, 2**16)),
        student=student,
        exclude=exclude,
        dtype=draw(st.sampled_from([None, None, None, "F32", "F16", "BF16"])),
        output=draw(st.sampled_from(["file", "folder"])),
        max_shard_size=draw(st.sampled_from([1, 16, 64, 10**9])),
    )


LAYER = re.compile(r"(?:^|(?<=\.))(?P<group>layers|layer|h|blocks)\.(?P<index>\d+)\.")


def _layer_map(group: str, student: list[str], teacher: list[str]) -> dict[str, str]:
    """Student name → teacher name: student layer i reads teacher layer i (the paper's first-N); a student whose
    indices the teacher lacks reads the teacher's layers in order (wsel.layers.first_n). Empty when deeper."""

    def index(name: str) -> int | None:
        m = LAYER.search(name)
        return int(m.group("index")) if m and name[: m.start("index")] == f"{group}." else None

    s_idx = sorted({i for n in student if (i := index(n)) is not None})
    t_idx = sorted({i for n in teacher if (i := index(n)) is not None})
    if len(s_idx) > len(t_idx):
        return {}
    mapping = {i: i for i in s_idx} if set(s_idx) <= set(t_idx) else dict(zip(s_idx, t_idx, strict=False))
    out = {}
    for n in student:
        i = index(n)
        if i is not None and i in mapping:
            out[n] = f"{group}.{mapping[i]}.{n[len(group) + 1 + len(str(i)) + 1 :]}"
    return out


def write_teacher(folder: Path, case: Case) -> Path:
    """The teacher as one file or `case.shards` HF-named shards + index; header keys in a shuffled order."""
    folder.mkdir()
    rng = random.Random(case.key_seed)
    per = -(-len(case.teacher) // case.shards)
    groups = [case.teacher[i * per : (i + 1) * per] for i in range(case.shards)]
    groups = [g for g in groups if g]
    weight_map = {}
    for k, tensors in enumerate(groups):
        name = "model.safetensors" if len(groups) == 1 else f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        doc: dict[str, Any] = {}
        position = 0
        entries = []
        for t in tensors:
            entries.append(
                (t.name, {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [position, position + len(t.data)]})
            )
            position += len(t.data)
        rng.shuffle(entries)
        doc.update(entries)
        if rng.random() < 0.5:
            doc["__metadata__"] = {"format": "pt"}
        header = json.dumps(doc).encode()
        (folder / name).write_bytes(struct.pack("<Q", len(header)) + header + b"".join(t.data for t in tensors))
        weight_map.update({t.name: name for t in tensors})
    if len(groups) > 1:
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def reference_bytes(source: Tensor, shape: tuple[int, ...]) -> bytes:
    """The paper's selection (tests/reference.py) applied to the teacher's raw elements."""
    if shape == source.shape:
        return source.data
    if 0 in shape:
        return b""
    esize = element_size(source.dtype)
    assert esize is not None
    elements = torch.frombuffer(bytearray(source.data), dtype=INT_VIEW[esize]).reshape(source.shape)
    return uniform_element_selection(elements, shape).contiguous().view(torch.uint8).numpy().tobytes()


def cast_bytes(data: bytes, source: str, target: str) -> bytes:
    if not data:
        return b""
    values = torch.frombuffer(bytearray(data), dtype=getattr(torch, DTYPES[source].torch_name))
    return values.to(CASTS[target]).view(torch.uint8).numpy().tobytes()


@dataclass
class Expected:
    valid: bool  # wsel must succeed (else it must raise a WselError)
    tensors: dict[str, tuple[str, tuple[int, ...], bytes | None]]  # name → dtype, shape, bytes (None: unknown)
    why: str = ""


def expectation(case: Case) -> Expected:
    by_name = {t.name: t for t in case.teacher}
    kept = [n for n in case.student if n not in case.exclude]
    if not kept:
        return Expected(False, {}, "every student tensor is excluded")
    group = next((g for g in GROUPS if any(t.name.startswith(f"{g}.") for t in case.teacher)), "layers")
    layer_map = _layer_map(group, kept, [t.name for t in case.teacher])
    if any(LAYER.search(n) for n in kept) and not layer_map:
        return Expected(False, {}, "deeper student")
    out: dict[str, tuple[str, tuple[int, ...], bytes | None]] = {}
    for name in kept:
        source = by_name.get(layer_map.get(name, name))
        shape = case.student[name]
        if source is None:
            return Expected(False, {}, f"{name}: no counterpart")
        if len(shape) != len(source.shape) or any(s > t for s, t in zip(shape, source.shape, strict=False)):
            return Expected(False, {}, f"{name}: shape {shape} vs {source.shape}")
        kind = DTYPES[source.dtype].kind
        if kind in ("int", "bool") and any(s not in (t, 0) for s, t in zip(shape, source.shape, strict=True)):
            return Expected(False, {}, f"{name}: {source.dtype} subsampled")
        packed = element_size(source.dtype) is None
        if packed and shape != source.shape:
            return Expected(False, {}, f"{name}: packed {source.dtype} selected")
        data = reference_bytes(source, shape) if not packed else source.data
        dtype = source.dtype
        if case.dtype is not None and kind == "float" and source.dtype != case.dtype:
            if packed:  # casting a packed dtype: wsel may refuse it or keep the bytes; no reference to compare
                out[name] = ("?", shape, None)
                continue
            dtype, data = case.dtype, cast_bytes(data, source.dtype, case.dtype)
        out[name] = (dtype, shape, data)
    return Expected(True, out)


def read_output(target: Path) -> tuple[dict[str, tuple[str, tuple[int, ...], bytes]], list[list[str]]]:
    """Every tensor of the written student, and the tensor order of each file (independent of wsel's reader)."""
    files = [target] if target.is_file() else sorted(target.glob("*.safetensors"))
    index = target / "model.safetensors.index.json" if target.is_dir() else None
    tensors: dict[str, tuple[str, tuple[int, ...], bytes]] = {}
    orders = []
    for f in files:
        blob = f.read_bytes()
        (n,) = struct.unpack("<Q", blob[:8])
        doc = json.loads(blob[8 : 8 + n])
        metadata = doc.pop("__metadata__", {})
        assert metadata.get("format") == "pt"
        assert n % 8 == 0, "header padded to 8 bytes"
        orders.append(list(doc))
        position = 0
        for name, e in doc.items():
            start, end = e["data_offsets"]
            assert start == position
            position = end
            tensors[name] = (e["dtype"], tuple(e["shape"]), blob[8 + n + start : 8 + n + end])
        assert 8 + n + position == len(blob)
        with safe_open(str(f), "pt") as opened:  # the reference implementation reads it
            assert sorted(opened.keys()) == sorted(doc)
    if index is not None and index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        assert {k: v for k, v in weight_map.items()} == {
            name: f.name for f, order in zip(files, orders, strict=True) for name in order
        }
    else:
        assert len(files) == 1
    return tensors, orders


@FUZZ
@given(case=cases())
def test_init_gives_a_clean_error_or_the_reference_selection(scratch: Path, counter: list[int], case: Case) -> None:
    root = fresh_dir(scratch, counter)
    try:
        teacher = write_teacher(root / "teacher", case)
        manifest = root / "student.json"
        manifest.write_text(json.dumps({k: list(v) for k, v in case.student.items()}))
        target = root / ("out.safetensors" if case.output == "file" else "out")
        expected = expectation(case)
        note(f"expected: valid={expected.valid} {expected.why}")
        event("valid student" if expected.valid else f"invalid: {expected.why.split(': ')[-1].split(' ')[0]}")
        options = wsel.PlanOptions(exclude=tuple(case.exclude), dtype=case.dtype)
        try:
            plan = wsel.build_plan(teacher, manifest, options=options)
            wsel.write_student(plan, output_arg(target, case), max_shard_size=case.max_shard_size)
        except WselError as e:
            note(f"WselError: {e}")
            assert "\n" not in str(e)
            assert not expected.valid or any(v[2] is None for v in expected.tensors.values()), (
                f"a valid student was refused: {e}"
            )
            assert not target.exists() or (target.is_dir() and not any(target.iterdir())), "a failed run left output"
            return
        assert expected.valid, f"an invalid student was accepted ({expected.why})"
        written, orders = read_output(target)
        event(f"written: {len(orders)} file(s), {len(written)} tensor(s)")
        event(
            "some tensor shrunk"
            if any(v[1] != by_source_shape(case, plan, k) for k, v in expected.tensors.items())
            else "copies only"
        )
        assert sorted(written) == sorted(expected.tensors)
        for name, (dtype, shape, data) in expected.tensors.items():
            got_dtype, got_shape, got_data = written[name]
            assert got_shape == shape, name
            if data is None:  # a packed dtype asked to be cast: its bytes kept, or cast to the right size
                source = {t.name: t for t in case.teacher}[plan_source(plan, name)]
                if got_dtype == source.dtype:
                    assert got_data == source.data, name
                else:
                    assert got_dtype == case.dtype, name
                    assert len(got_data) == byte_length(got_dtype, math.prod(shape)), name
                continue
            assert got_dtype == dtype, name
            assert got_data == data, name
        # Output order: the teacher's storage order (file, then offset), across the output files ...
        position = teacher_positions(teacher)
        sources = [position[plan_source(plan, n)] for order in orders for n in order]
        assert sources == sorted(sources)
        assert not [p for p in root.rglob("*.wsel-partial")]
        # ... fixed by the teacher alone: the student listing its tensors in another order changes no byte
        # (ties between empty tensors at one offset included).
        manifest.write_text(json.dumps({k: list(v) for k, v in reversed(list(case.student.items()))}))
        again = root / ("again.safetensors" if case.output == "file" else "again")
        plan = wsel.build_plan(teacher, manifest, options=options)
        wsel.write_student(plan, output_arg(again, case), max_shard_size=case.max_shard_size)
        assert file_bytes(again) == file_bytes(target), "output bytes depend on the student's tensor order"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def output_arg(target: Path, case: Case) -> str:
    """A folder output is named with a trailing slash (then always a folder, even as `out.safetensors/`)."""
    return f"{target}/" if case.output == "folder" else str(target)


def plan_source(plan: Any, name: str) -> str:
    [tp] = [t for t in plan.tensors if t.name == name]
    return tp.source.name


def teacher_positions(folder: Path) -> dict[str, tuple[int, int]]:
    """Where each teacher tensor is stored: (file in shard order, byte offset)."""
    from wsel.checkpoint.index import open_checkpoint

    index = open_checkpoint(folder)
    return {t.name: (index.files.index(t.file), t.start) for t in index.tensors.values()}


def by_source_shape(case: Case, plan: Any, name: str) -> tuple[int, ...]:
    return {t.name: t.shape for t in case.teacher}[plan_source(plan, name)]


def file_bytes(target: Path) -> dict[str, bytes]:
    if target.is_file():
        return {"": target.read_bytes()}
    return {p.name: p.read_bytes() for p in sorted(target.iterdir())}
