"""wsel: weight selection from a large pretrained checkpoint into a smaller student, streaming.

The public API (see README.md, "Python API"): `open_teacher`, `build_plan`, `write_student`,
`verify_student`, `plan_report`, `teacher_report`, `read_schedule`, `select_into`,
`select_state_dict`, the types they take and return, and
the errors they raise. Names are imported on first use, so `import wsel` (and `wsel --version`) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The one place the version is written (pyproject.toml reads it): a literal, because looking it up
# through importlib.metadata costs every run 40 ms of start-up.
__version__ = "0.1.0"

# name → the module that defines it. `__all__` and the TYPE_CHECKING imports below list the same names
# (tests/test_api.py checks that the three agree).
_EXPORTS = {
    "open_teacher": "wsel.api",
    "build_plan": "wsel.api",
    "write_student": "wsel.api",
    "verify_student": "wsel.api",
    "plan_report": "wsel.api",
    "teacher_report": "wsel.api",
    "read_schedule": "wsel.api",
    "select_into": "wsel.api",
    "select_state_dict": "wsel.api",
    "search_students": "wsel.api",
    "StudentSearch": "wsel.plan.search",
    "Candidate": "wsel.plan.search",
    "CheckpointIndex": "wsel.checkpoint.index",
    "TensorInfo": "wsel.checkpoint.header",
    "PlanOptions": "wsel.options",
    "LayerList": "wsel.options",
    "Plan": "wsel.plan.model",
    "WrittenTensor": "wsel.plan.model",
    "ExcludedTensor": "wsel.plan.model",
    "TensorListStudent": "wsel.spec",
    "ConfigStudent": "wsel.spec",
    "StudentTensor": "wsel.spec",
    "LayerMap": "wsel.layers",
    "Selection": "wsel.select",
    "Stats": "wsel.stats",
    "VerifyResult": "wsel.verify",
    "WselError": "wsel.errors",
    "CheckpointError": "wsel.errors",
    "SpecError": "wsel.errors",
    "PlanError": "wsel.errors",
    "OutputError": "wsel.errors",
    "ArchDataError": "wsel.errors",
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
    "select_into",
    "select_state_dict",
    "search_students",
    "StudentSearch",
    "Candidate",
    "CheckpointIndex",
    "TensorInfo",
    "PlanOptions",
    "LayerList",
    "Plan",
    "WrittenTensor",
    "ExcludedTensor",
    "TensorListStudent",
    "ConfigStudent",
    "StudentTensor",
    "LayerMap",
    "Selection",
    "Stats",
    "VerifyResult",
    "WselError",
    "CheckpointError",
    "SpecError",
    "PlanError",
    "OutputError",
    "ArchDataError",
]

if TYPE_CHECKING:
    from wsel.api import (
        build_plan,
        open_teacher,
        plan_report,
        read_schedule,
        search_students,
        select_into,
        select_state_dict,
        teacher_report,
        verify_student,
        write_student,
    )
    from wsel.checkpoint.header import TensorInfo
    from wsel.checkpoint.index import CheckpointIndex
    from wsel.errors import ArchDataError, CheckpointError, OutputError, PlanError, SpecError, WselError
    from wsel.layers import LayerMap
    from wsel.options import LayerList, PlanOptions
    from wsel.plan.model import ExcludedTensor, Plan, WrittenTensor
    from wsel.plan.search import Candidate, StudentSearch
    from wsel.select import Selection
    from wsel.spec import ConfigStudent, StudentTensor, TensorListStudent
    from wsel.stats import Stats
    from wsel.verify import VerifyResult
else:  # type checkers see the imports above; a name missing from them is an error, not Any

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'wsel' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(__all__)
