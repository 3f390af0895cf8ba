"""What every planning path shares: one pass's state (teacher, options, element strategy, warnings), the
checks every written tensor passes (dtype kinds, packed dtypes, casting, rescaling), and storage order."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable
from typing import Literal

import numpy as np

from wsel.axes import DimLabel
from wsel.checkpoint.dtypes import DTYPES, element_size
from wsel.checkpoint.header import TensorInfo
from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import PlanError
from wsel.options import PlanOptions
from wsel.plan.model import ExcludedTensor, WrittenTensor
from wsel.select import Selection
from wsel.spec import StudentTensor
from wsel.strategies import ElementStrategy

MAX_SELECTED_DIMS = 63  # the reader views a tensor as numpy [dims..., element bytes]: 64 dims at most


class Planner:
    """The state of one planning pass. Each path (generic, architecture) subclasses it and builds its Plan once."""

    def __init__(self, teacher: CheckpointIndex, options: PlanOptions, scores: dict[str, np.ndarray] | None) -> None:
        self.teacher = teacher
        self.options = options
        self.elements = ElementStrategy(options.elements, options.seed, scores or {})  # scores feed `magnitude`
        self.warnings: list[str] = []

    def is_excluded(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.options.exclude)

    @staticmethod
    def exclusion(student: StudentTensor) -> ExcludedTensor:
        return ExcludedTensor(student.name, student.shape, student.dtype or "", reason="--exclude")

    def written(
        self,
        student: StudentTensor,
        source: TensorInfo,
        selections: tuple[Selection, ...],
        axes: tuple[DimLabel, ...],
        texts: tuple[str, ...] | None = None,
        input_dim: int | None = None,
    ) -> WrittenTensor:
        """Checks shared by every path (dtype kinds, packed dtypes, casting, rescaling), then the WrittenTensor.

        `input_dim` is the dim a weight multiplies its input along; with --rescale, a weight whose input
        dim shrank from T to S is multiplied by sqrt(T / S), so that the variance of its outputs (a sum of
        T products of independent terms) is kept (weight subcloning, Samragh et al. 2023)."""
        options = self.options
        where = describe(student.name, student.shape, source)
        kind = DTYPES[source.dtype].kind
        if kind in ("int", "bool") and not all(s.start == 0 and s.step == 1 and s.explicit is None for s in selections):
            raise PlanError(
                f"{where}: {source.dtype} tensors hold ids or flags and are never subsampled; "
                f"give the student the teacher's shape or --exclude it"
            )
        packed = element_size(source.dtype) is None
        if student.shape != source.shape and packed:
            raise PlanError(f"{where}: packed {source.dtype} elements cannot be selected; --exclude it")
        if len(source.shape) > MAX_SELECTED_DIMS and not all(s.is_identity for s in selections):
            raise PlanError(
                f"{where}: {len(source.shape)} dims; at most {MAX_SELECTED_DIMS} can be selected (numpy's limit)"
            )
        out_dtype = source.dtype
        if options.dtype is not None and kind == "float" and not packed and source.dtype != options.dtype:
            out_dtype = options.dtype
        if student.dtype is not None and student.dtype != out_dtype:
            self.warnings.append(
                f"student tensor {student.name!r}: template dtype {student.dtype} differs from the {out_dtype} "
                "written (wsel keeps the teacher's bytes unless --dtype is given)"
            )
        scale = None
        if options.rescale and input_dim is not None and kind == "float" and not packed:
            shrunk_from, shrunk_to = source.shape[input_dim], student.shape[input_dim]
            if shrunk_to < shrunk_from:
                scale = math.sqrt(shrunk_from / shrunk_to)
        action: Literal["select", "copy"] = (
            "copy" if all(s.is_identity for s in selections) and scale is None else "select"
        )
        texts = texts if texts is not None else tuple(s.describe() for s in selections)
        return WrittenTensor(student.name, student.shape, out_dtype, action, source, selections, axes, texts, scale)

    def in_storage_order(self, written: Iterable[WrittenTensor]) -> tuple[WrittenTensor, ...]:
        """Written tensors in the teacher's storage order (shard, offset, then name), so reads go front to back."""
        shard = {file: i for i, file in enumerate(self.teacher.files)}
        return tuple(sorted(written, key=lambda t: (shard[t.source.file], t.source.start, t.source.end, t.name)))


def cast_name(dtype: str | None) -> str | None:
    """The torch name of a `--dtype` cast (`BF16` → `bfloat16`), as config.json writes it; None without one."""
    return DTYPES[dtype].torch_name if dtype is not None else None


def describe(name: str, shape: tuple[int, ...], source: TensorInfo) -> str:
    """How messages name a student tensor and its teacher source."""
    return f"student tensor {name!r} {list(shape)} from teacher {source.name!r} {list(source.shape)}"
