"""What llama.cpp's converter made of each Hugging Face architecture: `arch/formats/gguf.json` (metadata keys
of each config.json key, names, permuted q/k, offsets), loaded and validated as strictly as the family data,
and the GGUF ↔ Hugging Face name map built from gguf-py's `TensorNameMap` over wsel's family templates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from typing import Any, Literal, cast

from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

from wsel.errors import ArchDataError

Kind = Literal["int", "float", "window"]  # window: a sliding window size, 0 for none (config null)


@dataclass(frozen=True)
class Setting:
    """One config.json key read from metadata: the first of `keys` present ({arch}: the architecture)."""

    kind: Kind
    keys: tuple[str, ...]


@dataclass(frozen=True)
class GgufArch:
    """What llama.cpp's converter made of one Hugging Face architecture (one entry of gguf.json)."""

    name: str  # general.architecture
    model_type: str
    hf_class: str
    names: dict[str, str]  # GGUF name (`blk.{layer}.attn_q.weight`) -> Hugging Face name template
    permuted: dict[str, tuple[str, ...]]  # GGUF tensor (`attn_q`) -> metadata keys of its head count
    offsets: dict[str, float]  # GGUF name suffix -> added to decoded values to undo the converter's change
    config: dict[str, Setting]  # config.json key -> where its value is (the common ones, then this arch's)
    flags: dict[str, str]  # config.json key -> true when a tensor name ends with this
    ignore: dict[str, str]  # GGUF tensor -> why it is no Hugging Face weight
    required: tuple[str, ...]  # config.json keys a file must give


def _data(*parts: str) -> Traversable:
    where = resources.files("wsel")  # never `wsel.arch`: the file formats do not import the architecture code
    for part in ("arch", *parts):
        where = where.joinpath(part)
    return where


def _document(path: Traversable) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArchDataError(
            f"{path}: cannot read: {e}; this installation of wsel is incomplete: reinstall wsel"
        ) from None


def _object(path: Traversable, where: str, value: Any, fields: dict[str, type]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != set(fields):
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise ArchDataError(f"{path}: {where}: expected the fields {sorted(fields)}, got {got}")
    for key, kind in fields.items():
        if not isinstance(value[key], kind):
            raise ArchDataError(f"{path}: {where}.{key}: expected {kind.__name__}")
    return value


def _strings(path: Traversable, where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ArchDataError(f"{path}: {where}: expected a non-empty list of strings")
    return tuple(value)


def _settings(path: Traversable, where: str, value: dict[str, Any]) -> dict[str, Setting]:
    settings = {}
    for key, entry in value.items():
        entry = _object(path, f"{where}.{key}", entry, {"type": str, "keys": list})
        if entry["type"] not in ("int", "float", "window"):
            raise ArchDataError(f"{path}: {where}.{key}.type: expected int, float or window")
        settings[key] = Setting(cast(Kind, entry["type"]), _strings(path, f"{where}.{key}.keys", entry["keys"]))
    return settings


_ARCH_FIELDS: dict[str, type] = {
    "doc": str,
    "model_type": str,
    "class": str,
    "family": str,
    "prefix": str,
    "permuted": dict,
    "offsets": dict,
    "config": dict,
    "flags": dict,
    "ignore": dict,
}


@cache
def architectures() -> dict[str, GgufArch]:
    """The GGUF architectures wsel reads, from `arch/formats/gguf.json`, validated strictly."""
    path = _data("formats", "gguf.json")
    doc = _object(
        path, "gguf.json", _document(path), {"doc": str, "config": dict, "required": list, "architectures": dict}
    )
    common = _settings(path, "config", doc["config"])
    required = _strings(path, "required", doc["required"])
    found = {}
    for name, entry in doc["architectures"].items():
        where = f"architectures.{name}"
        entry = _object(path, where, entry, _ARCH_FIELDS)
        if name not in _ARCH_IDS:
            raise ArchDataError(f"{path}: {where}: gguf-py knows no architecture {name!r}")
        permuted = {k: _strings(path, f"{where}.permuted.{k}", v) for k, v in entry["permuted"].items()}
        offsets = entry["offsets"]
        if not all(type(v) is float for v in offsets.values()):
            raise ArchDataError(f"{path}: {where}.offsets: expected numbers")
        for key in ("flags", "ignore"):
            if not all(isinstance(v, str) for v in entry[key].values()):
                raise ArchDataError(f"{path}: {where}.{key}: expected strings")
        found[name] = GgufArch(
            name=name,
            model_type=entry["model_type"],
            hf_class=entry["class"],
            names=_name_map(name, entry["family"], entry["prefix"], f"{path}: {where}"),
            permuted=permuted,
            offsets=dict(offsets),
            config=common | _settings(path, f"{where}.config", entry["config"]),
            flags=dict(entry["flags"]),
            ignore=dict(entry["ignore"]),
            required=required,
        )
    return found


_ARCH_IDS = {name: arch for arch, name in MODEL_ARCH_NAMES.items()}


def _name_map(arch: str, family: str, prefix: str, where: str) -> dict[str, str]:
    """GGUF name -> Hugging Face name template, for the tensors of the family that GGUF has."""
    path = _data(f"{family}.json")
    doc = _document(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), dict):
        raise ArchDataError(f"{where}: family {family!r} ({path}) has no tensor templates")
    table = get_tensor_name_map(_ARCH_IDS[arch], 2)  # two blocks: enough to see where the block index goes
    names: dict[str, str] = {}
    for template in doc["tensors"]:
        hf = template.replace("{p}", prefix)
        base, _, suffix = hf.rpartition(".")
        if "{layer}" in base:
            first, second = (table.get_name(base.replace("{layer}", str(i))) for i in (0, 1))
            if first is None:
                continue
            if not first.startswith("blk.0.") or second != "blk.1." + first[6:]:
                raise ArchDataError(f"{where}: {hf} maps to {first} and {second}, not blk.{{layer}}.NAME")
            gguf_name = "blk.{layer}." + first[6:]
        else:
            mapped = table.get_name(base)
            if mapped is None:
                continue
            gguf_name = mapped
        key = f"{gguf_name}.{suffix}"
        if names.setdefault(key, hf) != hf:
            raise ArchDataError(f"{where}: {names[key]} and {hf} both map to {key}")
    return names
