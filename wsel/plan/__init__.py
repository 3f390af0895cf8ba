"""Planning: every decision about the student, made from headers and configs before any tensor data is read.

- `model`: the Plan and its records (WrittenTensor, ExcludedTensor), and PlanOptions;
- `base`: what every path shares (the checks each written tensor passes, storage order);
- `generic`: tensor-list students, dims by size or by a name set; `config`: config.json students of
  families without data; `arch`: config.json students of families with architecture data;
- `importance`: the magnitude strategy's streaming pre-pass; `dispatch`: which path, and that pre-pass.
"""

from wsel.plan.dispatch import make_plan
from wsel.plan.model import ExcludedTensor, Plan, PlanOptions, WrittenTensor

__all__ = ["ExcludedTensor", "Plan", "PlanOptions", "WrittenTensor", "make_plan"]
