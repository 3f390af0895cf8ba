"""Hostile and broken PyTorch zip checkpoints: pickles that would run code (each would create a canary file,
shown to work with Python's own unpickler), opcodes torch.save never writes, zip archives cut short,
overlapping or pointing past the file, tensors outside their storage. Each is refused in one line that names
what is wrong, and nothing from the file runs."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import shlex
import struct
import subprocess
import sys
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import PICKLE_FIX
from torch import nn

from wsel.checkpoint import unpickle
from wsel.checkpoint.torchzip import read_torch
from wsel.errors import CheckpointError
from wsel.sources.local import LocalFile

REFUSED = "refused (nothing from the file was run)"


def refusal(path: Path, key: str | None = None) -> str:
    with pytest.raises(CheckpointError) as e:
        read_torch(LocalFile(path), key)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


def archive(tmp_path: Path, pickled: bytes | None = None, name: str = "model.pt", **tensors: torch.Tensor) -> Path:
    """A real torch.save archive (of `tensors`, default one F32[6] under "w", storage "0"), its data.pkl
    replaced by `pickled` (entries stored, as torch writes them)."""
    path = tmp_path / name
    torch.save(tensors or {"w": torch.arange(6.0)}, path)
    if pickled is not None:
        replace_entry(path, "data.pkl", pickled)
    return path


def replace_entry(path: Path, suffix: str, data: bytes, compression: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w", compression) as z:
        for entry, content in entries:
            z.writestr(entry, data if entry.endswith("/" + suffix) else content)


def call(module: str, name: str, *args: object) -> bytes:
    """Protocol 2 opcodes (no PROTO, no STOP) that call `module.name(*args)`."""
    return f"c{module}\n{name}\n".encode() + pickle.dumps(args, protocol=2)[2:-1] + b"R"


def state_dict_of(value: bytes) -> bytes:
    """A whole pickle: {"w": <value>}, as a state dict would hold it."""
    return b"\x80\x02}X\x01\x00\x00\x00w" + value + b"s."


class Storage:
    def __init__(self, key: str, numel: int, kind: object = torch.FloatStorage) -> None:
        self.key, self.numel, self.kind = key, numel, kind


class Tensor:
    """A tensor record as torch.save writes it, with whatever storage, offset, size and stride."""

    def __init__(self, storage: Storage, offset: object, size: object, stride: object) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self) -> tuple:
        return torch._utils._rebuild_tensor_v2, self.args


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj: object) -> tuple | None:
        if isinstance(obj, Storage):
            return ("storage", obj.kind, obj.key, "cpu", obj.numel)
        return None


def torch_pickle(obj: object, protocol: int = 2) -> bytes:
    out = io.BytesIO()
    TorchPickler(out, protocol=protocol).dump(obj)
    return out.getvalue()


def make_canary(path: str) -> None:  # a global of this test module: unknown to wsel
    Path(path).touch()


class Evil:
    def __init__(self, canary: Path) -> None:
        self.canary = str(canary)

    def __reduce__(self) -> tuple:
        return make_canary, (self.canary,)


# Each payload would create the canary (Python's unpickler shows it does); the global wsel names.
PAYLOADS: dict[str, tuple[Callable[[str], bytes], str]] = {
    "os.system": (lambda c: state_dict_of(call("os", "system", f"touch {c}")), "os.system"),
    "posix.system": (lambda c: pickle.dumps({"w": Evil2(c)}, protocol=2), "posix.system"),
    "eval": (lambda c: state_dict_of(call("builtins", "eval", f"open({c!r}, 'w')")), "builtins.eval"),
    "exec": (lambda c: state_dict_of(call("builtins", "exec", f"open({c!r}, 'w')")), "builtins.exec"),
    "py2 eval": (lambda c: state_dict_of(call("__builtin__", "eval", f"open({c!r}, 'w')")), "__builtin__.eval"),
    "Popen": (lambda c: state_dict_of(call("subprocess", "Popen", ["touch", c])), "subprocess.Popen"),
    "check_output": (
        lambda c: state_dict_of(call("subprocess", "check_output", ["touch", c])),
        "subprocess.check_output",
    ),
    "unknown __reduce__": (lambda c: pickle.dumps({"w": Evil(Path(c))}, protocol=2), f"{__name__}.make_canary"),
    "stack global": (lambda c: pickle.dumps({"w": Evil2(c)}, protocol=4), "posix.system"),
    "inside a tensor's args": (
        lambda c: torch_pickle({"w": Tensor(Storage("0", 6), Evil(Path(c)), (6,), (1,))}),
        f"{__name__}.make_canary",
    ),
    "after a valid tensor": (
        lambda c: torch_pickle({"a": Tensor(Storage("0", 6), 0, (6,), (1,)), "w": Evil(Path(c))}),
        f"{__name__}.make_canary",
    ),
}


class Evil2:
    def __init__(self, canary: str) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.canary}",)


@pytest.mark.parametrize("case", PAYLOADS)
def test_code_in_the_pickle_never_runs(tmp_path: Path, case: str) -> None:
    build, named = PAYLOADS[case]
    canary = tmp_path / "CANARY"
    payload = build(str(canary))
    path = archive(tmp_path, payload)
    assert refusal(path) == f"data.pkl calls {named}, which a state dict never needs; {REFUSED}"
    assert not canary.exists()
    python_loads(payload)  # the payload is real: Python's own unpickler runs it
    for _ in range(100):  # Popen does not wait for its command
        if canary.exists():
            break
        time.sleep(0.05)
    assert canary.exists()


def python_loads(payload: bytes) -> None:
    """Python's unpickler, with the storages torch.load would give (the payloads are our own)."""

    class Loader(pickle.Unpickler):
        def persistent_load(self, pid: tuple) -> object:
            storage = torch.zeros(pid[4]).untyped_storage()
            return torch.storage.TypedStorage(wrap_storage=storage, dtype=torch.float32, _internal=True)

    try:
        Loader(io.BytesIO(payload)).load()
    except Exception:
        pass  # what the payload returns need not make a state dict


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
        ("torch._utils", "_rebuild_sparse_tensor"),
        ("torch._utils", "_rebuild_wrapper_subclass"),
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("torch.serialization", "_get_layout"),
        ("torch.nn.modules.linear", "Linear"),
        ("torch", "_C"),
        ("numpy", "load"),
        ("copyreg", "_reconstructor"),
        ("builtins", "getattr"),
        ("collections", "defaultdict"),
    ],
)
def test_globals_outside_the_allow_list(tmp_path: Path, module: str, name: str) -> None:
    path = archive(tmp_path, state_dict_of(call(module, name, "x")))
    assert refusal(path) == f"data.pkl calls {module}.{name}, which a state dict never needs; {REFUSED}"


