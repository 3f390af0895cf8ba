"""Teachers named by a remote location: `hf://ORG/NAME[@REVISION][/PATH]` (the Hub) or an `http(s)://` URL
of a .safetensors or index file. Imported only for remote teachers."""

from __future__ import annotations

import importlib
import re
from pathlib import PurePosixPath
from urllib.parse import unquote

from wsel.errors import CheckpointError
from wsel.sources import DEFAULT_CONNECTIONS
from wsel.sources.base import Folder
from wsel.sources.httpfile import UrlFolder
from wsel.sources.session import HttpSession

_HUB = re.compile(r"^hf://(?P<repo>[^/@\s]+/[^/@\s]+)(?:@(?P<revision>[^/\s]+))?(?:/(?P<path>.*))?$")
_CHECKPOINT_FILE = (".safetensors", ".index.json")


def open_remote(location: str, connections: int = DEFAULT_CONNECTIONS) -> tuple[Folder, str | None]:
    """The folder a remote location names, and the checkpoint file in it (None: the folder's checkpoint)."""
    if location.startswith("hf://"):
        return _open_hub(location, connections)
    path, query = location.partition("?")[::2]
    base, _, name = path.rpartition("/")
    if not name.endswith(_CHECKPOINT_FILE):
        raise CheckpointError(
            f"{location}: a URL teacher names a .safetensors file or a model.safetensors.index.json "
            "(or use hf://ORG/NAME for a Hub repo)"
        )
    session = HttpSession(connections, _user_agent())
    return UrlFolder(base, session, named={name: location}), name  # the named file keeps its query (signed)


def _open_hub(location: str, connections: int) -> tuple[Folder, str | None]:
    from wsel.sources import hub

    m = _HUB.match(location)
    if m is None:
        raise CheckpointError(f"{location}: expected hf://ORG/NAME, hf://ORG/NAME@REVISION or hf://ORG/NAME/FOLDER")
    path = PurePosixPath(m.group("path") or "")
    name = path.name if path.name.endswith(_CHECKPOINT_FILE) else None
    subfolder = str(path.parent if name else path).strip(".")
    repo = m.group("repo")
    revision = unquote(m.group("revision")) if m.group("revision") else None  # `refs%2Fpr%2F1`: refs/pr/1
    if hub.offline():
        return hub.CachedSnapshot(repo, revision, subfolder), name
    endpoint = hub.endpoint()
    session = HttpSession(connections, _user_agent(), hub_prefix=endpoint + "/", hub_auth=hub.auth_headers())
    return hub.HubFolder(repo, revision, subfolder, session), name


def _user_agent() -> dict[str, str]:
    """huggingface_hub's user agent, naming wsel (no token: the Hub's is added only for the Hub's URLs)."""
    from wsel import __version__

    utils = importlib.import_module("huggingface_hub.utils")  # its documented home, not re-exported for typing
    headers = utils.build_hf_headers(token=False, library_name="wsel", library_version=__version__)
    return {k.lower(): v for k, v in headers.items() if k.lower() == "user-agent"}
