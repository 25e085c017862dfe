"""gLocal: an affine map of pooled features towards human similarity judgments.

The transform is thingsvision's ``align()`` exactly (Muttenthaler et al., NeurIPS 2023)::

    y = ((x - mean) / std) @ weights (+ bias)     # mean, std: scalars; row vectors

It loads the published ``transform.npz`` files, our own ``.safetensors`` files (with a
metadata block) and plain dicts of arrays, and :func:`fit_glocal` fits a new one on
triplets::

    >>> import torch
    >>> transform = GlocalTransform(torch.eye(3), mean=1.0, std=2.0)
    >>> transform.transform(torch.tensor([[3.0, 1.0, 5.0]]))
    tensor([[1., 0., 2.]])
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from percep_rag.alignment.metrics import odd_one_out_accuracy, two_afc_from_embeddings
from percep_rag.alignment.triplets import TripletSet
from percep_rag.errors import AlignmentError, DimensionMismatchError

if TYPE_CHECKING:
    from percep_rag.backbones.base import Backbone

ArrayLike = np.ndarray | torch.Tensor
_ARRAY_KEYS = ("weights", "bias", "mean", "std")
_REQUIRED_KEYS = ("weights", "mean", "std")
_FORMAT = "percep-rag/glocal"

# (sha256 prefix, word the path contains) -> why the file is suspect.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {
    ("2bcb2d77346fbaec", "dinov2"): (
        "this dinov2-vit-base-p14 gLocal transform is byte-identical to dino-vit-base-p16's "
        "(the DINOv2-B/14 transform was overwritten upstream in LukasMut/gLocal@47e7454); "
        "its mean/std and W were fitted on DINO ViT-B/16 features, not DINOv2's"
    ),
}


class GlocalDefectWarning(UserWarning):
    """A published gLocal transform file is known to be wrong."""


class GlocalDimensionError(AlignmentError, DimensionMismatchError):
    """Features do not have the dimension the gLocal transform expects."""


# =========================================================================== the transform


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _check_arrays(arrays: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """Validated ``weights (p, q)`` float32, ``bias (q,)`` float32, 0-d float64 ``mean``/``std``."""
    keys = set(arrays)
    missing = [key for key in _REQUIRED_KEYS if key not in keys]
    unexpected = sorted(keys - set(_ARRAY_KEYS))
    if missing or unexpected:
        raise AlignmentError(
            f"{where}: not a gLocal transform: needs arrays weights, mean, std (and optionally bias); "
            f"missing {missing or 'none'}, unexpected {unexpected or 'none'}"
        )
    out: dict[str, np.ndarray] = {}
    for key in keys:
        try:
            value = _numpy(arrays[key])
        except (TypeError, ValueError) as error:
            raise AlignmentError(f"{where}: {key} is not an array ({error})") from error
        if value.dtype.kind not in "fiu":
            raise AlignmentError(f"{where}: {key} has non-numeric dtype {value.dtype}")
        if not np.isfinite(value).all():
            raise AlignmentError(f"{where}: {key} contains NaN or infinite values")
        out[key] = value
    weights = out["weights"]
    if weights.ndim != 2 or 0 in weights.shape:
        raise AlignmentError(f"{where}: weights must be a (p, q) matrix, got shape {weights.shape}")
    if "bias" in out and out["bias"].shape != (weights.shape[1],):
        raise AlignmentError(
            f"{where}: bias has shape {out['bias'].shape}, weights {weights.shape} need ({weights.shape[1]},)"
        )
    for key in ("mean", "std"):
        if out[key].ndim != 0:
            raise AlignmentError(f"{where}: {key} must be a scalar (0-d array), got shape {out[key].shape}")
    if float(out["std"]) <= 0:
        raise AlignmentError(f"{where}: std must be > 0, got {float(out['std'])}")
    out["weights"] = weights.astype(np.float32)
    if "bias" in out:
        out["bias"] = out["bias"].astype(np.float32)
    # float64 keeps the clip_* files' float64 scalars exactly; compute casts to float32.
    out["mean"], out["std"] = (np.asarray(out[key], dtype=np.float64) for key in ("mean", "std"))
    return out


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    hasher = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def warn_known_defects(path: str | Path, sha256: str) -> None:
    """Warn (:class:`GlocalDefectWarning`) when ``path`` is a published file known to be wrong.

    Today: ``dinov2-vit-base-p14/norm/transform.npz``, a copy of dino-vit-base-p16's.
    """
    lowered = str(path).lower()
    for (prefix, word), reason in KNOWN_DEFECTS.items():
        if sha256.startswith(prefix) and word in lowered:
            warnings.warn(f"{path}: {reason}", GlocalDefectWarning, stacklevel=3)


def _sniff_format(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"PK"):
        return "npz"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:1] == b"\x80" or path.suffix.lower() in (".pkl", ".pickle", ".pt", ".pth"):
        return "pickle"
    return "safetensors"


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error) or "Object arrays" in str(error):
            raise AlignmentError(f"{path}: contains pickled (object) arrays; refused for safety") from error
        raise AlignmentError(f"{path}: not a readable .npz archive ({error})") from error
    except Exception as error:  # zipfile.BadZipFile, OSError, EOFError, ...
        raise AlignmentError(f"{path}: not a readable .npz archive ({error})") from error


def _decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    json_keys = set(json.loads(raw.get("__json__", "[]")))
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("__json__", "format", "format_version"):
            continue
        out[key] = json.loads(value) if key in json_keys else value
    return out


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
            arrays = {key: handle.get_tensor(key).numpy() for key in handle.keys()}
    except Exception as error:  # safetensors raises its own SafetensorError, OSError, ...
        raise AlignmentError(f"{path}: not a readable .safetensors file ({error})") from error
    try:
        return arrays, _decode_metadata(raw)
    except json.JSONDecodeError as error:
        raise AlignmentError(f"{path}: corrupt metadata block ({error})") from error


class GlocalTransform(nn.Module):
    """The affine gLocal map ``y = ((x - mean) / std) @ weights (+ bias)``.

    ``weights`` is ``(p, q)`` (row-vector convention, not ``weights.T``), ``bias`` is
    ``(q,)`` or ``None``, ``mean`` and ``std`` are scalars of the training feature matrix.
    Implements the :class:`~percep_rag.alignment.base.Alignment` protocol (``kind`` is
    ``"glocal"``; it leaves the backbone alone). ``metadata`` records the backbone,
    pooling, source and fitting hyper-parameters.

    The output is not normalised: the embedder L2-normalises after the transform, as
    gLocal's own downstream code does.

    >>> t = GlocalTransform(np.eye(2, dtype=np.float32), bias=np.ones(2), mean=0.0, std=1.0)
    >>> t.apply_numpy(np.array([[1.0, 2.0]], dtype=np.float32))
    array([[2., 3.]], dtype=float32)
    >>> t.in_dim, t.out_dim, len(t.digest)
    (2, 2, 16)
    """

    kind = "glocal"
    weights: torch.Tensor
    bias: torch.Tensor | None
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        weights: ArrayLike,
        bias: ArrayLike | None = None,
        mean: float | ArrayLike = 0.0,
        std: float | ArrayLike = 1.0,
        metadata: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        arrays = {"weights": weights, "mean": mean, "std": std}
        if bias is not None:
            arrays["bias"] = bias
        checked = _check_arrays(arrays, str((metadata or {}).get("source", "GlocalTransform")))
        self.register_buffer("weights", torch.from_numpy(checked["weights"]))
        self.register_buffer("bias", torch.from_numpy(checked["bias"]) if "bias" in checked else None)
        self.register_buffer("mean", torch.from_numpy(checked["mean"]))
        self.register_buffer("std", torch.from_numpy(checked["std"]))
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.metadata.setdefault("method", "glocal")
        self.metadata["in_dim"], self.metadata["out_dim"] = self.in_dim, self.out_dim
        self._device_params: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}

    # ------------------------------------------------------------------ identity
    @property
    def in_dim(self) -> int:
        """``p``: the pooled feature dimension it expects."""
        return int(self.weights.shape[0])

    @property
    def out_dim(self) -> int:
        """``q``: the aligned dimension it produces."""
        return int(self.weights.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """``weights``, ``bias`` (when present), ``mean``, ``std`` as CPU NumPy arrays."""
        out = {"weights": self.weights, "bias": self.bias, "mean": self.mean, "std": self.std}
        return {key: value.detach().cpu().numpy() for key, value in out.items() if value is not None}

    @property
    def digest(self) -> str:
        """First 16 hex digits of the SHA-256 of the arrays (names, dtypes, shapes, bytes)."""
        hasher = hashlib.sha256()
        arrays = self.arrays()
        for key in _ARRAY_KEYS:
            value = arrays.get(key)
            if value is None:
                hasher.update(f"{key}:none;".encode())
                continue
            hasher.update(f"{key}:{value.dtype.str}:{value.shape};".encode())
            hasher.update(value.tobytes(order="C"))
        return hasher.hexdigest()[:16]

    def __repr__(self) -> str:
        backbone = self.metadata.get("backbone", "?")
        bias = self.bias is not None
        return f"GlocalTransform({self.in_dim}->{self.out_dim}, bias={bias}, backbone={backbone}, digest={self.digest})"

    # ------------------------------------------------------------------ applying
    def _apply(self, fn, recurse: bool = True):  # nn.Module's hook behind .to(), .cuda(), .half()
        # Devices may change, dtypes may not: the digest names these exact numbers. Probe fn
        # on a scalar first so a refused .half() / .to(dtype) leaves the module untouched.
        for dtype in (torch.float32, torch.float64):
            if fn(torch.zeros((), dtype=dtype)).dtype != dtype:
                raise AlignmentError("a gLocal transform keeps its arrays' dtypes; move it with .to(device) only")
        self._device_params = {}  # the buffers move: drop stale per-device copies
        return super()._apply(fn, recurse)

    def _params(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        key = (device, dtype)
        if key not in self._device_params:
            # Built outside inference mode so the cached copies also serve autograd callers.
            with torch.inference_mode(False), torch.no_grad():
                weights = self.weights.to(device=device, dtype=dtype)
                bias = None if self.bias is None else self.bias.to(device=device, dtype=dtype)
                mean = self.mean.to(dtype).to(device)
                std = self.std.to(dtype).to(device)
            self._device_params[key] = (weights, bias, mean, std)
        return self._device_params[key]

    def _check_dim(self, dim: int) -> None:
        if dim != self.in_dim:
            where = self.metadata.get("source") or self.digest
            raise GlocalDimensionError(f"gLocal transform {where} expects {self.in_dim}-d features, got {dim}-d")

    def transform(self, pooled: torch.Tensor) -> torch.Tensor:
        """Apply the map to ``(..., p)`` features, on their device.

        float32 (and lower precision) inputs are computed in float32 with ``mean``/``std``
        cast to float32; half/bfloat16 results are cast back to the input dtype. float64
        inputs are computed in float64. NumPy input is passed to :meth:`apply_numpy`.
        """
        if isinstance(pooled, np.ndarray):
            return self.apply_numpy(pooled)  # type: ignore[return-value]
        if not isinstance(pooled, torch.Tensor):
            raise AlignmentError(f"gLocal transform needs a torch.Tensor or numpy array, got {type(pooled).__name__}")
        self._check_dim(int(pooled.shape[-1]) if pooled.ndim else 0)
        compute = torch.float64 if pooled.dtype == torch.float64 else torch.float32
        weights, bias, mean, std = self._params(pooled.device, compute)
        out = ((pooled.to(compute) - mean) / std) @ weights
        if bias is not None:
            out = out + bias
        if pooled.dtype in (torch.float16, torch.bfloat16):
            out = out.to(pooled.dtype)
        return out

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.transform(pooled)

    def apply_numpy(self, features: np.ndarray) -> np.ndarray:
        """thingsvision's NumPy math, in float32: ``((x - mean) / std) @ weights + bias``.

        For the files whose mean/std are float32 (all but ``clip_*``) this is the same
        computation as thingsvision's. The ``clip_*`` files store float64 mean/std, which
        NumPy >= 2 promotes the whole computation to float64 (thingsvision pins NumPy < 2,
        where it stays float32); we compute in float32 either way. The difference to the
        float64 result is about 1e-6 relative (see tests/test_glocal.py).
        """
        x = np.asarray(features)
        self._check_dim(int(x.shape[-1]) if x.ndim else 0)
        arrays = self.arrays()
        mean, std = np.float32(arrays["mean"]), np.float32(arrays["std"])
        out = ((x.astype(np.float32, copy=False) - mean) / std) @ arrays["weights"]
        if "bias" in arrays:
            out = out + arrays["bias"]
        return out

    # ------------------------------------------------------------------ Alignment protocol
    def adapt_backbone(self, backbone: Backbone) -> None:
        """gLocal never changes the backbone."""
        return None

    def check_compatible(self, backbone: Backbone, pooled_dim: int) -> None:
        """Raise :class:`AlignmentError` unless this map fits ``backbone``'s pooled features.

        Checks the dimension always, and the backbone name and pooling when the metadata
        records them (published thingsvision files record neither).
        """
        name = getattr(backbone, "name", None)
        want_backbone = self.metadata.get("backbone")
        want_pooling = self.metadata.get("pooling")
        label = f"gLocal transform {self.metadata.get('source') or self.digest}"
        trained = f"fitted for backbone {want_backbone or 'unknown'}, pooling {want_pooling or 'unknown'}"
        if pooled_dim != self.in_dim:
            raise GlocalDimensionError(
                f"{label} expects {self.in_dim}-d pooled features ({trained}), "
                f"but backbone {name!r} gives {pooled_dim}-d pooled features"
            )
        if want_backbone and name and want_backbone != name:
            raise AlignmentError(f"{label} was {trained}, not for backbone {name!r} ({pooled_dim}-d both)")
        token_dim = getattr(backbone, "dim", None)
        if want_pooling and isinstance(token_dim, int):
            pooling = {token_dim: "cls", 2 * token_dim: "cls+patchmean"}.get(pooled_dim)
            if pooling and pooling != want_pooling:
                raise AlignmentError(f"{label} was {trained}, but backbone {name!r} is pooled with {pooling!r}")

    # ------------------------------------------------------------------ files
    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, Any], *, metadata: Mapping[str, Any] | None = None, source: str | Path | None = None
    ) -> GlocalTransform:
        """Build from ``{"weights", "mean", "std"[, "bias"]}`` (NumPy arrays, tensors, floats).

        >>> GlocalTransform.from_arrays({"weights": np.eye(4), "mean": 0.5, "std": 2.0}).in_dim
        4
        """
        meta = dict(metadata or {})
        if source is not None:
            meta.setdefault("source", str(source))
        checked = _check_arrays(arrays, str(meta.get("source", "arrays")))
        return cls(checked["weights"], checked.get("bias"), checked["mean"], checked["std"], metadata=meta)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        expected_sha256: str | None = None,
        backbone: str | None = None,
        pooling: str | None = None,
    ) -> GlocalTransform:
        """Read a ``.safetensors`` file written by :meth:`save` or a thingsvision/gLocal ``.npz``.

        ``expected_sha256`` (full hex or a prefix of at least 8 digits) pins the file's
        bytes. ``backbone``/``pooling`` record what the features must come from when the
        file does not say (published ``.npz`` files do not). Known-bad published files
        raise a :class:`GlocalDefectWarning`. Pickles are refused.

        Example::

            t = GlocalTransform.load("transforms/clip_RN50/visual/transform.npz",
                                     expected_sha256="81fc831f60c43ded")
        """
        path = Path(path)
        if not path.is_file():
            raise AlignmentError(f"{path}: no such gLocal transform file")
        sha256 = file_sha256(path)
        if expected_sha256 is not None:
            expected = expected_sha256.strip().lower()
            if len(expected) < 8 or not sha256.startswith(expected):
                raise AlignmentError(f"{path}: SHA-256 {sha256} does not match the expected {expected_sha256!r}")
        warn_known_defects(path, sha256)
        kind = _sniff_format(path)
        if kind == "npz":
            arrays, metadata = _read_npz(path), {"source_format": "npz"}
        elif kind == "safetensors":
            arrays, metadata = _read_safetensors(path)
        elif kind == "npy":
            raise AlignmentError(f"{path}: a single .npy array; a gLocal transform is an .npz with weights, mean, std")
        else:
            raise AlignmentError(f"{path}: looks like a pickle; refused (use .npz or .safetensors)")
        stored_digest = metadata.pop("digest", None)
        for key, value in (("backbone", backbone), ("pooling", pooling)):
            if value is None:
                continue
            if metadata.get(key) not in (None, value):
                raise AlignmentError(f"{path}: the file says {key} {metadata[key]!r}, the caller {value!r}")
            metadata[key] = value
        metadata.update(source=str(path), source_sha256=sha256)
        transform = cls.from_arrays(arrays, metadata=metadata)
        if stored_digest is not None and stored_digest != transform.digest:
            raise AlignmentError(
                f"{path}: arrays do not match the recorded digest {stored_digest} (got {transform.digest})"
            )
        return transform

    def save(self, path: str | Path) -> Path:
        """Write a ``.safetensors`` file (atomically) with a string metadata block.

        The block holds ``backbone``, ``pooling``, ``in_dim``, ``out_dim``, ``digest``,
        ``method``, ``created`` and the fitting ``hyperparameters`` (JSON); non-string
        values are JSON-encoded and listed under ``__json__``.
        """
        from safetensors.torch import save_file

        path = Path(path)
        # np.array(order="C") rather than ascontiguousarray, which turns 0-d mean/std into 1-d.
        tensors = {key: torch.from_numpy(np.array(value, order="C")) for key, value in self.arrays().items()}
        local_keys = ("source", "source_sha256", "source_format")  # describe the file it was read from
        metadata = {key: value for key, value in self.metadata.items() if key not in local_keys}
        if self.metadata.get("source_format") == "npz":  # converting a published file: keep where from
            metadata.setdefault("origin", self.metadata["source"])
            metadata.setdefault("origin_sha256", self.metadata["source_sha256"])
        metadata.setdefault("created", _now())
        metadata.update(digest=self.digest, in_dim=self.in_dim, out_dim=self.out_dim)
        encoded = {"format": _FORMAT, "format_version": "1"}
        json_keys = []
        for key, value in metadata.items():
            if isinstance(value, str):
                encoded[key] = value
            else:
                encoded[key] = json.dumps(value, sort_keys=True, default=str)
                json_keys.append(key)
        encoded["__json__"] = json.dumps(sorted(json_keys))
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(handle)
        try:
            save_file(tensors, temporary, metadata=encoded)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return path


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# =========================================================================== training data


def _as_index(values: Any, name: str) -> np.ndarray:
    array = _numpy(values).reshape(-1)
    if array.dtype.kind not in "iu":
        raise AlignmentError(f"{name} must hold integer feature rows, got dtype {array.dtype}")
    return array.astype(np.int64)


@dataclass
class TripletFeatures:
    """A feature matrix and triplets over its rows, ready to fit on.

    ``features`` is ``(n, p)``; ``anchor``/``left``/``right`` are row indices and
    ``target`` is the share of votes for RIGHT (see :mod:`percep_rag.alignment.triplets`).

    >>> data = TripletFeatures.from_odd_one_out(np.eye(3), np.array([[0, 1, 2]]))
    >>> data.right.tolist(), data.left.tolist(), data.target.tolist()
    ([1], [2], [1.0])
    """

    features: ArrayLike
    anchor: np.ndarray
    left: np.ndarray
    right: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.features.shape)
        if len(shape) != 2:
            raise GlocalDimensionError(f"features must be (n, p), got shape {shape}")
        self.anchor, self.left, self.right = (
            _as_index(values, name)
            for values, name in ((self.anchor, "anchor"), (self.left, "left"), (self.right, "right"))
        )
        n = len(self.anchor)
        self.target = _numpy(self.target).astype(np.float64).reshape(-1)
        if len(self.left) != n or len(self.right) != n or len(self.target) != n:
            raise AlignmentError("anchor, left, right and target must have the same length")
        if n and (
            min(self.anchor.min(), self.left.min(), self.right.min()) < 0
            or max(self.anchor.max(), self.left.max(), self.right.max()) >= shape[0]
        ):
            raise AlignmentError(f"triplet rows must be in [0, {shape[0]})")
        if n and not (np.isfinite(self.target).all() and 0 <= self.target.min() and self.target.max() <= 1):
            raise AlignmentError("target must be a share of votes in [0, 1]")
        if self.weight is not None:
            self.weight = _numpy(self.weight).astype(np.float64).reshape(-1)
            if len(self.weight) != n or (n and (not np.isfinite(self.weight).all() or self.weight.min() < 0)):
                raise AlignmentError("weight must be finite, >= 0, one per triplet")

    def __len__(self) -> int:
        return len(self.anchor)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @classmethod
    def from_odd_one_out(cls, features: ArrayLike, triplets: ArrayLike) -> TripletFeatures:
        """THINGS convention: ``(N, 3)`` rows, columns 0-1 most similar, column 2 odd."""
        rows = _numpy(triplets)
        if rows.ndim != 2 or rows.shape[1] != 3:
            raise AlignmentError(f"odd-one-out triplets must be (N, 3), got shape {rows.shape}")
        return cls(features, rows[:, 0], rows[:, 2], rows[:, 1], np.ones(len(rows)))

    @classmethod
    def from_triplets(cls, features: ArrayLike, triplets: TripletSet, refs: Any = None) -> TripletFeatures:
        """From a :class:`TripletSet`; ``refs`` is the features' row order when the triplets name images."""
        rows = triplets.indices(refs)
        return cls(features, rows[:, 0], rows[:, 1], rows[:, 2], triplets.target, triplets.weight)

    @classmethod
    def coerce(cls, data: Any) -> TripletFeatures:
        """Accept ``TripletFeatures``, ``(features, TripletSet[, refs])`` or ``(features, (N, 3) array)``."""
        if isinstance(data, TripletFeatures):
            return data
        if isinstance(data, (tuple, list)) and len(data) in (2, 3):
            features, triplets, *refs = data
            if isinstance(triplets, TripletSet):
                return cls.from_triplets(features, triplets, refs[0] if refs else None)
            if not refs:
                return cls.from_odd_one_out(features, triplets)
        raise AlignmentError(
            "training data must be TripletFeatures, (features, TripletSet[, refs]) "
            "or (features, (N, 3) odd-one-out array)"
        )

    def hard_odd_one_out(self) -> np.ndarray:
        """``(N', 3)`` rows ``(anchor, majority choice, other)`` for evaluation; 50/50 ties dropped."""
        right_wins = self.target > 0.5
        keep = self.target != 0.5
        positive = np.where(right_wins, self.right, self.left)
        negative = np.where(right_wins, self.left, self.right)
        return np.stack([self.anchor, positive, negative], axis=1)[keep]


