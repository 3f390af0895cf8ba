"""Remote teachers, end to end: `wsel` in a subprocess (a fresh interpreter, its own environment) against a
local server that speaks the Hub's routes (tests/hubserver.py), through the real huggingface_hub client.

A remote run writes what a local run of the same files writes (the provenance also records where the
teacher was read), fetches the plan's bytes and the headers and little else, and every fault of the server
is either retried into the same output or refused in one line with nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import write_manifest
from golden import LLAMA_SETS, hf_teacher
from hubserver import Fault, HubServer, needed_bytes

import wsel

FIRST_READ = 64 << 10  # wsel.sources.http.FIRST_READ_BYTES: a file's first request (its header)


@dataclass(frozen=True)
class Teachers:
    sharded: Path  # a Llama-shaped Hugging Face folder: 3 shards, index, config.json, tokenizer files
    single: Path  # the same model as one model.safetensors
    nested: Path  # a repo holding the sharded teacher in a folder `llm/`


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> Teachers:
    root = tmp_path_factory.mktemp("teachers")
    sharded = hf_teacher("llama", shards=3)(root / "sharded")
    single = hf_teacher("llama")(root / "single")
    nested = root / "nested"
    nested.mkdir()
    (nested / "README.md").write_text("a repo with the model in a folder\n")
    shutil.copytree(sharded, nested / "llm")
    return Teachers(sharded, single, nested)


@pytest.fixture
def hub(teachers: Teachers) -> Any:
    server = HubServer(files_root=teachers.sharded.parent).start()
    server.add_repo("org/llama", teachers.sharded)
    server.add_repo("org/llama-single", teachers.single)
    server.add_repo("org/nested", teachers.nested)
    yield server
    server.stop()


def env_for(hub: HubServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env |= {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_CACHE": str(tmp_path / "cache")}
    env |= {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    return env | extra


def wsel_run(hub: HubServer, tmp_path: Path, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "wsel", *map(str, args)]
    return subprocess.run(command, env=env_for(hub, tmp_path, **env), capture_output=True, text=True, timeout=300)


def local_init(teacher: Path, out: Path) -> dict[str, Any]:
    plan = wsel.build_plan(teacher, sets=LLAMA_SETS[1::2])
    stats = wsel.write_student(plan, f"{out}/")
    return wsel.plan_report(plan, stats)


def header(path: Path) -> tuple[dict[str, Any], bytes]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def assert_same_student(remote: Path, local: Path) -> dict[str, Any]:
    """Every file equal; in safetensors files the tensor bytes and the header equal, except that the
    provenance of the remote run also records where it was read. Returns that record."""
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in local.iterdir())
    where: dict[str, Any] = {}
    for file in sorted(local.iterdir()):
        if file.suffix != ".safetensors":
            assert (remote / file.name).read_bytes() == file.read_bytes(), file.name
            continue
        (r_header, r_data), (l_header, l_data) = header(remote / file.name), header(file)
        assert r_data == l_data, file.name
        r_provenance = json.loads(r_header["__metadata__"].pop("wsel.provenance"))
        l_provenance = json.loads(l_header["__metadata__"].pop("wsel.provenance"))
        assert r_header == l_header, file.name
        where = r_provenance.pop("remote")
        assert r_provenance == l_provenance, file.name
    return where


def needed(teacher: Path) -> int:
    """The bytes a remote run needs: its plan's reads, and each file's first 64 KiB (its header), counted once."""
    plan = wsel.build_plan(teacher, sets=LLAMA_SETS[1::2])
    ranges = [(file.name, offset, length) for file, offset, length in wsel.read_schedule(plan)]
    return needed_bytes(ranges, {p.name: p.stat().st_size for p in teacher.glob("*.safetensors")}, FIRST_READ)


def first_reads(folder: Path) -> int:
    return sum(min(p.stat().st_size, FIRST_READ) for p in folder.glob("*.safetensors"))


def assert_refused(result: subprocess.CompletedProcess[str], message: str, out: Path) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("wsel: error: "), result.stderr
    assert message in result.stderr, result.stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if "wsel-partial" in p.name]


# ------------------------------------------------------------------------------------ what a user does


@pytest.mark.parametrize("repo", ["org/llama", "org/llama-single"])
def test_hub_teacher_gives_the_local_student(hub: HubServer, teachers: Teachers, tmp_path: Path, repo: str) -> None:
    folder = teachers.sharded if repo == "org/llama" else teachers.single
    local_init(folder, tmp_path / "local")
    hub.reset_counts()
    result = wsel_run(hub, tmp_path, "init", "-t", f"hf://{repo}", "-o", f"{tmp_path / 'remote'}/", "--json",
                      *LLAMA_SETS)  # fmt: skip
    assert result.returncode == 0, result.stderr
    where = assert_same_student(tmp_path / "remote", tmp_path / "local")
    assert where == {"repo": repo, "revision": "main", "commit": hub.repos[repo].commit, "subfolder": "",
                     "endpoint": hub.url}  # fmt: skip
    run = json.loads(result.stdout)["run"]
    # Over the link: the plan's bytes and the headers (gaps under 1 KiB merged: at most 2% more). The
    # headers came before the run, one 64 KiB request per file; the run fetched the rest.
    need, sent = needed(folder), hub.total_sent("/cdn/")
    assert need <= sent <= 1.02 * need
    assert sent == first_reads(folder) + run["bytes_fetched"]
    assert run["retries"] == 0
    # Every file was read at the commit the revision named when the run began.
    assert all(hub.repos[repo].commit in path for _, path, _, _ in hub.requests if "/resolve/" in path)


def test_hub_repo_of_a_pytorch_checkpoint(hub: HubServer, teachers: Teachers, tmp_path: Path) -> None:
    """A repo holding pytorch_model.bin (no safetensors): its zip directory, data.pkl and the needed ranges are
    fetched, never the whole file; the student's tensors equal those from the local safetensors twin."""
    import torch
    from safetensors.torch import load_file

    repo = tmp_path / "bin-repo"
    repo.mkdir()
    shutil.copy(teachers.single / "config.json", repo)
    torch.save(load_file(teachers.single / "model.safetensors"), repo / "pytorch_model.bin")
    hub.add_repo("org/llama-bin", repo)
    local_init(teachers.single, tmp_path / "local")
    result = wsel_run(hub, tmp_path, "init", "-t", "hf://org/llama-bin", "-o", f"{tmp_path / 'remote'}/", "--json",
                      *LLAMA_SETS)  # fmt: skip
    assert result.returncode == 0, result.stderr
    remote, local = (load_file(tmp_path / out / "model.safetensors") for out in ("remote", "local"))
    assert remote.keys() == local.keys() and all(torch.equal(remote[k], local[k]) for k in local)
    assert json.loads(result.stdout)["teacher"]["format"] == "pytorch"
    assert hub.total_sent("/cdn/") < (repo / "pytorch_model.bin").stat().st_size / 2


