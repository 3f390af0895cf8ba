"""PyTorch zip checkpoints (torch.save), read without unpickling them with torch: every TensorInfo is checked
against the real tensor by reading the file at the bytes it points to (a view through its `Stored` window)."""

from __future__ import annotations

import argparse
import io
import math
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from wsel.checkpoint.header import Stored, TensorInfo
from wsel.checkpoint.torchzip import TorchCheckpoint, read_torch
from wsel.errors import CheckpointError
from wsel.sources.base import Handle, Source
from wsel.sources.local import LocalFile, LocalHandle

# Every torch dtype that has a safetensors dtype, and the name wsel gives it.
DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.uint16: "U16",
    torch.uint32: "U32",
    torch.uint64: "U64",
    torch.bool: "BOOL",
    torch.complex64: "C64",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.float8_e4m3fnuz: "F8_E4M3FNUZ",
    torch.float8_e5m2fnuz: "F8_E5M2FNUZ",
    torch.float8_e8m0fnu: "F8_E8M0",
}
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def saved(path: Path, obj: object, **kwargs: object) -> Path:
    torch.save(obj, path, **kwargs)
    return path


def read(path: Path, key: str | None = None) -> TorchCheckpoint:
    return read_torch(LocalFile(path), key)


def refusal(path: Path, key: str | None = None) -> str:
    with pytest.raises(CheckpointError) as e:
        read(path, key)
    message = str(e.value)
    assert "\n" not in message
    return message


def raw_bytes(t: torch.Tensor) -> bytes:
    """A tensor's elements in C order, as bytes (any dtype)."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def pointed_at(info: TensorInfo) -> bytes:
    """The tensor's elements in C order, from the file at the bytes `info` points to."""
    path = info.file.local_path
    assert path is not None
    with open(path, "rb") as f:
        f.seek(info.start)
        data = f.read(info.end - info.start)
    assert len(data) == info.end - info.start
    if info.stored is None:
        return data
    stored = info.stored
    assert isinstance(stored, Stored) and stored.quant is None and stored.rows is None
    esize = (info.end - info.start) // math.prod(stored.shape)
    container = np.frombuffer(data, dtype=_UINT[esize]).reshape(stored.shape)
    window = container[tuple(slice(0, info.shape[stored.order.index(j)]) for j in range(len(stored.shape)))]
    return np.ascontiguousarray(window.transpose(stored.order)).tobytes()


def check(found: TorchCheckpoint, expected: dict[str, torch.Tensor]) -> dict[str, TensorInfo]:
    """Every tensor of `expected`, found with its dtype and shape, at bytes that hold its values."""
    infos = {t.name: t for t in found.tensors}
    assert sorted(infos) == sorted(expected)
    for name, tensor in expected.items():
        info = infos[name]
        assert (info.dtype, info.shape) == (DTYPES[tensor.dtype], tuple(tensor.shape)), name
        assert pointed_at(info) == raw_bytes(tensor), name
    assert list(found.tensors) == sorted(found.tensors, key=lambda t: (t.start, t.end, t.name))
    assert found.format == "pytorch"
    return infos


def data_pkl(path: Path) -> bytes:
    with zipfile.ZipFile(path) as z:
        (name,) = [n for n in z.namelist() if n.endswith("/data.pkl")]
        return z.read(name)


def test_plain_state_dict(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Conv1d(8, 4, 3), nn.BatchNorm1d(4))
    sd = model.state_dict()
    path = saved(tmp_path / "model.pt", sd)
    found = read(path)
    infos = check(found, dict(sd))
    assert found.key is None
    assert found.fingerprint == data_pkl(path)
    assert all(i.stored is None and i.file == LocalFile(path) for i in infos.values())
    assert infos["3.num_batches_tracked"].shape == ()  # a 0-dim I64


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_dtype(tmp_path: Path, protocol: int) -> None:
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for dtype in DTYPES:
        if dtype.is_floating_point:
            values = torch.randn(3, 5, generator=gen).to(dtype)
        elif dtype.is_complex:
            values = torch.randn(3, 5, generator=gen, dtype=dtype)
        elif dtype == torch.bool:
            values = torch.randint(0, 2, (3, 5), generator=gen).bool()
        else:
            values = torch.randint(0, 100, (3, 5), generator=gen).to(dtype)
        sd[str(dtype).removeprefix("torch.")] = values
    path = saved(tmp_path / "dtypes.pt", sd, pickle_protocol=protocol)
    infos = check(read(path), sd)
    assert {n: i.dtype for n, i in infos.items()} == {str(d).removeprefix("torch."): s for d, s in DTYPES.items()}