# =========================================================================== fitting


class GlocalFitConfig(BaseModel):
    """Hyper-parameters of :func:`fit_glocal` (gLocal's objective, §2.2 of glocal.md).

    ``init="identity"`` starts at ``W = g I``, ``b = g * mean/std`` (``g = init_gain``,
    default ``1/sqrt(p)``, which puts the first dot products near 1) so the starting map is
    ``x -> g x / std``: the base embedding's cosine ranking, exactly (up to float rounding;
    with ``use_bias=False`` the scalar centring is not undone). ``init="glocal"`` is the
    original ``W = sigma_init I``, ``b = sigma_init`` (tiny scaled identity, constant bias).

    ``lr=None`` picks ``0.1 / p`` for Adam (Adam moves every one of the ``p^2`` entries by
    about ``lr`` per step, so the relative change of ``W`` grows with ``p``; measured on
    synthetic data: 1e-4 beats 1e-3 at ``p = 768``, 1e-2 works at ``p = 32``) and gLocal's
    ``1e-3`` for SGD with momentum (whose steps the gradient clipping bounds).

    >>> GlocalFitConfig(alpha=0.1).optimizer
    'adam'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float | None = Field(None, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    alpha: float = Field(0.25, ge=0, le=1)
    tau: float = Field(0.1, gt=0)
    temperature: float = Field(1.0, gt=0)
    lam: float = Field(0.1, ge=0)
    epochs: int = Field(100, ge=0)
    min_epochs: int = Field(5, ge=0)
    patience: int = Field(15, ge=1)
    min_delta: float = Field(1e-4, ge=0)
    triplet_batch_size: int | None = Field(256, gt=0)
    local_batch_size: int | None = Field(1024, gt=2)
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = 42
    device: str = "auto"
    use_bias: bool = True
    init: Literal["identity", "glocal"] = "identity"
    init_gain: float | None = Field(None, gt=0)
    sigma_init: float = Field(1e-3, gt=0)
    soft_targets: Literal["expected", "majority"] = "expected"
    standardize_local: bool = True

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value not in ("auto", "cpu") and not value.startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {value!r}")
        return value

    def learning_rate(self, dim: int) -> float:
        """``lr``, or the automatic choice for ``dim``-d features.

        >>> GlocalFitConfig().learning_rate(768), GlocalFitConfig(optimizer="sgd").learning_rate(768)
        (0.00013020833333333333, 0.001)
        """
        if self.lr is not None:
            return self.lr
        return 0.1 / dim if self.optimizer == "adam" else 1e-3


@dataclass
class FitReport:
    """What happened during :func:`fit_glocal`.

    Per-epoch lists are indexed by epoch - 1; ``val_loss[0]`` is measured before training
    (epoch 0). Accuracies are odd-one-out (majority vote, ties wrong) and 2AFC agreement
    (soft votes), both with cosine similarity: "before" on the raw features (the base
    embedding), "after" on the fitted transform's output.
    """

    train_loss: list[float] = field(default_factory=list)
    train_global_loss: list[float] = field(default_factory=list)
    train_local_loss: list[float] = field(default_factory=list)
    regularizer: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    lr: float = 0.0
    stopped_early: bool = False
    train_accuracy_before: float | None = None
    train_accuracy_after: float | None = None
    val_accuracy_before: float | None = None
    val_accuracy_after: float | None = None
    train_2afc_before: float | None = None
    train_2afc_after: float | None = None
    val_2afc_before: float | None = None
    val_2afc_after: float | None = None
    n_train: int = 0
    n_val: int = 0
    n_local: int = 0
    device: str = "cpu"
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line per split: accuracy and 2AFC before -> after."""

        def pair(before: float | None, after: float | None) -> str:
            return "n/a" if before is None else f"{before:.4f} -> {after:.4f}"

        stop = " (early stop)" if self.stopped_early else ""
        return "\n".join(
            [
                f"best epoch {self.best_epoch} of {self.epochs_run}{stop}, lr {self.lr:g}, "
                f"{self.seconds:.1f}s on {self.device}",
                f"train: odd-one-out {pair(self.train_accuracy_before, self.train_accuracy_after)}, "
                f"2AFC {pair(self.train_2afc_before, self.train_2afc_after)}",
                f"val:   odd-one-out {pair(self.val_accuracy_before, self.val_accuracy_after)}, "
                f"2AFC {pair(self.val_2afc_before, self.val_2afc_after)}",
            ]
        )


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AlignmentError(f"device {name!r} requested but CUDA is not available")
    return device