def test_a_whole_pickled_model_and_a_sparse_tensor(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), model)
    assert refusal(model) == (
        f"data.pkl calls torch.nn.modules.linear.Linear, which a state dict never needs; {REFUSED}"
    )
    sparse = tmp_path / "sparse.pt"
    torch.save({"w": torch.eye(3).to_sparse()}, sparse)
    assert refusal(sparse).startswith("data.pkl calls torch._utils._rebuild_sparse_tensor, ")


def test_a_global_with_control_characters_is_named_on_one_line(tmp_path: Path) -> None:
    payload = b"\x80\x04\x8c\x04os\n\x1b\x8c\x06system\x93)R."
    assert refusal(archive(tmp_path, payload)) == (
        f"data.pkl calls os\\x0a\\x1b.system, which a state dict never needs; {REFUSED}"
    )


def test_lone_surrogates_are_escaped(tmp_path: Path) -> None:
    """Pickle strings may hold lone surrogates (no terminal prints one): escaped in the message."""
    payload = b"\x80\x04\x8c\x05os\xed\xa0\x80\x8c\x06system\x93)R."
    assert refusal(archive(tmp_path, payload)) == (
        f"data.pkl calls os\\ud800.system, which a state dict never needs; {REFUSED}"
    )
    keys = pickle.dumps({"a\ud800": {}, "b": 1}, protocol=4)
    assert refusal(archive(tmp_path, keys)) == (
        'holds no tensors at its top level or under a top-level key (keys: "a\\ud800", "b")'
    )


