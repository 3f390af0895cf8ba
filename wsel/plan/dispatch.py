"""Which planning path a student takes, and the importance pre-pass of the magnitude strategy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from wsel.arch import for_model_type
from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import SpecError
from wsel.hfconfig import TeacherConfig
from wsel.plan.arch import ArchPlanner
from wsel.plan.config import ConfigPlanner
from wsel.plan.generic import GenericPlanner
from wsel.plan.importance import compute_scores
from wsel.plan.model import Plan, PlanOptions
from wsel.spec import ConfigStudent, Student, TensorListStudent


def make_plan(
    teacher: CheckpointIndex, student: Student, options: PlanOptions, teacher_config: TeacherConfig | None = None
) -> Plan:
    """Map every student tensor to its teacher source and a Selection per dim. Raises WselError subclasses.

    A tensor-list student takes the generic path; a config.json student (which needs `teacher_config`)
    the architecture path of its family, or the config-driven generic path for a family wsel has no data for.
    The magnitude strategy needs the teacher's weights: a first plan (by the paper's rule) names every
    axis and the tensors that carry it, their scores are computed streaming, then the real plan is built.
    """
    if options.elements != "magnitude":
        return _plan(teacher, student, options, teacher_config, None)
    skeleton = _plan(teacher, student, replace(options, elements="uniform"), teacher_config, None)
    return _plan(teacher, student, options, teacher_config, compute_scores(skeleton))


def _plan(
    teacher: CheckpointIndex,
    student: Student,
    options: PlanOptions,
    teacher_config: TeacherConfig | None,
    scores: dict[str, np.ndarray] | None,
) -> Plan:
    if isinstance(student, TensorListStudent):
        return GenericPlanner(teacher, options, scores).plan(student, student.tensors)
    if teacher_config is None:
        raise SpecError(f"{student.source}: a config.json student needs the teacher's config.json")
    return _config_planner(teacher, teacher_config, student, options, scores).plan()


def _config_planner(
    teacher: CheckpointIndex,
    teacher_config: TeacherConfig,
    student: ConfigStudent,
    options: PlanOptions,
    scores: dict[str, np.ndarray] | None,
) -> ArchPlanner | ConfigPlanner:
    t_type, s_type = teacher_config.config.get("model_type"), student.config.get("model_type")
    if t_type != s_type:
        raise SpecError(
            f"{student.source}: model_type {s_type!r} differs from the teacher's {t_type!r} ({teacher_config.source}); "
            "weight selection needs the same architecture"
        )
    arch = for_model_type(str(t_type))
    if arch is None:
        return ConfigPlanner(teacher, teacher_config, student, options, scores)
    return ArchPlanner(teacher, arch, teacher_config, student, options, scores)
