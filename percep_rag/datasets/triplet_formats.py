"""Triplet file formats: NIGHTS ``data.csv``, THINGS ``.npy`` and plain ranked tables.

Every reader returns a :class:`~percep_rag.datasets.triplet_set.TripletSet`. Readers
collect every bad row with its 1-based line number (the header is line 1 of a CSV) and
raise one :class:`~percep_rag.datasets.triplet_set.TripletFileError` listing them, or,
with ``on_error="skip"``, drop those rows and keep the list in ``TripletSet.problems``.
CSV/TSV and JSON Lines are read by :mod:`percep_rag.io.tables` (``utf-8-sig``).

>>> read_things_triplets(np.array([[0, 1, 2]])).right.tolist()
[1]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np

from percep_rag.datasets.triplet_set import OnError, Problem, TripletError, TripletFileError, TripletSet
from percep_rag.io.tables import ENCODING, JSONL_SUFFIXES, TableFormatError, csv_records, csv_rows, jsonl_rows

NIGHTS_COLUMNS = (
    "id",
    "left_vote",
    "right_vote",
    "votes",
    "ref_path",
    "left_path",
    "right_path",
    "split",
    "is_imagenet",
)
#: The columns that tell a NIGHTS ``data.csv`` apart from a ranked table.
NIGHTS_SIGNATURE = frozenset({"left_vote", "right_vote", "votes", "ref_path", "left_path", "right_path"})
TABLE_COLUMNS = ("anchor", "positive", "negative")
_TRUE = {"1", "true", "t", "yes", "y", "1.0"}
_FALSE = {"0", "false", "f", "no", "n", "0.0"}


# --------------------------------------------------------------------------- shared parsing


def _finish(
    path: str | Path, rows: dict[str, list], problems: list[Problem], on_error: OnError, **labels: Any
) -> TripletSet:
    if on_error not in get_args(OnError):
        raise TripletError(f"on_error must be one of {', '.join(get_args(OnError))}, got {on_error!r}")
    if problems and on_error == "raise":
        raise TripletFileError(path, problems)
    return TripletSet(
        rows["anchor"],
        rows["left"],
        rows["right"],
        rows["target"],
        lines=rows["line"],
        source=str(path),
        problems=sorted(problems, key=lambda problem: problem[0]),
        **labels,
    )


def _table_rows(path: Path, rows: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """``rows`` with an unparsable file reported as a :class:`TripletFileError`."""
    try:
        yield from rows
    except TableFormatError as error:
        raise TripletFileError(path, [(error.line, error.reason)]) from error


def _csv_columns(path: Path, delimiter: str = ",") -> list[str]:
    """The header's column names; an empty file is a :class:`TripletFileError`."""
    records = csv_records(path, delimiter=delimiter)
    try:
        header = next(_table_rows(path, records), None)
    finally:
        records.close()
    if header is None:
        raise TripletFileError(path, [(1, "empty file: expected a header line")])
    return [name.strip() for name in header[1]]


