"""The generic path for a config.json student of a family wsel has no data for.

Student shapes come from the teacher's: a dim equal to a teacher config value (e.g. hidden_size
4096) takes the student's value for the same key (2048), and each layer group keeps as many
layers as the key holding the teacher's depth says. Then the paper's rule applies to every dim.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import SpecError
from wsel.layers import find_layer
from wsel.plan import Plan, PlanOptions, build_plan
from wsel.plan_arch import companion_files, student_config_json_generic
from wsel.spec import StudentSpec, StudentTensor


def build_config_plan(
    teacher: CheckpointIndex,
    teacher_config: dict[str, Any],
    student: StudentSpec,
    options: PlanOptions,
    scores: dict[str, np.ndarray] | None = None,
) -> Plan:
    assert student.config is not None
    depth_keys = {k for k in teacher_config if "layer" in k}  # depth, not a width: never maps a dim
    widths = _size_map(teacher_config, student.config, exclude=depth_keys, where=student.source)
    depths = _size_map(teacher_config, student.config, exclude=set(teacher_config) - depth_keys, where=student.source)

    group_sizes: dict[str, int] = {}
    for name in teacher.tensors:
        ref = find_layer(name)
        if ref is not None:
            group_sizes[ref.group] = max(group_sizes.get(ref.group, 0), ref.index + 1)
    tensors = []
    for info in sorted(teacher.tensors.values(), key=lambda t: t.name):
        ref = find_layer(info.name)
        if ref is not None and ref.index >= depths.get(group_sizes[ref.group], (group_sizes[ref.group], ""))[0]:
            continue
        tensors.append(StudentTensor(info.name, tuple(widths.get(d, (d, ""))[0] for d in info.shape), None))
    spec = StudentSpec(student.source, student.kind, tuple(tensors), student.config)
    plan = build_plan(teacher, spec, options, scores)
    mapped = ", ".join(f"{t}→{s} ({key})" for t, (s, key) in sorted(widths.items()))
    note = (
        f"no architecture data for model_type {teacher_config.get('model_type')!r}: generic path, the paper's "
        f"rule on every dim; dims mapped by config values: {mapped or 'none'}"
    )
    return replace(
        plan,
        warnings=(note, *plan.warnings),
        student_config=student_config_json_generic(student.config),
        copy_files=companion_files(teacher.folder),
    )


def _size_map(
    teacher: dict[str, Any], student: dict[str, Any], exclude: set[str], where: str
) -> dict[int, tuple[int, str]]:
    """teacher value → (student value, key) for every whole-number key the student changes."""
    result: dict[int, tuple[int, str]] = {}
    for key, t_value in teacher.items():
        s_value = student.get(key)
        if key in exclude or not _is_size(t_value) or not isinstance(s_value, int) or not _is_size(s_value):
            continue
        if t_value == s_value:
            continue
        if t_value in result and result[t_value][0] != s_value:
            other = result[t_value][1]
            raise SpecError(
                f"{where}: {other} and {key} are both {t_value} in the teacher but differ in the student; "
                "without architecture data wsel cannot tell their dims apart: give a shape manifest"
            )
        result[t_value] = (s_value, key)
    return result


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
