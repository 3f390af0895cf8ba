"""Inputs from outside besides safetensors headers: layer numbers in names, provenance metadata in a student,
the JSON files wsel reads (index, manifest, config.json), names that hold control characters, and the limits
(tensors, name length, shards) that keep planning bounded.

Each refusal is one line, `wsel: error: ...`, exit 1, nothing written; each acceptance is checked by its bytes.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import pytest
from conftest import random_state, raw, run_cli, save, save_sharded, write_manifest
from safetensors import safe_open
from test_hostile import assert_refused, assert_refused_in_subprocess, entry, init_args, json_error

from wsel.checkpoint.header import MAX_NAME_BYTES, MAX_TENSORS, read_header
from wsel.checkpoint.index import MAX_SHARDS
from wsel.console import printable

FULLWIDTH_3 = "\uff13"  # "３": a digit to str.isdigit() and int(), not to a checkpoint's layer numbering


def tensor_bytes(path: Path, name: str) -> bytes:
    with safe_open(str(path), "pt") as f:
        return f.get_tensor(name).numpy().tobytes()


# -------------------------------------------------------------------------------- layer numbers


def test_a_non_ascii_digit_is_no_layer_index(tmp_path: Path) -> None:
    """`layers.３.w` is not layer 3: with `--layers last`, the student's two layers come from teacher layers
    1 and 2 (the last two of 0, 1, 2), and `layers.３.w` is copied only under its own name."""
    teacher = save(
        tmp_path / "teacher.safetensors",
        random_state({"layers.0.w": (4,), "layers.1.w": (4,), "layers.2.w": (4,), f"layers.{FULLWIDTH_3}.w": (4,)}),
    )
    student = write_manifest(
        tmp_path / "s.json", {"layers.0.w": (4,), "layers.1.w": (4,), f"layers.{FULLWIDTH_3}.w": (4,)}
    )
    out = tmp_path / "out.safetensors"
    result = run_cli("init", "-t", teacher, "-s", student, "-o", out, "--layers", "last", "--json")
    assert result.exit_code == 0, result.stderr
    assert tensor_bytes(out, "layers.0.w") == tensor_bytes(teacher, "layers.1.w")
    assert tensor_bytes(out, "layers.1.w") == tensor_bytes(teacher, "layers.2.w")
    assert tensor_bytes(out, f"layers.{FULLWIDTH_3}.w") == tensor_bytes(teacher, f"layers.{FULLWIDTH_3}.w")
    [layer_map] = json.loads(result.stdout)["layer_maps"]
    assert (layer_map["teacher_layers"], layer_map["map"]) == (3, [[0, 1], [1, 2]])


def test_every_reader_of_numbers_in_names_and_options_takes_ascii_digits_only() -> None:
    from wsel.arch import for_model_type
    from wsel.arch.namesets import all_name_sets
    from wsel.checkpoint.output import parse_size
    from wsel.errors import PlanError
    from wsel.layers import find_layer, parse_layer_list

    ref = find_layer("layers.3.w")
    assert ref is not None and ref.index == 3
    assert find_layer(f"layers.{FULLWIDTH_3}.w") is None

    assert parse_layer_list("0,3", "layers") == [0, 3]
    for bad in (f"0,{FULLWIDTH_3}", "0,1_0", "0,-1"):
        with pytest.raises(PlanError):
            parse_layer_list(bad, "layers")

    assert parse_size("3GB") == 3_000_000_000
    with pytest.raises(ValueError, match="is not a size like 5GB"):
        parse_size(f"{FULLWIDTH_3}GB")

    llama = for_model_type("llama")
    assert llama is not None
    patterns = [template.regex("model.") for template in llama.templates]
    assert any(p.match("model.layers.3.mlp.up_proj.weight") for p in patterns)
    assert not any(p.match(f"model.layers.{FULLWIDTH_3}.mlp.up_proj.weight") for p in patterns)

    name_sets = {s.name: s for s in all_name_sets()}
    assert name_sets["timm_vit"].dims("blocks.3.mlp.fc1.weight") is not None
    assert name_sets["timm_vit"].dims(f"blocks.{FULLWIDTH_3}.mlp.fc1.weight") is None
    assert name_sets["timm_convnext"].dims("stages.3.downsample.1.weight") is not None
    assert name_sets["timm_convnext"].dims(f"stages.{FULLWIDTH_3}.downsample.1.weight") is None


def test_a_layer_index_of_thousands_of_digits_is_a_plain_name(tmp_path: Path) -> None:
    """Too long to be a layer number: the tensor is copied by name, never counted as layer 10**3999."""
    long_name = f"layers.{'7' * 4000}.w"
    teacher = save(tmp_path / "teacher.safetensors", random_state({"layers.0.w": (4,), long_name: (4,)}))
    student = write_manifest(tmp_path / "s.json", {"layers.0.w": (4,), long_name: (2,)})
    out = tmp_path / "out.safetensors"
    result = run_cli("init", "-t", teacher, "-s", student, "-o", out, "-q")
    assert result.exit_code == 0, result.stderr
    kept = tensor_bytes(teacher, long_name)  # F32 [4] → [2]: elements 0 and 2
    assert tensor_bytes(out, long_name) == kept[0:4] + kept[8:12]
    report = json.loads(run_cli("inspect", "-t", teacher, "--json").stdout)
    assert report["teacher"]["layer_groups"] == [{"group": "layers", "layers": 1}]
    # past the name limit (and Python's 4300-digit int limit): one line, before anything else
    longer = f"layers.{'7' * 5000}.w"
    teacher.write_bytes(raw({longer: entry()}, bytes(16)))
    result = run_cli("inspect", "-t", teacher)
    assert result.exit_code == 1
    assert result.stderr == (
        f"wsel: error: {teacher}: tensor name {repr(longer)[:200]}... is 5009 bytes long, "
        f"more than wsel's limit of {MAX_NAME_BYTES}\n"
    )


def test_a_layers_option_of_thousands_of_digits_is_one_line(tmp_path: Path) -> None:
    teacher = save(tmp_path / "teacher.safetensors", random_state({"layers.0.w": (4,), "layers.1.w": (4,)}))
    student = write_manifest(tmp_path / "s.json", {"layers.0.w": (4,)})
    huge = "9" * 5000
    result = run_cli("init", "-t", teacher, "-s", student, "-o", tmp_path / "o.safetensors", "--layers", huge)
    assert result.exit_code == 1
    assert result.stderr == (
        f"wsel: error: --layers {huge!r}: expected first, uniform, last or a list such as 0,2,4,6 (for 'layers')\n"
    )


# ------------------------------------------------------------------------------ provenance metadata


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, Path]:
    """A teacher, and a student wsel made from it (one file, with its provenance)."""
    shapes = {"embed.weight": (10, 8), "layers.0.w": (12, 8), "layers.1.w": (12, 8)}
    teacher = save(tmp_path / "teacher.safetensors", random_state(shapes))
    student = write_manifest(tmp_path / "s.json", {"embed.weight": (10, 4), "layers.0.w": (6, 4)})
    out = tmp_path / "student.safetensors"
    assert run_cli("init", "-t", teacher, "-s", student, "-o", out, "-q").exit_code == 0
    return teacher, out


def rewrite_provenance(path: Path, text: str) -> None:
    """The file with its `wsel.provenance` metadata replaced by `text` (the tensors' bytes unchanged)."""
    blob = path.read_bytes()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])
    header["__metadata__"]["wsel.provenance"] = text
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + blob[8 + length :])


