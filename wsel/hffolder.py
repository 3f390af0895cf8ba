"""A Hugging Face model folder around the weights: the student's config.json, and the tokenizer and
generation files copied from the teacher's folder. Planning decides them (`FolderFiles`); the run writes
them beside the weights of a folder output."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from wsel.layers import LayerMap
from wsel.sources.base import Companion, Folder

CONFIG_FILE = "config.json"

# Files of a Hugging Face model folder that describe the tokenizer and generation, copied as they are.
COMPANION_FILES = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
)


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher's config.json, where it was read (for messages), and the teacher folder's companion files."""

    config: dict[str, Any]
    source: str
    companions: tuple[Companion, ...] = ()


@dataclass(frozen=True)
class FolderFiles:
    """What a config.json student's folder holds beside the weights."""

    config: dict[str, Any]  # the student's config.json
    companions: tuple[Companion, ...]  # teacher-folder files copied as they are (tokenizer, generation, ...)

    @property
    def names(self) -> tuple[str, ...]:
        return (CONFIG_FILE, *(f.name for f in self.companions))

    def contents(self) -> Iterator[tuple[str, bytes]]:
        """(file name, bytes) of each file, in `names` order: config.json (keys sorted, as transformers writes
        it), then the copies (read only now)."""
        yield CONFIG_FILE, (json.dumps(self.config, indent=2, sort_keys=True) + "\n").encode()
        for companion in self.companions:
            yield companion.name, companion.read()


def companion_files(folder: Folder) -> tuple[Companion, ...]:
    """The companion files present in a teacher folder (read only when the output is written)."""
    return tuple(Companion(folder, name, folder.where(name)) for name in COMPANION_FILES if folder.has(name))


def student_config_json(student_config: dict[str, Any]) -> dict[str, Any]:
    """The student's config.json: as given, less the teacher's hub name (the student is not that model)."""
    return {k: v for k, v in student_config.items() if k != "_name_or_path"}


def with_dtype(config: dict[str, Any], torch_name: str | None) -> dict[str, Any]:
    """`config` saying the dtype the weights were cast to (`--dtype`): its `dtype` (transformers 5) and
    `torch_dtype` (4.x) keys, whichever it has (`dtype` when it has neither); unchanged without a cast."""
    if torch_name is None:
        return config
    keys = [k for k in ("dtype", "torch_dtype") if k in config] or ["dtype"]
    return config | dict.fromkeys(keys, torch_name)


def follow_layer_map(
    config: dict[str, Any], layer_lists: Iterable[str], teacher_config: dict[str, Any], layer_map: LayerMap
) -> dict[str, Any]:
    """`config` with its per-layer lists (`layer_lists`: config keys with one entry per layer, such as
    `layer_types`) that the student left at the teacher's length made to follow the layer map."""
    config = dict(config)
    for key in layer_lists:
        values = teacher_config.get(key)
        if (
            isinstance(values, list)
            and len(values) == layer_map.teacher_count
            and len(config.get(key) or []) != len(layer_map.mapping)
        ):
            config[key] = [values[t] for t in layer_map.kept]
    return config
