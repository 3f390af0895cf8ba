"""Where the student goes: one file, or a Hugging Face folder (single file or shards + index)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from wsel.checkpoint.index import INDEX_FILE, SINGLE_FILE
from wsel.checkpoint.writer import PARTIAL_SUFFIX, OutputTensor
from wsel.errors import OutputError

DEFAULT_MAX_SHARD_SIZE = 5_000_000_000  # 5GB, transformers' default
_SHARD_NAME = re.compile(r"^model-[0-9]{5}-of-[0-9]{5}\.safetensors$")
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE | re.ASCII)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


@dataclass(frozen=True)
class Shard:
    path: Path
    tensors: tuple[OutputTensor, ...]


@dataclass(frozen=True)
class OutputLayout:
    """The files to write, in order, and the index to write last (sharded folders only)."""

    target: Path  # what the user named
    is_folder: bool
    shards: tuple[Shard, ...]
    index_path: Path | None

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(s.path for s in self.shards) + ((self.index_path,) if self.index_path else ())


def parse_size(text: str) -> int:
    """`5GB` → 5_000_000_000 (decimal units as in transformers; KiB/MiB/GiB are binary)."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a size like 5GB, 500MB or 2GiB")
    value = float(m.group(1)) * _UNITS[(m.group(2) or "B").upper()]
    if value < 1:
        raise ValueError(f"{text!r} must be at least 1 byte")
    return int(value)


def is_file_target(target: Path, folder: bool | None = None) -> bool:
    """A `.safetensors` path is one file, unless it is an existing folder or `folder` says so (trailing slash)."""
    return not folder and target.suffix == ".safetensors" and not target.is_dir()


def layout(target: Path, tensors: list[OutputTensor], max_shard_size: int, folder: bool | None = None) -> OutputLayout:
    """Split tensors (in order) into shards of at most `max_shard_size` data bytes, HF-named."""
    if is_file_target(target, folder):
        return OutputLayout(target, False, (Shard(target, tuple(tensors)),), None)
    groups: list[list[OutputTensor]] = [[]]
    size = 0
    for t in tensors:
        if groups[-1] and size + t.nbytes > max_shard_size:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.nbytes
    if len(groups) == 1:
        return OutputLayout(target, True, (Shard(target / SINGLE_FILE, tuple(groups[0])),), None)
    n = len(groups)
    shards = tuple(Shard(target / f"model-{i + 1:05d}-of-{n:05d}.safetensors", tuple(g)) for i, g in enumerate(groups))
    return OutputLayout(target, True, shards, target / INDEX_FILE)


def check_target(
    target: Path,
    teacher_files: tuple[Path, ...],
    force: bool,
    extra_names: tuple[str, ...] = (),
    folder: bool | None = None,
) -> None:
    """Refuse an output that is the teacher, or that exists without --force. Creates nothing.

    `extra_names` are files written beside a folder output (config.json, tokenizer files).
    """
    resolved = target.resolve()
    teacher_resolved = {f.resolve() for f in teacher_files}
    if is_file_target(target, folder):
        if extra_names:
            raise OutputError(
                f"{target}: a config.json student is written as a folder (weights, config.json, tokenizer); "
                "name a folder, e.g. -o student/"
            )
        if resolved in teacher_resolved:
            raise OutputError(f"{target}: output is the teacher file; choose another output path")
        if not target.parent.is_dir():
            raise OutputError(f"{target}: folder {target.parent} does not exist; create it or choose another path")
        if target.exists() and not force:
            raise OutputError(f"{target}: already exists; pass --force to replace it")
        return
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target}: exists and is not a folder; name a .safetensors file or a folder")
    if any(f.parent == resolved for f in teacher_resolved):
        raise OutputError(f"{target}: output folder holds the teacher; choose another folder")
    existing = existing_model_files(target) + [target / n for n in extra_names if (target / n).exists()]
    if existing and not force:
        raise OutputError(f"{target}: already holds {existing[0].name}; pass --force to replace the checkpoint")


def existing_model_files(folder: Path) -> list[Path]:
    """The checkpoint files (model.safetensors, HF shards, index) already in a folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name in (SINGLE_FILE, INDEX_FILE) or _SHARD_NAME.match(p.name))


def write_index(
    path: Path, shards: tuple[Shard, ...], metadata: dict[str, object], shown_as: Path | None = None
) -> None:
    """Write model.safetensors.index.json atomically (weight_map by file name)."""
    weight_map = {t.name: s.path.name for s in shards for t in s.tensors}
    doc = {
        "metadata": {**metadata, "total_size": sum(t.nbytes for s in shards for t in s.tensors)},
        "weight_map": {k: weight_map[k] for k in sorted(weight_map)},
    }
    write_atomically(path, (json.dumps(doc, indent=2) + "\n").encode(), shown_as)


def write_atomically(path: Path, data: bytes, shown_as: Path | None = None) -> None:
    """Write a small file through a temporary file in the same folder: fsync, then rename."""
    temp = path.with_name(f".{path.name}{PARTIAL_SUFFIX}")
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as e:
        temp.unlink(missing_ok=True)
        raise OutputError(f"{shown_as or path}: cannot write: {e.strerror or e}") from None
