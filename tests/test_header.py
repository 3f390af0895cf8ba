"""The strict safetensors header parser: every rule it enforces, each with its exact message, and valid files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from conftest import raw
from safetensors.torch import load_file, save_file

from wsel.checkpoint.header import MAX_HEADER_BYTES, read_header
from wsel.errors import CheckpointError
from wsel.sources.local import LocalFile

DIRECTORY = object()  # table marker: create a directory where the file should be


def entry(dtype: object = "F32", shape: object = (1,), offsets: object = (0, 4), **extra: object) -> dict:
    e = {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape}
    e["data_offsets"] = list(offsets) if isinstance(offsets, tuple) else offsets
    e.update(extra)
    return e


NOT_INTS = "is not a list of non-negative integers"
BAD_OFFSETS = "is not [begin, end] with 0 <= begin <= end"

# (id, file content, problem): the error must be exactly f"{path}: {problem}".
CASES = [
    # a zero-byte file has no length prefix at all
    ("empty-file", b"", "file is 0 bytes, too short for a safetensors header (truncated?)"),
    # fewer than the 8 bytes of the length prefix
    ("shorter-than-8", b"\x02\x00\x00", "file is 3 bytes, too short for a safetensors header (truncated?)"),
    # the length prefix promises more header than the file holds
    (
        "header-past-end",
        raw("{}", length=100),
        "header length 100 runs past the end of the file (10 bytes; truncated?)",
    ),
    # exactly the limit is not absurd, it is merely past the end of this small file
    (
        "header-at-limit",
        raw("{}", length=MAX_HEADER_BYTES),
        "header length 100000000 runs past the end of the file (10 bytes; truncated?)",
    ),
    # one byte above the 100 MB limit is refused before anything is read
    (
        "header-absurd",
        raw("{}", length=MAX_HEADER_BYTES + 1),
        "header length 100000001 exceeds the 100000000 byte limit",
    ),
    # the largest u64: a random or foreign file
    ("header-u64-max", raw("{}", length=2**64 - 1), f"header length {2**64 - 1} exceeds the 100000000 byte limit"),
    # a 0xff byte inside a key is not UTF-8
    ("invalid-utf8", raw(b'{"\xff": 1}'), "header is not valid UTF-8 (byte 2)"),
    # a value is missing
    ("invalid-json", raw('{"a": }'), "header is not valid JSON: Expecting value: line 1 column 7 (char 6)"),
    # a valid object followed by junk
    ("json-extra-data", raw("{}}"), "header is not valid JSON: Extra data: line 1 column 3 (char 2)"),
    # a JSON list is valid JSON but not a header
    ("json-list", raw("[]"), "header is not a JSON object"),
    # a JSON string
    ("json-string", raw('"{}"'), "header is not a JSON object"),
    # whitespace alone is no object
    ("only-whitespace", raw(" \t\n"), "header is not a JSON object"),
    # something other than whitespace before the "{"
    ("leading-junk", raw("x{}"), "header is not a JSON object"),
    # a zero-length header
    ("empty-header", raw(""), "header is not a JSON object"),
    # __metadata__ must be an object
    ("metadata-list", raw({"__metadata__": ["a"]}), "__metadata__ must be an object of strings"),
    # ... and null is not an object either
    ("metadata-null", raw({"__metadata__": None}), "__metadata__ must be an object of strings"),
    # every metadata value must be a string
    ("metadata-int-value", raw({"__metadata__": {"format": 1}}), "__metadata__ value for 'format' is not a string"),
    # a tensor entry that is a list
    ("entry-list", raw({"w": [1]}), "tensor 'w': entry is not an object"),
    # a tensor entry that is a string
    ("entry-string", raw({"w": "F32"}), "tensor 'w': entry is not an object"),
    # one field missing
    ("missing-offsets", raw({"w": {"dtype": "F32", "shape": [1]}}, b"\0" * 4), "tensor 'w': missing data_offsets"),
    # every field missing, listed in the format's order
    ("missing-all", raw({"w": {}}), "tensor 'w': missing dtype, shape, data_offsets"),
    # unknown fields, listed sorted
    ("extra-fields", raw({"w": entry(zzz=1, aaa=2)}, b"\0" * 4), "tensor 'w': unknown field aaa, zzz"),
    # a dtype safetensors does not have
    ("dtype-unknown", raw({"w": entry("F128")}, b"\0" * 4), "tensor 'w': unknown dtype 'F128'"),
    # dtype names are case-sensitive
    ("dtype-lowercase", raw({"w": entry("f32")}, b"\0" * 4), "tensor 'w': unknown dtype 'f32'"),
    # a dtype that is not a string
    ("dtype-int", raw({"w": entry(32)}, b"\0" * 4), "tensor 'w': unknown dtype 32"),
    # negative dimension
    ("shape-negative", raw({"w": entry(shape=(-1,))}, b"\0" * 4), f"tensor 'w': shape [-1] {NOT_INTS}"),
    # a float dimension, even an integral one
    ("shape-float", raw({"w": entry(shape=(1.0,))}, b"\0" * 4), f"tensor 'w': shape [1.0] {NOT_INTS}"),
    # true is not the integer 1
    ("shape-bool", raw({"w": entry(shape=(True,))}, b"\0" * 4), f"tensor 'w': shape [True] {NOT_INTS}"),
    # `-0` is no unsigned integer (the reference refuses it although JSON reads it as 0)
    (
        "shape-negative-zero",
        raw('{"w": {"dtype": "F32", "shape": [-0], "data_offsets": [0, 0]}}'),
        f"tensor 'w': shape [-0] {NOT_INTS}",
    ),
    (
        "offsets-negative-zero",
        raw('{"w": {"dtype": "F32", "shape": [0], "data_offsets": [-0, 0]}}'),
        f"tensor 'w': data_offsets [-0, 0] {BAD_OFFSETS}",
    ),
    # a string dimension
    ("shape-string", raw({"w": entry(shape=("1",))}, b"\0" * 4), f"tensor 'w': shape ['1'] {NOT_INTS}"),
    # a shape that is not a list
    ("shape-not-list", raw({"w": entry(shape=1)}, b"\0" * 4), f"tensor 'w': shape 1 {NOT_INTS}"),
    # data_offsets with one number
    ("offsets-short", raw({"w": entry(offsets=(0,))}, b"\0" * 4), f"tensor 'w': data_offsets [0] {BAD_OFFSETS}"),
    # data_offsets with three numbers
    (
        "offsets-long",
        raw({"w": entry(offsets=(0, 4, 8))}, b"\0" * 4),
        f"tensor 'w': data_offsets [0, 4, 8] {BAD_OFFSETS}",
    ),
    # data_offsets that are not a list
    ("offsets-not-list", raw({"w": entry(offsets=4)}, b"\0" * 4), f"tensor 'w': data_offsets 4 {BAD_OFFSETS}"),
    # begin after end
    (
        "offsets-reversed",
        raw({"w": entry(offsets=(4, 0))}, b"\0" * 4),
        f"tensor 'w': data_offsets [4, 0] {BAD_OFFSETS}",
    ),
    # a negative begin
    (
        "offsets-negative",
        raw({"w": entry(offsets=(-4, 0))}, b"\0" * 4),
        f"tensor 'w': data_offsets [-4, 0] {BAD_OFFSETS}",
    ),
    # a float end
    (
        "offsets-float",
        raw({"w": entry(offsets=(0, 4.0))}, b"\0" * 4),
        f"tensor 'w': data_offsets [0, 4.0] {BAD_OFFSETS}",
    ),
    # bools are not offsets
    (
        "offsets-bool",
        raw({"w": entry("BOOL", (), (False, True))}, b"\0"),
        f"tensor 'w': data_offsets [False, True] {BAD_OFFSETS}",
    ),
    # F32[2] needs 8 bytes, the offsets give 4
    (
        "span-too-small",
        raw({"w": entry(shape=(2,))}, b"\0" * 4),
        "tensor 'w': data_offsets span 4 bytes but F32[2] needs 8",
    ),
    # BF16[2, 3] needs 12 bytes, the offsets give 16
    (
        "span-too-large",
        raw({"w": entry("BF16", (2, 3), (0, 16))}, b"\0" * 16),
        "tensor 'w': data_offsets span 16 bytes but BF16[2, 3] needs 12",
    ),
    # the only tensor starts 4 bytes into the data buffer
    ("gap-at-start", raw({"w": entry(offsets=(4, 8))}, b"\0" * 8), "tensor 'w': gap of 4 bytes before its data"),
    # 4 unclaimed bytes between two tensors
    (
        "gap-between",
        raw({"a": entry(offsets=(0, 4)), "b": entry(offsets=(8, 12))}, b"\0" * 12),
        "tensor 'b': gap of 4 bytes before its data",
    ),
    # b lies inside a
    (
        "overlap",
        raw({"a": entry(shape=(2,), offsets=(0, 8)), "b": entry(offsets=(4, 8))}, b"\0" * 8),
        "tensor 'b': data overlaps the previous tensor",
    ),
    # two tensors claim the same bytes
    (
        "overlap-same-range",
        raw({"a": entry(), "b": entry()}, b"\0" * 4),
        "tensor 'b': data overlaps the previous tensor",
    ),
    # the file ends in the middle of the data
    (
        "truncated-data",
        raw({"w": entry(shape=(2,), offsets=(0, 8))}, b"\0" * 4),
        "data ends at byte 8 but the file holds 4 (truncated?)",
    ),
    # bytes after the last tensor
    ("trailing-bytes", raw({"w": entry()}, b"\0" * 6), "2 unexpected trailing bytes after the last tensor"),
    # no tensors at all, but data
    ("trailing-no-tensors", raw({}, b"abc"), "3 unexpected trailing bytes after the last tensor"),
    # the same tensor name twice (json.loads would silently keep the last one)
    (
        "duplicate-name",
        raw(
            '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},'
            ' "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}',
            b"\0" * 8,
        ),
        "duplicate tensor name 'a' in header",
    ),
    # a folder where a file was expected
    ("directory", DIRECTORY, "is a directory, expected a .safetensors file"),
]


@pytest.mark.parametrize(("content", "problem"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_header_is_refused_with_exact_message(tmp_path: Path, content: object, problem: str) -> None:
    path = tmp_path / "model.safetensors"
    if content is DIRECTORY:
        path.mkdir()
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        read_header(path)
    assert str(exc.value) == f"{path}: {problem}"


def test_missing_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.safetensors"
    with pytest.raises(CheckpointError) as exc:
        read_header(path)
    assert str(exc.value) == f"{path}: cannot read: No such file or directory"


def test_file_written_by_safetensors_parses(tmp_path: Path) -> None:
    tensors = {
        "z.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "a.bias": torch.arange(5, dtype=torch.int64),
        "m.half": torch.arange(6, dtype=torch.float16).reshape(1, 2, 3),
        "b.bf": torch.arange(7, dtype=torch.bfloat16),
        "flag": torch.tensor([True, False, True]),
    }
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "note": "x"})
    blob = path.read_bytes()
    (header_len,) = struct.unpack("<Q", blob[:8])

    header = read_header(path)

    assert header.source == LocalFile(path)
    assert header.file_size == len(blob)
    assert header.header_bytes == blob[8 : 8 + header_len]
    assert header.metadata == {"format": "pt", "note": "x"}
    expected_dtypes = {"z.weight": "F32", "a.bias": "I64", "m.half": "F16", "b.bf": "BF16", "flag": "BOOL"}
    assert {t.name: t.dtype for t in header.tensors} == expected_dtypes
    assert {t.name: t.shape for t in header.tensors} == {n: tuple(v.shape) for n, v in tensors.items()}
    # Absolute offsets, in file order, tiling the data buffer exactly.
    position = 8 + header_len
    for t in header.tensors:
        assert t.file == LocalFile(path)
        assert t.start == position
        assert t.nbytes == t.end - t.start == tensors[t.name].numel() * tensors[t.name].element_size()
        assert t.numel == tensors[t.name].numel()
        assert blob[t.start : t.end] == tensors[t.name].reshape(-1).view(torch.uint8).numpy().tobytes()
        position = t.end
    assert position == len(blob)


def test_zero_size_tensors(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    head = {
        "empty_rows": entry("F32", (0, 3), (0, 0)),
        "w": entry("I16", (2,), (0, 4)),
        "empty_cols": entry("I8", (4, 0), (4, 4)),
    }
    path.write_bytes(raw(head, b"\1\2\3\4"))
    header = read_header(path)
    start = 8 + len(json.dumps(head))
    got = [(t.name, t.dtype, t.shape, t.start, t.end, t.numel) for t in header.tensors]
    assert got == [
        ("empty_rows", "F32", (0, 3), start, start, 0),
        ("w", "I16", (2,), start, start + 4, 2),
        ("empty_cols", "I8", (4, 0), start + 4, start + 4, 0),
    ]
    assert header.metadata == {}


def test_only_zero_size_tensors_and_no_data(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw({"e": entry("F64", (0,), (0, 0))}))
    header = read_header(path)
    assert [(t.name, t.shape, t.nbytes) for t in header.tensors] == [("e", (0,), 0)]
    assert header.file_size == path.stat().st_size


def test_zero_size_tensors_written_by_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"a": torch.zeros(0, 4), "b": torch.ones(2), "c": torch.zeros(3, 0, dtype=torch.int8)}, str(path))
    header = read_header(path)
    assert {t.name: (t.shape, t.nbytes) for t in header.tensors} == {"a": ((0, 4), 0), "b": ((2,), 8), "c": ((3, 0), 0)}


def test_header_padded_with_trailing_spaces(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    text = json.dumps({"__metadata__": {"k": "v"}, "w": entry("U8", (3,), (0, 3))}) + " " * 13
    path.write_bytes(raw(text, b"abc"))
    header = read_header(path)
    assert header.header_bytes == text.encode()
    assert header.metadata == {"k": "v"}
    [t] = header.tensors
    assert (t.name, t.dtype, t.shape, t.start, t.end) == ("w", "U8", (3,), 8 + len(text), 8 + len(text) + 3)


@pytest.mark.parametrize("padding", ["\t\n", " " * 4096, "\r\n  "], ids=["tab-newline", "page", "crlf"])
def test_whitespace_before_the_header_object_is_accepted_like_the_reference(tmp_path: Path, padding: str) -> None:
    # The safetensors project's own test (test_whitespace_leading_padded_header): JSON allows whitespace
    # before the object, and the reference reader loads such a file.
    path = tmp_path / "model.safetensors"
    text = padding + json.dumps({"w": entry("U8", (3,), (0, 3))}) + "\r "
    path.write_bytes(raw(text, b"abc"))
    [t] = read_header(path).tensors
    assert (t.name, t.shape, t.start, t.end) == ("w", (3,), 8 + len(text), 8 + len(text) + 3)
    assert load_file(str(path))["w"].tolist() == [97, 98, 99]
    path.write_bytes(raw("\t\n{}\r "))
    assert read_header(path).tensors == ()


def test_names_holding_minus_zero_are_not_numbers(tmp_path: Path) -> None:
    # The `-0` check looks at the parsed numbers, not at the text: a name or metadata holding "-0" is fine.
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw({"__metadata__": {"v": "-0"}, "w-0": entry("U8", (0,), (0, 0))}))
    assert [t.name for t in read_header(path).tensors] == ["w-0"]


def test_zero_dimensional_tensors(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    head = {"s": entry("F64", (), (0, 8)), "t": entry("BOOL", (), (8, 9))}
    path.write_bytes(raw(head, bytes(range(9))))
    header = read_header(path)
    start = 8 + len(json.dumps(head))
    assert [(t.name, t.shape, t.numel, t.start, t.end) for t in header.tensors] == [
        ("s", (), 1, start, start + 8),
        ("t", (), 1, start + 8, start + 9),
    ]


def test_tensors_are_returned_in_file_order_not_header_order(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    head = {"second": entry(offsets=(4, 8)), "first": entry(offsets=(0, 4))}
    path.write_bytes(raw(head, b"\0" * 8))
    assert [t.name for t in read_header(path).tensors] == ["first", "second"]


def test_packed_sub_byte_dtype_must_fill_whole_bytes(tmp_path: Path) -> None:
    # F4 packs two elements per byte: four elements occupy two bytes; three would end mid-byte, which the
    # reference implementation refuses to load, so the parser refuses it too.
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw({"q": entry("F4", (4,), (0, 2))}, b"\0\0"))
    [t] = read_header(path).tensors
    assert (t.dtype, t.shape, t.nbytes) == ("F4", (4,), 2)
    path.write_bytes(raw({"q": entry("F4", (3,), (0, 2))}, b"\0\0"))
    with pytest.raises(CheckpointError) as exc:
        read_header(path)
    assert str(exc.value) == f"{path}: tensor 'q': 3 F4 elements do not fill whole bytes"


# Duplicate keys below the top level are not duplicate tensor names: the message says where the duplicate is.
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"w": {"dtype": "F32", "dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
         "tensor 'w': duplicate field 'dtype'"),
        ('{"__metadata__": {"k": "1", "k": "2"}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
         "duplicate key 'k' in __metadata__"),
    ],
    ids=["field-in-entry", "metadata-key"],
)  # fmt: skip
def test_duplicate_nested_key_says_where(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw(text, b"\0" * 4))
    with pytest.raises(CheckpointError) as exc:
        read_header(path)
    assert str(exc.value) == f"{path}: {problem}"
