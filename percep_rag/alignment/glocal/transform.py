"""The gLocal transform: an affine map of pooled features towards human similarity judgments.

The map is thingsvision's ``align()`` exactly (Muttenthaler et al., NeurIPS 2023)::

    y = ((x - mean) / std) @ weights (+ bias)     # mean, std: scalars; row vectors

It loads the published ``transform.npz`` files, our own ``.safetensors`` files (with a
metadata block) and plain dicts of arrays, and warns about published files known to be
wrong; :func:`~percep_rag.alignment.glocal.fit.fit_glocal` fits a new one on triplets::

    >>> import torch
    >>> transform = GlocalTransform(torch.eye(3), mean=1.0, std=2.0)
    >>> transform.transform(torch.tensor([[3.0, 1.0, 5.0]]))
    tensor([[1., 0., 2.]])
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import torch
from torch import nn

from percep_rag.config import Pooling
from percep_rag.errors import AlignmentError, DimensionMismatchError
from percep_rag.io.files import atomic_write
from percep_rag.pooling import pooled_dim as pooled_size

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


def to_numpy(value: Any) -> np.ndarray:
    """``value`` (a tensor on any device, an array, a number) as a NumPy array."""
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
            value = to_numpy(arrays[key])
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
            pooling = next((name for name in get_args(Pooling) if pooled_size(token_dim, name) == pooled_dim), None)
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

        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "transform.npz"
        >>> np.savez(path, weights=np.eye(2, dtype=np.float32), mean=np.float32(0), std=np.float32(1))
        >>> GlocalTransform.load(path, backbone="clip-vit-b-32", pooling="cls").metadata["backbone"]
        'clip-vit-b-32'
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

        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "glocal.safetensors"
        >>> saved = GlocalTransform(np.eye(2, dtype=np.float32)).save(path)
        >>> GlocalTransform.load(saved).digest == GlocalTransform(np.eye(2, dtype=np.float32)).digest
        True
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
        metadata.setdefault("created", utc_timestamp())
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
        return atomic_write(path, lambda temporary: save_file(tensors, str(temporary), metadata=encoded))


def utc_timestamp() -> str:
    """Now, in UTC, as ISO 8601 to the second: the ``created`` field of saved transforms."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