def test_parameters_and_tensors_with_attributes(tmp_path: Path) -> None:
    """nn.Parameter (`_rebuild_parameter`), one with a Python attribute (`_rebuild_parameter_with_state`) and a
    tensor with one (`_rebuild_from_type_v2`): each read as its tensor."""
    tagged = nn.Parameter(torch.randn(4))
    tagged.no_weight_decay = True  # type: ignore[attr-defined]
    plain = torch.randn(2, 3)
    plain.note = "x"  # type: ignore[attr-defined]
    sd = {"w": nn.Parameter(torch.randn(3, 2)), "frozen": nn.Parameter(torch.randn(5), False), "tagged": tagged}
    path = saved(tmp_path / "params.pt", {**sd, "plain": plain})
    text = data_pkl(path)
    for rebuild in (b"_rebuild_parameter\n", b"_rebuild_parameter_with_state", b"_rebuild_from_type_v2"):
        assert rebuild in text  # each path is exercised
    check(read(path), {**sd, "plain": plain})


def training_checkpoint() -> tuple[dict[str, torch.Tensor], dict]:
    model = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 2))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    sd = model.state_dict()
    checkpoint = {
        "model": sd,
        "optimizer": opt.state_dict(),  # tensors nested deeper: not a candidate
        "epoch": 3,
        "args": argparse.Namespace(lr=0.1, model="vit_tiny", device=torch.device("cpu"), dims=(1, 2)),
        "metric": np.float64(0.5),
        "rng": np.arange(4),
        "seen": {1, 2},
        "blob": b"\x00\x01",
        "seed": 2**70,
        "dtype": torch.bfloat16,
    }
    return dict(sd), checkpoint


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_nested_training_checkpoint(tmp_path: Path, protocol: int) -> None:
    sd, checkpoint = training_checkpoint()
    path = saved(tmp_path / "checkpoint.pth", checkpoint, pickle_protocol=protocol)
    found = read(path)
    assert found.key == "model"
    check(found, sd)
    assert read(path, "model") == found


def test_several_candidates(tmp_path: Path) -> None:
    sd, checkpoint = training_checkpoint()
    ema = {k: v + 1 for k, v in sd.items()}
    path = saved(tmp_path / "x.pth", {**checkpoint, "model_ema": ema})
    assert refusal(path) == (
        f'{path}: holds several state dicts ("model", "model_ema"); choose one with --teacher-key NAME'
    )
    check(read(path, "model"), sd)
    found = read(path, "model_ema")
    assert found.key == "model_ema"
    check(found, ema)
    assert refusal(path, "state_dict") == (
        f'{path}: "state_dict" is not a key of the checkpoint; its state dicts are under "model", "model_ema"; '
        "choose one with --teacher-key NAME"
    )
    assert refusal(path, "epoch") == (
        f'{path}: "epoch" holds an int, not a state dict; its state dicts are under "model", "model_ema"; '
        "choose one with --teacher-key NAME"
    )


def test_key_on_a_top_level_state_dict(tmp_path: Path) -> None:
    path = saved(tmp_path / "sd.pt", {"w": torch.ones(2)})
    assert refusal(path, "model") == (
        f'{path}: is itself a state dict (its tensors are at the top level), with no "model"; leave out --teacher-key'
    )


NO_TENSORS = "holds no tensors at its top level or under a top-level key"
NOT_A_DICT = "not a state dict (a dict of tensors)"


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        ({"epoch": 3, "args": argparse.Namespace(a=1)}, f'{NO_TENSORS} (keys: "epoch", "args")'),
        ({}, f"{NO_TENSORS} (no keys)"),
        ([torch.ones(2)], f"holds a list, {NOT_A_DICT}"),
        (torch.ones(2), f"holds a single tensor, {NOT_A_DICT}"),
        (argparse.Namespace(a=1), f"holds an object, {NOT_A_DICT}"),
        ({"model": {"deeper": {"w": torch.ones(1)}}}, f'{NO_TENSORS} (keys: "model")'),
        (
            {"a\nb": {"w": torch.ones(1)}, "c": {"w": torch.ones(1)}},
            'holds several state dicts ("a\\nb", "c"); choose one with --teacher-key NAME',
        ),
        ({3: torch.ones(1)}, "holds a tensor under the key 3, which is not a name"),
    ],
)
def test_no_state_dict(tmp_path: Path, obj: object, problem: str) -> None:
    path = saved(tmp_path / "x.pt", obj)
    assert refusal(path) == f"{path}: {problem}"


