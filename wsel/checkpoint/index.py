"""A checkpoint (one file, a folder, or a sharded index) as a name → TensorInfo map. Headers only.

The files may be local or remote (`wsel.sources`): a folder is a local folder, a Hub repo (folder) or the
folder of an index URL; what is found in it is the same either way.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from wsel.checkpoint.formats import PICKLE_SUFFIXES, read_file
from wsel.checkpoint.header import (
    MAX_NAME_BYTES,
    MAX_TENSORS,
    Header,
    TensorInfo,
    name_problem,
    short_repr,
)
from wsel.errors import CheckpointError
from wsel.sources import DEFAULT_CONNECTIONS
from wsel.sources.base import Folder, Source, Traffic
from wsel.sources.local import LocalFolder

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TORCH_SINGLE_FILE = "pytorch_model.bin"
TORCH_INDEX_FILE = "pytorch_model.bin.index.json"
MAX_SHARDS = 10_000  # files of one sharded checkpoint (README, "Limits"): each is a header read, a request remote
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # ORG/NAME, as the Hub names repos


@dataclass(frozen=True)
class CheckpointIndex:
    """Every tensor of a checkpoint, by name, with the file and byte range that holds it."""

    location: str  # what the user named: a path, `hf://org/name`, or a URL
    folder: Folder  # where its files (and, for a Hugging Face folder, config.json and tokenizer files) are
    headers: tuple[Header, ...]  # one per file, in shard order
    tensors: dict[str, TensorInfo]
    index_metadata: dict[str, object]  # the index file's "metadata" (empty for a single file)

    @property
    def format(self) -> str:
        """ "safetensors", "pytorch" or "gguf" (the shards of a checkpoint share one: `_open_index`)."""
        return self.headers[0].format if self.headers else "safetensors"

    @property
    def key(self) -> str | None:
        """The nested state dict read from a PyTorch checkpoint (`--teacher-key`, or the only one there)."""
        return self.headers[0].key if self.headers else None

    @property
    def notes(self) -> list[str]:
        """What the files hold that wsel leaves out (a GGUF file's RoPE factors), one line each."""
        return [f"{h.source.name}: {note}" for h in self.headers for note in h.notes]

    @property
    def config(self) -> dict[str, object] | None:
        """The Hugging Face config.json the checkpoint file carries in itself (GGUF), if any."""
        return self.headers[0].config if self.headers else None

    @property
    def files(self) -> tuple[Source, ...]:
        return tuple(h.source for h in self.headers)

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def traffic(self) -> Traffic:
        """What reading this checkpoint's files has cost so far over the network (nothing when local)."""
        return self.folder.traffic()


def open_checkpoint(
    location: str | os.PathLike[str], connections: int = DEFAULT_CONNECTIONS, key: str | None = None
) -> CheckpointIndex:
    """Open a checkpoint file (safetensors, a PyTorch zip archive, GGUF), a Hugging Face folder, or an index
    (model.safetensors.index.json, pytorch_model.bin.index.json): local, or remote (`hf://org/name[@revision]
    [/subfolder]`, or an `http(s)://` URL of a checkpoint or index file; a bare `org/name` that is no local
    path is the Hub repo). `connections`: requests in flight for a remote one. `key`: the nested state dict
    of a PyTorch checkpoint that holds several (`--teacher-key`)."""
    text = os.fspath(location)
    shown = text
    if _HUB_NAME.match(text) and not os.path.lexists(text):
        text = f"hf://{text}"
        shown = f"{text} ({location} is not a local path)"
    if text.startswith(("hf://", "http://", "https://")):
        from wsel.sources.remote import open_remote  # deferred: local runs never load an HTTP client

        folder, name = open_remote(text, connections)
        return open_in_folder(folder, name, shown, key)
    return _open_local(Path(text), key)


def _open_local(path: Path, key: str | None) -> CheckpointIndex:
    try:
        os.stat(path)
    except OSError as e:  # missing, or a symlink loop (ELOOP), ...
        problem = "no such file or directory" if e.errno == errno.ENOENT else (e.strerror or str(e))
        raise CheckpointError(f"{path}: {problem}") from None
    if path.is_dir():
        return open_in_folder(LocalFolder(path), None, str(path), key)
    return open_in_folder(LocalFolder(path.parent), path.name, str(path), key)


def open_in_folder(folder: Folder, name: str | None, shown_as: str, key: str | None = None) -> CheckpointIndex:
    """The checkpoint that is the file `name` of `folder` (a checkpoint file or an index), or, with no name,
    the checkpoint the folder holds: safetensors first (its index, else model.safetensors, else its one
    .safetensors file), then a PyTorch checkpoint (pytorch_model.bin.index.json, pytorch_model.bin, its one
    .bin/.pt/.pth file), then its one .gguf file."""
    if name is not None:
        if name.endswith(".index.json"):
            return _open_index(folder, name, shown_as, key)
        return _open_single(folder.source(name), folder, shown_as, key)
    for index_name, single_name in ((INDEX_FILE, SINGLE_FILE), (TORCH_INDEX_FILE, TORCH_SINGLE_FILE)):
        if folder.has(index_name):
            return _open_index(folder, index_name, shown_as, key)
        if folder.has(single_name):
            return _open_single(folder.source(single_name), folder, shown_as, key)
        names = folder.names() or []
        suffixes = (".safetensors",) if index_name == INDEX_FILE else PICKLE_SUFFIXES
        found = [n for n in names if n.endswith(suffixes)]
        if len(found) == 1:
            return _open_single(folder.source(found[0]), folder, shown_as, key)
        if found:
            raise CheckpointError(
                f"{shown_as}: folder has {len(found)} {'/'.join(suffixes)} files ({_some(found)}) "
                f"but no {index_name}; name the file or add {index_name}"
            )
    found = [n for n in folder.names() or [] if n.endswith(".gguf")]
    if len(found) == 1:
        return _open_single(folder.source(found[0]), folder, shown_as, key)
    if found:
        raise CheckpointError(f"{shown_as}: folder has {len(found)} .gguf files ({_some(found)}); name the file")
    raise CheckpointError(
        f"{shown_as}: no checkpoint file (.safetensors, .bin, .pt, .pth, .gguf) or index in the folder"
    )


def _is_file_name(shard: object) -> TypeGuard[str]:
    """A plain file name in the index's own folder: no path, not `.`/`..`, not absurdly long."""
    return (
        isinstance(shard, str)
        and 0 < len(shard) <= MAX_NAME_BYTES
        and "/" not in shard
        and "\\" not in shard
        and shard not in (".", "..")
    )


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _open_single(file: Source, folder: Folder, shown_as: str, key: str | None) -> CheckpointIndex:
    header = read_file(file, key)
    return CheckpointIndex(shown_as, folder, (header,), {t.name: t for t in header.tensors}, {})


def _open_index(folder: Folder, index_name: str, shown_as: str, key: str | None) -> CheckpointIndex:
    where = folder.where(index_name)

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{where}: {problem}")

    try:
        doc = json.loads(folder.read_small(index_name).decode("utf-8"))
    except (ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, huge integers
        raise fail(f"cannot read the index: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("weight_map"), dict):
        raise fail('not a sharded index: expected an object with a "weight_map" object')
    weight_map: dict[str, object] = doc["weight_map"]
    if len(weight_map) > MAX_TENSORS:
        raise fail(f"weight_map lists {len(weight_map)} tensors, more than wsel's limit of {MAX_TENSORS}")
    shards: set[str] = set()
    for name, shard in weight_map.items():
        problem = name_problem(name)
        if problem is not None:
            raise fail(f"weight_map: {problem}")
        if not _is_file_name(shard):
            raise fail(f"tensor {name!r}: shard {short_repr(shard)} is not a file name in the index's folder")
        shards.add(shard)
    shard_names = sorted(shards)
    if len(shard_names) > MAX_SHARDS:
        raise fail(f"weight_map names {len(shard_names)} shard files, more than wsel's limit of {MAX_SHARDS}")

    headers: list[Header] = []
    tensors: dict[str, TensorInfo] = {}
    for shard in shard_names:
        if not folder.has(shard):
            raise fail(f"shard {shard} is listed but {folder.where(shard)} is not a file")
        header = read_file(folder.source(shard), key)
        if header.format != (headers[0].format if headers else header.format):
            raise fail(f"shard {shard} is {header.format} but {headers[0].source.name} is {headers[0].format}")
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
    return CheckpointIndex(shown_as, folder, tuple(headers), tensors, dict(metadata or {}))
