"""Bytes are bytes: every whole-byte dtype goes through SafetensorsWriter and TensorReader bit-exactly,
copied or selected, in any block size; and our files are plain safetensors files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import safetensors
import torch
from safetensors.torch import load_file, save_file

from wsel.checkpoint.dtypes import DTYPES, element_size
from wsel.checkpoint.header import TensorInfo, read_header
from wsel.checkpoint.reader import DEFAULT_BLOCK_BYTES, MIN_SKIP_ROW_BYTES, TensorReader
from wsel.checkpoint.writer import OutputTensor, SafetensorsWriter, encode_header
from wsel.select import Selection, from_indices, identity, uniform

WHOLE_BYTE_DTYPES = [d for d, info in DTYPES.items() if info.bits % 8 == 0]
# safetensors 0.8 has no torch mapping for F8_E8M0; every other whole-byte dtype loads in torch.
TORCH_LOADABLE = [d for d in WHOLE_BYTE_DTYPES if d != "F8_E8M0"]


def test_whole_byte_dtypes_are_the_expected_set() -> None:
    assert WHOLE_BYTE_DTYPES == [
        "BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64",
        "F8_E5M2", "F8_E4M3", "F8_E5M2FNUZ", "F8_E4M3FNUZ", "F8_E8M0",
        "F16", "BF16", "F32", "F64", "C64",
    ]  # fmt: skip


def random_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8).tobytes()


def write_file(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]], metadata: dict[str, str]) -> Path:
    """Write name → (dtype, shape, raw bytes) with our writer, each tensor in 3 uneven chunks."""
    with SafetensorsWriter(path, [OutputTensor(n, d, s) for n, (d, s, _) in tensors.items()], metadata) as w:
        for name, (_, _, data) in tensors.items():
            cut = len(data) // 3
            w.write(name, iter([data[:cut], b"", data[cut : 2 * cut + 1], data[2 * cut + 1 :]]))
        w.finish()
    w.commit()
    return path


def tensor_of(info_list: Sequence[TensorInfo], name: str) -> TensorInfo:
    return next(t for t in info_list if t.name == name)


def expected_selection(data: bytes, shape: tuple[int, ...], esize: int, sels: Sequence[Selection]) -> bytes:
    """numpy's answer: the raw bytes viewed as uint8[..., itemsize], indexed on every axis."""
    a = np.frombuffer(data, dtype=np.uint8).reshape((*shape, esize))
    for dim, s in enumerate(sels):
        a = np.take(a, s.indices(), axis=dim)
    return np.ascontiguousarray(a).tobytes()


def select(info: TensorInfo, sels: Sequence[Selection], block_bytes: int = DEFAULT_BLOCK_BYTES) -> tuple[bytes, int]:
    with TensorReader(block_bytes) as reader:
        out = b"".join(reader.iter_selected(info, sels))
        return out, reader.bytes_read


def as_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


# --- copy: identity selections -----------------------------------------------------------------

COPY_SHAPES = {"scalar": (), "empty": (0, 3), "vector": (5,), "cube": (3, 4, 2)}


@pytest.mark.parametrize("dtype", WHOLE_BYTE_DTYPES)
def test_copy_round_trips_bit_exactly(tmp_path: Path, dtype: str) -> None:
    esize = element_size(dtype)
    assert esize == DTYPES[dtype].bits // 8
    tensors = {
        n: (dtype, s, random_bytes(math.prod(s) * esize, seed=i)) for i, (n, s) in enumerate(COPY_SHAPES.items())
    }
    path = write_file(tmp_path / "t.safetensors", tensors, {"format": "pt"})

    header = read_header(path)
    assert [t.name for t in header.tensors] == list(COPY_SHAPES)  # written in the order given
    assert header.metadata == {"format": "pt"}
    blob = path.read_bytes()
    assert blob[header.tensors[0].start :] == b"".join(d for _, _, d in tensors.values())
    for info in header.tensors:
        _, shape, data = tensors[info.name]
        assert (info.dtype, info.shape) == (dtype, shape)
        got, read = select(info, [identity(n) for n in shape])
        assert got == data
        assert read == len(data)


# --- selection: strided and explicit ----------------------------------------------------------

