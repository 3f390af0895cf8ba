"""The generic path for a config.json student of a family wsel has no data for.

Student shapes come from the teacher's: a dim equal to a teacher config value (e.g. hidden_size
4096) takes the student's value for the same key (2048), and each layer group keeps as many
layers as the key holding the teacher's depth says. Then the paper's rule applies to every dim.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import SpecError
from wsel.hffolder import FolderFiles, student_config_json, with_dtype
from wsel.layers import find_layer
from wsel.options import PlanOptions
from wsel.plan.base import cast_name
from wsel.plan.generic import GenericPlanner
from wsel.plan.model import Plan
from wsel.spec import ConfigStudent, StudentTensor


class ConfigPlanner:
    """Derives the student's tensors from config values, then plans them on the generic path."""

    def __init__(
        self,
        teacher: CheckpointIndex,
        student: ConfigStudent,
        options: PlanOptions,
        scores: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.teacher, self.student, self.options, self.scores = teacher, student, options, scores
        t_config = student.teacher.config
        self.model_type = t_config.get("model_type")
        depth_keys = {k for k in t_config if "layer" in k}  # depth, not a width: never maps a dim
        self.widths = _size_map(t_config, student.config, exclude=depth_keys, where=student.source)
        self.depths = _size_map(t_config, student.config, exclude=set(t_config) - depth_keys, where=student.source)

    def plan(self) -> Plan:
        mapped = ", ".join(f"{t}→{s} ({key})" for t, (s, key) in sorted(self.widths.items()))
        note = (
            f"no architecture data for model_type {self.model_type!r}: generic path, the paper's "
            f"rule on every dim; dims mapped by config values: {mapped or 'none'}"
        )
        config = with_dtype(student_config_json(self.student.config), cast_name(self.options.dtype))
        folder_files = FolderFiles(config, self.student.teacher.companions)
        generic = GenericPlanner(self.teacher, self.options, self.scores)
        return generic.plan(self.student, self._derived_tensors(), folder_files, notes=(note,))

    def _derived_tensors(self) -> tuple[StudentTensor, ...]:
        """The teacher's tensors (by name), cut to the student's depth, each dim mapped by config values."""
        group_sizes: dict[str, int] = {}
        for name in self.teacher.tensors:
            ref = find_layer(name)
            if ref is not None:
                group_sizes[ref.group] = max(group_sizes.get(ref.group, 0), ref.index + 1)
        tensors = []
        for info in sorted(self.teacher.tensors.values(), key=lambda t: t.name):
            ref = find_layer(info.name)
            if ref is not None:
                depth = group_sizes[ref.group]
                if ref.index >= self.depths.get(depth, (depth, ""))[0]:
                    continue
            tensors.append(StudentTensor(info.name, tuple(self.widths.get(d, (d, ""))[0] for d in info.shape), None))
        return tuple(tensors)


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
