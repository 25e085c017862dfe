"""Writing and reading embedded vectors with their ids: ``.npy`` (+ sidecars) or ``.parquet``.

``.npy``: the aligned vectors in ``out.npy``, the base vectors in ``out.base.npy``, the ids
one per line in ``out.ids.txt`` and ``out.meta.json`` (fingerprint, failures, and the uris,
``labels`` and ``splits`` in row order, ``null`` where an image has none).
``.parquet``: one table with columns ``id``, ``uri``, ``label``, ``split``, ``base``,
``aligned`` and the same metadata in the schema.

>>> import numpy as np, tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "v.npy"
>>> vectors = np.eye(2, dtype=np.float32)
>>> write_vectors(out, ids=["a", "b"], uris=["a.png", "b.png"], base=vectors, aligned=vectors, meta={},
...               labels=["cat", None])
>>> read_vectors(out).labels
['cat', None]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from percep_rag.errors import ConfigError
from percep_rag.io.files import atomic_write, atomic_write_text

SUFFIXES = (".npy", ".parquet")


@dataclass
class VectorFile:
    ids: list[str]
    uris: list[str]
    base: np.ndarray
    aligned: np.ndarray
    meta: dict[str, Any]
    #: Per row, the image's label and split (``None`` where it has none).
    labels: list[str | None] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)


def sidecar(out: Path, name: str) -> Path:
    """``vectors.npy`` -> ``vectors.<name>``."""
    return out.with_name(f"{out.stem}.{name}")


def check_output_path(out: str | Path) -> Path:
    """Validate the output path before any work is done."""
    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise ConfigError(f"output must end in .npy or .parquet, got {out.name!r}")
    if not out.parent.exists():
        raise ConfigError(f"output folder {out.parent} does not exist")
    return out


def write_vectors(
    out: str | Path,
    *,
    ids: list[str],
    uris: list[str],
    base: np.ndarray,
    aligned: np.ndarray,
    meta: dict[str, Any],
    labels: list[str | None] | None = None,
    splits: list[str | None] | None = None,
) -> None:
    """Write vectors, ids, labels and splits atomically (see the module docstring for the layouts)."""
    out = check_output_path(out)
    labels = list(labels) if labels is not None else [None] * len(ids)
    splits = list(splits) if splits is not None else [None] * len(ids)
    if not (len(ids) == len(uris) == len(base) == len(aligned) == len(labels) == len(splits)):
        raise ConfigError("ids, uris, labels, splits and vectors must have the same length")
    if out.suffix == ".parquet":
        _write_parquet(out, {"id": ids, "uri": uris, "label": labels, "split": splits}, base, aligned, meta)
        return
    atomic_write(out, lambda tmp: _save_npy(tmp, aligned))
    atomic_write(sidecar(out, "base.npy"), lambda tmp: _save_npy(tmp, base))
    atomic_write_text(sidecar(out, "ids.txt"), "".join(f"{i}\n" for i in ids))
    rows = {"uris": uris, "labels": labels, "splits": splits}
    atomic_write_text(sidecar(out, "meta.json"), json.dumps({**meta, **rows}, indent=1))


def _save_npy(path: Path, matrix: np.ndarray) -> None:
    with path.open("wb") as handle:  # np.save on a path would append ".npy" to the temporary name
        np.save(handle, matrix.astype(np.float32))


def _write_parquet(
    out: Path, columns: dict[str, list], base: np.ndarray, aligned: np.ndarray, meta: dict[str, Any]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def fixed_list(matrix: np.ndarray) -> pa.Array:
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        return pa.FixedSizeListArray.from_arrays(
            pa.array(matrix.reshape(-1)), matrix.shape[1] if matrix.ndim == 2 else 0
        )

    text = {name: pa.array(values, pa.string()) for name, values in columns.items()}
    table = pa.table({**text, "base": fixed_list(base), "aligned": fixed_list(aligned)})
    table = table.replace_schema_metadata({"percep_rag": json.dumps(meta)})
    atomic_write(out, lambda tmp: pq.write_table(table, tmp))


def read_vectors(path: str | Path) -> VectorFile:
    """Read what :func:`write_vectors` wrote."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(b"percep_rag", b"{}"))

        def matrix(column: str) -> np.ndarray:
            return (
                np.stack(table.column(column).to_numpy(zero_copy_only=False)).astype(np.float32)
                if len(table)
                else np.zeros((0, 0), np.float32)
            )

        def optional(column: str) -> list[str | None]:  # files written before labels had no such column
            return table.column(column).to_pylist() if column in table.column_names else [None] * len(table)

        return VectorFile(
            table.column("id").to_pylist(),
            table.column("uri").to_pylist(),
            matrix("base"),
            matrix("aligned"),
            meta,
            optional("label"),
            optional("split"),
        )
    meta = json.loads(sidecar(path, "meta.json").read_text(encoding="utf-8"))
    ids = sidecar(path, "ids.txt").read_text(encoding="utf-8").splitlines()
    labels, splits = meta.pop("labels", [None] * len(ids)), meta.pop("splits", [None] * len(ids))
    base = np.load(sidecar(path, "base.npy"))
    return VectorFile(ids, meta.pop("uris", []), base, np.load(path), meta, labels, splits)