@pytest.mark.parametrize(
    ("payload", "opcode"),
    [
        (b"\x80\x02(X\x07\x00\x00\x00touch Cios\nsystem\n.", "INST"),
        (b"\x80\x02(cos\nsystem\nX\x07\x00\x00\x00touch Co.", "OBJ"),
        (b"\x80\x04\x8c\x02os\x8c\x06system\x93)}\x92.", "NEWOBJ_EX"),
        (b"\x80\x02\x82\x01.", "EXT1"),
        (b"\x80\x02\x83\x01\x00.", "EXT2"),
        (b"\x80\x02\x84\x01\x00\x00\x00.", "EXT4"),
        (b"\x80\x02Pstorage\n.", "PERSID"),
        (b"\x80\x05\x97.", "NEXT_BUFFER"),
        (b"\x80\x02\x8b\x01\x00\x00\x00\x01.", "LONG4"),
        (b"\x80\x02N2.", "DUP"),
        (b"\x80\x02I1\n.", "INT"),
        (b"\x80\x02S'x'\n.", "STRING"),
        (b"\x80\x02Vx\n.", "UNICODE"),
        (b"\x80\x02(l.", "LIST"),
        (b"\x80\x02(d.", "DICT"),
        (b"\x80\x02Np0\n.", "PUT"),
    ],
)
def test_opcodes_torch_never_writes(tmp_path: Path, payload: bytes, opcode: str) -> None:
    at = next(pos for op, _, pos in pickletools.genops(payload) if op.name == opcode)
    assert refusal(archive(tmp_path, payload)) == (
        f"data.pkl uses the pickle opcode {opcode} (at byte {at}), which torch.save never writes; {REFUSED}"
    )


def test_newobj_builds_only_inert_objects(tmp_path: Path) -> None:
    """NEWOBJ (how argparse.Namespace is written) on anything but the inert placeholder class is refused."""
    payload = state_dict_of(b"ctorch._utils\n_rebuild_tensor_v2\n)\x81")
    assert refusal(archive(tmp_path, payload)) == (
        "data.pkl is not what torch.save writes (UnpicklingError: NEWOBJ class argument must be a type, not function)"
    )
    payload = state_dict_of(b"ccollections\nOrderedDict\n)\x81")
    assert "NEWOBJ class argument must be a type, not function" in refusal(archive(tmp_path, payload))
    payload = state_dict_of(b"cargparse\nNamespace\n)\x81")  # the placeholder: built, and no tensor
    assert (
        refusal(archive(tmp_path, payload)) == 'holds no tensors at its top level or under a top-level key (keys: "w")'
    )


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"\x80\x02}X\x01\x00\x00", "is truncated or malformed"),
        (b"\x80\x02}", "is truncated or malformed"),
        (b"", "is truncated or malformed"),
        (b"\x80\x02}.junk", "has 4 bytes after its end"),
        (b"\x80\x02}}.", "is not what torch.save writes: it stops with 2 values on the stack"),
        (b"\x80\x02s.", "is not what torch.save writes: it pops more values than the stack holds (at byte 2)"),
        (b"\x80\x02}(N.", "is not what torch.save writes: it stops with 2 values on the stack"),
        (b"\x80\x02}Nt.", "is not what torch.save writes: it pops to a mark that is not there (at byte 4)"),
        (b"\x80\x02h\x00.", "is not what torch.save writes: it reads a memo entry never stored (at byte 2)"),
        (b"\x80\x02}r\x00\xca\x9a\x3b.", "is not what torch.save writes: it memoizes out of order (at byte 3)"),
        (b"\x80\x02(q\x00.", "is not what torch.save writes: it memoizes out of order (at byte 3)"),
        (b"\x80\x02N(a.", "is not what torch.save writes: it pops more values than the stack holds (at byte 4)"),
        (b"\x80\x02(Ne.", "is not what torch.save writes: it adds with APPENDS to nothing (at byte 4)"),
    ],
)
def test_malformed_pickles(tmp_path: Path, payload: bytes, problem: str) -> None:
    message = refusal(archive(tmp_path, payload))
    assert message.startswith(f"data.pkl {problem}") and message.endswith(REFUSED)


