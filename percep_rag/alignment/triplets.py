"""Triplet similarity judgments, read from NIGHTS, THINGS and plain tables.

One convention for every source (DreamSim's): a triplet is ``(anchor, left, right)`` and
``target`` is the share of human votes saying the RIGHT image is more similar to the
anchor. A hard judgment has ``target`` 0 (left wins) or 1 (right wins); a NIGHTS row with
5 of 6 votes for the right image has ``target = 5/6``. Ranked triplets
``(anchor, positive, negative)`` (THINGS, plain tables) are stored as
``left=negative, right=positive, target=1``.

Readers collect every bad row with its 1-based line number (the header is line 1 of a
CSV) and raise one :class:`TripletFileError` listing them, or, with ``on_error="skip"``,
drop those rows and keep the list in :attr:`TripletSet.problems`::

    >>> triplets = TripletSet.from_ranked(["a", "b"], ["a2", "b2"], ["x", "y"])
    >>> triplets.right.tolist(), triplets.target.tolist()
    (['a2', 'b2'], [1.0, 1.0])
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from percep_rag.errors import PercepRagError

OnError = Literal["raise", "skip"]
Problem = tuple[int, str]

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
TABLE_COLUMNS = ("anchor", "positive", "negative")
_SHOWN_PROBLEMS = 20
_TRUE = {"1", "true", "t", "yes", "y", "1.0"}
_FALSE = {"0", "false", "f", "no", "n", "0.0"}


class TripletError(PercepRagError, ValueError):
    """Triplet data is inconsistent (lengths, targets, references)."""


class TripletFileError(TripletError):
    """A triplet file has bad rows.

    ``problems`` is a list of ``(line_number, message)``; line numbers are 1-based physical
    lines (rows of a ``.npy`` array), and 0 stands for the file as a whole.
    """

    def __init__(self, path: str | Path, problems: list[Problem]):
        self.path = str(path)
        self.problems = sorted(problems, key=lambda problem: problem[0])
        super().__init__(self._message())

    def _message(self) -> str:
        count = len(self.problems)
        lines = [f"{self.path}: {count} problem{'s' if count != 1 else ''}"]
        for line, message in self.problems[:_SHOWN_PROBLEMS]:
            lines.append(f"  line {line}: {message}" if line else f"  {message}")
        if count > _SHOWN_PROBLEMS:
            lines.append(f"  ... and {count - _SHOWN_PROBLEMS} more")
        return "\n".join(lines)


# --------------------------------------------------------------------------- the data set


def _as_refs(values: Any, name: str) -> np.ndarray:
    """Image references as an int64 array (feature rows) or an object array of str."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iu":
            return values.astype(np.int64, copy=False).reshape(-1)
        if values.dtype.kind == "U":
            return values.astype(object).reshape(-1)
        values = values.reshape(-1).tolist()
    values = list(values)
    if all(isinstance(v, str) for v in values):
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64).reshape(-1)
    raise TripletError(f"{name}: references must be all str (paths, ids) or all int (feature rows)")


