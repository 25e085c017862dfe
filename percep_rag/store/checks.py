"""Argument checks of the store interface, so every back end rejects the same inputs the same way.

:class:`~percep_rag.store.base.VectorStore` calls these before handing anything to a
back end; each raises a precise :mod:`~percep_rag.store.errors` (or project-wide) error
that names the collection, vector or point at fault.

>>> check_name("imgs")
>>> check_name("bad name")
Traceback (most recent call last):
...
percep_rag.errors.ConfigError: collection name 'bad name' must be 1-128 characters of ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, get_args

import numpy as np
from pydantic import ValidationError

from percep_rag._version import __version__
from percep_rag.config import Fingerprint
from percep_rag.errors import ConfigError, DimensionMismatchError, FingerprintMismatchError
from percep_rag.store.errors import InvalidPointError, InvalidVectorError, UnknownVectorNameError
from percep_rag.store.filters import META_KEY
from percep_rag.store.ids import META_POINT_ID, normalize_id
from percep_rag.store.schema import CollectionInfo, CollectionOptions, PayloadType, default_vectors

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_name(name: str) -> None:
    """A collection name is 1-128 letters, digits, ``_``, ``-`` or ``.``, starting with a letter or digit.

    >>> check_name("vtab.pets-1")
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"collection name {name!r} must be 1-128 characters of letters, digits, '_', '-', '.' "
            "starting with a letter or digit"
        )


def check_index_field(field_name: str, kind: str) -> None:
    """A payload index needs a real field (not the reserved one) and a known ``kind``.

    >>> check_index_field("label", "keyword")
    >>> check_index_field("label", "text")
    Traceback (most recent call last):
    ...
    percep_rag.errors.ConfigError: payload index type must be one of keyword, integer, float, bool; got 'text'
    """
    kinds = get_args(PayloadType)
    if kind not in kinds:
        raise ConfigError(f"payload index type must be one of {', '.join(kinds)}; got {kind!r}")
    if field_name == META_KEY or not field_name:
        raise ConfigError(f"cannot index payload field {field_name!r}")


def new_collection_info(
    name: str,
    fingerprint: Fingerprint,
    vectors: Mapping[str, int] | None,
    payload_indexes: Mapping[str, PayloadType] | None,
    options: CollectionOptions | None,
) -> CollectionInfo:
    """The metadata a new collection ``name`` records; vector sizes must agree with ``fingerprint``.

    >>> fp = Fingerprint(backbone="tiny", weights_digest="0", random_weights=True, pooling="cls",
    ...     normalization="l2", alignment="identity", alignment_digest="-", base_dim=4, dim=2)
    >>> new_collection_info("imgs", fp, None, {"label": "keyword"}, None).vectors
    {'base': 4, 'aligned': 2}
    """
    expected = default_vectors(fingerprint)
    vecs = dict(vectors) if vectors is not None else expected
    for vec_name, size in expected.items():
        if vec_name in vecs and vecs[vec_name] != size:
            raise DimensionMismatchError(
                f"vector {vec_name!r} of size {vecs[vec_name]} disagrees with the fingerprint "
                f"({'base_dim' if vec_name == 'base' else 'dim'}={size})"
            )
    for field_name, kind in (payload_indexes or {}).items():
        check_index_field(field_name, kind)
    try:
        return CollectionInfo(
            name=name,
            fingerprint=fingerprint,
            vectors=vecs,
            payload_indexes=dict(payload_indexes or {}),
            options=options or CollectionOptions(),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            library_version=__version__,
        )
    except ValidationError as exc:
        raise ConfigError(f"collection {name!r}: {exc}") from exc


def check_same_embedder(collection: str, stored: Fingerprint, requested: Fingerprint) -> None:
    """Refuse to use ``collection`` (written with ``stored``) with vectors from another embedder.

    The :class:`~percep_rag.errors.FingerprintMismatchError` lists every differing field.

    >>> fp = Fingerprint(backbone="tiny", weights_digest="0", random_weights=True, pooling="cls",
    ...     normalization="l2", alignment="identity", alignment_digest="-", base_dim=4, dim=4)
    >>> check_same_embedder("imgs", fp, fp)
    >>> check_same_embedder("imgs", fp, fp.model_copy(update={"dim": 8}))
    Traceback (most recent call last):
    ...
    percep_rag.errors.FingerprintMismatchError: collection 'imgs' was written by another embedder; ...: dim: 4 != 8
    """
    diffs = stored.differences(requested)
    if diffs:
        raise FingerprintMismatchError(
            f"collection {collection!r} was written by another embedder; stored vs requested: {'; '.join(diffs)}"
        )


def check_vector_names(collection: str, expected: Iterable[str], given: Iterable[str], where: str = "") -> None:
    """``given`` names exactly the collection's vectors; ``where`` prefixes the message (a point).

    >>> check_vector_names("imgs", ["base", "aligned"], ["aligned"], "point p1: ")
    Traceback (most recent call last):
    ...
    percep_rag.store.errors.InvalidPointError: point p1: collection 'imgs': missing vector(s) ['base']
    """
    expected, given = set(expected), set(given)
    unknown = sorted(given - expected)
    if unknown:
        raise UnknownVectorNameError(
            f"{where}collection {collection!r} has no vector(s) {unknown}; it has {sorted(expected)}"
        )
    missing = sorted(expected - given)
    if missing:
        raise InvalidPointError(f"{where}collection {collection!r}: missing vector(s) {missing}")