def test_url_of_an_index_gives_the_local_student(hub: HubServer, teachers: Teachers, tmp_path: Path) -> None:
    local_init(teachers.sharded, tmp_path / "local")
    url = f"{hub.url}/files/sharded/model.safetensors.index.json"
    result = wsel_run(hub, tmp_path, "init", "-t", url, "-o", f"{tmp_path / 'remote'}/", "-q", *LLAMA_SETS)
    assert result.returncode == 0, result.stderr
    assert assert_same_student(tmp_path / "remote", tmp_path / "local") == {"url": f"{hub.url}/files/sharded/"}


def test_url_of_one_file_with_a_manifest_student(hub: HubServer, teachers: Teachers, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "s.json", {"model.embed_tokens.weight": (64, 32), "model.norm.weight": (32,)})
    url = f"{hub.url}/files/single/model.safetensors"
    result = wsel_run(hub, tmp_path, "init", "-t", url, "-s", manifest, "-o", tmp_path / "r.safetensors", "-q")
    assert result.returncode == 0, result.stderr
    plan = wsel.build_plan(teachers.single / "model.safetensors", manifest)
    wsel.write_student(plan, tmp_path / "l.safetensors")
    assert header(tmp_path / "r.safetensors")[1] == header(tmp_path / "l.safetensors")[1]


def test_inspect_reads_headers_only(hub: HubServer, teachers: Teachers, tmp_path: Path) -> None:
    result = wsel_run(hub, tmp_path, "inspect", "-t", "hf://org/llama", "--json")
    assert result.returncode == 0, result.stderr
    remote = json.loads(result.stdout)
    local = wsel.teacher_report(teachers.sharded)
    assert remote["tensors"] == local["tensors"]
    assert remote["teacher"]["remote"]["commit"] == hub.repos["org/llama"].commit
    assert hub.total_sent() < 1_000_000  # the index, and 64 KiB of each of the 3 shards
    ranged = [r for _, path, r, status in hub.requests if "/cdn/" in path]
    assert ranged == [f"bytes=0-{FIRST_READ - 1}"] * 3