def _as_labels(values: Any, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    out = np.empty(n, dtype=object)
    values = list(values)
    if len(values) != n:
        raise TripletError(f"{name} has {len(values)} entries for {n} triplets")
    out[:] = values
    return out


@dataclass
class TripletSet:
    """Triplets ``(anchor, left, right)`` and the share ``target`` of votes for RIGHT.

    Attributes:
        anchor, left, right: image references, all ``str`` (paths, ids; object arrays) or
            all ``int`` (rows of a feature matrix; int64 arrays).
        target: float64 in [0, 1], the probability that RIGHT is more similar to the anchor.
        ids, split: optional per-triplet labels (``None`` entries allowed).
        weight: optional non-negative per-triplet weight (loss weighting).
        subsplit: optional finer split (NIGHTS: ``test_imagenet`` / ``test_no_imagenet``).
        extra: other per-triplet columns (NIGHTS: ``is_imagenet``, ``prompt``).
        lines: the line of each triplet in its source file, for error messages.
        source: the file it was read from.
        problems: ``(line, message)`` of rows a reader skipped (``on_error="skip"``).

    >>> ts = TripletSet(["a", "b"], ["l1", "l2"], ["r1", "r2"], [1.0, 0.25], split=["train", "val"])
    >>> len(ts), ts.by_split("val").target.tolist(), ts.is_hard
    (2, [0.25], False)
    """

    anchor: np.ndarray
    left: np.ndarray
    right: np.ndarray
    target: np.ndarray
    ids: np.ndarray | None = None
    split: np.ndarray | None = None
    weight: np.ndarray | None = None
    subsplit: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    lines: np.ndarray | None = None
    source: str | None = None
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.anchor = _as_refs(self.anchor, "anchor")
        self.left = _as_refs(self.left, "left")
        self.right = _as_refs(self.right, "right")
        n = len(self.anchor)
        if len(self.left) != n or len(self.right) != n:
            raise TripletError(f"anchor/left/right lengths differ: {n}, {len(self.left)}, {len(self.right)}")
        kinds = {refs.dtype.kind for refs in (self.anchor, self.left, self.right) if len(refs)}
        if len(kinds) > 1:
            raise TripletError("anchor, left and right mix str and int references")
        self.target = np.asarray(self.target, dtype=np.float64).reshape(-1)
        if len(self.target) != n:
            raise TripletError(f"target has {len(self.target)} entries for {n} triplets")
        if n and not (np.isfinite(self.target).all() and self.target.min() >= 0.0 and self.target.max() <= 1.0):
            raise TripletError("target must be a share of votes in [0, 1]")
        if self.weight is not None:
            self.weight = np.asarray(self.weight, dtype=np.float64).reshape(-1)
            if len(self.weight) != n:
                raise TripletError(f"weight has {len(self.weight)} entries for {n} triplets")
            if n and not (np.isfinite(self.weight).all() and self.weight.min() >= 0.0):
                raise TripletError("weights must be finite and >= 0")
        self.ids = _as_labels(self.ids, n, "ids")
        self.split = _as_labels(self.split, n, "split")
        self.subsplit = _as_labels(self.subsplit, n, "subsplit")
        self.extra = {key: np.asarray(value) for key, value in self.extra.items()}
        for key, value in self.extra.items():
            if len(value) != n:
                raise TripletError(f"extra column {key!r} has {len(value)} entries for {n} triplets")
        if self.lines is not None:
            self.lines = np.asarray(self.lines, dtype=np.int64).reshape(-1)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_ranked(
        cls,
        anchor: Sequence[Any] | np.ndarray,
        positive: Sequence[Any] | np.ndarray,
        negative: Sequence[Any] | np.ndarray,
        **labels: Any,
    ) -> TripletSet:
        """Ranked triplets: ``positive`` is more similar to ``anchor`` than ``negative``.

        Stored as ``left=negative, right=positive, target=1``; ``labels`` are the other
        fields (``ids``, ``split``, ``weight``, ...).

        >>> TripletSet.from_ranked([0], [1], [2]).left.tolist()
        [2]
        """
        n = len(anchor)
        return cls(anchor, negative, positive, np.ones(n), **labels)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.anchor)

    @property
    def is_indexed(self) -> bool:
        """True when the references are feature-matrix rows (ints), not names."""
        return self.anchor.dtype.kind == "i"

    @property
    def is_hard(self) -> bool:
        """True when every target is exactly 0 or 1."""
        return bool(np.isin(self.target, (0.0, 1.0)).all())

    def subset(self, selection: np.ndarray | Sequence[int] | Sequence[bool]) -> TripletSet:
        """The triplets a boolean mask or an index array selects (in that order).

        >>> TripletSet.from_ranked([0, 3], [1, 4], [2, 5]).subset([False, True]).anchor.tolist()
        [3]
        """
        index = np.asarray(selection)
        if index.dtype == bool:
            if len(index) != len(self):
                raise TripletError(f"mask has {len(index)} entries for {len(self)} triplets")
            index = np.flatnonzero(index)
        index = index.astype(np.int64, copy=False)

        def take(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[index]

        return replace(
            self,
            anchor=self.anchor[index],
            left=self.left[index],
            right=self.right[index],
            target=self.target[index],
            ids=take(self.ids),
            split=take(self.split),
            weight=take(self.weight),
            subsplit=take(self.subsplit),
            extra={key: value[index] for key, value in self.extra.items()},
            lines=take(self.lines),
            problems=list(self.problems),
        )

    def by_split(self, *names: str) -> TripletSet:
        """The triplets whose ``split`` or ``subsplit`` is one of ``names``.

        NIGHTS: ``by_split("test")`` gives both test halves, ``by_split("test_imagenet")``
        only the ImageNet-category one.
        """
        wanted = set(names)
        mask = np.zeros(len(self), dtype=bool)
        for labels in (self.split, self.subsplit):
            if labels is not None:
                mask |= np.fromiter((label in wanted for label in labels), dtype=bool, count=len(labels))
        return self.subset(mask)

    def split_counts(self) -> dict[str, int]:
        """Number of triplets per split (and subsplit) name."""
        counts: dict[str, int] = {}
        for labels in (self.split, self.subsplit):
            if labels is None:
                continue
            for name in labels:
                if name is not None:
                    counts[name] = counts.get(name, 0) + 1
        return counts

    def refs(self) -> np.ndarray:
        """Every distinct image reference, in order of first appearance (row by row).

        >>> TripletSet.from_ranked(["a", "b"], ["c", "a"], ["d", "c"]).refs().tolist()
        ['a', 'd', 'c', 'b']
        """
        stacked = np.stack([self.anchor, self.left, self.right], axis=1).reshape(-1)
        if not len(stacked):
            return stacked
        _, first = np.unique(stacked, return_index=True)
        return stacked[np.sort(first)]

    def indices(self, refs: Sequence[Any] | Mapping[Any, int] | None = None) -> np.ndarray:
        """``(N, 3)`` int64 feature rows of ``(anchor, left, right)``.

        ``refs`` gives the feature matrix's row order (a sequence of references, or a
        mapping reference -> row); it may be left out when the references are rows already.

        >>> TripletSet.from_ranked(["a"], ["b"], ["c"]).indices(["c", "b", "a"]).tolist()
        [[2, 0, 1]]
        """
        stacked = np.stack([self.anchor, self.left, self.right], axis=1)
        if refs is None:
            if len(self) and not self.is_indexed:
                raise TripletError("the references are names: pass refs, the feature matrix's row order")
            return stacked.astype(np.int64)
        row_of = refs if isinstance(refs, Mapping) else {ref: row for row, ref in enumerate(refs)}
        flat = stacked.reshape(-1)
        rows = np.fromiter((row_of.get(ref, -1) for ref in flat), dtype=np.int64, count=len(flat))
        if (rows < 0).any():
            missing = list(dict.fromkeys(flat[rows < 0].tolist()))
            shown = ", ".join(repr(ref) for ref in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise TripletError(f"{len(missing)} references have no feature row: {shown}{more}")
        return rows.reshape(-1, 3)

    def object_disjoint_split(self, val_fraction: float = 0.2, seed: int = 0) -> tuple[TripletSet, TripletSet]:
        """Split into train/val triplets that share no image (gLocal's object-disjoint CV).

        A random ``val_fraction`` of the images becomes validation images; a triplet goes
        to val when all its images are validation images, to train when none is, and is
        dropped otherwise (so only about ``(1-f)^3 + f^3`` of the triplets survive).
        """
        if not 0.0 < val_fraction < 1.0:
            raise TripletError(f"val_fraction must be in (0, 1), got {val_fraction}")
        objects = self.refs()
        rng = np.random.default_rng(seed)
        held_out = objects[rng.random(len(objects)) < val_fraction]
        in_val = np.stack([np.isin(refs, held_out) for refs in (self.anchor, self.left, self.right)], axis=1)
        return self.subset(~in_val.any(axis=1)), self.subset(in_val.all(axis=1))


# --------------------------------------------------------------------------- shared parsing


def _finish(
    path: str | Path, rows: dict[str, list], problems: list[Problem], on_error: OnError, **labels: Any
) -> TripletSet:
    if on_error not in ("raise", "skip"):
        raise TripletError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
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


def _csv_records(path: Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """``(first physical line, fields)`` of every non-blank CSV record (header included)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        previous_end = 0
        try:
            for fields in reader:
                start, previous_end = previous_end + 1, reader.line_num
                if fields and any(value.strip() for value in fields):
                    # A quoted field may span lines: report where the record starts.
                    yield start, fields
        except csv.Error as error:
            raise TripletFileError(path, [(previous_end + 1, f"unparsable CSV: {error}")]) from error


def _header_index(path: Path, header: list[str], required: Sequence[str]) -> dict[str, int]:
    names = [name.strip() for name in header]
    missing = [name for name in required if name not in names]
    if missing:
        raise TripletFileError(path, [(1, f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")])
    return {name: position for position, name in reversed(list(enumerate(names)))}


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


def _nights_row(fields: list[str], column: dict[str, int], width: int) -> dict[str, Any] | str:
    if len(fields) != width:
        return f"expected {width} fields, got {len(fields)}"
    value = {name: fields[position].strip() for name, position in column.items()}
    value.setdefault("prompt", "")
    empty = [name for name in NIGHTS_COLUMNS if not value[name]]
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

    Example::

        nights = read_nights_csv("nights/data.csv")
        test = nights.by_split("test")    # both halves; score each with two_afc_agreement
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    records = _csv_records(path)
    header = next(records, None)
    if header is None:
        raise TripletFileError(path, [(1, "empty file: expected a header line")])
    column = _header_index(path, header[1], NIGHTS_COLUMNS)
    width = len(header[1])
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
    for line, fields in records:
        value = _nights_row(fields, column, width)
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
        text = Path(image_list).read_text(encoding="utf-8")
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


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                yield line, f"unparsable JSON: {error.msg} (column {error.colno})"
                continue
            yield line, record if isinstance(record, dict) else f"expected a JSON object, got {type(record).__name__}"


def _table_records(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    records = _csv_records(path, delimiter)
    header = next(records, None)
    if header is None:
        raise TripletFileError(path, [(1, "empty file: expected a header line")])
    column = _header_index(path, header[1], TABLE_COLUMNS)
    width = len(header[1])
    for line, fields in records:
        if len(fields) != width:
            yield line, f"expected {width} fields, got {len(fields)}"
            continue
        yield line, {name: fields[position].strip() for name, position in column.items()}


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

    Example (``triplets.jsonl``)::

        {"anchor": "a.jpg", "positive": "b.jpg", "negative": "c.jpg", "split": "train"}
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        records = _jsonl_records(path)
    elif suffix in (".csv", ".tsv"):
        records = _table_records(path, "\t" if suffix == ".tsv" else ",")
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