def _standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    # The same float32 arithmetic GlocalTransform.transform does at inference.
    return (x - mean.to(torch.float32)) / std.to(torch.float32)


@dataclass
class _Triplets:
    """One split's triplets on the device: rows and the target distribution over the 3 pairs."""

    anchor: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    labels: torch.Tensor  # (N, 3) over the pairs (anchor, right), (anchor, left), (left, right)
    weight: torch.Tensor

    @classmethod
    def build(cls, data: TripletFeatures, soft_targets: str, device: torch.device) -> _Triplets:
        target = data.target
        weight = np.ones(len(data)) if data.weight is None else data.weight.copy()
        if soft_targets == "majority":
            # Hard label by majority, weighted by how clear the majority was (50/50 -> 0).
            weight = weight * np.abs(2 * target - 1)
            target = (target > 0.5).astype(np.float64)
        labels = np.stack([target, 1 - target, np.zeros_like(target)], axis=1)
        keep = weight > 0
        as_long = lambda values: torch.as_tensor(values[keep], dtype=torch.long, device=device)  # noqa: E731
        return cls(
            as_long(data.anchor),
            as_long(data.left),
            as_long(data.right),
            torch.as_tensor(labels[keep], dtype=torch.float32, device=device),
            torch.as_tensor(weight[keep], dtype=torch.float32, device=device),
        )

    def __len__(self) -> int:
        return len(self.anchor)

    def batch(self, index: torch.Tensor) -> _Triplets:
        return _Triplets(
            self.anchor[index], self.left[index], self.right[index], self.labels[index], self.weight[index]
        )