PAST = "tensor 'w': its elements"
STORAGE = "run past the end of its storage '0' (24 bytes); the checkpoint is corrupt"


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (Tensor(Storage("0", 6), 0, (7,), (1,)), f"{PAST} (bytes 0..28) {STORAGE}"),
        (Tensor(Storage("0", 6), 5, (2,), (1,)), f"{PAST} (bytes 20..28) run past the end of its storage '0'"),
        (Tensor(Storage("0", 6), 0, (2**62,), (1,)), f"{PAST} (bytes 0..18446744073709551616) run past the end of "),
        (Tensor(Storage("0", 6), 0, (3, 2), (3, 1)), f"{PAST} (bytes 0..32) run past the end of its storage '0'"),
        (Tensor(Storage("0", 6), 5, (2, 1), (1, 1)), f"{PAST} (bytes 20..28) run past the end of its storage '0'"),
        (Tensor(Storage("0", 6), 0, (3, 4), (0, 1)), "tensor 'w': it is expanded (stride [0, 1] repeats elements)"),
        (Tensor(Storage("0", 6), 0, (2, 3), (1, 1)), "tensor 'w': its elements overlap or interleave (shape [2, 3], "),
        (Tensor(Storage("0", 6), 0, (2, 2), (3, 2)), "tensor 'w': its elements overlap or interleave (shape [2, 2], "),
        (Tensor(Storage("0", 6), 0, (3, 2), (2, 3)), "tensor 'w': its elements overlap or interleave (shape [3, 2], "),
        (Tensor(Storage("0", 10), 0, (6,), (1,)), "tensor 'w': its storage '0' is 40 bytes but its entry holds 24"),
        (Tensor(Storage("7", 6), 0, (6,), (1,)), "tensor 'w': its storage '7' has no entry in the archive"),
        (Tensor(Storage("../0", 6), 0, (6,), (1,)), "tensor 'w': its storage '../0' has no entry in the archive"),
        (Tensor(Storage("0", 6, torch.DoubleStorage), 0, (3,), (1,)), "tensor 'w': its storage '0' is 48 bytes "),
        (Tensor(Storage("0", 6), 0, (2**63,), (1,)), "data.pkl is not what torch.save writes: a tensor's size is "),
        (Tensor(Storage("0", 6), 0, (6,), (-1,)), "data.pkl is not what torch.save writes: a tensor's stride is "),
        (Tensor(Storage("0", 6), -1, (6,), (1,)), "data.pkl is not what torch.save writes: a tensor's storage offset"),
        (Tensor(Storage("0", 6), 0, [6], [1]), "data.pkl is not what torch.save writes: a tensor's size is "),
        (Tensor(Storage("0", 6), 0, (6,), (1, 1)), "data.pkl is not what torch.save writes: a tensor's size and "),
        (Tensor(Storage("0", 6), 0, (1,) * 65, (1,) * 65), "data.pkl is not what torch.save writes: a tensor's size "),
        (Tensor(Storage("0", 2**63), 0, (6,), (1,)), "data.pkl is not what torch.save writes: storage '0' has a size"),
        (Tensor(Storage("0", 6, torch.device), 0, (6,), (1,)), "data.pkl is not what torch.save writes: a persistent"),
        (Tensor("0", 0, (6,), (1,)), "data.pkl is not what torch.save writes: _rebuild_tensor_v2 is given no typed "),
    ],
)  # fmt: skip
def test_tensor_records_outside_their_storage_or_malformed(tmp_path: Path, record: Tensor, problem: str) -> None:
    assert refusal(archive(tmp_path, torch_pickle({"w": record}))).startswith(problem)


class BuiltTensor(Tensor):
    """A tensor record followed by BUILD with new field values."""

    def __reduce__(self) -> tuple:
        return torch._utils._rebuild_tensor_v2, self.args, (None, {"shape": (10**6,)})


