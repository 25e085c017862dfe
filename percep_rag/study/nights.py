"""NIGHTS-style triplets over generated scenes: a reference, two distortions of it, and the
judge's votes, written as a folder that
:func:`~percep_rag.datasets.triplets.read_nights_csv` reads.

>>> from percep_rag.study.worlds import generate_world
>>> len(make_nights_triplets(generate_world(3, seed=0), 2, np.random.default_rng(0)))
2
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from percep_rag.datasets.triplets import NIGHTS_COLUMNS, TripletSet
from percep_rag.io.files import atomic_write
from percep_rag.study.distortions import EDITS, distort
from percep_rag.study.judge import HumanJudge
from percep_rag.study.render import render
from percep_rag.study.scenes import SHAPES, SceneError, SceneSpec
from percep_rag.study.worlds import World


@dataclass
class SyntheticTriplets:
    """Triplets over generated scenes: a :class:`TripletSet` whose references are NIGHTS
    relative paths (``ref/000/000.png``, ``distort/000/000_0.png``, ...) and the scene
    behind every path.

    ``triplets.extra`` holds ``left_votes``, ``right_votes``, ``votes``, ``is_imagenet``
    and ``prompt``; ``triplets.target`` is ``right_votes / votes``.
    """

    triplets: TripletSet
    scenes: dict[str, SceneSpec]
    image_size: int = 64
    judge: HumanJudge = field(default_factory=HumanJudge)

    def __len__(self) -> int:
        return len(self.triplets)

    def image(self, ref: str, jitter_seed: int | None = None) -> Image.Image:
        """The rendered image behind a reference path."""
        return render(self.scenes[ref], self.image_size, jitter_seed)

    def with_min_votes(self, min_votes: int = 6) -> TripletSet:
        """The triplets with at least ``min_votes`` votes (DreamSim keeps ``votes >= 6``)."""
        return self.triplets.subset(self.triplets.extra["votes"] >= min_votes)

    def write_nights(self, root: str | Path) -> Path:
        """Write every image and a NIGHTS ``data.csv`` under ``root``; returns the CSV path.

        Vote columns hold shares, as NIGHTS does (``left_vote + right_vote == 1``), and
        ``votes`` the count, so ``read_nights_csv(path)`` gives back these triplets (those
        with ``votes >= 6`` by default).
        """
        root = Path(root)
        for ref, scene in self.scenes.items():
            path = root / ref
            path.parent.mkdir(parents=True, exist_ok=True)
            render(scene, self.image_size).save(path)
        return atomic_write(root / "data.csv", self._write_csv)

    def _write_csv(self, path: Path) -> None:
        ts = self.triplets
        with path.open("w", newline="", encoding="utf-8") as handle:
            # By name: the reader's NIGHTS_COLUMNS decide the header and their order.
            writer = csv.DictWriter(handle, fieldnames=[*NIGHTS_COLUMNS, "prompt"])
            writer.writeheader()
            for i in range(len(ts)):
                votes = int(ts.extra["votes"][i])
                writer.writerow(
                    {
                        "id": ts.ids[i],
                        "left_vote": repr(int(ts.extra["left_votes"][i]) / votes),
                        "right_vote": repr(int(ts.extra["right_votes"][i]) / votes),
                        "votes": votes,
                        "ref_path": ts.anchor[i],
                        "left_path": ts.left[i],
                        "right_path": ts.right[i],
                        "split": ts.split[i],
                        "is_imagenet": bool(ts.extra["is_imagenet"][i]),
                        "prompt": ts.extra["prompt"][i],
                    }
                )


def make_nights_triplets(
    world: World,
    n: int,
    rng: np.random.Generator,
    *,
    judge: HumanJudge | None = None,
    voters: int | tuple[int, int] = (5, 10),
    edits_per_variant: tuple[int, int] = (1, 3),
    edits: Sequence[str] = EDITS,
    imagenet_shapes: Iterable[str] = SHAPES[:3],
    image_size: int = 64,
    first_variant_id: int = 1_000_000_000,
) -> SyntheticTriplets:
    """``n`` NIGHTS-like triplets: a world scene as reference and two distortions of it.

    Each variation gets ``edits_per_variant`` (inclusive range) random edits (see
    :func:`distort`) and keeps the reference's category, so the judge decides by count,
    layout, colour and background. Each triplet is judged by ``voters`` people (a fixed
    number or an inclusive range; the default 5-10 leaves about 1 in 6 triplets under
    NIGHTS' ``votes >= 6`` filter). The split is the reference scene's; ``is_imagenet``
    says whether the category is in ``imagenet_shapes`` (it makes NIGHTS' two test halves)
    and the prompt is ``"an image of <category>s"``. References are used in turn, in a
    shuffled order, so every scene serves before any serves twice.

    >>> from percep_rag.study.worlds import generate_world
    >>> made = make_nights_triplets(generate_world(10, seed=0), 4, np.random.default_rng(0))
    >>> len(made), made.triplets.anchor[0], made.triplets.right[0]
    (4, 'ref/000/000.png', 'distort/000/000_1.png')
    """
    if len(world) == 0:
        raise SceneError("the world has no scenes to make triplets from")
    if n < 0:
        raise SceneError(f"n must be >= 0, got {n}")
    low, high = (voters, voters) if isinstance(voters, int) else voters
    if not 1 <= low <= high:
        raise SceneError(f"voters must be >= 1 (a number or a (low, high) range), got {voters}")
    if not 1 <= edits_per_variant[0] <= edits_per_variant[1]:
        raise SceneError(f"edits_per_variant must be a range of at least 1 edit, got {edits_per_variant}")
    judge = judge or HumanJudge()
    imagenet = set(imagenet_shapes)
    order = np.concatenate([rng.permutation(len(world)) for _ in range(math.ceil(n / len(world)))])[:n]
    columns: dict[str, list] = {key: [] for key in ("anchor", "left", "right", "target", "ids", "split")}
    extra: dict[str, list] = {key: [] for key in ("left_votes", "right_votes", "votes", "is_imagenet", "prompt")}
    scenes: dict[str, SceneSpec] = {}
    for t, index in enumerate(order.tolist()):
        ref = world.scenes[index]
        folder, name = f"{t // 1000:03d}", f"{t % 1000:03d}"
        paths = (f"ref/{folder}/{name}.png", f"distort/{folder}/{name}_0.png", f"distort/{folder}/{name}_1.png")
        left, right = (
            distort(
                ref,
                rng,
                n_edits=int(rng.integers(edits_per_variant[0], edits_per_variant[1] + 1)),
                edits=edits,
                instance_id=first_variant_id + 2 * t + side,
            )
            for side in (0, 1)
        )
        n_voters = int(rng.integers(low, high + 1))
        left_votes, right_votes = judge.votes(ref, left, right, rng, n_voters)
        scenes.update(zip(paths, (ref, left, right), strict=True))
        for key, value in zip(("anchor", "left", "right"), paths, strict=True):
            columns[key].append(value)
        columns["target"].append(right_votes / n_voters)
        columns["ids"].append(f"{t:06d}")
        columns["split"].append(world.split[index])
        extra["left_votes"].append(left_votes)
        extra["right_votes"].append(right_votes)
        extra["votes"].append(n_voters)
        extra["is_imagenet"].append(ref.category in imagenet)
        extra["prompt"].append(f"an image of {ref.category}s")
    subsplit = [
        None if split != "test" else ("test_imagenet" if is_imagenet else "test_no_imagenet")
        for split, is_imagenet in zip(columns["split"], extra["is_imagenet"], strict=True)
    ]
    dtypes = {"left_votes": np.int64, "right_votes": np.int64, "votes": np.int64, "is_imagenet": bool, "prompt": object}
    triplets = TripletSet(
        np.asarray(columns["anchor"], dtype=object),
        np.asarray(columns["left"], dtype=object),
        np.asarray(columns["right"], dtype=object),
        columns["target"],
        ids=columns["ids"],
        split=columns["split"],
        subsplit=subsplit,
        extra={key: np.asarray(values, dtype=dtypes[key]) for key, values in extra.items()},
    )
    return SyntheticTriplets(triplets, scenes, image_size=image_size, judge=judge)