def test_folder_in_a_repo_and_a_pinned_revision(hub: HubServer, teachers: Teachers, tmp_path: Path) -> None:
    local_init(teachers.sharded, tmp_path / "local")
    commit = hub.repos["org/nested"].commit
    teacher = f"hf://org/nested@{commit}/llm"
    result = wsel_run(hub, tmp_path, "init", "-t", teacher, "-o", f"{tmp_path / 'remote'}/", "-q", *LLAMA_SETS)
    assert result.returncode == 0, result.stderr
    where = assert_same_student(tmp_path / "remote", tmp_path / "local")
    assert (where["revision"], where["commit"], where["subfolder"]) == (commit, commit, "llm")
    unknown = wsel_run(hub, tmp_path, "inspect", "-t", "hf://org/nested@v9")
    assert_refused(unknown, f"hf://org/nested@v9: no such revision on {hub.url}", tmp_path / "none")


def test_bare_org_name_is_the_hub_when_no_such_path(hub: HubServer, tmp_path: Path) -> None:
    result = wsel_run(hub, tmp_path, "inspect", "-t", "org/llama", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["teacher"]["path"] == "hf://org/llama (org/llama is not a local path)"


def test_verify_against_a_hub_teacher(hub: HubServer, teachers: Teachers, tmp_path: Path) -> None:
    written = local_init(teachers.sharded, tmp_path / "local")["totals"]["tensors_written"]
    result = wsel_run(hub, tmp_path, "verify", "-t", "hf://org/llama", "-s", tmp_path / "local")
    assert result.returncode == 0, result.stderr
    assert f"all {written} tensors equal their selection of the teacher" in " ".join(result.stderr.split())


def test_files_the_hub_cache_holds_are_read_from_it(hub: HubServer, teachers: Teachers, tmp_path: Path) -> None:
    shard = "model-00002-of-00003.safetensors"
    code = (
        "import os, huggingface_hub as h\n"
        f"h.hf_hub_download('org/llama', '{shard}', endpoint=os.environ['HF_ENDPOINT'], "
        "cache_dir=os.environ['HF_HUB_CACHE'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env_for(hub, tmp_path), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    hub.reset_counts()
    result = wsel_run(hub, tmp_path, "init", "-t", "hf://org/llama", "-o", f"{tmp_path / 'out'}/", "-q", *LLAMA_SETS)
    assert result.returncode == 0, result.stderr
    assert hub.total_sent(shard) == 0
    assert hub.total_sent("model-00001") > 0


def test_offline_reads_the_cache_or_says_why_not(hub: HubServer, teachers: Teachers, tmp_path: Path) -> None:
    out = tmp_path / "out"
    refused = wsel_run(hub, tmp_path, "init", "-t", "hf://org/llama", "-o", f"{out}/", *LLAMA_SETS, HF_HUB_OFFLINE="1")
    assert_refused(refused, "hf://org/llama: HF_HUB_OFFLINE is set and the Hub cache", out)
    code = "import os, huggingface_hub as h\nh.snapshot_download('org/llama', endpoint=os.environ['HF_ENDPOINT'])\n"
    done = subprocess.run([sys.executable, "-c", code], env=env_for(hub, tmp_path), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    hub.reset_counts()
    result = wsel_run(hub, tmp_path, "init", "-t", "hf://org/llama", "-o", f"{out}/", "-q", *LLAMA_SETS,
                      HF_HUB_OFFLINE="1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert hub.requests == []
    local_init(teachers.sharded, tmp_path / "local")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "local").iterdir())


def test_gated_repo_needs_a_token_and_never_prints_it(hub: HubServer, teachers: Teachers, tmp_path: Path) -> None:
    token = "hf_secret_test_token_0123456789"
    hub.add_repo("org/gated", teachers.sharded, token=token)
    out = tmp_path / "out"
    refused = wsel_run(hub, tmp_path, "init", "-t", "hf://org/gated", "-o", f"{out}/", *LLAMA_SETS)
    assert_refused(refused, "hf://org/gated: a gated repo: accept its licence on its Hub page, then set HF_TOKEN", out)
    result = wsel_run(hub, tmp_path, "init", "-t", "hf://org/gated", "-o", f"{out}/", "--json", *LLAMA_SETS,
                      HF_TOKEN=token)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    assert all(token.encode() not in p.read_bytes() for p in out.iterdir())
    # The token went to the Hub's routes, never to its CDN (another origin: the redirect drops it).
    assert any("/api/models/org/gated" in path for path in hub.authorized)
    assert any("/cdn/" in path for _, path, _, _ in hub.requests)
    assert not [path for path in hub.authorized if "/cdn/" in path]


# -------------------------------------------------------------------------------------------- faults

SHARD = "/cdn/org/llama/"  # faults hit data requests (the header requests come first: `after` skips them)


@pytest.mark.parametrize(
    ("fault", "retries"),
    [
        (Fault("drop", SHARD, after=3), 1),  # the connection goes away mid-body
        (Fault("500", SHARD, after=3, times=2, retry_after="0"), 2),
        (Fault("429", SHARD, after=3), 1),  # Retry-After: 1
        (Fault("stall", SHARD, after=3, seconds=4), 1),  # longer than the 2 s timeout set below
        (Fault("403", "/cdn/", after=3), 0),  # a signed CDN link that expired: asked again through the Hub
    ],
    ids=["dropped", "500-twice", "429", "stalled", "expired-link"],
)
def test_transient_faults_are_retried_into_the_same_student(
    hub: HubServer, teachers: Teachers, tmp_path: Path, fault: Fault, retries: int
) -> None:
    local_init(teachers.sharded, tmp_path / "local")
    hub.faults.append(fault)
    result = wsel_run(hub, tmp_path, "init", "-t", "hf://org/llama", "-o", f"{tmp_path / 'remote'}/", "--json",
                      *LLAMA_SETS, HF_HUB_DOWNLOAD_TIMEOUT="2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert fault.times == 0  # it happened
    assert json.loads(result.stdout)["run"]["retries"] == retries
    assert_same_student(tmp_path / "remote", tmp_path / "local")


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault("full200", SHARD, after=3), "the server sent the whole file (HTTP 200) for a range request"),
        (Fault("etag", SHARD, after=3), "the file changed while it was read (ETag"),
        # every time: a CDN refusal is first taken for an expired link and asked again through the Hub
        (Fault("401", SHARD, after=3, times=99), "HTTP 401: not allowed; for a gated or private Hub repo"),
        (Fault("404", SHARD, after=3, times=99), "HTTP 404: no such file"),
        (Fault("500", SHARD, after=3, times=99, retry_after="0"), "HTTP 500 (after 5 retries)"),
    ],
    ids=["200-for-a-range", "etag-changed", "401", "404", "500-always"],
)
def test_faults_that_cannot_be_retried_are_one_line_and_write_nothing(
    hub: HubServer, tmp_path: Path, fault: Fault, message: str
) -> None:
    hub.faults.append(fault)
    out = tmp_path / "remote"
    result = wsel_run(hub, tmp_path, "init", "-t", "hf://org/llama", "-o", f"{out}/", *LLAMA_SETS)
    assert_refused(result, message, out)
    assert "wsel: error: hf://org/llama/model-0000" in result.stderr and ": bytes " in result.stderr  # file, range


