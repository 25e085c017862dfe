"""Finding pretrained weights on this machine, never on the network.

Weights are looked up, in order, as: an explicit file path; percep-rag's weights folder
(``$PERCEP_RAG_WEIGHTS`` or ``~/.cache/percep_rag/weights``) as ``<backbone>.<ext>``;
the Hugging Face cache (read with no network access at all). A miss is a
:class:`~percep_rag.errors.WeightsNotFoundError` that lists every place looked at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from percep_rag.errors import WeightsNotFoundError

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".pth.tar")


def weights_dir() -> Path:
    """The folder percep-rag looks in for ``<backbone-name>.<ext>`` weight files.

    >>> weights_dir().name in ("weights", os.environ.get("PERCEP_RAG_WEIGHTS", "weights").rsplit("/", 1)[-1])
    True
    """
    configured = os.environ.get("PERCEP_RAG_WEIGHTS")
    return Path(configured) if configured else Path.home() / ".cache" / "percep_rag" / "weights"


@dataclass(frozen=True)
class HubFile:
    """A checkpoint published on the Hugging Face Hub, as ``repo_id`` + candidate file names."""

    repo_id: str
    filenames: tuple[str, ...]

    def cached_path(self) -> Path | None:
        """The file in the local HF cache, or ``None``; this never touches the network."""
        from huggingface_hub import try_to_load_from_cache

        for filename in self.filenames:
            found = try_to_load_from_cache(self.repo_id, filename)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
        return None


def local_weight_file(backbone: str) -> Path | None:
    """``<weights_dir>/<backbone>.<ext>`` if such a file exists."""
    for suffix in WEIGHT_SUFFIXES:
        candidate = weights_dir() / f"{backbone}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def resolve_weights(backbone: str, explicit: str | os.PathLike | None, hub: HubFile | None) -> Path:
    """Find the checkpoint for ``backbone`` or raise an error that says where to put it.

    >>> resolve_weights("tiny", "/nonexistent.pt", None)
    Traceback (most recent call last):
    ...
    percep_rag.errors.WeightsNotFoundError: weights file /nonexistent.pt for backbone 'tiny' does not exist
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {path} for backbone {backbone!r} does not exist")
        return path
    found = local_weight_file(backbone)
    if found is not None:
        return found
    if hub is not None:
        cached = hub.cached_path()
        if cached is not None:
            return cached
    raise WeightsNotFoundError(missing_weights_message(backbone, hub))


def missing_weights_message(backbone: str, hub: HubFile | None) -> str:
    """The error for a backbone whose weights are nowhere here: where to put them, then a hint line.

    >>> print(missing_weights_message("net", HubFile("org/net", ("model.safetensors",))).splitlines()[-1])
    on a machine with internet run `hf download org/net model.safetensors` and copy the Hugging Face cache here, ...
    """
    return missing_parts_message(backbone, {backbone: hub}, ensemble=False)


def missing_parts_message(backbone: str, missing: dict[str, HubFile | None], *, ensemble: bool = True) -> str:
    """The error for weights missing here: ``missing`` maps each backbone (an ensemble's parts) to its hub file.

    Two lines: what is missing and where it goes; then how to get it. Ensembles take no
    explicit weights file, so only single backbones are pointed at ``--weights``.

    >>> message = missing_parts_message("pair", {"a": None, "b": None})
    >>> message.splitlines()[0].startswith("no weights for the parts 'a', 'b' of ensemble 'pair'")
    True
    """
    names = ", ".join(map(repr, missing))
    what = f"the parts {names} of ensemble {backbone!r}" if ensemble else f"backbone {backbone!r}"
    places = " and ".join(f"{weights_dir() / name}.safetensors" for name in missing)
    downloads = [f"hf download {hub.repo_id} {hub.filenames[0]}" for hub in missing.values() if hub is not None]
    first = (
        f"no weights for {what} on this machine (percep-rag never downloads them): put "
        f"{places} (or .pt/.pth/.bin; folder set by $PERCEP_RAG_WEIGHTS)"
        + (" or the files in the Hugging Face cache" if downloads else "")
    )
    advice = []
    if downloads:
        advice.append(f"on a machine with internet run `{' && '.join(downloads)}` and copy the Hugging Face cache here")
    if not ensemble:
        advice.append("pass a checkpoint with --weights (weights= in Python)")
    advice.append("without weights use a 'tiny-*-random' backbone or --weights random")
    return f"{first}\n{', '.join(advice)}"
