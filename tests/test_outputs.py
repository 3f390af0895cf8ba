"""Output naming edge cases: a trailing slash means a folder, an empty student is refused, and
`inspect --report FILE.md` of a checkpoint writes Markdown."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from conftest import run_cli, save, write_manifest


def small(tmp_path: Path) -> tuple[Path, Path]:
    teacher = save(tmp_path / "teacher.safetensors", {"a.weight": torch.ones(4, 4), "head.weight": torch.ones(2, 4)})
    return teacher, write_manifest(tmp_path / "s.json", {"a.weight": [2, 2], "head.weight": [2, 2]})


def test_trailing_slash_makes_a_folder_even_for_a_safetensors_name(tmp_path: Path) -> None:
    teacher, student = small(tmp_path)
    result = run_cli("init", "-t", teacher, "-s", student, "-o", f"{tmp_path / 'x.safetensors'}{os.sep}", "-q")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "x.safetensors").is_dir()
    assert sorted(p.name for p in (tmp_path / "x.safetensors").iterdir()) == ["model.safetensors"]


def test_a_student_with_every_tensor_excluded_is_refused(tmp_path: Path) -> None:
    teacher, student = small(tmp_path)
    out = tmp_path / "out.safetensors"
    result = run_cli("init", "-t", teacher, "-s", student, "-o", out, "--exclude", "*")
    assert result.exit_code == 1
    assert result.stderr == f"wsel: error: {out}: nothing to write: every student tensor is excluded\n"
    assert not out.exists()


def test_inspect_report_markdown_of_a_checkpoint(tmp_path: Path) -> None:
    teacher, _ = small(tmp_path)
    report = tmp_path / "teacher.md"
    result = run_cli("inspect", "-t", teacher, "--report", report, "-q")
    assert result.exit_code == 0, result.stderr
    assert report.read_text() == (
        f"# {teacher}: 1 file(s)\n\n"
        "no config.json: a shape manifest or template student takes the generic path (dims by size)\n\n"
        "| tensor | shape | dtype | bytes | file |\n|---|---|---|---|---|\n"
        "| `a.weight` | `[4, 4]` | F32 | 64 B | teacher.safetensors |\n"
        "| `head.weight` | `[2, 4]` | F32 | 32 B | teacher.safetensors |\n"
        "\n2 tensors, 24 parameters, 96 bytes\n"
    )
