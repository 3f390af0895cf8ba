"""Index sets (Selections) and the strategies that choose them.

A Selection is the sorted list of teacher indices kept on one axis, stored compactly as a stride
(start, step, count) when it is one, else as an explicit tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, get_args

import numpy as np

# How explicit indices were chosen, shown to people: `linspace[96]`, `random[96]`, ... (the element
# strategies' names, the paper's linspace branch, RoPE-preserving head dims, or plain indices).
Origin = Literal["indices", "linspace", "rope", "uniform", "first", "random", "magnitude"]


@dataclass(frozen=True)
class Selection:
    """Teacher indices kept on one axis of size `teacher_size`."""

    teacher_size: int
    start: int = 0
    step: int = 1
    count: int = 0
    explicit: tuple[int, ...] | None = None  # set when the indices are not a stride
    origin: Origin = "indices"

    @property
    def size(self) -> int:
        return len(self.explicit) if self.explicit is not None else self.count

    @property
    def is_identity(self) -> bool:
        return self.explicit is None and self.start == 0 and self.step == 1 and self.count == self.teacher_size

    def indices(self) -> np.ndarray:
        """The kept teacher indices, ascending, as int64."""
        if self.explicit is not None:
            return np.asarray(self.explicit, dtype=np.int64)
        return self.start + self.step * np.arange(self.count, dtype=np.int64)

    def describe(self) -> str:
        """Short human form: `copy`, a slice `0:384:2` over the teacher axis, or `linspace[n]`."""
        if self.is_identity:
            return "copy"
        if self.explicit is not None:
            return f"{self.origin}[{self.size}]"
        stop = min(self.start + self.step * self.count, self.teacher_size)  # a valid Python slice
        return f"{self.start}:{stop}" if self.step == 1 else f"{self.start}:{stop}:{self.step}"

    def to_dict(self) -> dict[str, Any]:
        if self.is_identity:
            return {"rule": "copy", "teacher": self.teacher_size, "student": self.size}
        if self.explicit is not None:
            return {
                "rule": "indices",
                "origin": self.origin,
                "teacher": self.teacher_size,
                "student": self.size,
                "indices": list(self.explicit),
            }
        return {
            "rule": "stride",
            "teacher": self.teacher_size,
            "student": self.size,
            "start": self.start,
            "step": self.step,
        }

    @classmethod
    def from_dict(cls, doc: Any) -> Selection:
        """Inverse of `to_dict`, and strict: the document comes from a file (a student's provenance), so every
        field is checked (type, range, indices inside the axis) before anything is built. Raises ValueError."""
        if not isinstance(doc, dict):
            raise ValueError("is not an object")
        rule = doc.get("rule")
        fields = _RULE_FIELDS.get(rule) if isinstance(rule, str) else None
        if fields is None or set(doc) - {"origin"} != fields or ("origin" in doc and rule != "indices"):
            raise ValueError("is not a copy, stride or indices rule with exactly its fields")
        teacher, student = _count(doc, "teacher"), _count(doc, "student")
        if student > teacher:
            raise ValueError(f"keeps {student} of {teacher} indices")
        if rule == "copy":
            if student != teacher:
                raise ValueError(f"copies {student} of {teacher} indices")
            return identity(teacher)
        if rule == "stride":
            start, step = _count(doc, "start"), _count(doc, "step")
            if step < 1 or (student > 0 and start + step * (student - 1) >= teacher):
                raise ValueError(f"stride start {start}, step {step} runs past the axis's {teacher} indices")
            return cls(teacher, start, step, student)
        indices = doc["indices"]
        origin = next((known for known in _ORIGINS if known == doc.get("origin", "indices")), None)
        if origin is None:
            raise ValueError("origin is not one of " + ", ".join(_ORIGINS))
        if (
            type(indices) is not list
            or len(indices) != student
            or not all(type(i) is int for i in indices)
            or (indices and (indices[0] < 0 or indices[-1] >= teacher))
            or not all(a < b for a, b in zip(indices, indices[1:], strict=False))
        ):
            raise ValueError(f"indices are not {student} increasing integers below {teacher}")
        return cls(teacher, explicit=tuple(indices), origin=origin)


_ORIGINS: tuple[Origin, ...] = get_args(Origin)
_RULE_FIELDS = {
    "copy": {"rule", "teacher", "student"},
    "stride": {"rule", "teacher", "student", "start", "step"},
    "indices": {"rule", "teacher", "student", "indices"},  # and "origin" (absent: plain indices)
}


def _count(doc: dict[str, Any], key: str) -> int:
    value = doc[key]
    if type(value) is not int or not 0 <= value < 2**63:
        raise ValueError(f"{key} is not an integer from 0 to 2**63-1")
    return value


def identity(size: int) -> Selection:
    return Selection(size, 0, 1, size)


def from_indices(teacher_size: int, indices: Any, origin: Origin = "indices") -> Selection:
    """A Selection from sorted unique indices, stored as a stride when they form one."""
    idx = [int(i) for i in indices]
    if len(idx) <= 1 or all(b - a == idx[1] - idx[0] for a, b in zip(idx, idx[1:], strict=False)):
        step = idx[1] - idx[0] if len(idx) > 1 else 1
        return Selection(teacher_size, idx[0] if idx else 0, step, len(idx))
    return Selection(teacher_size, explicit=tuple(idx), origin=origin)


@cache
def uniform(teacher_size: int, student_size: int) -> Selection:
    """The paper's element selection for one dimension (Xu et al. 2024, `uniform_element_selection`).

    T % S == 0 → arange(S) * (T // S); otherwise round(linspace(0, T - 1, S)) in float32, computed
    exactly as torch computes it (see `_torch_linspace_rounded`), without importing torch.
    """
    if not 0 <= student_size <= teacher_size:
        raise ValueError(f"student size {student_size} outside 0..{teacher_size}")
    if student_size == 0:
        return Selection(teacher_size, 0, 1, 0)
    if teacher_size % student_size == 0:
        return Selection(teacher_size, 0, teacher_size // student_size, student_size)
    return from_indices(teacher_size, _torch_linspace_rounded(teacher_size, student_size), origin="linspace")


def _torch_linspace_rounded(teacher_size: int, student_size: int) -> np.ndarray:
    """`torch.round(torch.linspace(0, T - 1, S)).long()`, bit for bit, as torch's CPU kernel computes it on
    x86-64 with AVX2 or AVX-512 (its default dispatch on any such CPU).

    The kernel takes step = float32(T - 1) / (S - 1) in float32, then value i = start + step * i for the
    lower half and end - step * (S - 1 - i) for the upper half, each one fused (a single rounding to
    float32); round() breaks ties to even. Values close to a .5 tie land on either side depending on that
    float32 error, so exact arithmetic would not do. (torch's non-vectorized build, ATEN_CPU_CAPABILITY=
    default, rounds the product first and disagrees on some sizes: tests/test_select.py shows both.)
    Integers here are far below 2**53, so the float64 products and differences are exact.
    """
    end = np.float32(teacher_size - 1)
    step = np.float64(end / np.float32(student_size - 1))  # float32 division, then widened exactly
    index = np.arange(student_size, dtype=np.float64)
    upper = index >= student_size // 2
    values = np.where(upper, np.float64(end) - step * (student_size - 1 - index), step * index)  # exact
    return np.rint(values.astype(np.float32)).astype(np.int64)  # one rounding to float32, ties to even
