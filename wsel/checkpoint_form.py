"""A model's tensors under the names and shapes its checkpoints store them in.

transformers 5 holds each mixture-of-experts layer's experts fused (`mlp.experts.gate_up_proj` [experts,
gate|up, hidden]) where checkpoints store one tensor per expert (`mlp.experts.3.up_proj.weight`), and renames
some (Mixtral's router is `block_sparse_moe.gate` in files, `mlp.gate` in memory). The family data says which
model tensor is made of which stored ones (`in_memory`); a fused tensor is seen through views under the stored
names, so that a plan made from the teacher's names fills it (`select_into`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from wsel.arch import Architecture, Template
from wsel.checkpoint.index import CheckpointIndex


def checkpoint_form(
    state: Mapping[str, torch.Tensor], arch: Architecture | None, teacher: CheckpointIndex
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """`state` with each tensor the model holds in another form than the teacher stores (the family's
    `in_memory`) replaced by views under the teacher's names: `mlp.experts.gate_up_proj` [experts, 2 * mlp,
    hidden] by `mlp.experts.{j}.gate_proj.weight` = [j, :mlp] and `...up_proj.weight` = [j, mlp:], for each j;
    and each view's name → the name of the model tensor it is part of."""
    result: dict[str, torch.Tensor] = {}
    part_of: dict[str, str] = {}
    forms = _stored_otherwise(arch, teacher) if arch is not None else []
    for name, tensor in state.items():
        match = next(((prefix, parts, m) for prefix, model, parts in forms if (m := model.match(name))), None)
        if match is None:
            result[name] = tensor
            continue
        prefix, parts, m = match
        layer = int(m.group("layer")) if "layer" in m.groupdict() else None
        if parts[0].per_expert:  # [experts, rows of each part..., ...]
            rows = tensor.shape[1] // len(parts)
            views = {
                part.name(prefix, layer, expert): tensor[expert, k * rows : (k + 1) * rows]
                for expert in range(tensor.shape[0])
                for k, part in enumerate(parts)
            }
        else:  # [rows of each part..., ...]
            rows = tensor.shape[0] // len(parts)
            views = {part.name(prefix, layer): tensor[k * rows : (k + 1) * rows] for k, part in enumerate(parts)}
        result.update(views)
        part_of.update(dict.fromkeys(views, name))
    return result, part_of


def _stored_otherwise(
    arch: Architecture, teacher: CheckpointIndex
) -> list[tuple[str, re.Pattern[str], list[Template]]]:
    """(prefix, the model tensor's pattern, its parts) for each `in_memory` entry the teacher stores as its parts."""
    forms = []
    for pattern, parts in arch.in_memory.items():
        templates = [arch.template(p) for p in parts]
        for prefix in arch.prefixes:
            stored = templates[0].regex(prefix)
            if any(stored.match(n) for n in teacher.tensors):
                forms.append((prefix, arch.template(pattern).regex(prefix), templates))
                break
    return forms
