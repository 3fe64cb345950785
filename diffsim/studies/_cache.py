"""A resumable per-item cache for study sweeps.

Each finished sweep item is one small JSON file ``<out_dir>/cache/<config-hash>/<key>.json``, written
atomically. An entry carries the diffsim version, its key and a SHA-256 digest of its payload; an entry that
cannot be read, is ill-formed, was written by another version or does not match its digest is a miss: it is
recomputed and overwritten, and the log names the file. A changed config gets a different hash, so stale items
are never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._io import from_jsonable, to_jsonable, write_json
from .._version import __version__


__all__ = ["ResultCache", "config_hash"]

log = logging.getLogger("diffsim.studies")


def config_hash(config: Any) -> str:
    """The first 12 hex digits of the SHA-256 of the config as sorted JSON."""
    return hashlib.sha256(json.dumps(to_jsonable(config), sort_keys=True).encode()).hexdigest()[:12]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _version() -> str:
    return __version__


class ResultCache:
    """Per-item cache of a sweep's results so an interrupted study resumes where it stopped.

    ``hits`` counts reused items, ``misses`` computed ones and ``rejected`` the damaged entries that were
    recomputed (each named in the log at warning level).
    """

    def __init__(self, out_dir: str | Path, config: Any, *, prefix: str = ""):
        self.root = Path(out_dir) / "cache" / config_hash(config)
        self.prefix = prefix
        self.hits = 0
        self.misses = 0
        self.rejected: list[str] = []

    def _path(self, key: str) -> Path:
        full = f"{self.prefix}{key}"
        safe = "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in full)
        return self.root / f"{safe}.json"

    def _read(self, path: Path, key: str) -> tuple[bool, Any]:
        """``(True, value)`` for a sound entry; ``(False, reason)`` otherwise."""
        try:
            entry = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return False, f"unreadable ({type(err).__name__})"
        if not isinstance(entry, dict) or not {"key", "value", "digest", "version"} <= set(entry):
            return False, "ill-formed (not an entry written by this cache)"
        if entry["key"] != f"{self.prefix}{key}":
            return False, f"written for key {entry['key']!r}"
        if entry["version"] != _version():
            return False, f"written by diffsim {entry['version']}"
        if entry["digest"] != _digest(entry["value"]):
            return False, "digest mismatch (damaged payload)"
        return True, entry["value"]

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        """Return the cached value of ``key`` or compute it, store it (atomically) and return it.

        The value is returned as JSON would give it back (lists, dicts, plain numbers), with non-finite
        floats restored, so a cache hit and a miss return the same thing."""
        path = self._path(key)
        if path.exists():
            ok, value = self._read(path, key)
            if ok:
                self.hits += 1
                return from_jsonable(value)
            self.rejected.append(str(path))
            log.warning("cache entry %s is %s: recomputing it", path, value)
        value = to_jsonable(compute())
        full_key = f"{self.prefix}{key}"
        write_json(path, {"key": full_key, "version": _version(), "digest": _digest(value), "value": value})
        self.misses += 1
        return from_jsonable(value)

    def summary(self) -> str:
        text = f"{self.hits} cached items reused, {self.misses} computed"
        if self.rejected:
            text += f", {len(self.rejected)} damaged entries recomputed"
        return text