def edited(path: Path, change: object) -> str:
    record = json.loads(read_header(path).metadata["wsel.provenance"])
    assert callable(change)
    change(record)
    return json.dumps(record)


def set_in(keys: tuple, value: object) -> object:
    def change(record: dict) -> None:
        node = record
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


# (id, the provenance text from the made student's, the problem after "wsel.provenance metadata ")
PROVENANCE_CASES = [
    ("not-json", lambda p: "{", "is not valid JSON: " + "Expecting property name enclosed in double quotes: "
     "line 1 column 2 (char 1)"),
    ("nested-deep", lambda p: "[" * 100_000 + "]" * 100_000, "is not valid JSON: " + json_error("[" * 100_000)),
    ("integer-too-long", lambda p: '{"teacher": ' + "9" * 5000 + "}",
     "is not valid JSON: " + json_error("9" * 5000)),
    ("not-an-object", lambda p: "[]", "is malformed: the document is not an object"),
    ("incomplete", lambda p: '{"teacher": []}', "is malformed: the document lacks axes, tensors"),
    ("axis-size-a-string", lambda p: edited(p, set_in(("axes", "8→4", "teacher"), "8")),
     "is malformed: axes['8→4'] teacher is not an integer from 0 to 2**63-1"),
    ("axis-size-huge", lambda p: edited(p, set_in(("axes", "8→4", "teacher"), 10**4000)),
     "is malformed: axes['8→4'] teacher is not an integer from 0 to 2**63-1"),
    ("axis-size-float", lambda p: edited(p, set_in(("axes", "8→4", "student"), 4.0)),
     "is malformed: axes['8→4'] student is not an integer from 0 to 2**63-1"),
    ("axis-past-its-size", lambda p: edited(p, set_in(("axes", "8→4", "start"), 5)),
     "is malformed: axes['8→4'] stride start 5, step 2 runs past the axis's 8 indices"),
    ("axis-unknown-rule", lambda p: edited(p, set_in(("axes", "8→4", "rule"), "all")),
     "is malformed: axes['8→4'] is not a copy, stride or indices rule with exactly its fields"),
    ("indices-not-increasing", lambda p: edited(p, set_in(("axes", "8→4"), {"rule": "indices", "teacher": 8,
     "student": 3, "indices": [0, 5, 2]})), "is malformed: axes['8→4'] indices are not 3 increasing integers "
     "below 8"),
    ("tensors-a-list", lambda p: edited(p, set_in(("tensors",), [])), "is malformed: tensors is not an object"),
    ("dims-not-strings", lambda p: edited(p, set_in(("tensors", "embed.weight", "dims"), [[0]])),
     "is malformed: tensors['embed.weight'] is not {teacher, dims[, scale]} with a name, dim labels and a positive "
     "scale"),
    ("scale-negative", lambda p: edited(p, set_in(("tensors", "embed.weight", "scale"), -1.0)),
     "is malformed: tensors['embed.weight'] is not {teacher, dims[, scale]} with a name, dim labels and a positive "
     "scale"),
    ("fingerprint-not-hex", lambda p: edited(p, set_in(("teacher", 0, "header_sha256"), "x" * 64)),
     "is malformed: teacher[0] is not {file, header_sha256}"),
    ("layer-map-of-strings", lambda p: edited(p, set_in(("layer_maps", "layers"), ["0"])),
     "is malformed: layer_maps['layers'] is not a list of layer indices"),
    ("options-nested", lambda p: edited(p, set_in(("options", "seed"), {"a": [1]})),
     "is malformed: options.seed is not a value"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "problem"), [c[1:] for c in PROVENANCE_CASES], ids=[c[0] for c in PROVENANCE_CASES])
