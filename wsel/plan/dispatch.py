"""Which planning path a student takes, and the importance pre-pass of the magnitude strategy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from wsel.arch import for_model_type
from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import SpecError
from wsel.options import PlanOptions
from wsel.plan.arch import ArchPlanner
from wsel.plan.config import ConfigPlanner
from wsel.plan.generic import GenericPlanner
from wsel.plan.importance import compute_scores
from wsel.plan.model import Plan
from wsel.spec import ConfigStudent, Student, TensorListStudent


def make_plan(teacher: CheckpointIndex, student: Student, options: PlanOptions) -> Plan:
    """Map every student tensor to its teacher source and a Selection per dim. Raises WselError subclasses.

    A tensor-list student takes the generic path; a config.json student the architecture path of its
    family, or the config-driven generic path for a family wsel has no data for.
    The magnitude strategy needs the teacher's weights: a first plan (by the paper's rule) names every
    axis and the tensors that carry it, their scores are computed streaming, then the real plan is built.
    """
    if options.elements != "magnitude":
        return _plan(teacher, student, options, None)
    skeleton = _plan(teacher, student, replace(options, elements="uniform"), None)
    return _plan(teacher, student, options, compute_scores(skeleton))


def _plan(
    teacher: CheckpointIndex, student: Student, options: PlanOptions, scores: dict[str, np.ndarray] | None
) -> Plan:
    if isinstance(student, TensorListStudent):
        return GenericPlanner(teacher, options, scores).plan(student, student.tensors)
    return _config_planner(teacher, student, options, scores).plan()


def _config_planner(
    teacher: CheckpointIndex, student: ConfigStudent, options: PlanOptions, scores: dict[str, np.ndarray] | None
) -> ArchPlanner | ConfigPlanner:
    t_type, s_type = student.teacher.config.get("model_type"), student.config.get("model_type")
    if t_type != s_type:
        where = student.teacher.source
        raise SpecError(
            f"{student.source}: model_type {s_type!r} differs from the teacher's {t_type!r} ({where}); "
            "weight selection needs the same architecture"
        )
    arch = for_model_type(str(t_type))
    if arch is None:
        return ConfigPlanner(teacher, student, options, scores)
    return ArchPlanner(teacher, arch, student, options, scores)