def test_shared_storage_and_views(tmp_path: Path) -> None:
    """Tied weights, slices, a transpose, a column window, channels_last, offsets: each its own TensorInfo into
    the shared storage entry, views as windows of a stored array."""
    gen = torch.Generator().manual_seed(1)
    embed = torch.randn(10, 4, generator=gen)
    qkv = torch.randn(12, 4, generator=gen)
    w = torch.randn(3, 5, generator=gen)
    grid = torch.randn(4, 6, generator=gen)
    conv = torch.randn(8, 3, 2, 5, generator=gen).to(memory_format=torch.channels_last)
    cube = torch.randn(2, 3, 4, generator=gen)
    sd = {
        "embed.weight": embed,
        "head.weight": embed,  # tied: the same tensor
        "q.weight": qkv[0:4],
        "k.weight": qkv[4:8],
        "v.weight": qkv[8:12],  # storage_offset 32
        "w.t": w.t(),  # [5, 3] stride (1, 5)
        "grid.left": grid[:, :2],  # [4, 2] stride (6, 1)
        "grid.middle": grid[1:3, 2:5],  # offset 8
        "grid.column": grid[:, 0:1],  # [4, 1] stride (6, 1): a column, its size-1 dim the stored row
        "conv.weight": conv,  # strides (30, 1, 15, 3)
        "cube.permuted": cube.permute(2, 0, 1),  # [4, 2, 3] stride (1, 12, 4)
        "cube.unsqueezed": cube[:, None, 0, :2],  # [2, 1, 2] stride (12, 2, 1)
        "row": grid[2],  # contiguous, offset 12
        "scalar": grid[3, 5],  # 0-dim, offset 23
        "empty": grid[:0],
    }
    path = saved(tmp_path / "views.pt", sd)
    infos = check(read(path), sd)
    assert infos["head.weight"].start == infos["embed.weight"].start
    assert infos["head.weight"].end == infos["embed.weight"].end
    assert infos["k.weight"].start == infos["q.weight"].end
    assert infos["v.weight"].start == infos["q.weight"].start + 32 * 4
    assert infos["q.weight"].stored is None and infos["row"].stored is None and infos["scalar"].stored is None
    stored = {n: i.stored for n, i in infos.items() if i.stored is not None}
    assert stored == {
        "w.t": Stored(shape=(3, 5), order=(1, 0)),
        "grid.left": Stored(shape=(4, 6), order=(0, 1)),
        "grid.middle": Stored(shape=(2, 6), order=(0, 1)),
        "grid.column": Stored(shape=(4, 6), order=(0, 1)),
        "conv.weight": Stored(shape=(8, 2, 5, 3), order=(0, 3, 1, 2)),
        "cube.permuted": Stored(shape=(2, 3, 4), order=(2, 0, 1)),
        "cube.unsqueezed": Stored(shape=(2, 1, 12), order=(0, 1, 2)),
    }
    assert infos["grid.middle"].start == infos["grid.left"].start + 8 * 4
    assert infos["grid.middle"].end == infos["grid.middle"].start + 12 * 4


def test_a_window_of_the_last_columns(tmp_path: Path) -> None:
    """The last columns of a matrix: the rows it is a window of end after its storage (by the columns before the
    window), in bytes of the file the window never uses. Past the end of the file, it is refused."""
    grid = torch.arange(24.0).reshape(4, 6)
    path = saved(tmp_path / "cols.pt", {"cols": grid[:, 4:6], "w": grid})
    infos = check(read(path), {"cols": grid[:, 4:6], "w": grid})
    assert infos["cols"].stored == Stored(shape=(4, 6), order=(0, 1))
    assert infos["cols"].end == infos["w"].end + 4 * 4  # the last row's last 4 elements lie after the storage
    wide = torch.zeros(2, 2048)
    path = saved(tmp_path / "wide.pt", {"col": wide[:, 2047:2048]})
    assert refusal(path) == (
        f"{path}: tensor 'col': the rows it is a window of (bytes 8188..24572 of its storage '0') run past the end "
        "of the file; save it with .contiguous()"
    )


CONTIGUOUS = "save it with .contiguous()"
RESOLVE = "(its bytes are not its values); save it with .resolve_conj().resolve_neg()"


@pytest.mark.parametrize(
    ("tensor", "problem"),
    [
        (torch.ones(3, 1).expand(3, 4), f"it is expanded (stride [1, 0] repeats elements); {CONTIGUOUS}"),
        (torch.ones(4, 6)[:, ::2], f"it skips elements (stride [6, 2]: its innermost dim steps by 2); {CONTIGUOUS}"),
        (
            torch.ones(2, 3, dtype=torch.complex128),
            "torch.complex128 has no safetensors dtype wsel reads; convert the tensor or leave it out",
        ),
        (torch.ones(2, dtype=torch.complex64).conj(), f"saved as a lazy conj view {RESOLVE}"),
        (torch.ones(2, dtype=torch.complex64).conj().imag, f"saved as a lazy neg view {RESOLVE}"),
    ],
)
def test_layouts_and_dtypes_refused(tmp_path: Path, tensor: torch.Tensor, problem: str) -> None:
    path = saved(tmp_path / "x.pt", {"ok": torch.ones(2), "bad": tensor})
    assert refusal(path) == f"{path}: tensor 'bad': {problem}"


