"""The paper's reference code (Xu et al., "Initializing Models with Larger Ones", ICLR 2024),
copied as published, so tests compare wsel against the original formula, not against itself."""

from __future__ import annotations

import torch


def uniform_element_selection(wt: torch.Tensor, s_shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    assert wt.dim() == len(s_shape), "Tensors have different number of dimensions"
    ws = wt.clone()
    for dim in range(wt.dim()):
        assert wt.shape[dim] >= s_shape[dim], "Teacher's dimension should not be smaller than student's dimension"
        if wt.shape[dim] % s_shape[dim] == 0:
            step = wt.shape[dim] // s_shape[dim]
            indices = torch.arange(s_shape[dim]) * step
        else:
            indices = torch.round(torch.linspace(0, wt.shape[dim] - 1, s_shape[dim])).long()
        ws = torch.index_select(ws, dim, indices)
    assert ws.shape == s_shape
    return ws