def test_records_cannot_be_changed_by_build(tmp_path: Path) -> None:
    """A frozen dataclass with slots takes BUILD's state as new field values: the records refuse it."""
    pickled = torch_pickle({"w": BuiltTensor(Storage("0", 6), 0, (6,), (1,))})
    assert b"b" in pickled[-4:]  # REDUCE, then BUILD
    assert refusal(archive(tmp_path, pickled)) == (
        "data.pkl is not what torch.save writes: it gives a Tensor record a state (BUILD)"
    )
    storage = b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ"
    rest = b"K\x00K\x06\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rt"
    rebuild = b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + b"]b" + rest + b"R"  # BUILD on the storage
    assert refusal(archive(tmp_path, state_dict_of(rebuild))) == (
        "data.pkl is not what torch.save writes: it gives a Storage record a state (BUILD)"
    )
    unbuilt = b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + rest + b"R"
    assert [t.name for t in read_torch(LocalFile(archive(tmp_path, state_dict_of(unbuilt)))).tensors] == ["w"]


def test_a_storage_described_twice_differently(tmp_path: Path) -> None:
    records = {"a": Tensor(Storage("0", 6), 0, (6,), (1,)), "b": Tensor(Storage("0", 5), 0, (5,), (1,))}
    assert refusal(archive(tmp_path, torch_pickle(records))) == (
        "data.pkl is not what torch.save writes: storage '0' is described twice, differently"
    )


def test_a_storage_shared_by_consistent_records(tmp_path: Path) -> None:
    records = {"a": Tensor(Storage("0", 6), 0, (2, 3), (3, 1)), "b": Tensor(Storage("0", 6), 3, (3,), (1,))}
    found = read_torch(LocalFile(archive(tmp_path, torch_pickle(records))))
    assert [(t.name, t.end - t.start) for t in found.tensors] == [("a", 24), ("b", 12)]


def test_deep_nesting(tmp_path: Path) -> None:
    """Tuples nested a million deep would crash CPython when hashed as a key: refused before unpickling.
    Lists nested as deep are only built (and are no state dict)."""
    deep_key = b"\x80\x02})" + b"\x85" * 1_000_000 + b"K\x01s."
    assert (
        refusal(archive(tmp_path, deep_key)) == f"data.pkl nests tuples more than 1000 deep (at byte 1003); {REFUSED}"
    )
    through_memo = b"\x80\x02}" + b")q\x00" + b"h\x00\x85q\x00" * 2000 + b"h\x00K\x01s."
    assert refusal(archive(tmp_path, through_memo)).startswith("data.pkl nests tuples more than 1000 deep")
    deep_list = b"\x80\x02" + b"]" * 1_000_000 + b"a" * 999_999 + b"."
    assert refusal(archive(tmp_path, deep_list)) == "holds a list, not a state dict (a dict of tensors)"


def test_object_bombs_are_refused_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pickle's objects are estimated before any is built (the limit lowered here to keep the test small)."""
    monkeypatch.setattr(unpickle, "MAX_OBJECT_BYTES", 10 << 20)
    bomb = b"\x80\x02]" + b"\x8f" * 50_000 + b"(" + b"e" + b"."  # 50,000 empty sets
    message = refusal(archive(tmp_path, bomb))
    assert message.startswith("data.pkl would build more than 10 MB of objects (by byte ")
    memo = b"\x80\x02Nr\x00\x00\x00\xf0."  # LONG_BINPUT 4026531840: CPython would allocate its whole memo
    assert refusal(archive(tmp_path, memo)).startswith("data.pkl is not what torch.save writes: it memoizes out")


def test_huge_values_are_fine_beside_the_weights(tmp_path: Path) -> None:
    """A 255-byte integer (LONG1) and long strings are values, never sizes."""
    pickled = torch_pickle({"w": Tensor(Storage("0", 6), 0, (6,), (1,)), "big": 2**2000, "s": "x" * 100_000})
    found = read_torch(LocalFile(archive(tmp_path, pickled)))
    assert [t.name for t in found.tensors] == ["w"]


