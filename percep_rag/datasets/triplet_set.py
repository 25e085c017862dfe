"""The triplet data set: ``(anchor, left, right)`` image references and human votes.

One convention for every source (DreamSim's): a triplet is ``(anchor, left, right)`` and
``target`` is the share of human votes saying the RIGHT image is more similar to the
anchor. A hard judgment has ``target`` 0 (left wins) or 1 (right wins); a NIGHTS row with
5 of 6 votes for the right image has ``target = 5/6``. Ranked triplets
``(anchor, positive, negative)`` (THINGS, plain tables) are stored as
``left=negative, right=positive, target=1``. The file readers live in
:mod:`percep_rag.datasets.triplet_formats`::

    >>> triplets = TripletSet.from_ranked(["a", "b"], ["a2", "b2"], ["x", "y"])
    >>> triplets.right.tolist(), triplets.target.tolist()
    (['a2', 'b2'], [1.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from percep_rag.errors import PercepRagError

#: What a reader does with a bad row: raise one :class:`TripletFileError` listing every bad row, or skip it.
OnError = Literal["raise", "skip"]
#: ``(line, message)``: a bad row of a triplet file.
Problem = tuple[int, str]

_SHOWN_PROBLEMS = 20


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
