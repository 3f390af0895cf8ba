"""A Hugging Face Hub repo (or a folder in it) as a Folder, through `huggingface_hub`.

The revision is resolved once to a commit and every read is pinned to it, so a push during the run cannot
mix two versions. Tensor files are read by range requests (`wsel.sources.http`), or from the Hub cache when
it already holds the complete file; small files (config.json, an index, tokenizer files) are fetched whole
with `hf_hub_download`, which keeps them in the cache. The token (HF_TOKEN, or the saved login), the endpoint
(HF_ENDPOINT), the cache (HF_HUB_CACHE, HF_HOME) and offline mode (HF_HUB_OFFLINE) are huggingface_hub's,
read when a teacher is opened.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from wsel.errors import CheckpointError
from wsel.sources.base import MAX_SMALL_FILE_BYTES, Folder, Source, Traffic, too_large
from wsel.sources.http import HttpFile, HttpSession
from wsel.sources.local import LocalFile

_T = TypeVar("_T")


def endpoint() -> str:
    """The Hub's URL: HF_ENDPOINT (a mirror, or a test server), else huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def cache_dir() -> str:
    """The Hub cache, as huggingface_hub finds it (HF_HUB_CACHE, else HF_HOME/hub, else its default)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return str(constants.HF_HUB_CACHE)


def offline() -> bool:
    return (os.environ.get("HF_HUB_OFFLINE") or "").upper() in ("1", "ON", "YES", "TRUE")


def auth_headers() -> dict[str, str]:
    """The Authorization header for the Hub when a token is set (never printed, never sent elsewhere)."""
    from huggingface_hub import get_token

    token = get_token()
    return {"authorization": f"Bearer {token}"} if token else {}


class HubFolder(Folder):
    def __init__(self, repo_id: str, revision: str | None, subfolder: str, session: HttpSession) -> None:
        from huggingface_hub import HfApi

        self.repo_id, self.revision, self.subfolder, self.session = repo_id, revision, subfolder.strip("/"), session
        self.endpoint = endpoint()
        shown = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
        api = HfApi(endpoint=self.endpoint)
        info = _hub_call(lambda: api.model_info(repo_id, revision=revision, files_metadata=True), shown)
        if not info.sha:
            raise CheckpointError(f"{shown}: the Hub gave no commit for this revision")
        self.commit: str = info.sha
        self.sizes: dict[str, int | None] = {s.rfilename: s.size for s in info.siblings or ()}
        self._sources: dict[str, Source] = {}

    @property
    def location(self) -> str:
        return f"hf://{self.repo_id}" + (f"@{self.revision}" if self.revision else "") + self._prefix().rstrip("/")

    def _prefix(self) -> str:
        return f"/{self.subfolder}/" if self.subfolder else "/"

    def _path(self, name: str) -> str:
        return f"{self.subfolder}/{name}" if self.subfolder else name

    def names(self) -> list[str]:
        inside = self.subfolder + "/" if self.subfolder else ""
        return sorted(p[len(inside) :] for p in self.sizes if p.startswith(inside) and "/" not in p[len(inside) :])

    def has(self, name: str) -> bool:
        return self._path(name) in self.sizes

    def where(self, name: str) -> str:
        return f"hf://{self.repo_id}/{self._path(name)}"

    def source(self, name: str) -> Source:
        """The cached file when the Hub cache holds it whole at this commit, else range requests."""
        if name not in self._sources:
            from huggingface_hub import hf_hub_url, try_to_load_from_cache

            path = self._path(name)
            cached = try_to_load_from_cache(self.repo_id, path, cache_dir=cache_dir(), revision=self.commit)
            if isinstance(cached, str):
                self._sources[name] = LocalFile(Path(cached))
            else:
                url = hf_hub_url(self.repo_id, path, revision=self.commit, endpoint=self.endpoint)
                self._sources[name] = HttpFile(url, self.where(name), self.session)
        return self._sources[name]

    def read_small(self, name: str) -> bytes:
        from huggingface_hub import hf_hub_download

        size = self.sizes.get(self._path(name))
        if size is not None and size > MAX_SMALL_FILE_BYTES:
            raise too_large(self.where(name), size)
        path = _hub_call(
            lambda: hf_hub_download(
                self.repo_id, self._path(name), revision=self.commit, cache_dir=cache_dir(), endpoint=self.endpoint
            ),  # fmt: skip
            self.where(name),
        )
        return Path(str(path)).read_bytes()

    def traffic(self) -> Traffic:
        return self.session.traffic

    def describe(self) -> dict[str, Any]:
        return {"repo": self.repo_id, "revision": self.revision or "main", "commit": self.commit,
                "subfolder": self.subfolder, "endpoint": self.endpoint}  # fmt: skip


def cached_snapshot(repo_id: str, revision: str | None, subfolder: str) -> Path:
    """The Hub cache's copy of the repo at `revision`, for HF_HUB_OFFLINE. Raises CheckpointError."""
    from huggingface_hub import snapshot_download

    shown = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
    try:
        snapshot = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir(), local_files_only=True)
    except Exception as e:  # LocalEntryNotFoundError and kin: nothing cached for this revision
        raise CheckpointError(
            f"{shown}: HF_HUB_OFFLINE is set and the Hub cache ({cache_dir()}) holds no snapshot of it "
            f"({type(e).__name__}); unset HF_HUB_OFFLINE to read it from the Hub"
        ) from None
    return Path(str(snapshot)) / subfolder


def _hub_call(call: Callable[[], _T], shown: str) -> _T:
    """A huggingface_hub call whose errors become one line naming the repo and the fix."""
    from huggingface_hub import errors

    try:
        return call()
    except errors.GatedRepoError:
        raise CheckpointError(
            f"{shown}: a gated repo: accept its licence on its Hub page, then set HF_TOKEN (or `hf auth login`)"
        ) from None
    except errors.RevisionNotFoundError:
        raise CheckpointError(f"{shown}: no such revision on {endpoint()}") from None
    except errors.RepositoryNotFoundError:
        raise CheckpointError(
            f"{shown}: no such repo on {endpoint()} (or it is private: set HF_TOKEN, or `hf auth login`)"
        ) from None
    except errors.EntryNotFoundError:
        raise CheckpointError(f"{shown}: no such file in the repo") from None
    except errors.OfflineModeIsEnabled:
        raise CheckpointError(f"{shown}: HF_HUB_OFFLINE is set; unset it to read from the Hub") from None
    except Exception as e:  # network failures, HTTP errors: the first line of their message
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{shown}: cannot read from {endpoint()}: {type(e).__name__}: {first}") from None