def cut_points(size: int) -> list[int]:
    return sorted({0, 1, 4, 30, 100, size // 3, size // 2, size - 200, size - 100, size - 60, size - 22, size - 1})


def test_truncated_archives(tmp_path: Path) -> None:
    full = archive(tmp_path, name="full.pt", w=torch.randn(64), b=torch.randn(8)).read_bytes()
    for cut in cut_points(len(full)):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(full[:cut])
        refusal(path)  # one line, naming the file


def test_a_truncated_data_pkl(tmp_path: Path) -> None:
    pickled = torch_pickle({"w": Tensor(Storage("0", 6), 0, (6,), (1,))})
    for cut in (1, 10, len(pickled) // 2, len(pickled) - 1):
        message = refusal(archive(tmp_path, pickled[:cut]))
        assert message.startswith("data.pkl is truncated or malformed ("), message


def rewrite_central(path: Path, edit: Callable[[list[zipfile.ZipInfo]], None]) -> None:
    """The archive's central directory written again (plain zip, no zip64) after `edit` changes its records."""
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos, cd_start = z.infolist(), z.start_dir
    edit(infos)
    central = b""
    for i in infos:
        name = i.filename.encode()
        central += struct.pack(
            "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, i.flag_bits, i.compress_type, 0, 0, i.CRC,
            i.compress_size, i.file_size, len(name), 0, 0, 0, 0, 0, i.header_offset,
        ) + name  # fmt: skip
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(infos), len(infos), len(central), cd_start, 0)
    path.write_bytes(data[:cd_start] + central + end)


def by_suffix(infos: list[zipfile.ZipInfo], suffix: str) -> zipfile.ZipInfo:
    (info,) = [i for i in infos if i.filename.endswith(suffix)]
    return info


def grow(suffix: str, by: int) -> Callable[[list[zipfile.ZipInfo]], None]:
    def edit(infos: list[zipfile.ZipInfo]) -> None:
        info = by_suffix(infos, suffix)
        info.file_size += by
        info.compress_size += by

    return edit


def move(suffix: str, to: Callable[[list[zipfile.ZipInfo]], int]) -> Callable[[list[zipfile.ZipInfo]], None]:
    def edit(infos: list[zipfile.ZipInfo]) -> None:
        by_suffix(infos, suffix).header_offset = to(infos)

    return edit


OVERLAPS = "overlaps the next one or runs past its data (truncated?)"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda infos: None, None),  # the rewrite alone is read
        (grow("/data/0", 100), f"entry 'model/data/0' {OVERLAPS}"),
        (grow("/data.pkl", 10_000), f"entry 'model/data.pkl' {OVERLAPS}"),
        (grow("/data/0", 2**31), f"entry 'model/data/0' {OVERLAPS}"),
        (move("/data/0", lambda infos: by_suffix(infos, ".pkl").header_offset), f"entry 'model/data.pkl' {OVERLAPS}"),
        (move("/data/0", lambda infos: 2**31), f"entry 'model/data/0' {OVERLAPS}"),
        (move("/version", lambda infos: 1), f"entry 'model/data.pkl' {OVERLAPS}"),
        (grow("/data/0", -4), "tensor 'w': its storage '0' is 24 bytes but its entry holds 20"),
        (lambda infos: infos.append(infos[-1]), "holds the entry 'model/.data/serialization_id' twice"),
        (lambda infos: setattr(infos[1], "filename", "other/x"), "is a zip archive but not a torch.save checkpoint"),
        (lambda infos: setattr(infos[0], "flag_bits", 1), "has an encrypted or multi-part entry 'model/data.pkl'"),
        (lambda infos: setattr(infos[0], "compress_size", 1), "entry 'model/data.pkl' is stored with 1 bytes for "),
    ],
)  # fmt: skip
def test_broken_central_directories(
    tmp_path: Path, edit: Callable[[list[zipfile.ZipInfo]], None], problem: str | None
) -> None:
    path = archive(tmp_path)
    rewrite_central(path, edit)
    if problem is None:
        assert [t.name for t in read_torch(LocalFile(path)).tensors] == ["w"]
    else:
        assert refusal(path).startswith(problem)


