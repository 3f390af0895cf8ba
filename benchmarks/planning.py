"""What the measured programs are told, derived once per teacher from wsel's own plan (not timed).

- the baseline gets, per student tensor, its teacher tensor and shape;
- the I/O floor gets the teacher byte ranges the plan needs and the number of output bytes;
- `same_tensors` checks two outputs tensor by tensor, byte for byte.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import wsel
from wsel import Plan, Selection, TensorInfo


@dataclass(frozen=True)
class Needs:
    plan: Plan
    tensors: list[dict[str, object]]  # baseline: [{name, teacher, shape}]
    reads: list[tuple[str, int, int]]  # floor: (file, offset, length), merged, in file order
    read_bytes: int
    span_bytes: int  # what reading each tensor from its first to its last kept row would take (no row skipping)
    write_bytes: int  # the student's tensor data plus its header


def needs(teacher: Path, sets: Sequence[str], attention: str = "flat") -> Needs:
    plan = wsel.build_plan(teacher, sets=tuple(sets), options=wsel.PlanOptions(attention=attention))
    tensors = [{"name": t.name, "teacher": t.source.name, "shape": list(t.shape)} for t in plan.written]
    reads = _merge([(str(file), offset, offset + length) for file, offset, length in wsel.read_schedule(plan)])
    span = sum(_span(t.source, t.selections) for t in plan.written if t.numel)  # empty selections read nothing
    write_bytes = _header_bytes(plan) + sum(t.nbytes for t in plan.written)
    return Needs(plan, tensors, reads, sum(n for _, _, n in reads), span, write_bytes)


def _header_bytes(plan: Plan) -> int:
    """The size of a safetensors header for the student, without wsel's provenance metadata (a few KB at
    most): close enough for the floor."""
    doc: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in plan.written:
        doc[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    body = len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())
    return 8 + body + (-body % 8)


def _span(info: TensorInfo, sels: Sequence[Selection]) -> int:
    """Bytes from the first kept row to the last: what reading the tensor without skipping rows would take."""
    if not info.shape:
        return info.nbytes
    kept = sels[0].indices()
    row = info.nbytes // info.shape[0]
    return (int(kept[-1]) - int(kept[0]) + 1) * row


def _merge(ranges: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    for file, a, b in sorted(ranges):
        if out and out[-1][0] == file and out[-1][1] + out[-1][2] >= a:
            f, s, n = out[-1]
            out[-1] = (f, s, max(s + n, b) - s)
        else:
            out.append((file, a, b - a))
    return out


def write_inputs(n: Needs, folder: Path) -> tuple[Path, Path]:
    """The baseline's tensor list and the floor's read list, as JSON files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    baseline, floor = folder / "baseline-tensors.json", folder / "floor-reads.json"
    baseline.write_text(json.dumps(n.tensors))
    floor.write_text(json.dumps({"reads": n.reads, "write_bytes": n.write_bytes}))
    return baseline, floor


# --- comparing outputs -------------------------------------------------------------------------------


def _header(path: Path) -> dict[str, dict[str, object]]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        doc = json.loads(f.read(n))
    doc.pop("__metadata__", None)
    for v in doc.values():
        v["_file"], v["_base"] = path, 8 + n
    return doc


def load_headers(output: Path) -> dict[str, dict[str, object]]:
    files = [output] if output.is_file() else sorted(output.glob("*.safetensors"))
    out: dict[str, dict[str, object]] = {}
    for f in files:
        out.update(_header(f))
    return out


def same_tensors(a: Path, b: Path, chunk: int = 16 << 20) -> list[str]:
    """Differences between two safetensors outputs (file or folder), comparing each tensor's raw bytes."""
    ha, hb = load_headers(a), load_headers(b)
    problems = [f"only in {a}: {n}" for n in sorted(set(ha) - set(hb))]
    problems += [f"only in {b}: {n}" for n in sorted(set(hb) - set(ha))]
    fds: dict[object, int] = {}
    try:
        for name in sorted(set(ha) & set(hb)):
            ta, tb = ha[name], hb[name]
            if (ta["dtype"], ta["shape"]) != (tb["dtype"], tb["shape"]):
                problems.append(f"{name}: {ta['dtype']}{ta['shape']} vs {tb['dtype']}{tb['shape']}")
                continue
            (sa, ea), (sb, _) = ta["data_offsets"], tb["data_offsets"]  # type: ignore[misc]
            for pos in range(0, ea - sa, chunk):
                n = min(chunk, ea - sa - pos)
                ba = _pread(fds, ta["_file"], ta["_base"] + sa + pos, n)  # type: ignore[operator]
                bb = _pread(fds, tb["_file"], tb["_base"] + sb + pos, n)  # type: ignore[operator]
                if ba != bb:
                    problems.append(f"{name}: bytes differ in [{pos}, {pos + n})")
                    break
    finally:
        for fd in fds.values():
            os.close(fd)
    return problems


def _pread(fds: dict[object, int], file: object, offset: int, n: int) -> bytes:
    if file not in fds:
        fds[file] = os.open(str(file), os.O_RDONLY)
    data = os.pread(fds[file], n, offset)
    assert len(data) == n, f"{file}: short read"
    return data
