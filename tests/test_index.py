"""Opening a checkpoint: one file, a Hugging Face folder, or a sharded index; every refusal with its exact message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import legacy_refusal, random_state, save, save_sharded

from wsel.checkpoint.header import read_header
from wsel.checkpoint.index import open_checkpoint
from wsel.errors import CheckpointError
from wsel.sources.local import LocalFile, LocalFolder

INDEX = "model.safetensors.index.json"
SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"
SHAPES = {"a": (2, 3), "b": (4,), "c": (1, 5), "d": (3,)}


def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def refused(path: Path) -> str:
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(path)
    return str(exc.value)


def write_index(folder: Path, weight_map: object, **extra: object) -> Path:
    index = folder / INDEX
    index.write_text(json.dumps({**extra, "weight_map": weight_map}))
    return index


def sharded(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """a, b in shard 1; c, d in shard 2."""
    tensors = random_state(SHAPES, seed=3)
    return save_sharded(tmp_path / "ckpt", tensors, shards=2), tensors


# --- what opens -------------------------------------------------------------------------------


def test_single_file(tmp_path: Path) -> None:
    tensors = random_state(SHAPES)
    path = save(tmp_path / "teacher.safetensors", tensors)
    ckpt = open_checkpoint(path)
    assert ckpt.location == str(path)
    assert ckpt.files == (LocalFile(path),)
    assert ckpt.folder == LocalFolder(tmp_path)
    assert ckpt.index_metadata == {}
    assert sorted(ckpt.tensors) == ["a", "b", "c", "d"]
    assert ckpt.total_bytes == sum(t.numel() * 4 for t in tensors.values())
    blob = path.read_bytes()
    for name, info in ckpt.tensors.items():
        assert info.file == LocalFile(path) and info.shape == tuple(tensors[name].shape) and info.dtype == "F32"
        assert blob[info.start : info.end] == tensor_bytes(tensors[name])


def test_file_with_another_suffix_is_read_as_safetensors(tmp_path: Path) -> None:
    path = save(tmp_path / "weights.st", random_state({"w": (2,)}))
    assert list(open_checkpoint(path).tensors) == ["w"]


def test_folder_with_model_safetensors(tmp_path: Path) -> None:
    tensors = random_state(SHAPES)
    save(tmp_path / "m" / "model.safetensors", tensors)
    save(tmp_path / "m" / "other.safetensors", {"x": torch.zeros(1)})  # model.safetensors wins
    ckpt = open_checkpoint(tmp_path / "m")
    assert ckpt.location == str(tmp_path / "m")
    assert ckpt.folder == LocalFolder(tmp_path / "m")
    assert ckpt.files == (LocalFile(tmp_path / "m" / "model.safetensors"),)
    assert sorted(ckpt.tensors) == ["a", "b", "c", "d"]


def test_folder_with_one_safetensors_file_of_any_name(tmp_path: Path) -> None:
    save(tmp_path / "m" / "weights.safetensors", random_state({"w": (2,)}))
    (tmp_path / "m" / "config.json").write_text("{}")
    ckpt = open_checkpoint(tmp_path / "m")
    assert ckpt.files == (LocalFile(tmp_path / "m" / "weights.safetensors"),)
    assert list(ckpt.tensors) == ["w"]


def test_sharded_folder(tmp_path: Path) -> None:
    folder, tensors = sharded(tmp_path)
    ckpt = open_checkpoint(folder)
    assert ckpt.location == str(folder)
    assert ckpt.folder == LocalFolder(folder)
    assert ckpt.files == (LocalFile(folder / SHARD1), LocalFile(folder / SHARD2))
    assert [h.source for h in ckpt.headers] == [LocalFile(folder / SHARD1), LocalFile(folder / SHARD2)]
    assert ckpt.index_metadata == {"total_size": sum(t.numel() * 4 for t in tensors.values())}
    assert {n: t.file.name for n, t in ckpt.tensors.items()} == {"a": SHARD1, "b": SHARD1, "c": SHARD2, "d": SHARD2}
    for name, info in ckpt.tensors.items():
        assert info.file.path.read_bytes()[info.start : info.end] == tensor_bytes(tensors[name])
        assert info == next(t for t in read_header(info.file).tensors if t.name == name)


def test_sharded_folder_index_wins_over_model_safetensors(tmp_path: Path) -> None:
    folder, _ = sharded(tmp_path)
    save(folder / "model.safetensors", {"x": torch.zeros(1)})
    assert sorted(open_checkpoint(folder).tensors) == ["a", "b", "c", "d"]


def test_index_file_itself(tmp_path: Path) -> None:
    folder, _ = sharded(tmp_path)
    ckpt = open_checkpoint(folder / INDEX)
    assert ckpt.location == str(folder / INDEX)
    assert ckpt.folder == LocalFolder(folder)
    assert ckpt.files == (LocalFile(folder / SHARD1), LocalFile(folder / SHARD2))
    assert sorted(ckpt.tensors) == ["a", "b", "c", "d"]


def test_index_without_metadata(tmp_path: Path) -> None:
    save(tmp_path / "s.safetensors", {"w": torch.zeros(2)})
    index = write_index(tmp_path, {"w": "s.safetensors"})
    ckpt = open_checkpoint(index)
    assert ckpt.index_metadata == {}
    assert list(ckpt.tensors) == ["w"]


# --- what is refused --------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.safetensors"
    assert refused(path) == f"{path}: no such file or directory"


def test_folder_without_safetensors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert refused(tmp_path) == (
        f"{tmp_path}: no checkpoint file (.safetensors, .bin, .pt, .pth, .gguf) or index in the folder"
    )


def test_folder_with_two_safetensors_and_no_index(tmp_path: Path) -> None:
    save(tmp_path / "a.safetensors", {"x": torch.zeros(1)})
    save(tmp_path / "b.safetensors", {"y": torch.zeros(1)})
    assert refused(tmp_path) == (
        f"{tmp_path}: folder has 2 .safetensors files (a.safetensors, b.safetensors) but no "
        "model.safetensors.index.json; name the file or add model.safetensors.index.json"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "{not json",
            "cannot read the index: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("", "cannot read the index: Expecting value: line 1 column 1 (char 0)"),
    ],
    ids=["garbage", "empty"],
)
def test_index_not_json(tmp_path: Path, text: str, problem: str) -> None:
    index = tmp_path / INDEX
    index.write_text(text)
    assert refused(index) == f"{index}: {problem}"
    assert refused(tmp_path) == f"{index}: {problem}"  # found through the folder: the message names the index


@pytest.mark.parametrize(
    "doc",
    [{"metadata": {}}, {"weight_map": ["a"]}, {"weight_map": None}, [{"weight_map": {}}]],
    ids=["no-weight-map", "weight-map-list", "weight-map-null", "document-list"],
)
def test_index_without_weight_map(tmp_path: Path, doc: object) -> None:
    index = tmp_path / INDEX
    index.write_text(json.dumps(doc))
    assert refused(index) == f'{index}: not a sharded index: expected an object with a "weight_map" object'


@pytest.mark.parametrize(
    "shard",
    ["sub/x.safetensors", "sub\\x.safetensors", "/abs/x.safetensors", "..", ".", "", 1, None],
    ids=["slash", "backslash", "absolute", "dotdot", "dot", "empty", "int", "null"],
)
def test_shard_that_is_not_a_plain_file_name(tmp_path: Path, shard: object) -> None:
    index = write_index(tmp_path, {"a": shard})
    assert refused(index) == f"{index}: tensor 'a': shard {shard!r} is not a file name in the index's folder"


def test_index_naming_a_missing_shard(tmp_path: Path) -> None:
    folder, _ = sharded(tmp_path)
    (folder / SHARD2).unlink()
    assert refused(folder) == f"{folder / INDEX}: shard {SHARD2} is listed but {folder / SHARD2} is not a file"


def test_shard_that_is_a_directory(tmp_path: Path) -> None:
    folder, _ = sharded(tmp_path)
    (folder / SHARD2).unlink()
    (folder / SHARD2).mkdir()
    assert refused(folder) == f"{folder / INDEX}: shard {SHARD2} is listed but {folder / SHARD2} is not a file"


def test_tensor_in_shard_but_not_in_weight_map(tmp_path: Path) -> None:
    folder, _ = sharded(tmp_path)
    write_index(folder, {"a": SHARD1, "c": SHARD2, "d": SHARD2})
    assert refused(folder) == f"{folder / INDEX}: tensor 'b' is in {SHARD1} but not in weight_map"


def test_weight_map_naming_the_wrong_shard(tmp_path: Path) -> None:
    folder, _ = sharded(tmp_path)
    write_index(folder, {"a": SHARD1, "b": SHARD2, "c": SHARD2, "d": SHARD2})
    assert refused(folder) == f"{folder / INDEX}: tensor 'b' is in {SHARD1} but weight_map says {SHARD2}"


def test_weight_map_tensor_not_in_its_shard(tmp_path: Path) -> None:
    folder, _ = sharded(tmp_path)
    write_index(folder, {"a": SHARD1, "b": SHARD1, "c": SHARD2, "d": SHARD2, "ghost": SHARD2})
    assert refused(folder) == f"{folder / INDEX}: tensor 'ghost' is listed in weight_map but not found in {SHARD2}"


def test_malformed_shard_reports_the_shard(tmp_path: Path) -> None:
    folder, _ = sharded(tmp_path)
    (folder / SHARD2).write_bytes(b"\1\2")
    assert refused(folder) == (f"{folder / SHARD2}: file is 2 bytes, too short for a safetensors header (truncated?)")


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.pth", "last.ckpt", "state.pkl"])
def test_legacy_pickle_file_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle; must not be unpickled
    target = tmp_path / "model.safetensors" if name == "pytorch_model.bin" else path.with_suffix(".safetensors")
    assert refused(path) == legacy_refusal(path, target)


def test_folder_with_only_a_legacy_pickle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    assert refused(tmp_path) == legacy_refusal(tmp_path / "pytorch_model.bin", tmp_path / "model.safetensors")


def test_pickle_next_to_model_safetensors_is_ignored(tmp_path: Path) -> None:
    save(tmp_path / "model.safetensors", {"w": torch.zeros(2)})
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    assert list(open_checkpoint(tmp_path).tensors) == ["w"]
