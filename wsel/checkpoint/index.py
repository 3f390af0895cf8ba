"""A checkpoint (one file, a folder, or a sharded index) as a name → TensorInfo map. Headers only."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path

from wsel.checkpoint.header import Header, TensorInfo, read_header
from wsel.errors import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class CheckpointIndex:
    """Every tensor of a checkpoint, by name, with the file and byte range that holds it."""

    path: Path  # what the user named
    headers: tuple[Header, ...]  # one per file, in shard order
    tensors: dict[str, TensorInfo]
    index_metadata: dict[str, object]  # the index file's "metadata" (empty for a single file)

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(h.path for h in self.headers)

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def folder(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent


def open_checkpoint(path: str | os.PathLike[str]) -> CheckpointIndex:
    """Open a .safetensors file, a Hugging Face folder, or a model.safetensors.index.json."""
    path = Path(path)
    try:
        os.stat(path)
    except OSError as e:  # missing, or a symlink loop (ELOOP), ...
        problem = "no such file or directory" if e.errno == errno.ENOENT else (e.strerror or str(e))
        raise CheckpointError(f"{path}: {problem}") from None
    if path.is_dir():
        if (path / INDEX_FILE).is_file():
            return _open_index(path / INDEX_FILE, shown_as=path)
        if (path / SINGLE_FILE).is_file():
            return _open_single(path / SINGLE_FILE, shown_as=path)
        found = sorted(p.name for p in path.glob("*.safetensors"))
        if len(found) == 1:
            return _open_single(path / found[0], shown_as=path)
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(_pickle_message(path / pickles[0]))
        what = f"{len(found)} .safetensors files but no {INDEX_FILE}" if found else "no .safetensors file"
        raise CheckpointError(f"{path}: folder has {what}; name the file or add {INDEX_FILE}")
    if path.name.endswith(".index.json"):
        return _open_index(path, shown_as=path)
    if path.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(_pickle_message(path))
    return _open_single(path, shown_as=path)


def _pickle_message(path: Path) -> str:
    return (
        f"{path}: pickle checkpoints are not loaded (they can run code); convert it to safetensors "
        "first, e.g. safetensors.torch.save_file(torch.load(f, weights_only=True), 'model.safetensors')"
    )


def _open_single(file: Path, shown_as: Path) -> CheckpointIndex:
    header = read_header(file)
    return CheckpointIndex(shown_as, (header,), {t.name: t for t in header.tensors}, {})


def _open_index(index_file: Path, shown_as: Path) -> CheckpointIndex:
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{index_file}: {problem}")

    try:
        doc = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, huge integers
        raise fail(f"cannot read the index: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("weight_map"), dict):
        raise fail('not a sharded index: expected an object with a "weight_map" object')
    weight_map: dict[str, object] = doc["weight_map"]
    shard_names: list[str] = []
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard or "/" in shard or "\\" in shard or shard in (".", ".."):
            raise fail(f"tensor {name!r}: shard {shard!r} is not a file name in the index's folder")
        if shard not in shard_names:
            shard_names.append(shard)
    shard_names.sort()

    headers = []
    tensors: dict[str, TensorInfo] = {}
    for shard in shard_names:
        shard_path = index_file.parent / shard
        if not shard_path.is_file():
            raise fail(f"shard {shard} is listed but {shard_path} is not a file")
        header = read_header(shard_path)
        headers.append(header)
        for t in header.tensors:
            listed = weight_map.get(t.name)
            if listed is None:
                raise fail(f"tensor {t.name!r} is in {shard} but not in weight_map")
            if listed != shard:
                raise fail(f"tensor {t.name!r} is in {shard} but weight_map says {listed}")
            tensors[t.name] = t
    missing = [name for name in weight_map if name not in tensors]
    if missing:
        raise fail(f"tensor {missing[0]!r} is listed in weight_map but not found in {weight_map[missing[0]]}")
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return CheckpointIndex(shown_as, tuple(headers), tensors, dict(metadata or {}))
