"""Name sets: axis labels for well-known checkpoint layouts that come without a config.json.

For a shape-manifest or template student whose teacher matches a name set (timm ViT, timm
ConvNeXt), each dim gets a semantic label (`hidden@2`, `attn | attn | attn`) and fused dims are
split into their blocks, so q|k|v rows never mix. Sizes come from the shapes themselves.
Without a match, dims are labelled by their sizes (the plain generic path).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from wsel.axes import AXIS_KINDS
from wsel.checkpoint.index import CheckpointIndex

NAMES_DIR = Path(__file__).parent / "arch" / "names"
_AXIS = re.compile(r"^(?P<axis>[a-z_]+)(?:@(?P<stage>stage|stage-1|\d+))?$")


class NameSetError(Exception):
    """A name-set data file is malformed: a bug in wsel's data."""


@dataclass(frozen=True)
class NameSet:
    name: str
    doc: str
    patterns: tuple[tuple[re.Pattern[str], tuple[tuple[str, ...], ...]], ...]  # name regex, blocks per dim

    def dims(self, tensor: str) -> tuple[tuple[str, ...], ...] | None:
        """Concrete block labels of each dim (`hidden@2`, `1`), or None when no template matches."""
        for regex, dims in self.patterns:
            m = regex.match(tensor)
            if m is not None:
                stage = m.groupdict().get("stage")
                return tuple(tuple(_concrete(label, stage) for label in dim) for dim in dims)
        return None


def _concrete(label: str, stage: str | None) -> str:
    if stage is not None:
        label = label.replace("@stage-1", f"@{int(stage) - 1}").replace("@stage", f"@{stage}")
    return label


def _load(path: Path) -> NameSet:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or set(doc) != {"name", "doc", "tensors"}:
        raise NameSetError(f"{path}: expected exactly the fields name, doc, tensors")
    patterns = []
    for pattern, dims in doc["tensors"].items():
        parsed = []
        for dim in dims:
            blocks = tuple(b.strip() for b in dim.split("|"))
            for block in blocks:
                m = _AXIS.match(block)
                if not block.isdigit() and (m is None or m.group("axis") not in AXIS_KINDS):
                    raise NameSetError(f"{path}: tensors.{pattern}: unknown axis {block!r}")
                if m is not None and m.group("stage") in ("stage", "stage-1") and "{stage}" not in pattern:
                    raise NameSetError(f"{path}: tensors.{pattern}: {block!r} needs {{stage}} in the name")
            parsed.append(blocks)
        regex = (
            re.escape(pattern).replace(re.escape("{layer}"), r"\d+").replace(re.escape("{stage}"), r"(?P<stage>\d+)")
        )
        patterns.append((re.compile(f"^{regex}$"), tuple(parsed)))
    return NameSet(doc["name"], doc["doc"], tuple(patterns))


@cache
def all_name_sets() -> tuple[NameSet, ...]:
    return tuple(_load(p) for p in sorted(NAMES_DIR.glob("*.json")))


def detect(teacher: CheckpointIndex) -> NameSet | None:
    """The name set that describes every tensor of the teacher, if one does."""
    for name_set in all_name_sets():
        if teacher.tensors and all(name_set.dims(n) is not None for n in teacher.tensors):
            return name_set
    return None


def base_axis(label: str) -> str:
    """`hidden@2` → `hidden`."""
    return label.split("@")[0]
