"""A Hugging Face Hub repo (or a folder in it) as a Folder, through `huggingface_hub`.

The revision is resolved once to a commit and every read is pinned to it, so a push during the run cannot
mix two versions. Tensor files are read by range requests (`wsel.sources.httpfile`), or from the Hub cache when
it already holds the complete file; small files (config.json, an index, tokenizer files) are fetched whole
with `hf_hub_download`, which keeps them in the cache. The token (HF_TOKEN, or the saved login), the endpoint
(HF_ENDPOINT), the cache (HF_HUB_CACHE, HF_HOME) and offline mode (HF_HUB_OFFLINE) are huggingface_hub's
own (its `constants`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from wsel.errors import CheckpointError
from wsel.sources.base import MAX_SMALL_FILE_BYTES, Folder, Source, Traffic, too_large
from wsel.sources.httpfile import HttpFile
from wsel.sources.local import LocalFile, LocalFolder
from wsel.sources.session import HttpSession

_T = TypeVar("_T")


def endpoint() -> str:
    """The Hub's URL: HF_ENDPOINT (a mirror, or a test server), as huggingface_hub reads it."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT).rstrip("/")


def cache_dir() -> str:
    """The Hub cache, as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME, ...)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


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
        self.shown = shown
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
        return f"{self.shown}/{self._path(name)}"

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


class CachedSnapshot(LocalFolder):
    """A repo as the Hub cache holds it (HF_HUB_OFFLINE): local files, recorded as the repo and commit they are."""

    def __init__(self, repo_id: str, revision: str | None, subfolder: str) -> None:
        from huggingface_hub import snapshot_download

        shown = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
        try:
            snapshot = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir(), local_files_only=True)
        except Exception as e:  # LocalEntryNotFoundError and kin: nothing cached for this revision
            raise CheckpointError(
                f"{shown}: HF_HUB_OFFLINE is set and the Hub cache ({cache_dir()}) holds no snapshot of it "
                f"({type(e).__name__}); unset HF_HUB_OFFLINE to read it from the Hub"
            ) from None
        super().__init__(Path(str(snapshot)) / subfolder)
        self._record = {"repo": repo_id, "revision": revision or "main", "commit": Path(str(snapshot)).name,
                        "subfolder": subfolder, "endpoint": "the Hub cache (HF_HUB_OFFLINE)"}  # fmt: skip

    def where(self, name: str) -> str:
        return f"{super().where(name)} (HF_HUB_OFFLINE: the cached snapshot of {self._record['repo']})"

    def describe(self) -> dict[str, Any]:
        return dict(self._record)


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
    except errors.LocalEntryNotFoundError as e:  # a subclass of EntryNotFoundError: the network, not the repo
        raise CheckpointError(f"{shown}: cannot download it from {endpoint()}: {_first_line(e)}") from None
    except errors.EntryNotFoundError:
        raise CheckpointError(f"{shown}: no such file in the repo") from None
    except errors.OfflineModeIsEnabled:
        raise CheckpointError(f"{shown}: HF_HUB_OFFLINE is set; unset it to read from the Hub") from None
    except errors.HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status in (401, 403):
            raise CheckpointError(
                f"{shown}: HTTP {status}: not allowed; accept the repo's licence on its Hub page and set HF_TOKEN "
                "(or `hf auth login`)"
            ) from None
        raise CheckpointError(f"{shown}: cannot read from {endpoint()}: {_first_line(e)}") from None
    except Exception as e:  # network failures: the first line of their message
        raise CheckpointError(f"{shown}: cannot read from {endpoint()}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