def test_malformed_provenance_is_a_verify_error_and_an_inspect_warning(
    made: tuple[Path, Path], make: object, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # rich's width: the warning on one line
    teacher, student = made
    assert callable(make)
    rewrite_provenance(student, make(student))
    expected = f"{student}: wsel.provenance metadata {problem}"

    verified = run_cli("verify", "-t", teacher, "-s", student)
    assert (verified.exit_code, verified.stdout, verified.stderr) == (1, "", f"wsel: error: {expected}\n")

    inspected = run_cli("inspect", "-t", student, "--json")
    assert inspected.exit_code == 0, inspected.stderr
    report = json.loads(inspected.stdout)
    assert (report["provenance"], report["warnings"]) == (None, [expected])
    shown = run_cli("inspect", "-t", student)
    assert shown.exit_code == 0
    assert f"\nwarning: {expected}\n" in shown.stderr


def test_a_selection_claiming_a_huge_axis_is_refused_before_anything_is_built(made: tuple[Path, Path]) -> None:
    """A dim label with an integer literal of 10**15 (well-formed JSON, every count in range) must not
    allocate 10**15 indices: the label's span is checked against the tensor's dim first."""
    teacher, student = made
    rewrite_provenance(student, edited(student, set_in(("tensors", "embed.weight", "dims"), ["10", str(10**15)])))
    result = run_cli("verify", "-t", teacher, "-s", student)
    assert result.exit_code == 1
    assert result.stderr == (
        f"wsel: error: {student}: 1 mismatch: embed.weight: cannot rebuild its selection: "
        f"'{10**15}' spans {10**15} indices, the tensor dim has 8\n"
    )


def test_a_recorded_cast_wsel_never_makes_is_a_mismatch(made: tuple[Path, Path], tmp_path: Path) -> None:
    """A student whose tensor is an integer dtype while the teacher's is F32: no cast of wsel's, reported as
    a mismatch (not a torch error)."""
    teacher, student = made
    header = read_header(student)
    blob = student.read_bytes()
    (length,) = struct.unpack("<Q", blob[:8])
    doc = json.loads(blob[8 : 8 + length])
    doc["embed.weight"]["dtype"] = "I32"  # same size as F32: the file stays valid
    new = json.dumps(doc).encode()
    student.write_bytes(struct.pack("<Q", len(new)) + new + blob[8 + length :])
    assert len(read_header(student).tensors) == len(header.tensors)
    result = run_cli("verify", "-t", teacher, "-s", student)
    assert result.exit_code == 1
    assert result.stderr == (
        f"wsel: error: {student}: 1 mismatch: embed.weight: dtype I32 is neither the teacher's F32 "
        "nor a --dtype cast of it\n"
    )


def test_verify_of_a_tensor_with_no_elements_and_a_huge_dim(tmp_path: Path) -> None:
    """A teacher tensor [0, 2**40] (legal, no bytes): the student's copy verifies without building 2**40
    indices for the dim."""
    teacher = tmp_path / "teacher.safetensors"
    teacher.write_bytes(raw({"e": entry(shape=(0, 2**40), offsets=(0, 0)), "w": entry(shape=(4,), offsets=(0, 16))},
                            bytes(range(16))))  # fmt: skip
    student = write_manifest(tmp_path / "s.json", {"e": (0, 2**40), "w": (2,)})
    out = tmp_path / "out.safetensors"
    assert run_cli("init", "-t", teacher, "-s", student, "-o", out, "-q").exit_code == 0
    result = run_cli("verify", "-t", teacher, "-s", out)
    assert (result.exit_code, result.stderr) == (0, f"{out}: all 2 tensors equal their selection of the teacher\n")


# ------------------------------------------------------------------------- the JSON files wsel reads


def special_file(path: Path, kind: str) -> Path:
    """A FIFO (opening it for reading would wait for a writer), or a link to /dev/zero (never ends)."""
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    return path


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_an_index_that_is_no_regular_file(tmp_path: Path, kind: str) -> None:
    """Named directly, or found in the teacher's folder: refused before a byte is read."""
    folder = save_sharded(tmp_path / "teacher", random_state({"a": (4,), "b": (4,)}), shards=2)
    index = folder / "model.safetensors.index.json"
    index.unlink()
    special_file(index, kind)
    root = tmp_path
    (root / "student.json").write_text(json.dumps({"a": [2]}))
    assert_refused_in_subprocess(root, init_args(root, index), f"{index}: is not a regular file")
    assert_refused_in_subprocess(root, init_args(root, folder), f"{index}: is not a regular file")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_student_manifest_that_is_no_regular_file(tmp_path: Path, kind: str) -> None:
    teacher = save(tmp_path / "teacher.safetensors", random_state({"a": (4,)}))
    manifest = special_file(tmp_path / "student.json", kind)
    assert_refused_in_subprocess(tmp_path, init_args(tmp_path, teacher), f"{manifest}: is not a regular file")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_teacher_config_that_is_no_regular_file(tmp_path: Path, kind: str) -> None:
    teacher = save_sharded(tmp_path / "teacher", random_state({"a": (4,)}), shards=1)
    config = special_file(tmp_path / "config.json", kind)
    args = ["init", "-t", teacher, "--set", "hidden_size=2", "--teacher-config", config, "-o", tmp_path / "out"]
    assert_refused_in_subprocess(tmp_path, args, f"{config}: is not a regular file")
    # the same file as the teacher folder's own config.json
    (teacher / "config.json").unlink(missing_ok=True)
    special_file(teacher / "config.json", kind)
    args = ["init", "-t", teacher, "--set", "hidden_size=2", "-o", tmp_path / "out"]
    assert_refused_in_subprocess(tmp_path, args, f"{teacher / 'config.json'}: is not a regular file")


def test_a_json_file_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    """A 300 MB manifest (sparse: no disk used) is refused by its size, without reading it."""
    from wsel.sources.base import MAX_SMALL_FILE_BYTES

    teacher = save(tmp_path / "teacher.safetensors", random_state({"a": (4,)}))
    manifest = tmp_path / "student.json"
    with open(manifest, "wb") as f:
        f.truncate(300_000_000)
    assert_refused(
        tmp_path,
        init_args(tmp_path, teacher),
        f"{manifest}: 300000000 bytes is too large for a {MAX_SMALL_FILE_BYTES}-byte small file",
    )


def test_a_manifest_on_stdin_is_read_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wsel.spec

    teacher = save(tmp_path / "teacher.safetensors", random_state({"a": (4,)}))
    monkeypatch.setattr(wsel.spec, "MAX_SMALL_FILE_BYTES", 100)
    result = run_cli("init", "-t", teacher, "-s", "-", "-o", tmp_path / "o.safetensors", input=" " * 101 + "{}")
    assert (result.exit_code, result.stderr) == (
        1,
        "wsel: error: <stdin>: student config is longer than the 100-byte limit\n",
    )


# ------------------------------------------------------------------------------------------- limits


def test_a_name_at_the_length_limit_is_accepted_and_one_byte_more_refused(tmp_path: Path) -> None:
    at_limit = "w" * MAX_NAME_BYTES
    teacher = save(tmp_path / "teacher.safetensors", random_state({at_limit: (4,)}))
    (tmp_path / "student.json").write_text(json.dumps({at_limit: [2]}))
    out = tmp_path / "out.safetensors"
    assert run_cli(*init_args(tmp_path, teacher, "-q")).exit_code == 0
    assert [t.name for t in read_header(out).tensors] == [at_limit]
    out.unlink()

    too_long = "é" * (MAX_NAME_BYTES // 2) + "w"  # the limit counts UTF-8 bytes: 4097 here
    teacher.write_bytes(raw({too_long: entry()}, bytes(16)))
    shown = repr(too_long)[:200] + "..."
    assert_refused(
        tmp_path,
        init_args(tmp_path, teacher),
        f"{teacher}: tensor name {shown} is {MAX_NAME_BYTES + 1} bytes long, "
        f"more than wsel's limit of {MAX_NAME_BYTES}",
    )
    # the same name in a manifest
    good = save(tmp_path / "good.safetensors", random_state({"w": (4,)}))
    (tmp_path / "student.json").write_text(json.dumps({too_long: [2]}))
    assert_refused(
        tmp_path,
        init_args(tmp_path, good),
        f"{tmp_path / 'student.json'}: tensor name {shown} is {MAX_NAME_BYTES + 1} bytes long, "
        f"more than wsel's limit of {MAX_NAME_BYTES}",
    )


def test_more_tensors_than_the_limit_are_refused_in_one_line(tmp_path: Path) -> None:
    """1,000,001 zero-size tensors: a legal 56 MB header, refused by count before any planning."""
    teacher = tmp_path / "teacher.safetensors"
    body = ",".join(f'"{i}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}' for i in range(MAX_TENSORS + 1))
    header = ("{" + body + "}").encode()
    teacher.write_bytes(struct.pack("<Q", len(header)) + header)
    (tmp_path / "student.json").write_text(json.dumps({"0": [0]}))
    assert_refused_in_subprocess(
        tmp_path,
        init_args(tmp_path, teacher),
        f"{teacher}: header lists {MAX_TENSORS + 1} tensors, more than wsel's limit of {MAX_TENSORS}",
    )


def test_an_index_naming_more_shards_than_the_limit(tmp_path: Path) -> None:
    """Refused from the index alone: not one of the 10,001 shard files is opened (none exists)."""
    folder = tmp_path / "teacher"
    folder.mkdir()
    weight_map = {f"w{i}": f"s{i}.safetensors" for i in range(MAX_SHARDS + 1)}
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "student.json").write_text(json.dumps({"w0": [1]}))
    assert_refused(
        tmp_path,
        init_args(tmp_path, folder),
        f"{index}: weight_map names {MAX_SHARDS + 1} shard files, more than wsel's limit of {MAX_SHARDS}",
    )


@pytest.mark.parametrize("length", [300, MAX_NAME_BYTES + 1], ids=["too-long-for-the-file-system", "over-the-limit"])
def test_a_shard_name_too_long(tmp_path: Path, length: int) -> None:
    folder = save_sharded(tmp_path / "teacher", random_state({"a": (4,), "b": (4,)}), shards=2)
    index = folder / "model.safetensors.index.json"
    doc = json.loads(index.read_text())
    shard = "s" * (length - len(".safetensors")) + ".safetensors"
    doc["weight_map"]["a"] = shard
    index.write_text(json.dumps(doc))
    (tmp_path / "student.json").write_text(json.dumps({"a": [2]}))
    if length <= MAX_NAME_BYTES:
        problem = f"shard {shard} is listed but {folder / shard} is not a file"
    else:
        problem = f"tensor 'a': shard {repr(shard)[:200]}... is not a file name in the index's folder"
    assert_refused(tmp_path, init_args(tmp_path, folder), f"{index}: {problem}")


# ------------------------------------------------------------------------------- terminal output

NASTY = "evil\n\x1b[31mred\x1b[0m\x07.weight"  # a newline, ANSI colour codes and a bell


def test_printable_escapes_control_characters_only() -> None:
    assert printable(NASTY) == "evil\\n\\x1b[31mred\\x1b[0m\\x07.weight"
    assert printable("tab\there\r\x7f\x9b") == "tab\\there\\r\\x7f\\x9b"
    assert printable("plain ünïcode → 名前") == "plain ünïcode → 名前"


def test_names_with_control_characters_are_escaped_on_the_terminal_and_exact_in_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # rich's width: names whole in their cells
    teacher = save(tmp_path / "teacher.safetensors", random_state({NASTY: (4,), "w": (4,)}))
    shown = run_cli("inspect", "-t", teacher)
    assert shown.exit_code == 0
    assert "\x1b" not in shown.stderr and "\x07" not in shown.stderr
    assert printable(NASTY) in shown.stderr
    as_json = run_cli("inspect", "-t", teacher, "--json")
    assert NASTY in [t["name"] for t in json.loads(as_json.stdout)["tensors"]]

    student = write_manifest(tmp_path / "s.json", {NASTY: (2,)})
    out = tmp_path / "out.safetensors"
    written = run_cli("init", "-t", teacher, "-s", student, "-o", out, "--report", tmp_path / "r.md")
    assert written.exit_code == 0
    assert "\x1b" not in written.stderr and printable(NASTY) in written.stderr
    markdown = (tmp_path / "r.md").read_text()
    assert "\x1b" not in markdown and f"`{printable(NASTY)}`" in markdown
    assert [t.name for t in read_header(out).tensors] == [NASTY]


def test_an_error_naming_a_control_character_stays_one_line(tmp_path: Path) -> None:
    folder = save_sharded(tmp_path / "teacher", random_state({"a": (4,), "b": (4,)}), shards=2)
    index = folder / "model.safetensors.index.json"
    doc = json.loads(index.read_text())
    doc["weight_map"]["a"] = "x\n\x1b[2J.safetensors"  # a newline, and "clear the screen"
    index.write_text(json.dumps(doc))
    (tmp_path / "student.json").write_text(json.dumps({"a": [2]}))
    result = run_cli(*init_args(tmp_path, folder))
    assert result.exit_code == 1
    assert result.stderr == (
        f"wsel: error: {index}: shard x\\n\\x1b[2J.safetensors is listed but "
        f"{folder}/x\\n\\x1b[2J.safetensors is not a file\n"
    )


def test_a_path_with_a_newline_in_an_error(tmp_path: Path) -> None:
    teacher = tmp_path / "bad\nname.safetensors"
    teacher.write_bytes(b"\0" * 4)
    result = run_cli("inspect", "-t", teacher)
    assert result.exit_code == 1
    assert result.stderr == (
        f"wsel: error: {printable(str(teacher))}: file is 4 bytes, too short for a safetensors header (truncated?)\n"
    )
    assert result.stderr.count("\n") == 1


def test_a_long_table_is_cut_on_the_terminal_and_whole_in_the_report(tmp_path: Path) -> None:
    from wsel.render import MAX_TABLE_ROWS

    teacher = save(tmp_path / "teacher.safetensors", random_state({f"t{i}": (1,) for i in range(MAX_TABLE_ROWS + 5)}))
    shown = run_cli("inspect", "-t", teacher, "--report", tmp_path / "r.md")
    assert shown.exit_code == 0
    assert "... 5 more rows: --json or --report FILE.md lists every one" in shown.stderr
    assert len(re.findall(r"^\| `t[0-9]+` \|", (tmp_path / "r.md").read_text(), re.MULTILINE)) == MAX_TABLE_ROWS + 5


# ------------------------------------------------------------------------------- config.json values


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            {"hidden_size": 8, "num_attention_heads": "x"},
            "num_attention_heads gives heads = 'x', expected a whole number",
        ),
        (
            {"hidden_size": float("nan"), "num_attention_heads": 2},
            "hidden_size gives hidden = nan, expected a whole number",
        ),
        (
            {"hidden_size": float("inf"), "num_attention_heads": 2},
            "hidden_size gives hidden = inf, expected a whole number",
        ),
        (
            {"hidden_size": 8, "num_attention_heads": [2]},
            "num_attention_heads gives heads = [2], expected a whole number",
        ),
    ],
    ids=["string-divisor", "nan", "infinity", "list"],
)
def test_config_values_that_are_no_numbers_are_named(config: dict, problem: str) -> None:
    """JSON's NaN and Infinity, strings and lists where sizes go: refused by key, whichever axis (here head_dim,
    derived from both) is computed first; never a TypeError or OverflowError from the arithmetic."""
    from wsel.errors import SpecError
    from wsel.hfconfig import read_sizes

    sizes = {"head_dim": ("head_dim", "hidden_size / num_attention_heads"), "hidden": ("hidden_size",),
             "heads": ("num_attention_heads",)}  # fmt: skip
    with pytest.raises(SpecError) as exc:
        read_sizes(sizes, config, "config.json")
    assert str(exc.value) == f"config.json: {problem}"


def test_a_size_expression_past_float_range_gives_no_size() -> None:
    from wsel.hfconfig import first_value

    assert (
        first_value(("hidden_size / num_attention_heads",), {"hidden_size": 10**400, "num_attention_heads": 3}) is None
    )
    assert first_value(("hidden_size / num_attention_heads", "7"), {"hidden_size": 8, "num_attention_heads": 0}) == 7
