"""Which running service holds an embedded store: a small owner file next to its collections.

An Edge store admits one opener per collection, so while ``percep-rag serve`` holds a store
the CLI cannot write it directly; it writes *through* the service instead. The service says
where it listens in ``<store>/.percep-rag-serve.json`` (written once it listens, removed when
it stops): its process id, URL, the collections it serves, their source folders and whether
it wants an API key. A file left by a service killed with ``kill -9`` is stale: its process
is gone (or the process that now has that id does not answer ``/healthz``), and
:func:`find_owner` says so instead of sending writes to nobody.

Standard library only: the CLI reads it without the ``serve`` extra.

>>> import tempfile, os
>>> root = tempfile.mkdtemp()
>>> _ = claim(root, Owner(pid=os.getpid(), url="http://127.0.0.1:1", collections=["c"]))
>>> find_owner(root, probe=False).collections
['c']
>>> release(root); find_owner(root) is None
True
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from percep_rag.io.files import atomic_write_text

#: The owner file's name, inside the store's folder (hidden: never taken for a collection).
OWNER_FILE = ".percep-rag-serve.json"


@dataclass(frozen=True)
class Owner:
    """A service holding a store: where it listens and what it serves.

    ``sources``: collection -> the source folder its ``sync`` reads; ``api_key``: whether
    its write routes want the ``X-API-Key`` header; ``answering``: whether it answered
    ``/healthz`` when found (``False``: its process runs but does not answer, yet).
    """

    pid: int
    url: str
    collections: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    api_key: bool = False
    answering: bool = True

    def describe(self) -> str:
        """``percep-rag serve (pid 123) at http://127.0.0.1:8000`` (for one-line messages)."""
        return f"percep-rag serve (pid {self.pid}) at {self.url}"


def owner_path(store_root: str | os.PathLike[str]) -> Path:
    """The owner file of the store in ``store_root``."""
    return Path(store_root).expanduser() / OWNER_FILE


def claim(store_root: str | os.PathLike[str], owner: Owner) -> Path:
    """Write ``owner`` as the store's owner file (atomically: a reader never sees half of it)."""
    record = asdict(owner)
    record.pop("answering")
    return atomic_write_text(owner_path(store_root), json.dumps(record, indent=1) + "\n")


def release(store_root: str | os.PathLike[str], pid: int | None = None) -> None:
    """Remove the owner file, only if it is ``pid``'s (default: this process's) or unreadable."""
    path = owner_path(store_root)
    found = _read(path)
    if found is None or found.pid == (os.getpid() if pid is None else pid):
        path.unlink(missing_ok=True)


def find_owner(store_root: str | os.PathLike[str], *, probe: bool = True, timeout: float = 2.0) -> Owner | None:
    """The live service holding the store in ``store_root``, else ``None``.

    A file whose process is gone is stale: removed, ``None``. With ``probe``, the service is
    asked ``/healthz``; a live process that does not answer is returned with ``answering=False``.
    """
    path = owner_path(store_root)
    found = _read(path)
    if found is None:
        return None
    if not process_alive(found.pid):
        path.unlink(missing_ok=True)
        return None
    if probe and not answers_health(found.url, timeout):
        return Owner(**{**asdict(found), "answering": False})
    return found


def answers_health(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url/healthz`` answers 200 within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/healthz", timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, ValueError):
        return False


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` runs (another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> Owner | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return Owner(
            pid=int(record["pid"]),
            url=str(record["url"]),
            collections=[str(name) for name in record.get("collections", [])],
            sources={str(k): str(v) for k, v in (record.get("sources") or {}).items()},
            api_key=bool(record.get("api_key", False)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