def test_an_unreadable_tensor_outside_the_state_dict_does_not_matter(tmp_path: Path) -> None:
    sd = {"w": torch.randn(2, 2)}
    path = saved(tmp_path / "x.pt", {"model": sd, "extra": [torch.ones(2, dtype=torch.complex128).conj()]})
    check(read(path), sd)


def test_torch_writes_zip64_end_records(tmp_path: Path) -> None:
    path = saved(tmp_path / "x.pt", {"w": torch.randn(3)})
    assert b"PK\x06\x06" in path.read_bytes()[-200:] and b"PK\x06\x07" in path.read_bytes()[-200:]
    check(read(path), {"w": torch.load(path, weights_only=True)["w"]})


def zip64_everywhere(path: Path) -> bytes:
    """The archive with every size and offset of its central directory moved to zip64 extra fields, as a
    writer does for entries past 4 GB."""
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
        cd_start = z.start_dir
    central = b""
    for info in infos:
        name = info.filename.encode()
        extra = struct.pack("<HHQQQ", 1, 24, info.file_size, info.compress_size, info.header_offset)
        central += struct.pack(
            "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, info.flag_bits, 0, 0, 0, info.CRC,
            0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0, 0xFFFFFFFF,
        ) + name + extra  # fmt: skip
    n = len(infos)
    eocd64_at = cd_start + len(central)
    end = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(central), cd_start)
    end += struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd64_at, 1)
    end += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return data[:cd_start] + central + end


def test_zip64_extra_fields(tmp_path: Path) -> None:
    sd = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    source = saved(tmp_path / "x.pt", sd)
    path = tmp_path / "zip64.pt"
    path.write_bytes(zip64_everywhere(source))
    with zipfile.ZipFile(path) as z:  # the reference reads it too
        assert z.testzip() is None
    assert torch.equal(torch.load(path, weights_only=True)["a"], sd["a"])
    check(read(path), sd)


def test_an_archive_rewritten_by_python_zipfile(tmp_path: Path) -> None:
    """No 64-byte alignment, no zip64, another folder name, a comment: still read."""
    sd = {"w": torch.randn(5, 3)}
    source = saved(tmp_path / "x.pt", sd)
    path = tmp_path / "y.pt"
    with zipfile.ZipFile(source) as z, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info in z.infolist():
            out.writestr("renamed/" + info.filename.split("/", 1)[1], z.read(info))
        out.comment = b"a comment"
    assert torch.equal(torch.load(path, weights_only=True)["w"], sd["w"])
    check(read(path), sd)
    with zipfile.ZipFile(path, "a") as z:  # a comment that looks like an end record (torch.load is fooled)
        z.comment = b"PK\x05\x06" + bytes(20)
    check(read(path), sd)


def test_an_ordered_dict_with_metadata(tmp_path: Path) -> None:
    """A module's state_dict(): an OrderedDict whose `_metadata` (BUILD) is dropped, not a tensor."""
    sd = nn.Linear(2, 3).state_dict()
    assert isinstance(sd, OrderedDict) and hasattr(sd, "_metadata")
    found = read(saved(tmp_path / "x.pt", sd))
    assert [t.name for t in found.tensors] == ["weight", "bias"]


@dataclass(frozen=True)
class RecordingFile(Source):
    """A local file that records every range read from it."""

    path: Path
    reads: list[list[tuple[int, int]]] = field(default_factory=list, compare=False)  # per read_into call

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def open(self) -> Handle:
        reads = self.reads

        class Recording(LocalHandle):
            def read_into(self, ranges: Sequence[tuple[int, int]], out: memoryview) -> None:
                reads.append(list(ranges))
                super().read_into(ranges, out)

        return Recording(self.path)


def test_only_headers_and_data_pkl_are_read(tmp_path: Path) -> None:
    """Never a byte of tensor data: the end records, the central directory, local headers and data.pkl, in a
    handful of reads (the local headers of all storages in one)."""
    sd = {f"layers.{i}.weight": torch.randn(64, 64) for i in range(20)}
    path = saved(tmp_path / "x.pt", sd)
    source = RecordingFile(path)
    found = read_torch(source)
    assert [len(ranges) for ranges in source.reads] == [1, 1, 1, 2, 1, 1, 20]  # first bytes, end records (zip64
    # too), central directory, the local headers of data.pkl and byteorder, byteorder, data.pkl, and the local
    # headers of the 20 storages
    assert source.reads[1] == [(path.stat().st_size - 98, 98)]
    for info in found.tensors:
        for ranges in source.reads:
            for offset, length in ranges:
                assert offset + length <= info.start or offset >= info.end
