"""What the experiments in examples/ share: the machine a run was measured on, and the paper's
random-inconsistent ablation (each dim of each tensor with its own index set)."""

from __future__ import annotations

import os
import platform
import zlib
from pathlib import Path

import numpy as np
import torch


def machine() -> dict:
    """The CPU, threads, platform and library versions a run's figures were measured with."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import transformers

    return {
        "cpu": cpu,
        "cpus": torch.get_num_threads(),
        "cores_on_machine": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def select_inconsistently(x: torch.Tensor, name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """`x` cut to `shape`, every dim that shrinks with its own index set:
    sorted(numpy default_rng([seed, crc32(name), dim]).choice(T, S, replace=False))."""
    for dim, size in enumerate(shape):
        if size < x.shape[dim]:
            rng = np.random.default_rng([seed, zlib.crc32(name.encode()), dim])
            index = np.sort(rng.choice(x.shape[dim], size=size, replace=False))
            x = x.index_select(dim, torch.from_numpy(index))
    return x.contiguous()
