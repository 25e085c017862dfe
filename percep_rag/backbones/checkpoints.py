"""What a checkpoint file holds, read without loading it: is it readable, and which backbone does it fit.

A weights file is checked by its header (safetensors' JSON header, torch's zip or pickle
magic), so ``percep-rag models`` can say "unreadable" instead of "present" for a zero-byte
or truncated file. When a file does not fit the backbone it was given to, :func:`likeness`
compares its tensor names and shapes with those of other networks to say which one it looks like.

>>> import tempfile, pathlib
>>> empty = pathlib.Path(tempfile.mkdtemp()) / "w.safetensors"
>>> _ = empty.write_bytes(b"")
>>> weights_file_problem(empty)
'the file is empty'
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from percep_rag.errors import PercepRagError

# Prefixes that wrap the same tensors in different checkpoints (DDP, full CLIP vs its vision tower).
_PREFIXES = ("module.", "model.", "visual.")


class WeightsFileError(PercepRagError):
    """A weights file is unreadable, or holds the weights of another network than the one asked for."""


def weights_file_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a loadable checkpoint, judged by its header; ``None`` when it looks fine.

    >>> weights_file_problem("/nonexistent.pt")
    'the file does not exist'
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if size == 0:
                return "the file is empty"
            if path.suffix == ".safetensors":
                if len(head) < 8:
                    return "the file is too short for a safetensors header"
                (length,) = struct.unpack("<Q", head)
                if length > size - 8:
                    return "the safetensors header is longer than the file (truncated?)"
                json.loads(handle.read(length))
                return None
    except FileNotFoundError:
        return "the file does not exist"
    except (OSError, ValueError) as error:
        return f"the header cannot be read ({error})"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                return "a zip file, but not a torch checkpoint"
        return None
    if head[:1] == b"\x80":  # a legacy (pre-zip) torch pickle
        return None
    return "not a safetensors or torch checkpoint"


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape in a checkpoint, read without loading the tensors' data."""
    path = Path(path)
    if path.suffix == ".safetensors":
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        return {key: tuple(value["shape"]) for key, value in header.items() if key != "__metadata__"}
    import torch

    state = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {key: tuple(value.shape) for key, value in state.items() if hasattr(value, "shape")}


def _normalized(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    out = {}
    for key, shape in shapes.items():
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = shape
    return out


def differing_keys(found: dict[str, tuple[int, ...]], wanted: dict[str, tuple[int, ...]]) -> int:
    """How many of ``wanted``'s tensors are missing from ``found`` or have another shape (plus extra ones).

    >>> differing_keys({"a": (1,), "b": (2,)}, {"visual.a": (1,), "c": (3,)})
    2
    """
    found, wanted = _normalized(found), _normalized(wanted)
    relevant = {key: shape for key, shape in found.items() if not key.startswith(("text", "transformer.", "token"))}
    mismatched = sum(1 for key, shape in wanted.items() if found.get(key) != shape)
    extra = sum(1 for key in relevant if key not in wanted)
    return mismatched + extra


def likeness(
    found: dict[str, tuple[int, ...]],
    asked: str,
    wanted: dict[str, tuple[int, ...]],
    others: dict[str, dict[str, tuple[int, ...]]],
) -> str:
    """One line: how many tensors ``found`` in a file differ from backbone ``asked`` (which expects
    ``wanted``), and which of the ``others`` (name -> tensor shapes) the file looks like.

    >>> likeness({"w": (2, 2)}, "small", {"w": (1, 1)}, {"big": {"w": (2, 2)}})
    "0 of the 1 tensors 'small' expects are in it (it holds 1); it looks like 'big'"
    """
    matched = sum(1 for key, shape in _normalized(wanted).items() if _normalized(found).get(key) == shape)
    line = f"{matched} of the {len(wanted)} tensors {asked!r} expects are in it (it holds {len(found)})"
    scores = {name: differing_keys(found, shapes) / len(shapes) for name, shapes in others.items() if shapes}
    best = min(scores.values(), default=1.0)
    if best < 0.5:
        similar = sorted(name for name, score in scores.items() if score == best)
        return f"{line}; it looks like {' / '.join(repr(name) for name in similar)}"
    return f"{line}; it matches no registered backbone"