TEACHER = (9, 7, 5)
SELECTIONS = {
    # explicit rows, a stride from the paper's rule (7 → 3 is linspace [0, 3, 6]), a stride from index lists
    "all-axes": [from_indices(9, [0, 1, 4, 8]), uniform(7, 3), from_indices(5, [1, 3])],
    # rows copied, inner axes selected
    "inner-only": [identity(9), uniform(7, 4), identity(5)],
    # rows selected, inner axes copied
    "rows-only": [uniform(9, 4), identity(7), identity(5)],
    # the last axis only, explicit
    "last-axis": [identity(9), identity(7), from_indices(5, [0, 1, 4])],
}


@pytest.mark.parametrize("dtype", WHOLE_BYTE_DTYPES)
@pytest.mark.parametrize("which", list(SELECTIONS))
def test_selection_matches_numpy_indexing(tmp_path: Path, dtype: str, which: str) -> None:
    sels = SELECTIONS[which]
    assert [s.teacher_size for s in sels] == list(TEACHER)
    esize = element_size(dtype)
    assert esize is not None
    data = random_bytes(math.prod(TEACHER) * esize, seed=7)
    teacher = write_file(tmp_path / "teacher.safetensors", {"w": (dtype, TEACHER, data)}, {})
    info = tensor_of(read_header(teacher).tensors, "w")
    expected = expected_selection(data, TEACHER, esize, sels)
    student_shape = tuple(s.size for s in sels)
    assert len(expected) == math.prod(student_shape) * esize

    for block_bytes in (DEFAULT_BLOCK_BYTES, 64, esize):  # one big block, row blocks + recursion, one element
        got, _ = select(info, sels, block_bytes)
        assert got == expected, block_bytes

    # ... and the selected bytes go through the writer into a student file unchanged.
    with TensorReader() as reader:
        with SafetensorsWriter(tmp_path / "student.safetensors", [OutputTensor("w", dtype, student_shape)], {}) as w:
            w.write("w", reader.iter_selected(info, sels))
            w.finish()
        w.commit()
    [out] = read_header(tmp_path / "student.safetensors").tensors
    assert (out.dtype, out.shape) == (dtype, student_shape)
    assert (tmp_path / "student.safetensors").read_bytes()[out.start : out.end] == expected


def test_selection_of_a_one_dimensional_tensor(tmp_path: Path) -> None:
    data = random_bytes(10 * 8, seed=1)
    info = tensor_of(read_header(write_file(tmp_path / "t.safetensors", {"v": ("I64", (10,), data)}, {})).tensors, "v")
    for sel in (uniform(10, 3), from_indices(10, [2, 3, 7]), from_indices(10, [9])):
        for block in (DEFAULT_BLOCK_BYTES, 16, 8, 1):
            got, _ = select(info, [sel], block)
            assert got == b"".join(data[8 * i : 8 * i + 8] for i in sel.indices().tolist())


def test_selecting_nothing_yields_no_bytes(tmp_path: Path) -> None:
    data = random_bytes(6 * 4 * 2, seed=2)
    info = read_header(write_file(tmp_path / "t.safetensors", {"w": ("BF16", (6, 4), data)}, {})).tensors[0]
    assert select(info, [uniform(6, 0), uniform(4, 2)]) == (b"", 0)


def test_selection_of_a_tensor_with_a_zero_axis(tmp_path: Path) -> None:
    info = read_header(write_file(tmp_path / "t.safetensors", {"w": ("F32", (6, 0), b"")}, {})).tensors[0]
    assert select(info, [uniform(6, 3), identity(0)]) == (b"", 0)


# --- our files are safetensors files ------------------------------------------------------------


@pytest.mark.parametrize("dtype", TORCH_LOADABLE)
def test_our_file_loads_with_safetensors(tmp_path: Path, dtype: str) -> None:
    esize = element_size(dtype)
    assert esize is not None
    tensors = {
        n: (dtype, s, random_bytes(math.prod(s) * esize, seed=10 + i)) for i, (n, s) in enumerate(COPY_SHAPES.items())
    }
    metadata = {"format": "pt", "b": "2", "a": "1"}
    path = write_file(tmp_path / "t.safetensors", tensors, metadata)
    torch_dtype = getattr(torch, DTYPES[dtype].torch_name)

    loaded = load_file(str(path))
    assert sorted(loaded) == sorted(tensors)
    for name, (_, shape, data) in tensors.items():
        assert loaded[name].dtype == torch_dtype
        assert tuple(loaded[name].shape) == shape
        assert as_bytes(loaded[name]) == data

    with safetensors.safe_open(str(path), framework="pt") as f:
        assert f.metadata() == metadata
        assert sorted(f.keys()) == sorted(tensors)
        assert as_bytes(f.get_tensor("cube")) == tensors["cube"][2]
        assert (
            as_bytes(f.get_slice("cube")[1:3]) == tensors["cube"][2][8 * esize : 24 * esize]
        )  # rows 1, 2 of [3, 4, 2]


