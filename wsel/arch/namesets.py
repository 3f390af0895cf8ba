"""Name sets: axis labels for well-known checkpoint layouts that come without a config.json.

For a shape-manifest or template student whose teacher matches a name set (timm ViT, timm
ConvNeXt), each dim gets a semantic label (`hidden@2`, `attn | attn | attn`) and fused dims are
split into their blocks, so q|k|v rows never mix. Sizes come from the shapes themselves.
Without a match, dims are labelled by their sizes (the plain generic path).

Each `wsel/arch/names/*.json` is one name set, validated as strictly as the family files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib.abc import Traversable

from wsel.arch.data import data_files, read_document, string_list
from wsel.axes import AXIS_KINDS, DimLabel, is_literal
from wsel.errors import ArchDataError

_FIELDS: dict[str, type | tuple[type, ...]] = {"name": str, "doc": str, "tensors": dict}
_AXIS = re.compile(r"^(?P<axis>[a-z_]+)(?:@(?P<stage>stage|stage-1|[0-9]{1,9}))?$")


@dataclass(frozen=True)
class NameSet:
    name: str
    doc: str
    patterns: tuple[tuple[re.Pattern[str], tuple[DimLabel, ...]], ...]  # name regex, the label of each dim

    def dims(self, tensor: str) -> tuple[DimLabel, ...] | None:
        """The label of each dim, concrete for this tensor (`hidden@2`, `1`), or None when no pattern matches."""
        for regex, dims in self.patterns:
            m = regex.match(tensor)
            if m is not None:
                stage = m.groupdict().get("stage")
                return tuple(DimLabel(tuple((_concrete(b, stage),) for b in dim.block_names)) for dim in dims)
        return None


def _concrete(label: str, stage: str | None) -> str:
    if stage is not None:
        label = label.replace("@stage-1", f"@{int(stage) - 1}").replace("@stage", f"@{stage}")
    return label


def load_name_set(path: Traversable) -> NameSet:
    """Read and validate one name-set file. Raises ArchDataError naming the file and the problem."""
    doc = read_document(path, _FIELDS)
    patterns = []
    for pattern, dims in doc["tensors"].items():
        parsed = []
        for dim in string_list(path, f"tensors.{pattern}", dims):
            label = DimLabel.parse(dim)  # blocks side by side, each one axis (name sets have no products)
            for block in label.block_names:
                m = _AXIS.match(block)
                if not is_literal(block) and (m is None or m.group("axis") not in AXIS_KINDS):
                    raise ArchDataError(f"{path}: tensors.{pattern}: unknown axis {block!r}")
                if m is not None and m.group("stage") in ("stage", "stage-1") and "{stage}" not in pattern:
                    raise ArchDataError(f"{path}: tensors.{pattern}: {block!r} needs {{stage}} in the name")
            parsed.append(label)
        regex = re.escape(pattern).replace(re.escape("{layer}"), r"[0-9]+")
        regex = regex.replace(re.escape("{stage}"), r"(?P<stage>[0-9]{1,9})")
        patterns.append((re.compile(f"^{regex}$"), tuple(parsed)))
    return NameSet(doc["name"], doc["doc"], tuple(patterns))


@cache
def all_name_sets() -> tuple[NameSet, ...]:
    return tuple(load_name_set(p) for p in data_files("names"))


def detect_name_set(tensor_names: Iterable[str]) -> NameSet | None:
    """The name set that describes every one of a teacher's tensors, if one does."""
    names = list(tensor_names)
    for name_set in all_name_sets():
        if names and all(name_set.dims(n) is not None for n in names):
            return name_set
    return None
