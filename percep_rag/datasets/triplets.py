"""Human triplet judgments in one import: :class:`TripletSet`, :func:`read_triplets`, the errors.

The data set lives in :mod:`~percep_rag.datasets.triplet_set`, the file formats (NIGHTS,
THINGS, plain tables) in :mod:`~percep_rag.datasets.triplet_formats`; this module picks
the reader a file needs.

>>> triplets = TripletSet.from_ranked(["a"], ["b"], ["c"])
>>> triplets.left.tolist(), triplets.right.tolist()
(['c'], ['b'])
"""

from __future__ import annotations

from pathlib import Path

from percep_rag.datasets.bapps import is_bapps_folder, read_bapps_2afc
from percep_rag.datasets.triplet_formats import (
    NIGHTS_COLUMNS,
    TABLE_COLUMNS,
    is_nights_csv,
    read_nights_csv,
    read_things_triplets,
    read_triplet_table,
)
from percep_rag.datasets.triplet_set import OnError, Problem, TripletError, TripletFileError, TripletSet

__all__ = [
    "NIGHTS_COLUMNS",
    "TABLE_COLUMNS",
    "OnError",
    "Problem",
    "TripletError",
    "TripletFileError",
    "TripletSet",
    "read_bapps_2afc",
    "read_nights_csv",
    "read_things_triplets",
    "read_triplet_table",
    "read_triplets",
]


def read_triplets(
    path: str | Path, *, root: str | Path | None = None, min_votes: int = 6, image_list: str | Path | None = None
) -> TripletSet:
    """Read a triplet file by its kind: NIGHTS ``data.csv`` (recognised by its columns),
    a ranked table (``.jsonl``/``.csv``/``.tsv`` with anchor/positive/negative), THINGS
    ``.npy`` (with ``image_list``), or a BAPPS 2AFC folder (``ref/ p0/ p1/ judge/``, see
    :func:`~percep_rag.datasets.bapps.read_bapps_2afc`). Image references are resolved
    against ``root`` (default: the file's folder) and must exist.

    >>> read_triplets("missing.csv")
    Traceback (most recent call last):
    ...
    percep_rag.datasets.triplet_set.TripletError: triplet file missing.csv does not exist
    """
    path = Path(path)
    if is_bapps_folder(path):
        return read_bapps_2afc(path)
    if not path.is_file():
        raise TripletError(f"triplet file {path} does not exist")
    if path.suffix.lower() == ".npy":
        return read_things_triplets(path, image_list)
    if is_nights_csv(path):
        return read_nights_csv(path, root=root, min_votes=min_votes)
    return read_triplet_table(path, root=root if root is not None else path.parent, check_files=True)