def point_vectors(collection: str, info: CollectionInfo, points: Iterable[Any]) -> dict[str, np.ndarray]:
    """The ``(n, d)`` array per vector name of ``points`` (anything with ``.id`` and ``.vectors``).

    >>> from types import SimpleNamespace as P
    >>> info = CollectionInfo(fingerprint=Fingerprint(backbone="t", weights_digest="0", random_weights=True,
    ...     pooling="cls", normalization="l2", alignment="identity", alignment_digest="-", base_dim=2, dim=2),
    ...     vectors={"aligned": 2})
    >>> point_vectors("imgs", info, [P(id="p1", vectors={"aligned": [1, 0]})])["aligned"].shape
    (1, 2)
    """
    pts = list(points)
    for p in pts:
        check_vector_names(collection, info.vectors, p.vectors, f"point {p.id}: ")
    arrays: dict[str, np.ndarray] = {}
    for vec, dim in info.vectors.items():
        rows = [np.asarray(p.vectors[vec], dtype=np.float32) for p in pts]
        for p, row in zip(pts, rows, strict=True):
            if row.shape != (dim,):
                raise DimensionMismatchError(
                    f"point {p.id}: collection {collection!r} vector {vec!r} has dimension {dim}, got shape {row.shape}"
                )
        arrays[vec] = np.stack(rows)
    return arrays


def check_matrix(collection: str, vec: str, value: Any, dim: int, n: int) -> np.ndarray:
    """``value`` as a finite float32 ``(n, dim)`` array with no zero row (cosine needs a norm).

    >>> check_matrix("imgs", "aligned", [[3.0, 4.0]], dim=2, n=1).dtype
    dtype('float32')
    >>> check_matrix("imgs", "aligned", [[0.0, 0.0]], dim=2, n=1)
    Traceback (most recent call last):
    ...
    percep_rag.store.errors.InvalidVectorError: vector 'aligned' has a zero vector; cosine is undefined for it
    """
    arr = np.ascontiguousarray(value, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise DimensionMismatchError(f"vector {vec!r}: expected an array of shape ({n}, {dim}), got {arr.shape}")
    if arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"collection {collection!r} vector {vec!r} has dimension {dim}, got {arr.shape[1]}"
        )
    if n and not np.isfinite(arr).all():
        raise InvalidVectorError(f"vector {vec!r} contains NaN or infinity")
    if n and not (np.einsum("ij,ij->i", arr, arr) > 0).all():
        raise InvalidVectorError(f"vector {vec!r} has a zero vector; cosine is undefined for it")
    return arr


def check_queries(collection: str, info: CollectionInfo, using: str, k: Any, vectors: Any) -> np.ndarray:
    """Query rows for named vector ``using`` as a finite float32 ``(n, d)`` array; ``k`` must be >= 1.

    >>> info = CollectionInfo(fingerprint=Fingerprint(backbone="t", weights_digest="0", random_weights=True,
    ...     pooling="cls", normalization="l2", alignment="identity", alignment_digest="-", base_dim=2, dim=2),
    ...     vectors={"aligned": 2})
    >>> check_queries("imgs", info, "aligned", 3, [[1.0, 0.0]]).shape
    (1, 2)
    """
    if using not in info.vectors:
        raise UnknownVectorNameError(
            f"collection {collection!r} has no vector {using!r}; it has {sorted(info.vectors)}"
        )
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    q = np.asarray(vectors, dtype=np.float32)
    if q.ndim != 2:
        raise DimensionMismatchError(f"query vectors must be an (n, d) array, got shape {q.shape}")
    dim = info.vectors[using]
    if q.shape[1] != dim:
        raise DimensionMismatchError(
            f"collection {collection!r} vector {using!r} has dimension {dim}, the query has {q.shape[1]}"
        )
    if not np.isfinite(q).all():
        raise InvalidVectorError("query vectors contain NaN or infinity")
    return q


def canonical_id(value: object) -> str:
    """A point id in canonical UUID form; :class:`InvalidPointError` if it is not a UUID.

    >>> canonical_id("A1D23F32-1B22-4CF3-B607-9968E1E128F3")
    'a1d23f32-1b22-4cf3-b607-9968e1e128f3'
    """
    try:
        return normalize_id(value)
    except ValueError as exc:
        raise InvalidPointError(str(exc)) from None


def check_point_id(value: object) -> str:
    """:func:`canonical_id` of a point to write, which must not be the reserved metadata point.

    >>> check_point_id(META_POINT_ID)
    Traceback (most recent call last):
    ...
    percep_rag.store.errors.InvalidPointError: point id ... is reserved for percep-rag metadata
    """
    pid = canonical_id(value)
    if pid == META_POINT_ID:
        raise InvalidPointError(f"point id {pid} is reserved for percep-rag metadata")
    return pid


def check_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """A payload as plain JSON (see :func:`json_value`), without the reserved metadata key.

    >>> check_payload({"label": "cat", "n": np.int64(3)})
    {'label': 'cat', 'n': 3}
    """
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise InvalidPointError(f"a payload is a dict, got {type(payload).__name__}")
    if META_KEY in payload:
        raise InvalidPointError(f"payload key {META_KEY!r} is reserved for percep-rag metadata")
    return json_value(payload, "payload")  # type: ignore[no-any-return]


def json_value(value: Any, path: str) -> Any:
    """``value`` as plain JSON types; numpy scalars and arrays are converted.

    Back ends disagree on anything else (Edge rejects sets, qdrant-client rejects numpy
    ints), so payloads are made portable here rather than failing differently there.

    >>> json_value({"v": np.arange(2)}, "payload")
    {'v': [0, 1]}
    >>> json_value({"tags": {"a"}}, "payload")
    Traceback (most recent call last):
    ...
    percep_rag.store.errors.InvalidPointError: payload.tags: set is not JSON (use str, int, float, bool, list, dict)
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidPointError(f"{path}: keys must be strings, got {key!r}")
            out[key] = json_value(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise InvalidPointError(f"{path}: {type(value).__name__} is not JSON (use str, int, float, bool, list, dict)")