@pytest.mark.parametrize("dtype", TORCH_LOADABLE)
def test_file_from_safetensors_reads_bit_exactly(tmp_path: Path, dtype: str) -> None:
    torch_dtype = getattr(torch, DTYPES[dtype].torch_name)
    esize = element_size(dtype)
    assert esize is not None
    data = random_bytes(4 * 6 * esize, seed=4)
    tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(torch_dtype).reshape(4, 6)
    path = tmp_path / "t.safetensors"
    save_file({"w": tensor, "s": torch.ones((), dtype=torch_dtype)}, str(path))
    info = tensor_of(read_header(path).tensors, "w")
    assert info.dtype == dtype
    assert select(info, [identity(4), identity(6)])[0] == data
    sels = [from_indices(4, [0, 3]), uniform(6, 4)]
    assert select(info, sels, 16)[0] == expected_selection(data, (4, 6), esize, sels)


# --- encode_header ------------------------------------------------------------------------------


def test_encode_header_exact_bytes() -> None:
    tensors = [OutputTensor("b", "F32", (2,)), OutputTensor("a", "I8", (3,)), OutputTensor("é", "BF16", ())]
    header = encode_header(tensors, {"z": "1", "a": "2"})
    body = (
        '{"__metadata__":{"a":"2","z":"1"},'
        '"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        '"a":{"dtype":"I8","shape":[3],"data_offsets":[8,11]},'
        '"é":{"dtype":"BF16","shape":[],"data_offsets":[11,13]}}'
    ).encode()
    assert len(header) % 8 == 0
    assert int.from_bytes(header[:8], "little") == len(header) - 8
    padding = header[8 + len(body) :]
    assert header[8 : 8 + len(body)] == body
    assert padding == b" " * len(padding) and len(padding) < 8


def test_encode_header_without_metadata_has_no_metadata_key() -> None:
    header = encode_header([OutputTensor("w", "U8", (1,))], {})
    assert header[8:].rstrip(b" ") == b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'


def test_encode_header_is_deterministic() -> None:
    tensors = [OutputTensor(f"layer.{i}", "F16", (i, 2)) for i in range(5)]
    first = encode_header(tensors, {"b": "1", "a": "2", "c": "3"})
    assert encode_header(list(tensors), {"c": "3", "a": "2", "b": "1"}) == first
    assert encode_header(tensors, {"a": "2", "b": "1", "c": "3"}) == first


