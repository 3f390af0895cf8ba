"""The `wsel` command line: help, outputs (file, folder, shards), reports, casting, and every refusal
with its exact one-line message and exit code, leaving the file system as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_state, run_cli, save, save_sharded, write_manifest
from reference import uniform_element_selection
from safetensors import safe_open
from safetensors.torch import load_file

from wsel import __version__

LAYERS = 4
TEACHER_SHAPES: dict[str, tuple[int, ...]] = {"embed.weight": (50, 16), "head.weight": (10, 16), "norm.weight": (16,)}
for _i in range(LAYERS):
    TEACHER_SHAPES[f"layers.{_i}.attn.weight"] = (48, 16)
    TEACHER_SHAPES[f"layers.{_i}.mlp.weight"] = (64, 16)
    TEACHER_SHAPES[f"layers.{_i}.mlp.bias"] = (64,)
STUDENT_SHAPES: dict[str, tuple[int, ...]] = {
    "embed.weight": (50, 8),
    "head.weight": (10, 8),  # excluded in most runs, as in the paper
    "norm.weight": (8,),
    "embed.position_ids": (1, 50),  # I64 (added to the teacher below): copied whole, never subsampled or cast
}
for _i in range(2):
    STUDENT_SHAPES[f"layers.{_i}.attn.weight"] = (24, 8)  # 48 → 24, 16 → 8: strides of 2
    STUDENT_SHAPES[f"layers.{_i}.mlp.weight"] = (30, 8)  # 64 → 30: the paper's rounded linspace
    STUDENT_SHAPES[f"layers.{_i}.mlp.bias"] = (30,)
FLOAT_NAMES = sorted(n for n in STUDENT_SHAPES if n not in ("head.weight", "embed.position_ids"))
PARTIAL = ".wsel-partial"


def teacher_state() -> dict[str, torch.Tensor]:
    state = random_state(TEACHER_SHAPES, seed=3)
    state["embed.position_ids"] = torch.arange(50, dtype=torch.int64).reshape(1, 50) * 7 - 100
    return state


@pytest.fixture
def env(tmp_path: Path) -> dict:
    """A teacher as one file and as 3 shards + index, and a student manifest (head excluded by the runs)."""
    state = teacher_state()
    return {
        "root": tmp_path,
        "state": state,
        "teacher": save(tmp_path / "teacher" / "teacher.safetensors", state),
        "sharded": save_sharded(tmp_path / "sharded", state, shards=3),
        "manifest": write_manifest(tmp_path / "student.json", STUDENT_SHAPES),
    }


def expected_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: uniform_element_selection(state[n], STUDENT_SHAPES[n]) for n in STUDENT_SHAPES if n != "head.weight"}


def raw_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert actual[name].dtype == expected[name].dtype, name
        assert actual[name].shape == expected[name].shape, name
        assert raw_bytes(actual[name]) == raw_bytes(expected[name]), name


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for folders): compare before/after a run."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def init(env: dict, *extra: str | Path, teacher: Path | None = None, out: Path | str | None = None):
    out = out if out is not None else env["root"] / "out.safetensors"
    teacher = teacher if teacher is not None else env["teacher"]
    return run_cli("init", "-t", teacher, "-s", env["manifest"], "-o", out, "--exclude", "head*", *extra)


def data_bytes(path: Path) -> int:
    """Bytes of tensor data in a safetensors file (its size minus the 8-byte length and the header)."""
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
    return path.stat().st_size - 8 - header_len


# ------------------------------------------------------------------------------------------- help


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ["Weight selection", "Commands:", "init", "inspect", "verify", "--version"]),
        (
            ("init",),
            [
                "--teacher",
                "--student-config",
                "--output",
                "--exclude",
                "--dtype",
                "--max-shard-size",
                "--set",
                "--teacher-config",
                "--attention",
                "--layers",
                "--elements",
                "--seed",
                "--rescale",
            ],
        ),
        (("inspect",), ["--teacher", "--student-config", "--exclude", "--json", "Writes no", "--set", "--elements"]),
        (("verify",), ["--teacher", "--student", "--json", "bit for bit"]),
    ],
    ids=["group", "init", "inspect", "verify"],
)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(args: tuple[str, ...], expected: list[str], flag: str) -> None:
    result = run_cli(*args, flag)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")
    for text in expected:
        assert text in result.stdout
    assert result.stderr == ""


def test_python_dash_m_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wsel", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: wsel [OPTIONS] COMMAND [ARGS]...\n")
    assert proc.stderr == ""


def test_version() -> None:
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"wsel, version {__version__}\n"


# -------------------------------------------------------------------------------------- outputs


def test_single_file_from_single_and_sharded_teacher(env: dict) -> None:
    expected = expected_tensors(env["state"])
    a, b = env["root"] / "a.safetensors", env["root"] / "b.safetensors"
    assert init(env, "-q", out=a).exit_code == 0
    assert init(env, "-q", teacher=env["sharded"], out=b).exit_code == 0
    assert_same_tensors(load_file(str(a)), expected)
    assert_same_tensors(load_file(str(b)), expected)
    # 64 → 30 is not a stride: spot-check the paper's indices on the rows directly.
    rows = torch.round(torch.linspace(0, 63, 30)).long()
    assert torch.equal(load_file(str(b))["layers.1.mlp.bias"], env["state"]["layers.1.mlp.bias"][rows])
    assert torch.equal(load_file(str(a))["embed.position_ids"], env["state"]["embed.position_ids"])


def test_sharded_folder_output(env: dict) -> None:
    single, folder = env["root"] / "single.safetensors", env["root"] / "out"
    assert init(env, "-q", teacher=env["sharded"], out=single).exit_code == 0
    result = init(env, "--json", "--max-shard-size", "2kB", teacher=env["sharded"], out=f"{folder}/")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)

    shards = sorted(p.name for p in folder.iterdir() if p.name != "model.safetensors.index.json")
    n = len(shards)
    assert n >= 3
    assert shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert sorted(p.name for p in folder.iterdir()) == [*shards, "model.safetensors.index.json"]
    assert report["run"]["files"] == [str(folder / s) for s in shards] + [str(folder / "model.safetensors.index.json")]

    index = json.loads((folder / "model.safetensors.index.json").read_text())
    weight_map = index["weight_map"]
    merged: dict[str, torch.Tensor] = {}
    for shard in shards:
        tensors = load_file(str(folder / shard))
        assert tensors, shard
        assert {name for name, file in weight_map.items() if file == shard} == set(tensors), shard
        assert data_bytes(folder / shard) <= 2000 or len(tensors) == 1, shard
        assert not set(tensors) & set(merged)
        merged |= tensors
    assert set(weight_map) == set(merged)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in merged.values())
    assert_same_tensors(merged, load_file(str(single)))
    assert_same_tensors(merged, expected_tensors(env["state"]))
    # The folder is itself a checkpoint wsel (and transformers) can open: use it as a teacher.
    again = env["root"] / "again.safetensors"
    assert init(env, "-q", teacher=folder, out=again).exit_code == 0
    assert_same_tensors(load_file(str(again)), merged)


def test_folder_output_below_shard_size_is_one_model_file(env: dict) -> None:
    folder = env["root"] / "out"
    assert init(env, "-q", out=folder).exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors"]
    assert_same_tensors(load_file(str(folder / "model.safetensors")), expected_tensors(env["state"]))


def test_force_replaces_a_sharded_folder_and_removes_stale_shards(env: dict) -> None:
    folder = env["root"] / "out"
    assert init(env, "-q", "--max-shard-size", "2kB", out=folder).exit_code == 0
    before = snapshot(env["root"])
    first = sorted(p.name for p in folder.iterdir())[0]
    refused = init(env, "-q", out=folder)
    assert refused.exit_code == 1
    assert refused.stderr == f"wsel: error: {folder}: already holds {first}; pass --force to replace the checkpoint\n"
    assert snapshot(env["root"]) == before
    assert init(env, "-q", "--force", out=folder).exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors"]  # old shards and index gone
    assert_same_tensors(load_file(str(folder / "model.safetensors")), expected_tensors(env["state"]))


def test_runs_are_byte_identical(env: dict) -> None:
    a, b = env["root"] / "a.safetensors", env["root"] / "b.safetensors"
    assert init(env, "-q", out=a).exit_code == 0
    assert init(env, "-q", out=b).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    # Another process with another hash seed (safetensors' own writer orders metadata by hash).
    c = env["root"] / "c.safetensors"
    args = ["init", "-t", env["teacher"], "-s", env["manifest"], "-o", c, "--exclude", "head*", "-q"]
    proc = subprocess.run(
        [sys.executable, "-m", "wsel", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("", "")
    assert c.read_bytes() == a.read_bytes()
    # Sharded folders too, index included.
    for name in ("d1", "d2"):
        assert init(env, "-q", "--max-shard-size", "2kB", out=env["root"] / name).exit_code == 0
    d1, d2 = snapshot(env["root"] / "d1"), snapshot(env["root"] / "d2")
    assert len(d1) > 2
    assert d1 == d2


# -------------------------------------------------------------------------------------- inspect


@pytest.mark.parametrize("with_student", [False, True], ids=["teacher_only", "with_student"])
@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_inspect_writes_nothing(env: dict, with_student: bool, as_json: bool) -> None:
    before = snapshot(env["root"])
    args = ["inspect", "-t", env["sharded"]]
    if with_student:
        args += ["-s", env["manifest"], "--exclude", "head*"]
    result = run_cli(*args, *(["--json"] if as_json else []))
    assert result.exit_code == 0, result.stderr
    assert snapshot(env["root"]) == before
    if not as_json:
        assert result.stdout == ""
        assert "embed.weight" in result.stderr
        return
    doc = json.loads(result.stdout)
    assert doc["command"] == "inspect"
    if with_student:
        assert doc["run"] is None
        assert doc["excluded"] == ["head.weight"]
        assert {t["name"]: t["shape"] for t in doc["tensors"]} == {k: list(v) for k, v in STUDENT_SHAPES.items()}
    else:
        shapes = {t["name"]: t["shape"] for t in doc["tensors"]}
        assert shapes == {k: list(v.shape) for k, v in env["state"].items()}
        assert doc["teacher"]["files"] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]


# ---------------------------------------------------------------------------------------- reports


def test_json_report_matches_the_files(env: dict) -> None:
    out = env["root"] / "out.safetensors"
    result = init(env, "--json", out=out)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert result.stdout.endswith("}\n")
    written = load_file(str(out))
    assert doc["command"] == "init"
    entries = {t["name"]: t for t in doc["tensors"] if t["action"] != "exclude"}
    assert {n: e["shape"] for n, e in entries.items()} == {n: list(t.shape) for n, t in written.items()}
    assert {n: e["dtype"] for n, e in entries.items()} == {
        n: ("I64" if n == "embed.position_ids" else "F32") for n in written
    }
    assert doc["excluded"] == ["head.weight"]
    tensor_bytes = sum(t.numel() * t.element_size() for t in written.values())
    assert doc["totals"]["bytes"] == tensor_bytes == doc["run"]["tensor_bytes"]
    assert doc["totals"]["tensors_written"] == len(written)
    assert doc["totals"]["teacher_bytes"] == sum(t.numel() * t.element_size() for t in env["state"].values())
    assert doc["run"]["files"] == [str(out)]
    assert doc["run"]["file_bytes"] == out.stat().st_size
    assert entries["layers.1.mlp.weight"]["teacher"] == "layers.1.mlp.weight"
    mlp_rows = entries["layers.0.mlp.weight"]["dims"][0]
    assert (mlp_rows["rule"], mlp_rows["indices"]) == (
        "indices",
        torch.round(torch.linspace(0, 63, 30)).long().tolist(),
    )


def test_report_files(env: dict) -> None:
    rj, rm = env["root"] / "r.json", env["root"] / "r.md"
    result = init(env, "--json", "--report", rj, out=env["root"] / "a.safetensors")
    assert result.exit_code == 0, result.stderr
    assert json.loads(rj.read_text()) == json.loads(result.stdout)

    result = init(env, "-q", "--report", rm, out=env["root"] / "b.safetensors")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    lines = rm.read_text().splitlines()
    assert lines[0] == f"# wsel init: `{env['teacher']}` → `{env['manifest']}`"
    assert "| student tensor | teacher tensor | shape (teacher → student) | selection per dim | action |" in lines
    assert "| `norm.weight` | `same` | `[16] → [8]` | `0:16:2` | `select` |" in lines
    assert "| `layers.{0-1}.attn.weight` | `same` | `[48, 16] → [24, 8]` | `0:48:2, 0:16:2` | `select` |" in lines
    assert "| `layers.{0-1}.mlp.weight` | `same` | `[64, 16] → [30, 8]` | `linspace[30], 0:16:2` | `select` |" in lines
    assert "| `head.weight` |  | `[10, 8]` | `--exclude` | `exclude` |" in lines


def test_student_config_from_stdin(env: dict) -> None:
    out = env["root"] / "out.safetensors"
    text = json.dumps({k: list(v) for k, v in STUDENT_SHAPES.items()})
    result = run_cli("init", "-t", env["teacher"], "-s", "-", "-o", out, "--exclude", "head*", "--json", input=text)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["student"]["config"] == "<stdin>"
    assert_same_tensors(load_file(str(out)), expected_tensors(env["state"]))


def test_dtype_bf16_casts_floats_only(env: dict) -> None:
    out = env["root"] / "out.safetensors"
    result = init(env, "--dtype", "bf16", "--json", out=out)
    assert result.exit_code == 0, result.stderr
    written = load_file(str(out))
    expected = {
        n: uniform_element_selection(env["state"][n], STUDENT_SHAPES[n]).to(torch.bfloat16) for n in FLOAT_NAMES
    }
    expected["embed.position_ids"] = env["state"]["embed.position_ids"]  # I64: bytes untouched
    assert_same_tensors(written, expected)
    with safe_open(str(out), "pt") as f:
        assert f.get_slice("embed.position_ids").get_dtype() == "I64"
        assert f.get_slice("norm.weight").get_dtype() == "BF16"
    doc = json.loads(result.stdout)
    assert doc["totals"]["bytes"] == sum(t.numel() * t.element_size() for t in written.values())


def test_quiet(env: dict) -> None:
    loud = init(env, out=env["root"] / "a.safetensors")
    assert loud.exit_code == 0
    assert "norm.weight" in loud.stderr  # so the quiet run below really silences something
    quiet = init(env, "--quiet", out=env["root"] / "b.safetensors")
    assert quiet.exit_code == 0
    assert (quiet.stdout, quiet.stderr) == ("", "")
    assert (env["root"] / "b.safetensors").read_bytes() == (env["root"] / "a.safetensors").read_bytes()


# -------------------------------------------------------------------------------------- refusals


def assert_refused(env: dict, args: list, message: str, input: str | None = None) -> None:
    """Exit 1, exactly `wsel: error: <message>` on one line, and nothing on disk changed."""
    before = snapshot(env["root"])
    result = run_cli(*args, input=input)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"wsel: error: {message}\n"
    after = snapshot(env["root"])
    assert not [p for p in after if p.endswith(PARTIAL)]
    assert after == before


def init_args(env: dict, student: Path | str, out: Path | None = None, *extra: str) -> list:
    out = out if out is not None else env["root"] / "out.safetensors"
    return ["init", "-t", env["teacher"], "-s", student, "-o", out, "--exclude", "head*", *extra]


@pytest.mark.parametrize("from_stdin", [False, True], ids=["file", "stdin"])
def test_refuses_invalid_json(env: dict, from_stdin: bool) -> None:
    text = '{"norm.weight": [8],}'
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        problem = str(e)  # "Expecting property name enclosed in double quotes: line 1 column 21 (char 20)"
    assert "char 20" in problem
    if from_stdin:
        assert_refused(env, init_args(env, "-"), f"<stdin>: student config is not valid JSON: {problem}", input=text)
    else:
        bad = env["root"] / "bad.json"
        bad.write_text(text)
        assert_refused(env, init_args(env, bad), f"{bad}: student config is not valid JSON: {problem}")


def test_refuses_a_manifest_naming_a_tensor_twice(env: dict) -> None:
    """JSON objects may repeat a key and json.loads keeps the last one: a typo would silently drop a tensor.

    Safetensors headers with a repeated name are refused (see test_header.py); a manifest must be too.
    """
    bad = env["root"] / "dup.json"
    bad.write_text('{"norm.weight": [8], "layers.0.mlp.bias": [30], "norm.weight": [4]}')
    before = snapshot(env["root"])
    result = run_cli(*init_args(env, bad))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"wsel: error: {bad}: ")
    assert "'norm.weight'" in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n")
    assert snapshot(env["root"]) == before


@pytest.mark.parametrize("shape", [8, "8", {"dims": [8]}, [8.0], [-1]], ids=["int", "str", "dict", "float", "negative"])
def test_refuses_a_shape_that_is_not_a_list(env: dict, shape: object) -> None:
    bad = env["root"] / "bad.json"
    bad.write_text(json.dumps({"norm.weight": shape}))
    if isinstance(shape, dict):
        message = (
            f"{bad}: tensor 'norm.weight': expected [dims] or {{\"shape\": [dims], \"dtype\": ...}}, got keys ['dims']"
        )
    else:
        message = f"{bad}: tensor 'norm.weight': shape {shape!r} is not a list of non-negative integers"
    assert_refused(env, init_args(env, bad), message)


def test_refuses_a_student_dim_larger_than_the_teacher(env: dict) -> None:
    shapes = {"layers.0.mlp.weight": (30, 16), "layers.1.mlp.weight": (30, 20)}
    manifest = write_manifest(env["root"] / "big.json", shapes)
    assert_refused(
        env,
        init_args(env, manifest),
        "student tensor 'layers.1.mlp.weight' [30, 20] from teacher 'layers.1.mlp.weight' [64, 16]: "
        "dim 1 is 20 in the student but 16 in the teacher; a student dim cannot be larger than the teacher's",
    )


def test_refuses_a_student_tensor_without_teacher_counterpart(env: dict) -> None:
    manifest = write_manifest(env["root"] / "extra.json", {"norm.weight": (8,), "final_norm.bias": (8,)})
    assert_refused(
        env,
        init_args(env, manifest),
        f"student tensor 'final_norm.bias' has no counterpart 'final_norm.bias' in the teacher {env['teacher']}; "
        "pass --exclude 'final_norm.bias' to leave it to the student's own init",
    )


def test_refuses_a_deeper_student(env: dict) -> None:
    manifest = write_manifest(env["root"] / "deep.json", {f"layers.{i}.attn.weight": (24, 8) for i in range(5)})
    assert_refused(
        env,
        init_args(env, manifest),
        f"student has 5 layers in 'layers' but the teacher {env['teacher']} has 4; "
        "a student cannot be deeper than its teacher",
    )


def test_refuses_to_subsample_an_integer_tensor(env: dict) -> None:
    manifest = write_manifest(env["root"] / "ids.json", {"embed.position_ids": (1, 25)})
    assert_refused(
        env,
        init_args(env, manifest),
        "student tensor 'embed.position_ids' [1, 25] from teacher 'embed.position_ids' [1, 50]: I64 tensors hold "
        "ids or flags and are never subsampled; give the student the teacher's shape or --exclude it",
    )


def test_existing_output_needs_force(env: dict) -> None:
    out = env["root"] / "out.safetensors"
    out.write_bytes(b"precious bytes")
    assert_refused(env, init_args(env, env["manifest"], out), f"{out}: already exists; pass --force to replace it")
    assert out.read_bytes() == b"precious bytes"
    result = run_cli(*init_args(env, env["manifest"], out, "--force", "-q"))
    assert result.exit_code == 0, result.stderr
    assert_same_tensors(load_file(str(out)), expected_tensors(env["state"]))
    assert not [p for p in env["root"].rglob("*") if p.name.endswith(PARTIAL)]


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_refuses_to_overwrite_the_teacher_file(env: dict, force: bool) -> None:
    teacher = env["teacher"]
    extra = ["--force"] if force else []
    message = f"{teacher}: output is the teacher file; choose another output path"
    assert_refused(env, init_args(env, env["manifest"], teacher, *extra), message)
    # The same file spelled differently is still the teacher.
    spelled = teacher.parent / ".." / teacher.parent.name / teacher.name
    assert_refused(env, init_args(env, env["manifest"], spelled, *extra), message.replace(str(teacher), str(spelled)))


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_refuses_the_teacher_folder_as_output(env: dict, force: bool) -> None:
    sharded = env["sharded"]
    args = ["init", "-t", sharded, "-s", env["manifest"], "-o", sharded, "--exclude", "head*"]
    assert_refused(
        env, args + (["--force"] if force else []), f"{sharded}: output folder holds the teacher; choose another folder"
    )
    # A single-file teacher's folder is refused too.
    folder = env["teacher"].parent
    assert_refused(
        env,
        init_args(env, env["manifest"], folder, *(["--force"] if force else [])),
        f"{folder}: output folder holds the teacher; choose another folder",
    )


def test_refuses_a_teacher_shard_as_output(env: dict) -> None:
    shard = env["sharded"] / "model-00002-of-00003.safetensors"
    args = ["init", "-t", env["sharded"], "-s", env["manifest"], "-o", shard, "--exclude", "head*", "--force"]
    assert_refused(env, args, f"{shard}: output is the teacher file; choose another output path")


def test_unwritable_report_fails_before_the_checkpoint_is_written(env: dict) -> None:
    """A run that exits 1 must not leave a new checkpoint behind: scripts read exit 1 as "nothing done"."""
    report = env["root"] / "no_such_folder" / "r.json"
    before = snapshot(env["root"])
    result = run_cli(*init_args(env, env["manifest"], None, "-q", "--report", report))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"wsel: error: {report}: cannot write the report: ")
    assert result.stderr.count("\n") == 1
    assert snapshot(env["root"]) == before


def test_refuses_an_output_in_a_missing_folder(env: dict) -> None:
    out = env["root"] / "nowhere" / "out.safetensors"
    assert_refused(
        env,
        init_args(env, env["manifest"], out),
        f"{out}: folder {out.parent} does not exist; create it or choose another path",
    )


def test_refuses_a_missing_teacher(env: dict) -> None:
    missing = env["root"] / "missing.safetensors"
    args = ["init", "-t", missing, "-s", env["manifest"], "-o", env["root"] / "out.safetensors"]
    assert_refused(env, args, f"{missing}: no such file or directory")


def test_inspect_refusal_is_one_line_too(env: dict) -> None:
    manifest = write_manifest(env["root"] / "extra.json", {"final_norm.bias": (8,)})
    assert_refused(
        env,
        ["inspect", "-t", env["teacher"], "-s", manifest, "--json"],
        f"student tensor 'final_norm.bias' has no counterpart 'final_norm.bias' in the teacher {env['teacher']}; "
        "pass --exclude 'final_norm.bias' to leave it to the student's own init",
    )


SIZE_ERROR = "Error: Invalid value for '--max-shard-size': "


@pytest.mark.parametrize(
    ("extra", "drop_teacher", "error"),
    [
        ([], True, "Error: Missing option '--teacher' / '-t'."),
        (["--max-shard-size", "lots"], False, SIZE_ERROR + "'lots' is not a size like 5GB, 500MB or 2GiB"),
        (["--max-shard-size", "0.1B"], False, SIZE_ERROR + "'0.1B' must be at least 1 byte"),
        (
            ["--dtype", "int8"],
            False,
            "Error: Invalid value for '--dtype': 'int8' is not one of 'bf16', 'fp16', 'fp32'.",
        ),
    ],
    ids=["missing_teacher", "bad_size", "tiny_size", "bad_dtype"],
)
def test_usage_errors_exit_2(env: dict, extra: list[str], drop_teacher: bool, error: str) -> None:
    before = snapshot(env["root"])
    args = init_args(env, env["manifest"])
    if drop_teacher:
        args = [args[0], *args[3:]]
    result = run_cli(*args, *extra)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == error
    assert "Traceback" not in result.stderr
    assert snapshot(env["root"]) == before


@pytest.mark.parametrize("kind", ["manifest", "config"])
def test_magnitude_reads_a_student_from_stdin_once(tmp_path: Path, kind: str) -> None:
    """The magnitude strategy plans twice (a skeleton to know the axes, then the real plan); the student is
    read once, so `-s -` works and gives the same bytes as the same student given as a file. (Before the
    planner was restructured, stdin was read twice and the second read found nothing.)"""
    teacher = tmp_path / "teacher"
    shapes = {"embed.weight": (11, 24), "blocks.0.ffn.weight": (40, 24), "blocks.1.ffn.weight": (40, 24)}
    save(teacher / "model.safetensors", random_state(shapes))
    config = {"model_type": "tinyformer", "hidden_size": 24, "ffn_size": 40, "num_hidden_layers": 2}
    (teacher / "config.json").write_text(json.dumps(config))
    if kind == "manifest":
        text = json.dumps({"embed.weight": [11, 12], "blocks.0.ffn.weight": [20, 12]})
    else:
        text = json.dumps(config | {"hidden_size": 12, "ffn_size": 20})
    (tmp_path / "student.json").write_text(text)
    args = ("init", "-t", teacher, "--elements", "magnitude", "-q")
    from_stdin = run_cli(*args, "-s", "-", "-o", tmp_path / "a/", input=text)
    from_file = run_cli(*args, "-s", tmp_path / "student.json", "-o", tmp_path / "b/")
    assert from_stdin.exit_code == from_file.exit_code == 0, from_stdin.stderr + from_file.stderr
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert "model.safetensors" in files
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
