"""Teachers named by a remote location: `hf://ORG/NAME[@REVISION][/PATH]` (the Hub) or an `http(s)://` URL
of a .safetensors or index file. Imported only for remote teachers."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from wsel.errors import CheckpointError
from wsel.sources.base import Folder
from wsel.sources.http import DEFAULT_CONNECTIONS, HttpSession, UrlFolder
from wsel.sources.local import LocalFolder

_HUB = re.compile(r"^hf://(?P<repo>[^/@\s]+/[^/@\s]+)(?:@(?P<revision>[^/\s]+))?(?:/(?P<path>.*))?$")
_CHECKPOINT_FILE = (".safetensors", ".index.json")


def open_remote(location: str, connections: int = DEFAULT_CONNECTIONS) -> tuple[Folder, str | None]:
    """The folder a remote location names, and the checkpoint file in it (None: the folder's checkpoint)."""
    if location.startswith("hf://"):
        return _open_hub(location, connections)
    base, _, name = location.partition("?")[0].rpartition("/")
    if not name.endswith(_CHECKPOINT_FILE):
        raise CheckpointError(
            f"{location}: a URL teacher names a .safetensors file or a model.safetensors.index.json "
            "(or use hf://ORG/NAME for a Hub repo)"
        )
    return UrlFolder(base, HttpSession(connections)), name


def _open_hub(location: str, connections: int) -> tuple[Folder, str | None]:
    from wsel.sources import hub

    m = _HUB.match(location)
    if m is None:
        raise CheckpointError(f"{location}: expected hf://ORG/NAME, hf://ORG/NAME@REVISION or hf://ORG/NAME/FOLDER")
    path = PurePosixPath(m.group("path") or "")
    name = path.name if path.name.endswith(_CHECKPOINT_FILE) else None
    subfolder = str(path.parent if name else path).strip(".")
    repo, revision = m.group("repo"), m.group("revision")
    if hub.offline():
        return LocalFolder(hub.cached_snapshot(repo, revision, subfolder)), name
    session = HttpSession(connections, auth=(hub.endpoint() + "/", hub.auth_headers()))
    return hub.HubFolder(repo, revision, subfolder, session), name
