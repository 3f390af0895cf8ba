"""wsel: weight selection from a large pretrained checkpoint into a smaller student, streaming.

The public API (see README.md, "Python API"): `open_teacher`, `build_plan`, `write_student`,
`verify_student`, `plan_report`, `teacher_report`, `read_schedule`, the types they take and return, and
the errors they raise. Names are imported on first use, so `import wsel` (and `wsel --version`) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The one place the version is written (pyproject.toml reads it): a literal, because looking it up
# through importlib.metadata costs every run 40 ms of start-up.
__version__ = "0.1.0"

_EXPORTS = {
    "open_teacher": "wsel.api",
    "build_plan": "wsel.api",
    "write_student": "wsel.api",
    "verify_student": "wsel.api",
    "plan_report": "wsel.api",
    "teacher_report": "wsel.api",
    "read_schedule": "wsel.api",
    "CheckpointIndex": "wsel.checkpoint.index",
    "TensorInfo": "wsel.checkpoint.header",
    "Plan": "wsel.plan.model",
    "PlanOptions": "wsel.options",
    "WrittenTensor": "wsel.plan.model",
    "ExcludedTensor": "wsel.plan.model",
    "Selection": "wsel.select",
    "Stats": "wsel.stats",
    "VerifyResult": "wsel.verify",
    "WselError": "wsel.errors",
    "CheckpointError": "wsel.errors",
    "SpecError": "wsel.errors",
    "PlanError": "wsel.errors",
    "OutputError": "wsel.errors",
}
__all__ = [
    "__version__",
    "open_teacher",
    "build_plan",
    "write_student",
    "verify_student",
    "plan_report",
    "teacher_report",
    "read_schedule",
    "CheckpointIndex",
    "TensorInfo",
    "Plan",
    "PlanOptions",
    "WrittenTensor",
    "ExcludedTensor",
    "Selection",
    "Stats",
    "VerifyResult",
    "WselError",
    "CheckpointError",
    "SpecError",
    "PlanError",
    "OutputError",
]

if TYPE_CHECKING:
    from wsel.api import (
        build_plan,
        open_teacher,
        plan_report,
        read_schedule,
        teacher_report,
        verify_student,
        write_student,
    )
    from wsel.checkpoint.header import TensorInfo
    from wsel.checkpoint.index import CheckpointIndex
    from wsel.errors import CheckpointError, OutputError, PlanError, SpecError, WselError
    from wsel.options import PlanOptions
    from wsel.plan.model import ExcludedTensor, Plan, WrittenTensor
    from wsel.select import Selection
    from wsel.stats import Stats
    from wsel.verify import VerifyResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wsel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
