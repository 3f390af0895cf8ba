"""Changing element values, only when the user asked: a cast (`--dtype`) and/or a factor (`--rescale`).

Used where bytes are written (`wsel.execute`) and where they are checked again (`wsel.verify`), so that
both compute exactly the same values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from wsel.checkpoint.dtypes import DTYPES
from wsel.checkpoint.reader import Chunk


def transform_chunks(chunks: Iterable[Chunk], source: str, target: str, scale: float | None) -> Iterator[Chunk]:
    """Chunks of `source` elements as `target` elements, multiplied by `scale` when given.

    Scaling is computed by torch in float32 (float64 for F64 tensors), then rounded to `target`.
    """
    import torch  # deferred: only casting and rescaling need torch

    src, dst = getattr(torch, DTYPES[source].torch_name), getattr(torch, DTYPES[target].torch_name)
    for chunk in chunks:
        if not chunk:
            continue
        values = torch.frombuffer(bytearray(chunk), dtype=src)  # [elements of this chunk]
        if scale is not None:
            values = values.to(torch.float64 if src == torch.float64 else torch.float32) * scale
        yield values.to(dst).view(torch.uint8).numpy().tobytes()
