"""A local HTTP server that speaks the Hugging Face Hub's routes, for remote-teacher tests and the benchmark.

It serves folders as Hub repos under `HF_ENDPOINT=server.url`, with the routes huggingface_hub uses for what
wsel asks of it:
- `GET /api/models/{repo}[/revision/{rev}]`: the repo's commit and its files with sizes (`model_info`);
- `GET /api/models/{repo}/tree/{rev}`: its files, for `snapshot_download`;
- `HEAD|GET /{repo}/resolve/{rev}/{path}`: small files directly (with X-Repo-Commit and an ETag); tensor
  files (`.safetensors`) by a 302 to `/cdn/...` on a second port (another origin, as the Hub sends LFS
  files to its CDN host: a client must not carry the token there);
- `GET /cdn/{repo}/{commit}/{path}` and `GET /files/{path}`: bytes, with HTTP Range (206 + Content-Range).
It counts the bytes and requests it serves, can pace its output (a slow link), and can misbehave on request
(`Fault`): drop a connection mid-body, answer 500 or 429, ignore the Range, change the ETag, stall, refuse.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Fault:
    """Misbehave on `times` data requests whose path contains `match`, after letting `after` of them pass."""

    kind: str  # drop | 500 | 429 | full200 | etag | stall | 401 | 403 | 404
    match: str = ""
    times: int = 1
    seconds: float = 0.0  # stall: how long
    after: int = 0
    retry_after: str | None = None  # 500, 429: the Retry-After header sent (429 always sends one, "1" by default)


@dataclass
class Repo:
    folder: Path
    commit: str
    token: str | None = None  # gated: requests must carry `Authorization: Bearer <token>`


@dataclass
class HubServer:
    repos: dict[str, Repo] = field(default_factory=dict)
    files_root: Path | None = None  # served under /files/
    rate: float | None = None  # bytes per second over all connections (None: as fast as it goes)
    latency: float = 0.0  # seconds before each answer (a round trip)
    faults: list[Fault] = field(default_factory=list)
    bytes_sent: Counter[str] = field(default_factory=Counter)  # body bytes by URL path
    requests: list[tuple[str, str, str, int]] = field(default_factory=list)  # method, path, range, status
    authorized: list[str] = field(default_factory=list)  # paths of the requests that carried Authorization
    etag_salt: str = ""  # changed by an `etag` fault: every file then has another ETag

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._next_send = time.monotonic()
        self._etags: dict[Path, str] = {}
        handler = type("Handler", (_Handler,), {"hub": self})
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]  # the Hub, its CDN
        for server in self._servers:
            server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def start(self) -> HubServer:
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def add_repo(self, repo_id: str, folder: Path, token: str | None = None) -> str:
        commit = hashlib.sha1(f"{repo_id}:{sorted(p.name for p in folder.rglob('*'))}".encode()).hexdigest()
        self.repos[repo_id] = Repo(folder, commit, token)
        return commit

    def total_sent(self, contains: str = "") -> int:
        with self._lock:
            return sum(n for path, n in self.bytes_sent.items() if contains in path)

    def reset_counts(self) -> None:
        with self._lock:
            self.bytes_sent.clear()
            self.requests.clear()
            self.authorized.clear()

    def etag(self, path: Path) -> str:
        """The file's ETag: a hash of its name, size and modification time (as web servers make them: a
        hash of gigabytes of content would stall the first request)."""
        if path not in self._etags:
            st = path.stat()
            self._etags[path] = hashlib.sha256(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
        return f'"{self._etags[path]}{self.etag_salt}"'

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.match in path and fault.times > 0:
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.times -= 1
                    return fault
        return None

    def pace(self, n: int) -> None:
        """Wait until the link has room for `n` more bytes (one shared link for every connection)."""
        if self.rate is None:
            return
        with self._lock:
            start = max(self._next_send, time.monotonic())
            self._next_send = start + n / self.rate
        time.sleep(max(0.0, start - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections, as with the real Hub
    hub: HubServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if self.hub.latency:
            time.sleep(self.hub.latency)
        m = re.match(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)$", path)
        if m:
            return self._tree(m.group("repo"), m.group("rev"))
        m = re.match(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>.+))?$", path)
        if m:
            return self._model_info(m.group("repo"), m.group("rev") or "main")
        m = re.match(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", path)
        if m:
            return self._resolve(m.group("repo"), m.group("rev"), m.group("file"), head)
        m = re.match(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<commit>[0-9a-f]+)/(?P<file>.+)$", path)
        if m and m.group("repo") in self.hub.repos:
            repo = self.hub.repos[m.group("repo")]
            return self._serve(repo.folder / m.group("file"), path, head, repo.commit)
        if path.startswith("/files/") and self.hub.files_root is not None:
            return self._serve(self.hub.files_root / path[len("/files/") :], path, head, None)
        self._answer(404, b"not found", head=head)

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._answer(404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            return None
        if repo.token is not None and self.headers.get("Authorization") != f"Bearer {repo.token}":
            self._answer(401, b'{"error":"gated"}', {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"})
            return None
        return repo

    def _model_info(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if revision not in ("main", repo.commit):
            self._answer(404, b'{"error":"Revision not found"}', {"X-Error-Code": "RevisionNotFound"})
            return
        files = sorted(p for p in repo.folder.rglob("*") if p.is_file())
        siblings = [{"rfilename": p.relative_to(repo.folder).as_posix(), "size": p.stat().st_size} for p in files]
        doc = {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
               "disabled": False, "gated": bool(repo.token), "siblings": siblings}  # fmt: skip
        self._answer(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    def _tree(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        entries = []
        for p in sorted(p for p in repo.folder.rglob("*") if p.is_file()):
            oid = hashlib.sha1(self.hub.etag(p).encode()).hexdigest()
            entry: dict[str, Any] = {"type": "file", "path": p.relative_to(repo.folder).as_posix(),
                                     "size": p.stat().st_size, "oid": oid}  # fmt: skip
            if p.suffix == ".safetensors":
                entry["lfs"] = {"oid": self.hub.etag(p).strip('"'), "size": p.stat().st_size, "pointerSize": 134}
            entries.append(entry)
        self._answer(200, json.dumps(entries).encode(), {"Content-Type": "application/json"})

    def _resolve(self, repo_id: str, revision: str, name: str, head: bool) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        file = repo.folder / name
        if revision not in ("main", repo.commit) or not file.is_file():
            self._answer(404, b"not found", {"X-Error-Code": "EntryNotFound"}, head=head)
            return
        headers = {"X-Repo-Commit": repo.commit, "ETag": self.hub.etag(file)}
        if name.endswith(".safetensors"):  # an LFS file: to the CDN
            headers |= {"Location": f"{self.hub.cdn_url}/cdn/{repo_id}/{repo.commit}/{name}",
                        "X-Linked-Size": str(file.stat().st_size),
                        "X-Linked-Etag": self.hub.etag(file)}  # fmt: skip
            self._answer(302, b"", headers, head=head)
            return
        self._serve(file, f"/{repo_id}/resolve/{revision}/{name}", head, repo.commit)

    def _serve(self, file: Path, path: str, head: bool, commit: str | None) -> None:
        if not file.is_file():
            self._answer(404, b"not found", head=head)
            return
        fault = None if head else self.hub.take_fault(path)
        if fault is not None and fault.kind in ("500", "429", "401", "403", "404"):
            retry_after = fault.retry_after or ("1" if fault.kind == "429" else None)
            extra = {"Retry-After": retry_after} if retry_after is not None else {}
            self._answer(int(fault.kind), b"fault", extra, head=head, path=path)
            return
        if fault is not None and fault.kind == "etag":
            self.hub.etag_salt += "x"
        if fault is not None and fault.kind == "stall":
            time.sleep(fault.seconds)
        size = file.stat().st_size
        headers = {"ETag": self.hub.etag(file), "Accept-Ranges": "bytes"} | (
            {"X-Repo-Commit": commit} if commit else {}
        )
        m = _RANGE.match(self.headers.get("Range", ""))
        drop = fault is not None and fault.kind == "drop"
        if m is None or (fault is not None and fault.kind == "full200"):
            self._answer(200, (file, 0, size), headers, head=head, path=path, drop=drop)
            return
        first = int(m.group(1))
        last = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
        if first >= size:
            self._answer(416, b"", {"Content-Range": f"bytes */{size}"}, head=head, path=path)
            return
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        self._answer(206, (file, first, last + 1 - first), headers, head=head, path=path, drop=drop)

    def _answer(
        self,
        status: int,
        body: bytes | tuple[Path, int, int],  # bytes, or (file, offset, length) streamed from the file
        headers: dict[str, str] | None = None,
        head: bool = False,
        path: str = "",
        drop: bool = False,
    ) -> None:
        file, offset, length = body if isinstance(body, tuple) else (None, 0, len(body))
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        with self.hub._lock:
            self.hub.requests.append((self.command, path or self.path, self.headers.get("Range", ""), status))
            if self.headers.get("Authorization"):
                self.hub.authorized.append(path or self.path)
        if head:
            return
        if drop:  # half the body, then the connection goes away
            length //= 2
        source = open(file, "rb") if file is not None else None  # noqa: SIM115 - closed below
        for at in range(0, length, 64 << 10):
            n = min(64 << 10, length - at)
            if source is not None:
                source.seek(offset + at)
                piece = source.read(n)
            else:
                assert isinstance(body, bytes)
                piece = body[at : at + n]
            self.hub.pace(len(piece))
            try:
                self.wfile.write(piece)
            except OSError:
                break
            with self.hub._lock:
                self.hub.bytes_sent[path or self.path] += len(piece)
        if source is not None:
            source.close()
        if drop:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)


def needed_bytes(ranges: list[tuple[str, int, int]], sizes: dict[str, int], first_read: int) -> int:
    """The bytes a remote run needs: the read schedule's (file, offset, length) ranges and each file's first
    request (its first `first_read` bytes: the header), each byte counted once."""
    spans = [(name, offset, offset + length) for name, offset, length in ranges]
    spans += [(name, 0, min(size, first_read)) for name, size in sizes.items()]
    total, end, last = 0, 0, ""
    for name, first, stop in sorted(spans):
        if name != last:
            last, end = name, 0
        total += max(0, stop - max(first, end))
        end = max(end, stop)
    return total