def test_local_header_that_disagrees(tmp_path: Path) -> None:
    path = archive(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.index(b"model/data/0")  # in its local header, which is read
    data[at + 11] ^= 1
    path.write_bytes(bytes(data))
    assert refusal(path).endswith("has a local header that does not match the central directory")


def test_end_record_problems(tmp_path: Path) -> None:
    path = archive(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data + b"trailing")
    assert refusal(path) == "has no zip end record (truncated?)"
    path.write_bytes(data[:-2] + b"\x05\x00")  # a comment length past the end
    assert refusal(path) == "has no zip end record (truncated?)"
    locator = data.rindex(b"PK\x06\x07")
    moved = data[: locator + 8] + struct.pack("<Q", len(data) + 10) + data[locator + 16 :]
    path.write_bytes(moved)
    assert refusal(path) == "has a zip64 end record outside the archive (truncated?)"
    eocd = data.rindex(b"PK\x05\x06")
    fewer = data[: eocd + 10] + struct.pack("<H", 3) + data[eocd + 12 :]
    path.write_bytes(fewer)
    assert refusal(path) == "has zip end records that disagree"


# the way forward for a PyTorch file wsel cannot read, as sniff words it
def convert(path: Path) -> str:
    return f"convert it once, in an environment you trust: {PICKLE_FIX} {path} {path.with_suffix('.safetensors')}"


def test_legacy_and_compressed_checkpoints_say_how_to_convert(tmp_path: Path) -> None:
    sd = {"w": torch.randn(3, 4).t(), "b": torch.randn(4)}
    legacy = tmp_path / "legacy.pt"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    assert refusal(legacy) == (
        f"the legacy PyTorch format (not a zip archive), which wsel does not read; {convert(legacy)}"
    )
    deflated = archive(tmp_path, name="deflated.pt", **sd)
    with zipfile.ZipFile(deflated) as z:
        pickled = z.read("deflated/data.pkl")
    replace_entry(deflated, "data.pkl", pickled, zipfile.ZIP_DEFLATED)
    assert refusal(deflated) == (
        "entry 'deflated/data.pkl' is compressed (zip method 8), and wsel reads tensors by byte ranges; "
        + convert(deflated)
    )
    for path in (legacy, deflated):  # the command works as printed
        command = shlex.split(refusal(path).split("in an environment you trust: ", 1)[1])
        done = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        from safetensors.torch import load_file

        converted = load_file(path.with_suffix(".safetensors"))
        assert all(torch.equal(converted[k], v) for k, v in sd.items())


def test_big_endian_byteorder(tmp_path: Path) -> None:
    path = archive(tmp_path)
    replace_entry(path, "byteorder", b"big")
    assert refusal(path) == (
        "was saved on a big-endian machine (byteorder 'big'); wsel reads little-endian checkpoints; " + convert(path)
    )
    replace_entry(path, "byteorder", b"middle")
    assert refusal(path) == "has a byteorder entry of b'middle', expected 'little'"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated; its archives still exist
def test_other_files(tmp_path: Path) -> None:
    script = tmp_path / "script.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), script)
    assert refusal(script).startswith("is a TorchScript archive (torch.jit.save), not a state dict; ")
    plain_zip = tmp_path / "plain.pt"
    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("folder/readme.txt", "hi")
    assert refusal(plain_zip) == (
        "is a zip archive but not a torch.save checkpoint (it has no entry 'folder/data.pkl')"
    )
    gguf = tmp_path / "x.pt"
    gguf.write_bytes(b"GGUF" + bytes(100))
    assert refusal(gguf) == "a GGUF file (llama.cpp, Ollama), not a PyTorch checkpoint"
    other = tmp_path / "y.pt"
    other.write_bytes(b"hello world")
    assert refusal(other) == "is not a PyTorch zip checkpoint (it does not start as a zip archive)"
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert refusal(empty) == "is not a PyTorch zip checkpoint (it does not start as a zip archive)"