def _embed(features: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = features @ weights
    return out if bias is None else out + bias


def _global_loss(
    features: torch.Tensor, triplets: _Triplets, weights: torch.Tensor, bias: torch.Tensor | None, temperature: float
) -> torch.Tensor:
    """Weighted soft-label cross-entropy of the odd-one-out softmax over dot products."""
    n = len(triplets)
    if 3 * n < len(features):
        rows = torch.cat([triplets.anchor, triplets.left, triplets.right])
        za, zl, zr = _embed(features[rows], weights, bias).split(n)
    else:  # many triplets over few objects: embed every object once
        z = _embed(features, weights, bias)
        za, zl, zr = z[triplets.anchor], z[triplets.left], z[triplets.right]
    logits = torch.stack([(za * zr).sum(-1), (za * zl).sum(-1), (zl * zr).sum(-1)], dim=1) / temperature
    loss = -(triplets.labels * logits.log_softmax(dim=1)).sum(dim=1)
    return (triplets.weight * loss).sum() / triplets.weight.sum()


def _masked_log_softmax(similarities: torch.Tensor, tau: float) -> torch.Tensor:
    eye = torch.eye(len(similarities), dtype=torch.bool, device=similarities.device)
    return (similarities / tau).masked_fill(eye, float("-inf")).log_softmax(dim=1).masked_fill(eye, 0.0)


def _teacher(unit: torch.Tensor, tau: float) -> torch.Tensor:
    return (
        _masked_log_softmax(unit @ unit.T, tau)
        .exp()
        .masked_fill(torch.eye(len(unit), dtype=torch.bool, device=unit.device), 0.0)
    )


def _local_loss(
    student_in: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None, tau: float
) -> torch.Tensor:
    """Soft-label CE between the teacher's and the student's cosine softmax (diagonal out)."""
    student = F.normalize(_embed(student_in, weights, bias), dim=1)
    return -(teacher * _masked_log_softmax(student @ student.T, tau)).sum(dim=1).mean()


def _eye_regularizer(weights: torch.Tensor) -> torch.Tensor:
    """``||W - (tr W / p) I||_F^2``: distance to the nearest scaled identity."""
    p = weights.shape[0]
    scale = torch.trace(weights) / p
    return (weights - scale * torch.eye(p, dtype=weights.dtype, device=weights.device)).pow(2).sum()


@dataclass
class _Local:
    """Features for the local term: unit-length raw (teacher) and standardised (student input)."""

    unit: torch.Tensor
    student: torch.Tensor
    eval_teacher: torch.Tensor | None = None
    eval_rows: torch.Tensor | None = None
    full_teacher: torch.Tensor | None = None
    _order: torch.Tensor | None = None
    _cursor: int = 0

    def next_rows(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """The next ``size`` rows of a shuffled pass over the local features (no repeats in a batch)."""
        if self._order is None or self._cursor + size > len(self._order):
            self._order = torch.randperm(len(self.unit), generator=generator).to(self.unit.device)
            self._cursor = 0
        rows = self._order[self._cursor : self._cursor + size]
        self._cursor += size
        return rows


def _initial_params(
    p: int, mean: float, std: float, config: GlocalFitConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if config.init == "identity":
        gain = config.init_gain if config.init_gain is not None else 1.0 / math.sqrt(p)
        weights = gain * torch.eye(p, device=device)
        # Adding back g*mean/std undoes the scalar centring: the start is x -> g x / std.
        bias = torch.full((p,), gain * mean / std, device=device)
    else:
        weights = config.sigma_init * torch.eye(p, device=device)
        bias = torch.full((p,), config.sigma_init, device=device)
    weights.requires_grad_(True)
    if not config.use_bias:
        return weights, None
    return weights, bias.requires_grad_(True)


def _to_device_features(features: ArrayLike, device: torch.device, name: str) -> torch.Tensor:
    tensor = features.detach() if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    if not tensor.is_floating_point():
        tensor = tensor.float()
    tensor = tensor.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise AlignmentError(f"{name} contain NaN or infinite values")
    return tensor


def _split_scores(raw: torch.Tensor, aligned: torch.Tensor, data: TripletFeatures) -> tuple[float, float, float, float]:
    """(odd-one-out before, after, 2AFC before, after) with cosine similarity."""
    hard = data.hard_odd_one_out()
    rows = [torch.as_tensor(values, device=raw.device) for values in (data.anchor, data.left, data.right)]
    scores = []
    for matrix in (raw, aligned):
        accuracy = odd_one_out_accuracy(matrix, hard) if len(hard) else float("nan")
        two_afc = two_afc_from_embeddings(
            matrix[rows[0]], matrix[rows[1]], matrix[rows[2]], torch.as_tensor(data.target, device=raw.device)
        )
        scores.append((accuracy, two_afc))
    return scores[0][0], scores[1][0], scores[0][1], scores[1][1]


class _Objective:
    """The gLocal loss pieces over fixed device tensors, for training and validation."""

    def __init__(self, config: GlocalFitConfig, features: torch.Tensor, local: _Local | None):
        self.config = config
        self.features = features
        self.local = local

    def local_term(self, weights: torch.Tensor, bias: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        local, size = self.local, self.config.local_batch_size
        assert local is not None
        if local.full_teacher is not None:
            return _local_loss(local.student, local.full_teacher, weights, bias, self.config.tau)
        rows = local.next_rows(size, generator)
        teacher = _teacher(local.unit[rows], self.config.tau)
        return _local_loss(local.student[rows], teacher, weights, bias, self.config.tau)

    def step_loss(
        self, batch: _Triplets, weights: torch.Tensor, bias: torch.Tensor | None, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to minimise and the detached ``[total, global, local, regulariser]``."""
        alpha = self.config.alpha
        global_loss = _global_loss(self.features, batch, weights, bias, self.config.temperature)
        local_loss = self.local_term(weights, bias, generator) if alpha > 0 else torch.zeros((), device=weights.device)
        reg = _eye_regularizer(weights)
        total = (1 - alpha) * global_loss + alpha * local_loss + self.config.lam * reg
        # Kept on the device: one host sync per epoch instead of four per step.
        return total, torch.stack([total, global_loss, local_loss, reg]).detach()

    @torch.no_grad()
    def validation_loss(
        self, features: torch.Tensor, triplets: _Triplets, weights: torch.Tensor, bias: torch.Tensor | None
    ) -> float:
        """``(1 - alpha) L_global(val) + alpha L_local(fixed local batch)``, no regulariser."""
        chunk = max(1, (1 << 22) // max(1, features.shape[1]))
        total, weight_sum = 0.0, float(triplets.weight.sum())
        for start in range(0, len(triplets), chunk):
            part = triplets.batch(torch.arange(start, min(start + chunk, len(triplets)), device=features.device))
            total += float(_global_loss(features, part, weights, bias, self.config.temperature)) * float(
                part.weight.sum()
            )
        loss = (1 - self.config.alpha) * total / weight_sum
        if self.config.alpha > 0 and self.local is not None:
            local = self.local
            assert local.eval_rows is not None and local.eval_teacher is not None
            loss += self.config.alpha * float(
                _local_loss(local.student[local.eval_rows], local.eval_teacher, weights, bias, self.config.tau)
            )
        return loss


def _prepare_local(
    local_features: ArrayLike | None,
    train_rows: torch.Tensor,
    raw: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    config: GlocalFitConfig,
    device: torch.device,
    generator: torch.Generator,
) -> _Local | None:
    if config.alpha == 0:
        return None
    local_raw = (
        raw[train_rows] if local_features is None else _to_device_features(local_features, device, "local_features")
    )
    if local_raw.ndim != 2 or local_raw.shape[1] != raw.shape[1]:
        raise GlocalDimensionError(f"local_features must be (m, {raw.shape[1]}), got shape {tuple(local_raw.shape)}")
    if len(local_raw) < 3:
        raise AlignmentError(f"the local term needs at least 3 local features, got {len(local_raw)}")
    unit = F.normalize(local_raw, dim=1)
    # gLocal fed raw ImageNet features to the student; we standardise them like every
    # input at inference so that training and use see the same map.
    student = _standardize(local_raw, mean, std) if config.standardize_local else local_raw
    local = _Local(unit=unit, student=student)
    size = config.local_batch_size
    if size is None or size >= len(unit):
        local.full_teacher = _teacher(unit, config.tau)
        local.eval_rows = torch.arange(len(unit), device=device)
        local.eval_teacher = local.full_teacher
    else:
        local.eval_rows = torch.randperm(len(unit), generator=generator)[:size].to(device)
        local.eval_teacher = _teacher(unit[local.eval_rows], config.tau)
    return local


def fit_glocal(
    train: TripletFeatures | tuple[Any, ...],
    *,
    local_features: ArrayLike | None = None,
    config: GlocalFitConfig | None = None,
    val: TripletFeatures | tuple[Any, ...] | None = None,
    backbone: str | None = None,
    pooling: str | None = None,
    progress: bool = True,
) -> tuple[GlocalTransform, FitReport]:
    """Fit a gLocal transform on human triplets.

    Minimises ``(1 - alpha) L_global + alpha L_local + lam ||W - (tr W / p) I||_F^2``:

    - ``L_global``: cross-entropy of the odd-one-out softmax over dot products of the
      transformed standardised features (temperature ``config.temperature``, 1 in gLocal).
      A 2AFC triplet ``(anchor, left, right)`` with vote share ``t`` for RIGHT has the
      target distribution ``t`` on pair (anchor, right), ``1 - t`` on (anchor, left) and 0
      on (left, right); for THINGS (``t = 1``) that is gLocal's loss. With
      ``soft_targets="majority"`` the majority gets the label and ``|2t - 1|`` the weight.
    - ``L_local``: soft-label cross-entropy between the cosine softmax (temperature
      ``tau``, diagonal removed) of the raw ``local_features`` and of their transforms;
      it keeps the local structure of the base space. Default local features: the
      training images themselves.

    ``train`` / ``val`` are :class:`TripletFeatures`, ``(features, TripletSet[, refs])`` or
    ``(features, (N, 3) odd-one-out array)``. Features are standardised by the scalar
    mean/std of the training triplets' images (stored in the transform). With ``val``,
    training stops early on the validation loss (patience, ``min_epochs``) and the BEST
    epoch's weights are kept (gLocal's own code kept the last); epoch 0 (the start) counts,
    so with ``init="identity"`` the result is never worse on val than the base ranking.
    Without ``val`` all ``epochs`` run and the last weights are kept.

    Example::

        transform, report = fit_glocal((features, train_triplets), val=(features, val_triplets),
                                       config=GlocalFitConfig(epochs=50), backbone="clip-vit-b-32", pooling="cls")
        print(report.summary()); transform.save("glocal.safetensors")
    """
    config = config or GlocalFitConfig()
    started = time.perf_counter()
    train_data = TripletFeatures.coerce(train)
    val_data = None if val is None else TripletFeatures.coerce(val)
    device = _resolve_device(config.device)
    generator = torch.Generator().manual_seed(config.seed)  # our own: the global RNG is left alone
    data = _FitData.build(train_data, val_data, local_features, config, device, generator)
    weights, bias = _initial_params(data.dim, float(data.mean), float(data.std), config, device)
    lr = config.learning_rate(data.dim)
    report = FitReport(
        lr=lr,
        n_train=len(data.triplets),
        n_val=0 if data.val_triplets is None else len(data.val_triplets),
        n_local=0 if data.objective.local is None else len(data.objective.local.unit),
        device=str(device),
    )
    best_weights, best_bias = _train(data, weights, bias, lr, config, report, generator, progress)
    metadata = _fit_metadata(config, report, backbone, pooling)
    bias_out = None if best_bias is None else best_bias.cpu()
    transform = GlocalTransform(best_weights.cpu(), bias_out, data.mean.numpy(), data.std.numpy(), metadata)
    _score(report, transform, data, train_data, val_data)
    report.seconds = time.perf_counter() - started
    return transform, report


@dataclass
class _FitData:
    """Everything a fit reads, on the device: standardised features, triplets, local term."""

    raw: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    triplets: _Triplets
    objective: _Objective
    val_raw: torch.Tensor | None
    val_features: torch.Tensor | None
    val_triplets: _Triplets | None

    @property
    def dim(self) -> int:
        return int(self.raw.shape[1])

    @classmethod
    def build(
        cls,
        train: TripletFeatures,
        val: TripletFeatures | None,
        local_features: ArrayLike | None,
        config: GlocalFitConfig,
        device: torch.device,
        generator: torch.Generator,
    ) -> _FitData:
        if len(train) == 0:
            raise AlignmentError("no training triplets")
        if val is not None and val.dim != train.dim:
            raise GlocalDimensionError(f"val features are {val.dim}-d, train features {train.dim}-d")
        raw = _to_device_features(train.features, device, "train features")
        rows = np.unique(np.concatenate([train.anchor, train.left, train.right]))
        train_rows = torch.as_tensor(rows, device=device)
        used = raw[train_rows].double()
        mean, std = used.mean().cpu(), used.std(correction=0).cpu()  # numpy's X.mean(), X.std() (ddof=0)
        if not float(std) > 0:
            raise AlignmentError("the training features are constant (std 0); cannot standardise")
        triplets = _Triplets.build(train, config.soft_targets, device)
        if len(triplets) == 0:
            raise AlignmentError("every training triplet has weight 0 (50/50 votes with soft_targets='majority'?)")
        local = _prepare_local(local_features, train_rows, raw, mean, std, config, device, generator)
        objective = _Objective(config, _standardize(raw, mean, std), local)
        val_raw = val_features = val_triplets = None
        if val is not None:
            val_raw = _to_device_features(val.features, device, "val features")
            val_features = _standardize(val_raw, mean, std)
            val_triplets = _Triplets.build(val, config.soft_targets, device)
            val_triplets = val_triplets if len(val_triplets) else None
        return cls(raw, mean, std, triplets, objective, val_raw, val_features, val_triplets)

    def validation_loss(self, weights: torch.Tensor, bias: torch.Tensor | None) -> float | None:
        if self.val_triplets is None:
            return None
        assert self.val_features is not None
        return self.objective.validation_loss(self.val_features, self.val_triplets, weights, bias)


def _make_optimizer(params: list[torch.Tensor], lr: float, config: GlocalFitConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum)


def _train_epoch(
    data: _FitData,
    weights: torch.Tensor,
    bias: torch.Tensor | None,
    optimizer: torch.optim.Optimizer,
    config: GlocalFitConfig,
    generator: torch.Generator,
) -> np.ndarray:
    """One shuffled pass over the triplets; the mean ``[total, global, local, regulariser]``."""
    params = [weights] if bias is None else [weights, bias]
    count = len(data.triplets)
    batch_size = config.triplet_batch_size or count
    order = torch.randperm(count, generator=generator).to(data.raw.device)
    sums = torch.zeros(4, device=data.raw.device)
    for start in range(0, count, batch_size):
        index = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        total, parts = data.objective.step_loss(data.triplets.batch(index), weights, bias, generator)
        total.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        sums += len(index) * parts
    return (sums / count).cpu().numpy()


def _train(
    data: _FitData,
    weights: torch.Tensor,
    bias: torch.Tensor | None,
    lr: float,
    config: GlocalFitConfig,
    report: FitReport,
    generator: torch.Generator,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the epochs with early stopping; return the best (with val) or last weights."""
    optimizer = _make_optimizer([weights] if bias is None else [weights, bias], lr, config)

    def snapshot() -> tuple[torch.Tensor, torch.Tensor | None]:
        return weights.detach().clone(), None if bias is None else bias.detach().clone()

    best = snapshot()
    best_loss = data.validation_loss(weights, bias)
    if best_loss is not None:
        report.val_loss.append(best_loss)
    bar = _progress(config.epochs, progress)
    try:
        for epoch in range(1, config.epochs + 1):
            means = _train_epoch(data, weights, bias, optimizer, config, generator)
            if not np.isfinite(means).all():
                raise AlignmentError(f"the loss diverged at epoch {epoch} (lower lr or enable grad_clip)")
            for values, value in zip(
                (report.train_loss, report.train_global_loss, report.train_local_loss, report.regularizer),
                means.tolist(),
                strict=True,
            ):
                values.append(value)
            report.epochs_run = epoch
            bar.update(1)
            val_loss = data.validation_loss(weights, bias)
            bar.set_postfix(loss=f"{means[0]:.4f}", val="-" if val_loss is None else f"{val_loss:.4f}")
            if val_loss is None or best_loss is None:
                best, report.best_epoch = snapshot(), epoch
                continue
            report.val_loss.append(val_loss)
            if val_loss < best_loss - config.min_delta:
                best_loss, best, report.best_epoch = val_loss, snapshot(), epoch
            elif epoch >= config.min_epochs and epoch - report.best_epoch >= config.patience:
                report.stopped_early = True
                break
    finally:
        bar.close()
    return best


def _fit_metadata(config: GlocalFitConfig, report: FitReport, backbone: str | None, pooling: str | None) -> dict:
    metadata: dict[str, Any] = {
        "method": "glocal",
        "source": "fit_glocal",
        "created": _now(),
        "hyperparameters": config.model_dump(),
        "fit": {
            "best_epoch": report.best_epoch,
            "epochs_run": report.epochs_run,
            "lr": report.lr,
            "n_train": report.n_train,
            "n_val": report.n_val,
        },
    }
    metadata.update({key: value for key, value in (("backbone", backbone), ("pooling", pooling)) if value is not None})
    return metadata


@torch.no_grad()
def _score(
    report: FitReport, transform: GlocalTransform, data: _FitData, train: TripletFeatures, val: TripletFeatures | None
) -> None:
    """Fill the before/after accuracies of the report."""
    scores = _split_scores(data.raw, transform.transform(data.raw), train)
    report.train_accuracy_before, report.train_accuracy_after, report.train_2afc_before, report.train_2afc_after = (
        scores
    )
    if val is not None and len(val) and data.val_raw is not None:
        scores = _split_scores(data.val_raw, transform.transform(data.val_raw), val)
        report.val_accuracy_before, report.val_accuracy_after, report.val_2afc_before, report.val_2afc_after = scores


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="gLocal", unit="epoch", disable=not enabled, leave=False)
