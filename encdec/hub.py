"""Find a checkpoint file in a local folder or a Hugging Face Hub repository.

A local folder wins. Anything else is treated as a hub id and resolved through
``huggingface_hub`` (download cache, ``revision``, ``cache_dir``, ``token``). Offline mode
(``HF_HUB_OFFLINE=1`` read at call time, or ``local_files_only=True``) only looks in the cache.
"""

from __future__ import annotations

import os
from typing import Any, Optional

HUB_KWARGS = frozenset(
    {"revision", "cache_dir", "local_files_only", "token", "subfolder", "force_download", "proxies"}
)


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def _hub_kwargs(kwargs: Any) -> dict:
    unknown = set(kwargs) - HUB_KWARGS
    if unknown:
        raise TypeError(f"unknown hub arguments {sorted(unknown)}; accepted: {sorted(HUB_KWARGS)}")
    out = dict(kwargs)
    if is_offline():
        out["local_files_only"] = True
    return out


def resolve_file_optional(path_or_id: str, filename: str, **kwargs: Any) -> Optional[str]:
    """The local path of ``filename`` in the folder or hub repo, or None if it has no such file."""
    path_or_id = str(path_or_id)
    subfolder = kwargs.get("subfolder") or ""
    if os.path.isdir(path_or_id):
        candidate = os.path.join(path_or_id, subfolder, filename)
        return candidate if os.path.isfile(candidate) else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return hf_hub_download(path_or_id, filename, **_hub_kwargs(kwargs))
    except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: test it first
        # Offline (or unreachable) and not in the cache: the file may exist upstream, but we
        # cannot know; only report "absent" when the repo itself is cached.
        if _repo_in_cache(path_or_id, kwargs):
            return None
        raise OSError(
            f"{path_or_id!r} is not a local folder and {filename!r} is not in the Hugging Face cache"
            + (" (offline mode: HF_HUB_OFFLINE=1 or local_files_only=True)" if _hub_kwargs(kwargs).get("local_files_only") else "")
        ) from None
    except EntryNotFoundError:
        return None


def _repo_in_cache(repo_id: str, kwargs: Any) -> bool:
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(kwargs.get("cache_dir"))
    except Exception:  # no cache folder at all
        return False
    return any(r.repo_id == repo_id for r in info.repos)


def resolve_file(path_or_id: str, filename: str, **kwargs: Any) -> str:
    """Like ``resolve_file_optional`` but a missing file is an ``OSError`` naming it."""
    found = resolve_file_optional(path_or_id, filename, **kwargs)
    if found is None:
        where = "folder" if os.path.isdir(str(path_or_id)) else "hub repo"
        raise OSError(f"{where} {str(path_or_id)!r} has no file named {filename!r}")
    return found
