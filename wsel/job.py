"""From what the user named to a Plan: open the teacher, read the student, pick the planning path."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from wsel import arch as arch_data
from wsel.checkpoint.index import open_checkpoint
from wsel.errors import SpecError
from wsel.hfconfig import apply_sets, load_config, parse_set
from wsel.importance import compute_scores
from wsel.plan import Plan, PlanOptions, build_plan
from wsel.plan_arch import build_arch_plan
from wsel.plan_config import build_config_plan
from wsel.spec import StudentSpec, load_spec


def prepare(
    teacher_path: Path,
    student_config: str | None,
    options: PlanOptions,
    sets: tuple[str, ...] = (),
    teacher_config: Path | None = None,
) -> Plan:
    """Build the plan for `wsel init` / `wsel inspect`. Raises WselError subclasses.

    The magnitude strategy needs the teacher's weights: a first plan (by the paper's rule) names every
    axis and the tensors that carry it, their scores are computed streaming, then the real plan is built.
    """
    if options.elements != "magnitude":
        return _prepare(teacher_path, student_config, options, sets, teacher_config, None)
    skeleton = _prepare(teacher_path, student_config, replace(options, elements="uniform"), sets, teacher_config, None)
    scores = compute_scores(skeleton)
    return _prepare(teacher_path, student_config, options, sets, teacher_config, scores)


def _prepare(
    teacher_path: Path,
    student_config: str | None,
    options: PlanOptions,
    sets: tuple[str, ...],
    teacher_config: Path | None,
    scores: dict[str, np.ndarray] | None,
) -> Plan:
    teacher = open_checkpoint(teacher_path)
    if student_config is None and not sets:
        raise SpecError(
            "no student given: pass --student-config, or --set KEY=VALUE to derive it from the teacher's config"
        )
    student = load_spec(student_config) if student_config is not None else None
    if student is not None and student.kind != "hf-config":
        if sets:
            raise SpecError(
                f"{student.source}: --set applies to Hugging Face config.json students, not a {student.kind}"
            )
        return build_plan(teacher, student, options, scores)

    teacher_config_path = teacher_config or teacher.folder / "config.json"
    if not teacher_config_path.is_file():
        raise SpecError(
            f"{teacher_config_path}: teacher config.json not found; pass --teacher-config PATH "
            "(a config.json student needs the teacher's config)"
        )
    t_config = load_config(teacher_config_path)
    student = _student_from_config(student, t_config, [parse_set(s) for s in sets], teacher_config_path)
    assert student.config is not None
    t_type, s_type = t_config.get("model_type"), student.config.get("model_type")
    if t_type != s_type:
        raise SpecError(
            f"{student.source}: model_type {s_type!r} differs from the teacher's {t_type!r} ({teacher_config_path}); "
            "weight selection needs the same architecture"
        )
    arch = arch_data.for_model_type(str(t_type))
    if arch is None:
        return build_config_plan(teacher, t_config, student, options, scores)
    return build_arch_plan(teacher, arch, t_config, student, options, str(teacher_config_path), scores)


def _student_from_config(
    student: StudentSpec | None, teacher_config: dict[str, Any], sets: list[tuple[str, Any]], teacher_config_path: Path
) -> StudentSpec:
    if student is None:
        config = derive_config(teacher_config, sets)
        described = " ".join(f"{k}={v}" for k, v in sets)
        return StudentSpec(f"{teacher_config_path} with --set {described}", "hf-config", (), config=config)
    assert student.config is not None
    return replace(student, config=apply_sets(student.config, sets)) if sets else student


def derive_config(teacher_config: dict[str, Any], sets: list[tuple[str, Any]]) -> dict[str, Any]:
    """The teacher's config with overrides; an explicit head_dim that merely restated hidden / heads
    follows the new sizes unless it was set too (as transformers derives it when absent)."""
    config = apply_sets(teacher_config, sets)
    set_keys = {k for k, _ in sets}
    hidden, heads = teacher_config.get("hidden_size"), teacher_config.get("num_attention_heads")
    if (
        "head_dim" not in set_keys
        and isinstance(teacher_config.get("head_dim"), int)
        and isinstance(hidden, int)
        and isinstance(heads, int)
        and heads
        and teacher_config["head_dim"] * heads == hidden
    ):
        s_hidden, s_heads = config.get("hidden_size"), config.get("num_attention_heads")
        if isinstance(s_hidden, int) and isinstance(s_heads, int) and s_heads and s_hidden % s_heads == 0:
            config["head_dim"] = s_hidden // s_heads
    return config