def test_ctrl_c_stops_a_slow_remote_run_within_a_second(hub: HubServer, tmp_path: Path) -> None:
    hub.rate = 20_000  # bytes per second: the run would take a minute
    out = tmp_path / "remote"
    command = [sys.executable, "-m", "wsel", "init", "-t", "hf://org/llama", "-o", f"{out}/", "-q", *LLAMA_SETS]
    process = subprocess.Popen(command, env=env_for(hub, tmp_path), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not [r for _, path, r, _ in hub.requests if "/cdn/" in path and not r.startswith("bytes=0-")]:
        assert time.monotonic() < deadline and process.poll() is None, "no data request came"
        time.sleep(0.05)  # planned; the data requests have begun: Ctrl-C meets them in flight
    time.sleep(0.5)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert time.monotonic() - started < 1.0
    assert (process.returncode, stderr) == (130, "wsel: interrupted\n")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "wsel-partial" in p.name]


def test_a_large_header_takes_a_second_request(hub: HubServer, teachers: Teachers, tmp_path: Path) -> None:
    """Headers above 64 KiB (models with thousands of tensors): the first request, then exactly the rest."""
    import torch
    from conftest import save

    big = save(teachers.sharded.parent / "big.safetensors", {f"t{i:05d}.weight": torch.zeros(2) for i in range(3000)})
    (header_length,) = struct.unpack("<Q", big.read_bytes()[:8])
    assert header_length > FIRST_READ
    result = wsel_run(hub, tmp_path, "inspect", "-t", f"{hub.url}/files/big.safetensors", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["tensors"]) == 3000
    ranged = [r for _, path, r, _ in hub.requests if path.endswith("big.safetensors")]
    assert ranged == [f"bytes=0-{FIRST_READ - 1}", f"bytes={FIRST_READ}-{8 + header_length - 1}"]
