"""The Plan: every decision about the student, made before any tensor data is read.

A Plan is a pure value (headers in, a printable value out): `inspect`, `init`, the report, the provenance
and the tests all read it, and nothing re-derives what it says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from wsel.axes import DimLabel
from wsel.checkpoint.dtypes import byte_length
from wsel.checkpoint.header import TensorInfo
from wsel.checkpoint.index import CheckpointIndex
from wsel.hffolder import FolderFiles
from wsel.layers import LayerMap
from wsel.options import PlanOptions
from wsel.select import Selection
from wsel.spec import Student, StudentTensor


@dataclass(frozen=True)
class WrittenTensor:
    """A student tensor read from the teacher: its source, and which indices of each dim it keeps."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # the dtype written
    action: Literal["select", "copy"]  # copy: the teacher tensor as it is (every dim whole, values unchanged)
    source: TensorInfo  # the teacher tensor read
    selections: tuple[Selection, ...]  # one per dim, over the teacher's dim
    axes: tuple[DimLabel, ...]  # the logical axes of each dim
    texts: tuple[str, ...]  # how each dim was selected, for people: `0:384:2`, `heads[0:8:2]×head_dim[copy]`
    scale: float | None = None  # --rescale: the factor sqrt(T_in / S_in) applied to the values

    @property
    def nbytes(self) -> int:
        return byte_length(self.dtype, math.prod(self.shape))

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ExcludedTensor:
    """A student tensor left to the student's own init (`--exclude`)."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # as the student config gave it ("" when it did not)
    reason: str
    action: ClassVar[Literal["exclude"]] = "exclude"


@dataclass(frozen=True)
class Plan:
    teacher: CheckpointIndex
    student: Student  # as the user gave it
    student_tensors: tuple[StudentTensor, ...]  # the student's tensors: as given, or derived from its config
    options: PlanOptions
    written: tuple[WrittenTensor, ...]  # in the teacher's storage order, so that reads go front to back
    excluded: tuple[ExcludedTensor, ...]  # in the student's order
    layer_maps: tuple[LayerMap, ...]
    axes: dict[str, Selection]  # every axis's one Selection, by axis name, sorted
    path: str  # how it was planned: "generic", a name set ("timm_vit") or an architecture ("llama")
    warnings: tuple[str, ...] = ()
    folder_files: FolderFiles | None = None  # config.json and tokenizer files beside a folder output
    checks: tuple[str, ...] = ()  # config-driven generic path: what was checked against the student's config

    @property
    def tensors(self) -> tuple[WrittenTensor | ExcludedTensor, ...]:
        """Every student tensor: the written ones, then the excluded ones."""
        return self.written + self.excluded
