"""Planning: every decision about the student, made from headers and configs before any tensor data is read.

- `model`: the Plan and its records (WrittenTensor, ExcludedTensor);
- `base`: what every path shares (one pass's state, the checks each written tensor passes, storage order);
- `generic`: tensor-list students, dims by size or by a name set; `config`: config.json students of
  families without data; `arch`: config.json students of families with architecture data;
- `importance`: the magnitude strategy's streaming pre-pass; `dispatch`: which path, and that pre-pass.

This file imports nothing, so that what only reads a Plan (the report, the provenance, `verify`) loads
`plan.model` without the planner.
"""