def test_encode_header_is_identical_across_processes() -> None:
    code = (
        "import sys; from wsel.checkpoint.writer import OutputTensor, encode_header; "
        "sys.stdout.write(encode_header([OutputTensor(f't{i}', 'F32', (i,)) for i in range(20)], "
        "{k: k.upper() for k in 'qwertyuiopasdfghjkl'}).hex())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
    body = bytes.fromhex(outputs.pop())[8:]
    assert list(json.loads(body)) == ["__metadata__", *(f"t{i}" for i in range(20))]
    assert list(json.loads(body)["__metadata__"]) == sorted("qwertyuiopasdfghjkl")


@pytest.mark.parametrize("name_length", range(1, 17))
def test_encode_header_is_8_byte_aligned(name_length: int) -> None:
    header = encode_header([OutputTensor("x" * name_length, "F64", (1,))], {"format": "pt"})
    assert len(header) % 8 == 0
    # The padding is spaces only, and the header parses as one JSON object.
    assert json.loads(header[8:])["x" * name_length]["data_offsets"] == [0, 8]


@pytest.mark.parametrize("name", ["w", "__metadata__"])
def test_encode_header_refuses_duplicate_names(name: str) -> None:
    with pytest.raises(ValueError, match=f"duplicate tensor name '{name}'"):
        encode_header([OutputTensor("w", "F32", (1,)), OutputTensor(name, "F32", (1,))], {"k": "v"})


def test_empty_file_round_trips(tmp_path: Path) -> None:
    path = write_file(tmp_path / "e.safetensors", {}, {})
    assert path.read_bytes() == b"\x08" + b"\0" * 7 + b"{}      "
    header = read_header(path)
    assert header.tensors == () and header.metadata == {}
    assert load_file(str(path)) == {}


# --- block sizes --------------------------------------------------------------------------------


def test_identity_copy_in_small_blocks(tmp_path: Path) -> None:
    data = random_bytes(1000, seed=5)
    info = read_header(write_file(tmp_path / "t.safetensors", {"w": ("U8", (10, 100), data)}, {})).tensors[0]
    with TensorReader(block_bytes=64) as reader:
        chunks = list(reader.iter_selected(info, [identity(10), identity(100)]))
        assert reader.bytes_read == 1000
    assert [len(c) for c in chunks] == [64] * 15 + [40]
    assert b"".join(chunks) == data


@pytest.mark.parametrize(
    ("shape", "sels"),
    [
        # rows of 16 bytes: 4 rows per 64-byte block (row-block path)
        ((40, 4), [from_indices(40, [0, 1, 2, 5, 6, 17, 30, 31, 39]), from_indices(4, [1, 2])]),
        # rows of 160 bytes > 64: descend into each kept row, then row blocks of 32-byte rows
        ((6, 5, 8), [uniform(6, 4), from_indices(5, [0, 2, 3]), uniform(8, 3)]),
        # rows of 4 KiB, all selected: recursion two levels deep
        ((3, 16, 64), [identity(3), uniform(16, 5), from_indices(64, [0, 1, 2, 40, 63])]),
    ],
    ids=["row-blocks", "recursive-rows", "deep-recursion"],
)
def test_small_blocks_give_the_same_bytes(tmp_path: Path, shape: tuple[int, ...], sels: list[Selection]) -> None:
    data = random_bytes(math.prod(shape) * 4, seed=6)
    info = read_header(write_file(tmp_path / "t.safetensors", {"w": ("F32", shape, data)}, {})).tensors[0]
    expected = expected_selection(data, shape, 4, sels)
    default, _ = select(info, sels)
    assert default == expected
    for block in (64, 100, 4):
        with TensorReader(block_bytes=block) as reader:
            chunks = list(reader.iter_selected(info, sels))
        assert b"".join(chunks) == expected, block


def test_large_dropped_rows_are_not_read(tmp_path: Path) -> None:
    row = MIN_SKIP_ROW_BYTES  # exactly 16 KiB: at the threshold
    assert row == 16384
    data = random_bytes(10 * row, seed=8)
    info = read_header(write_file(tmp_path / "t.safetensors", {"w": ("F32", (10, row // 4), data)}, {})).tensors[0]
    kept = [0, 1, 5, 9]
    for inner in (identity(row // 4), uniform(row // 4, 1000)):
        sels = [from_indices(10, kept), inner]
        got, read = select(info, sels)
        assert got == expected_selection(data, (10, row // 4), 4, sels)
        assert read == len(kept) * row  # only the kept rows, never the gaps
    # A block of two rows: runs [0, 1], [2, 3] and [7] are read, nothing else.
    sels = [from_indices(10, [0, 1, 2, 3, 7]), identity(row // 4)]
    got, read = select(info, sels, block_bytes=2 * row)
    assert got == expected_selection(data, (10, row // 4), 4, sels)
    assert read == 5 * row


def test_small_rows_are_read_as_one_span(tmp_path: Path) -> None:
    # Below the threshold, dropped rows between kept ones are read with them (fewer, larger reads).
    row = MIN_SKIP_ROW_BYTES - 4
    data = random_bytes(10 * row, seed=9)
    info = read_header(write_file(tmp_path / "t.safetensors", {"w": ("F32", (10, row // 4), data)}, {})).tensors[0]
    sels = [from_indices(10, [0, 1, 5, 9]), identity(row // 4)]
    got, read = select(info, sels)
    assert got == expected_selection(data, (10, row // 4), 4, sels)
    assert read == 10 * row
