"""Provenance in the output, `wsel inspect` of a student, and `wsel verify`."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
import torch
from conftest import run_cli, save, save_sharded, write_manifest
from safetensors import safe_open

from wsel.checkpoint.header import read_header


def teacher_and_student(tmp_path: Path) -> tuple[Path, Path]:
    gen = torch.Generator().manual_seed(0)
    tensors = {"embed.weight": torch.randn(10, 64, generator=gen), "norm.weight": torch.randn(64, generator=gen)}
    for i in range(4):
        tensors[f"layers.{i}.up.weight"] = torch.randn(96, 64, generator=gen).to(torch.bfloat16)
        tensors[f"layers.{i}.down.weight"] = torch.randn(64, 96, generator=gen)
    teacher = save_sharded(tmp_path / "teacher", tensors, shards=2)
    shapes = {"embed.weight": (10, 32), "norm.weight": (32,)}
    for i in range(2):
        shapes[f"layers.{i}.up.weight"] = (48, 32)
        shapes[f"layers.{i}.down.weight"] = (32, 48)
    return teacher, write_manifest(tmp_path / "student.json", shapes)


def flip_byte(path: Path, tensor: str, offset: int) -> None:
    header = read_header(path)
    info = next(t for t in header.tensors if t.name == tensor)
    with open(path, "r+b") as f:
        f.seek(info.start + offset)
        value = f.read(1)[0]
        f.seek(info.start + offset)
        f.write(bytes([value ^ 0x01]))


@pytest.mark.parametrize(
    "options",
    [
        (),
        ("--elements", "random", "--seed", "5", "--layers", "uniform"),
        ("--elements", "magnitude", "--rescale", "--dtype", "fp16"),
    ],
    ids=["paper", "random-uniform-layers", "magnitude-rescale-cast"],
)
def test_verify_passes_on_fresh_output_and_fails_after_one_byte_changes(tmp_path: Path, options: tuple) -> None:
    teacher, student = teacher_and_student(tmp_path)
    out = tmp_path / "out"
    assert (
        run_cli("init", "-t", teacher, "-s", student, "-o", out, "-q", "--max-shard-size", "3kB", *options).exit_code
        == 0
    )
    assert len(list(out.glob("model-*.safetensors"))) > 1  # a sharded student

    ok = run_cli("verify", "-t", teacher, "-s", out, "--json")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout) | {"teacher": "", "student": ""} == {
        "schema": 1,
        "wsel_version": json.loads(ok.stdout)["wsel_version"],
        "command": "verify",
        "teacher": "",
        "student": "",
        "tensors_checked": 6,
        "ok": True,
        "mismatches": [],
    }

    weight_map = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    shard = out / weight_map["layers.1.down.weight"]
    flip_byte(shard, "layers.1.down.weight", 37)
    bad = run_cli("verify", "-t", teacher, "-s", out)
    assert bad.exit_code == 1
    teacher_layer = json.loads(run_cli("inspect", "-t", out, "--json").stdout)["provenance"]["tensors"][
        "layers.1.down.weight"
    ]["teacher"]
    assert bad.stderr == (
        f"wsel: error: {out}: 1 mismatch: layers.1.down.weight: differs from its selection of "
        f"'{teacher_layer}' at byte 37\n"
    )


def test_verify_names_a_different_teacher(tmp_path: Path) -> None:
    teacher, student = teacher_and_student(tmp_path)
    out = tmp_path / "out.safetensors"
    assert run_cli("init", "-t", teacher, "-s", student, "-o", out, "-q").exit_code == 0
    # Rewrite one teacher shard with other values but the same header: the fingerprint still matches,
    # the data does not; then change a header: the fingerprint says so.
    shard = sorted(teacher.glob("model-*.safetensors"))[0]
    first = read_header(shard).tensors[0]
    flip_byte(shard, first.name, 0)
    result = run_cli("verify", "-t", teacher, "-s", out)
    assert (
        result.exit_code == 1
        and f"{first.name}: differs from its selection of '{first.name}' at byte 0" in result.stderr
    )


def test_verify_refuses_a_checkpoint_without_provenance(tmp_path: Path) -> None:
    teacher, _ = teacher_and_student(tmp_path)
    plain = save(tmp_path / "plain.safetensors", {"norm.weight": torch.zeros(3)})
    result = run_cli("verify", "-t", teacher, "-s", plain)
    assert result.exit_code == 1
    assert result.stderr == (
        f"wsel: error: {plain}: no wsel.provenance metadata; only checkpoints written by wsel can be verified\n"
    )


def test_provenance_records_axes_strategies_and_teacher_fingerprints(tmp_path: Path) -> None:
    teacher, student = teacher_and_student(tmp_path)
    out = tmp_path / "out.safetensors"
    result = run_cli("init", "-t", teacher, "-s", student, "-o", out, "--elements", "random", "--seed", "9", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    with safe_open(str(out), "pt") as f:
        record = json.loads(f.metadata()["wsel.provenance"])
    assert record["options"] == {
        "layers": "first", "elements": "random", "seed": 9, "attention": "structured", "rescale": False, "dtype": None,
    }  # fmt: skip
    assert record["axes"] == report["axes"]  # the same index sets, compactly, in the file and in --json
    assert record["axes"]["64→32"]["rule"] == "indices" and len(record["axes"]["64→32"]["indices"]) == 32
    shards = sorted(teacher.glob("model-*.safetensors"))
    assert record["teacher"] == [
        {"file": p.name, "header_sha256": hashlib.sha256(p.read_bytes()[8 : 8 + _header_len(p)]).hexdigest()}
        for p in shards
    ]
    assert record["tensors"]["layers.1.up.weight"] == {"teacher": "layers.1.up.weight", "dims": ["96→48", "64→32"]}
    shown = run_cli("inspect", "-t", out)
    assert shown.exit_code == 0
    assert "made by wsel" in shown.stderr and "elements=random" in shown.stderr and "seed=9" in shown.stderr


def _header_len(path: Path) -> int:
    return struct.unpack("<Q", path.read_bytes()[:8])[0]