def _require_columns(path: Path, columns: list[str], required: Sequence[str]) -> None:
    missing = [name for name in required if name not in columns]
    if missing:
        raise TripletFileError(path, [(1, f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")])


def is_nights_csv(path: str | Path) -> bool:
    """True when ``path`` is a CSV whose header has NIGHTS' vote and path columns."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return False
    try:
        return NIGHTS_SIGNATURE <= set(_csv_columns(path))
    except TripletFileError:
        return False


def _parse_whole(text: str) -> int | None:
    """An integer count, also written as ``6.0`` (pandas writes floats); None if not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or value != int(value):
        return None
    return int(value)


def _parse_bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def _duplicate_problem(seen: dict[str, int], identifier: str | None, line: int) -> str | None:
    if identifier is None:
        return None
    if identifier in seen:
        return f"duplicate id {identifier!r} (first on line {seen[identifier]})"
    seen[identifier] = line
    return None


def _missing_files(root: Path, named: Sequence[tuple[str, str]], exists: dict[str, bool]) -> str | None:
    missing = []
    for column, relative in named:
        if relative not in exists:
            exists[relative] = (root / relative).is_file()
        if not exists[relative]:
            missing.append(f"{column} {relative!r}")
    return f"missing file{'s' if len(missing) > 1 else ''} under {root}: {', '.join(missing)}" if missing else None


# --------------------------------------------------------------------------- NIGHTS


def _nights_votes(left_text: str, right_text: str, votes_text: str) -> tuple[float, int] | str:
    """``(target, votes)`` or the reason the vote columns are inconsistent.

    NIGHTS' ``left_vote``/``right_vote`` are vote shares summing to 1; vote counts summing
    to ``votes`` are accepted too.
    """
    votes = _parse_whole(votes_text)
    if votes is None:
        return f"votes {votes_text!r} is not an integer"
    if votes <= 0:
        return f"votes must be positive, got {votes}"
    try:
        left, right = float(left_text), float(right_text)
    except ValueError:
        return f"left_vote {left_text!r} / right_vote {right_text!r} are not numbers"
    if not (math.isfinite(left) and math.isfinite(right)):
        return f"left_vote {left_text!r} / right_vote {right_text!r} are not finite"
    if left < 0 or right < 0:
        return f"negative vote (left_vote {left_text}, right_vote {right_text})"
    total = left + right
    if left == int(left) and right == int(right) and total == votes:
        return right / votes, votes
    if left <= 1 and right <= 1 and abs(total - 1.0) <= 1e-6:
        return right / total, votes
    return f"left_vote + right_vote = {total:g} is neither votes ({votes}) nor 1 (vote shares)"


def _nights_row(record: dict[str, str] | str) -> dict[str, Any] | str:
    if isinstance(record, str):
        return record
    value: dict[str, Any] = dict(record)
    value.setdefault("prompt", "")
    empty = [name for name in NIGHTS_COLUMNS if not value.get(name)]
    if empty:
        return f"empty {', '.join(empty)}"
    votes = _nights_votes(value["left_vote"], value["right_vote"], value["votes"])
    if isinstance(votes, str):
        return votes
    is_imagenet = _parse_bool(value["is_imagenet"])
    if is_imagenet is None:
        return f"is_imagenet {value['is_imagenet']!r} is not a boolean"
    value["target"], value["votes"], value["is_imagenet"] = votes[0], votes[1], is_imagenet
    return value


def _nights_subsplit(split: str, is_imagenet: bool) -> str | None:
    # DreamSim reports the test set in two halves, by whether the prompt is an ImageNet category.
    if split != "test":
        return None
    return "test_imagenet" if is_imagenet else "test_no_imagenet"


def read_nights_csv(
    path: str | Path,
    root: str | Path | None = None,
    min_votes: int = 6,
    splits: Sequence[str] | None = None,
    check_files: bool = True,
    *,
    on_error: OnError = "raise",
) -> TripletSet:
    """Read NIGHTS' ``data.csv`` (DreamSim's 2AFC triplets).

    Columns (by name): ``id, left_vote, right_vote, votes, ref_path, left_path, right_path,
    split, is_imagenet`` (and optionally ``prompt``). ``target`` is the share of votes for
    the right image. Rows with fewer than ``min_votes`` votes are dropped (DreamSim keeps
    ``votes >= 6``). ``splits`` keeps only those splits; besides ``train``/``val``/``test``
    it accepts the derived ``test_imagenet`` / ``test_no_imagenet`` (stored in
    ``subsplit``). Paths are resolved against ``root`` (default: the CSV's folder) and,
    with ``check_files``, must exist (only rows that pass the filters are checked).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.csv"
    >>> _ = path.write_text(",".join(NIGHTS_COLUMNS) + "\\n1,0.0,1.0,6,r.png,a.png,b.png,test,True\\n")
    >>> nights = read_nights_csv(path, check_files=False)
    >>> nights.target.tolist(), nights.by_split("test_imagenet").ids.tolist()
    ([1.0], ['1'])
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    _require_columns(path, _csv_columns(path), NIGHTS_COLUMNS)
    keep_splits = None if splits is None else set(splits)
    rows: dict[str, list] = {key: [] for key in ("anchor", "left", "right", "target", "line")}
    ids: list[str] = []
    split: list[str] = []
    subsplit: list[str | None] = []
    is_imagenet: list[bool] = []
    prompt: list[str] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    exists: dict[str, bool] = {}
    for line, record in _table_rows(path, csv_rows(path)):
        value = _nights_row(record)
        if isinstance(value, str):
            problems.append((line, value))
            continue
        duplicate = _duplicate_problem(seen, value["id"], line)
        if duplicate:
            problems.append((line, duplicate))
            continue
        sub = _nights_subsplit(value["split"], value["is_imagenet"])
        if value["votes"] < min_votes or (keep_splits is not None and not keep_splits & {value["split"], sub}):
            continue
        named = [(name, value[name]) for name in ("ref_path", "left_path", "right_path")]
        missing = _missing_files(root, named, exists) if check_files else None
        if missing:
            problems.append((line, missing))
            continue
        rows["anchor"].append(str(root / value["ref_path"]))
        rows["left"].append(str(root / value["left_path"]))
        rows["right"].append(str(root / value["right_path"]))
        rows["target"].append(value["target"])
        rows["line"].append(line)
        ids.append(value["id"])
        split.append(value["split"])
        subsplit.append(sub)
        is_imagenet.append(value["is_imagenet"])
        prompt.append(value["prompt"])
    extra = {"is_imagenet": np.asarray(is_imagenet, dtype=bool), "prompt": np.asarray(prompt, dtype=object)}
    return _finish(path, rows, problems, on_error, ids=ids, split=split, subsplit=subsplit, extra=extra)


# --------------------------------------------------------------------------- THINGS


def _read_image_list(image_list: str | Path | Sequence[str]) -> list[str]:
    if isinstance(image_list, (str, Path)):
        text = Path(image_list).read_text(encoding=ENCODING)
        # Interior blank lines would shift every later index, so only trailing ones go.
        return text.rstrip("\n").split("\n") if text.strip() else []
    return [str(name) for name in image_list]


def read_things_triplets(
    triplets_npy: str | Path | np.ndarray,
    image_list: str | Path | Sequence[str] | None = None,
    *,
    on_error: OnError = "raise",
) -> TripletSet:
    """Read THINGS odd-one-out triplets (``train_90.npy``: int ``(N, 3)``, column 2 odd).

    Columns 0 and 1 are the pair humans judged most similar, so a row ``(i, j, k)`` becomes
    ``anchor=i, left=k, right=j, target=1`` (``right`` is the positive). References are
    the object indices, or ``image_list[index]`` when an image list (a text file, one name
    per line, or a sequence) is given. Problems are reported by 1-based row number.

    >>> read_things_triplets(np.array([[0, 1, 2]]), ["a.jpg", "b.jpg", "c.jpg"]).right.tolist()
    ['b.jpg']
    """
    source = "<array>" if isinstance(triplets_npy, np.ndarray) else str(triplets_npy)
    array = triplets_npy if isinstance(triplets_npy, np.ndarray) else _load_npy(Path(triplets_npy))
    if array.ndim != 2 or array.shape[1] != 3:
        raise TripletFileError(source, [(0, f"expected an (N, 3) array, got shape {array.shape}")])
    if array.dtype.kind not in "iu":
        raise TripletFileError(source, [(0, f"expected integer object indices, got dtype {array.dtype}")])
    array = array.astype(np.int64, copy=False)
    names = None if image_list is None else _read_image_list(image_list)
    bad: dict[int, str] = {}
    checks = [
        ((array < 0).any(axis=1), "negative object index"),
        ((array[:, 0] == array[:, 1]) | (array[:, 0] == array[:, 2]) | (array[:, 1] == array[:, 2]), "repeated object"),
    ]
    if names is not None:
        checks.append(((array >= len(names)).any(axis=1), f"object index >= {len(names)} (the image list's length)"))
    for mask, reason in checks:
        for row in np.flatnonzero(mask):
            bad.setdefault(int(row), f"{reason} in {array[row].tolist()}")
    problems = [(row + 1, reason) for row, reason in sorted(bad.items())]
    keep = np.ones(len(array), dtype=bool)
    keep[list(bad)] = False
    good = array[keep]
    refs: list[np.ndarray] = [good[:, c] for c in range(3)]
    if names is not None:
        lookup = np.asarray(names, dtype=object)
        refs = [lookup[column] for column in refs]
    rows = {"anchor": refs[0], "left": refs[2], "right": refs[1], "target": np.ones(len(good))}
    rows["line"] = np.flatnonzero(keep) + 1
    return _finish(source, rows, problems, on_error)


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise TripletFileError(path, [(0, f"not a readable .npy array ({error})")]) from error
    if not isinstance(array, np.ndarray):
        raise TripletFileError(path, [(0, "expected a single .npy array, got an .npz archive")])
    return array


# --------------------------------------------------------------------------- plain tables


def _table_row(record: Mapping[str, Any]) -> dict[str, Any] | str:
    """Validate one ``{anchor, positive, negative[, id, split, weight]}`` record."""
    missing = [name for name in TABLE_COLUMNS if record.get(name) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    refs = [record[name] for name in TABLE_COLUMNS]
    for name, ref in zip(TABLE_COLUMNS, refs, strict=True):
        if isinstance(ref, bool) or not isinstance(ref, (str, int)):
            return f"{name} must be a string or an integer, got {type(ref).__name__}"
        if isinstance(ref, str) and not ref.strip():
            return f"empty {name}"
    if len({type(ref) for ref in refs}) > 1:
        return "anchor, positive and negative mix strings and integers"
    if refs[1] == refs[2]:
        return f"positive and negative are the same image {refs[1]!r}"
    row: dict[str, Any] = dict(zip(TABLE_COLUMNS, refs, strict=True))
    for name in ("id", "split"):
        raw = record.get(name)
        row[name] = None if raw is None or (isinstance(raw, str) and not raw.strip()) else str(raw).strip()
    raw_weight = record.get("weight")
    if raw_weight is None or (isinstance(raw_weight, str) and not raw_weight.strip()):
        row["weight"] = 1.0
    else:
        try:
            weight = float(raw_weight) if not isinstance(raw_weight, bool) else math.nan
        except (TypeError, ValueError):
            weight = math.nan
        if not math.isfinite(weight) or weight < 0:
            return f"weight {raw_weight!r} is not a finite number >= 0"
        row["weight"] = weight
    return row


@dataclass
class _TableChecks:
    """What checking one table row needs to know about the rows before it."""

    files_root: Path | None
    seen_ids: dict[str, int] = field(default_factory=dict)
    exists: dict[str, bool] = field(default_factory=dict)
    ref_type: type | None = None

    def check(self, record: Mapping[str, Any] | str, line: int) -> dict[str, Any] | str:
        """The validated row, or why it is bad."""
        row = record if isinstance(record, str) else _table_row(record)
        if isinstance(row, str):
            return row
        self.ref_type = self.ref_type or type(row["anchor"])
        if type(row["anchor"]) is not self.ref_type:
            return f"references are {type(row['anchor']).__name__}s but earlier rows use {self.ref_type.__name__}s"
        duplicate = _duplicate_problem(self.seen_ids, row["id"], line)
        if duplicate:
            return duplicate
        if self.files_root is not None and isinstance(row["anchor"], str):
            named = [(name, row[name]) for name in TABLE_COLUMNS]
            return _missing_files(self.files_root, named, self.exists) or row
        return row


def read_triplet_table(
    path: str | Path,
    *,
    root: str | Path | None = None,
    check_files: bool = False,
    on_error: OnError = "raise",
) -> TripletSet:
    """Read ranked triplets from JSONL (``.jsonl``/``.ndjson``) or CSV/TSV (``.csv``/``.tsv``).

    Each record has ``anchor``, ``positive`` (more similar to the anchor) and ``negative``,
    and optionally ``id``, ``split`` and ``weight`` (default 1). References are kept as
    written (JSON integers stay integers, i.e. feature rows); with ``root`` string
    references are joined to it, and ``check_files`` requires them to exist.

    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "triplets.jsonl"
    >>> _ = path.write_text(json.dumps({"anchor": "a.jpg", "positive": "b.jpg", "negative": "c.jpg"}) + "\\n")
    >>> table = read_triplet_table(path)
    >>> table.anchor.tolist(), table.right.tolist(), table.left.tolist()
    (['a.jpg'], ['b.jpg'], ['c.jpg'])
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        records = _table_rows(path, jsonl_rows(path))
    elif suffix in (".csv", ".tsv"):
        delimiter = "\t" if suffix == ".tsv" else ","
        _require_columns(path, _csv_columns(path, delimiter), TABLE_COLUMNS)
        records = _table_rows(path, csv_rows(path, delimiter=delimiter))
    else:
        raise TripletError(f"{path}: unknown triplet table format {suffix!r}; use .jsonl, .ndjson, .csv or .tsv")
    base = Path(root) if root is not None else None
    checks = _TableChecks(files_root=(base or path.parent) if check_files else None)
    rows: dict[str, list] = {key: [] for key in ("anchor", "left", "right", "target", "line")}
    labels: dict[str, list] = {"ids": [], "split": [], "weight": []}
    problems: list[Problem] = []
    for line, record in records:
        row = checks.check(record, line)
        if isinstance(row, str):
            problems.append((line, row))
            continue
        resolve = (lambda ref: str(base / ref)) if base is not None and checks.ref_type is str else (lambda ref: ref)
        rows["anchor"].append(resolve(row["anchor"]))
        rows["left"].append(resolve(row["negative"]))
        rows["right"].append(resolve(row["positive"]))
        rows["target"].append(1.0)
        rows["line"].append(line)
        labels["ids"].append(row["id"])
        labels["split"].append(row["split"])
        labels["weight"].append(row["weight"])
    return _finish(
        path,
        rows,
        problems,
        on_error,
        ids=labels["ids"] if any(v is not None for v in labels["ids"]) else None,
        split=labels["split"] if any(v is not None for v in labels["split"]) else None,
        weight=labels["weight"] if any(v != 1.0 for v in labels["weight"]) else None,
    )
