"""Finding layer indices in tensor names, and mapping student layers to teacher layers.

Layer strategies map each group of repeated blocks (per stage in staged networks):
- `first` (default, the paper): student layer i ← teacher layer i.
- `uniform`: spread over the depth, first and last kept: round(linspace(0, T-1, S)).
- `last`: the last S layers.
- an explicit list `0,2,4,6` (one list per group, groups separated by `;` in sorted group order).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wsel.errors import PlanError
from wsel.options import LayerList, LayerStrategy

# A repeated block: a layer index right after one of the names models give their stacks of blocks
# (`layers`, `layer`, `h`, `blocks`, `block`, `_blocks`, `resblocks`), optionally inside `stages.S.`
# (hierarchical nets such as ConvNeXt, where layer selection applies per stage). README "Layer groups".
LAYER_PATTERN = re.compile(
    r"(?:^|(?<=\.))(?P<group>(?:stages\.[0-9]+\.)?(?:layers|layer|h|blocks|block|_blocks|resblocks))\.(?P<index>[0-9]{1,9})\."
)


@dataclass(frozen=True)
class LayerRef:
    """Where a tensor name carries a layer index: the group it belongs to and the index."""

    group: str  # the name up to and including the block kind, e.g. `model.layers`, `stages.1.blocks`
    index: int
    prefix: str  # name before the index (ends with `.`)
    suffix: str  # name after the index (starts with `.`)

    def with_index(self, index: int) -> str:
        return f"{self.prefix}{index}{self.suffix}"


def find_layer(name: str) -> LayerRef | None:
    """The layer reference in a tensor name, or None for tensors outside repeated blocks."""
    m = LAYER_PATTERN.search(name)
    if m is None:
        return None
    prefix = name[: m.start("index")]
    return LayerRef(prefix[:-1], int(m.group("index")), prefix, name[m.end("index") :])


@dataclass(frozen=True)
class LayerMap:
    """Student layer → teacher layer for one group of repeated blocks."""

    group: str
    teacher_count: int
    mapping: tuple[tuple[int, int], ...]  # (student index, teacher index), by student index

    def teacher_index(self, student_index: int) -> int:
        return dict(self.mapping)[student_index]

    @property
    def kept(self) -> list[int]:
        """The teacher layers read, by student layer."""
        return [t for _, t in self.mapping]

    def picture(self) -> str:
        """The teacher's layers, kept ones marked: `■■■□□□` for the first 3 of 6."""
        kept = {t for _, t in self.mapping}
        return "".join("■" if i in kept else "□" for i in range(self.teacher_count))

    def describe(self) -> str:
        """Compact form, e.g. `0-5 → 0-5 of 12`."""
        student = compact_ranges([s for s, _ in self.mapping])
        teacher = compact_ranges([t for _, t in self.mapping])
        return f"{student} → {teacher} of {self.teacher_count}"

    def to_dict(self) -> dict[str, Any]:
        """The report's form: the mapping and its two human forms."""
        return {
            "group": self.group,
            "teacher_layers": self.teacher_count,
            "map": [list(pair) for pair in self.mapping],
            "summary": self.describe(),
            "picture": self.picture(),
        }


def kept_by_group(maps: Iterable[LayerMap]) -> dict[str, list[int]]:
    """The compact form recorded in a student's metadata and provenance: group → teacher layers read."""
    return {m.group: m.kept for m in maps}


def compact_ranges(values: list[int]) -> str:
    """`[0, 1, 2, 5]` → `0-2,5`."""
    runs: list[list[int]] = []
    for v in sorted(set(values)):
        if runs and runs[-1][1] + 1 == v:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs) or "none"


def first_n(group: str, student_indices: list[int], teacher_indices: list[int]) -> LayerMap:
    """The paper's default: student layer i reads teacher layer i. (A student whose indices the
    teacher does not all have is mapped in order: its k-th layer reads the teacher's k-th.)"""
    students = sorted(set(student_indices))
    teachers = sorted(set(teacher_indices))
    if set(students) <= set(teachers):
        return LayerMap(group, len(teachers), tuple((i, i) for i in students))
    return LayerMap(group, len(teachers), tuple(zip(students, teachers[: len(students)], strict=True)))


def make_layer_map(
    group: str, student_indices: list[int], teacher_indices: list[int], strategy: LayerStrategy
) -> LayerMap:
    """Map one group's student layers to teacher layers by a layer strategy."""
    students, teachers = sorted(set(student_indices)), sorted(set(teacher_indices))
    chosen = layer_indices(strategy, len(teachers), len(students), group)
    if strategy == "first":
        return first_n(group, students, teachers)
    return LayerMap(group, len(teachers), tuple((s, teachers[k]) for s, k in zip(students, chosen, strict=True)))


def layer_indices(strategy: LayerStrategy, teacher: int, student: int, group: str) -> list[int]:
    """Teacher layers read by student layers 0..student-1, for one group."""
    if student > teacher:
        raise PlanError(
            f"student has {student} layers in {group!r} but the teacher has {teacher}; "
            "a student cannot be deeper than its teacher"
        )
    if strategy == "first":
        return list(range(student))
    if strategy == "last":
        return list(range(teacher - student, teacher))
    if strategy == "uniform":
        if student == 1:
            return [0]
        return [round(i * (teacher - 1) / (student - 1)) for i in range(student)]
    kept = parse_layer_list(strategy.text, group)
    if len(kept) != student:
        raise PlanError(f"--layers {strategy}: {len(kept)} layers listed for {group!r} but the student has {student}")
    if kept != sorted(set(kept)) or kept[-1] >= teacher:
        raise PlanError(
            f"--layers {strategy}: layers of {group!r} must be increasing and below the teacher's {teacher}"
        )
    return kept


def parse_layer_list(text: str, group: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if all(_LAYER_NUMBER.fullmatch(part) for part in parts):  # ASCII digits: int() also reads "３" and "1_0"
        return [int(part) for part in parts]
    raise PlanError(f"--layers {text!r}: expected first, uniform, last or a list such as 0,2,4,6 (for {group!r})")


_LAYER_NUMBER = re.compile("[0-9]{1,9}")


def group_strategy(strategy: LayerStrategy, groups: list[str], group: str) -> LayerStrategy:
    """The strategy for one group: explicit lists may give one list per group, separated by `;`."""
    if not isinstance(strategy, LayerList) or ";" not in strategy.text:
        return strategy
    parts = strategy.text.split(";")
    if len(parts) != len(groups):
        raise PlanError(
            f"--layers {strategy.text!r}: {len(parts)} lists for {len(groups)} layer groups ({', '.join(groups)})"
        )
    return LayerList(parts[groups.index(group)])
