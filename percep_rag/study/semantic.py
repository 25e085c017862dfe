"""Category-level triplets: ImageNet-style class triplets and THINGS-style odd-one-out.

* :func:`make_class_triplets`: an anchor scene, a positive of the same semantic category
  and a negative of another (two of one class, one of another), written as a ranked
  JSON Lines table (``anchor, positive, negative, id, split``) that
  :func:`~percep_rag.datasets.triplets.read_triplet_table` reads.
* :func:`make_things_triplets`: THINGS' odd-one-out task over the world's scenes as
  "objects" (one image each): a :class:`ConceptJudge` picks the odd one out by how similar
  the scenes' *categories* are as concepts, never by what else is in the picture;
  written as THINGS' int ``(N, 3)`` ``.npy`` (column 2 the odd one) and an image list that
  :func:`~percep_rag.datasets.triplets.read_things_triplets` reads.

>>> judge = ConceptJudge()
>>> round(judge.similarity("circle", "circle"), 3)
1.0
>>> judge.similarity("circle", "hexagon") > judge.similarity("circle", "cross")
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from percep_rag.io.files import atomic_write, atomic_write_text
from percep_rag.study.render import render
from percep_rag.study.scenes import SceneError
from percep_rag.study.worlds import World

#: Made-up concept features per shape: ``[round, corners / 12, pointed, straight edges, convex]``.
#: What a person "knows" about the category, not what the rendered scene shows.
CONCEPTS: dict[str, tuple[float, ...]] = {
    "circle": (1.0, 0.0, 0.0, 0.0, 1.0),
    "square": (0.0, 0.33, 0.0, 1.0, 1.0),
    "triangle": (0.0, 0.25, 1.0, 1.0, 1.0),
    "star": (0.0, 0.83, 1.0, 1.0, 0.0),
    "hexagon": (0.6, 0.5, 0.0, 1.0, 1.0),
    "cross": (0.0, 1.0, 0.0, 1.0, 0.0),
}


@dataclass(frozen=True)
class ConceptJudge:
    """A person doing THINGS' odd-one-out: the pair whose concepts are most alike stays.

    Similarity is the cosine of the categories' :data:`CONCEPTS` features (1 within a
    category). The choice is noisy: the pair ``(i, j)`` is kept with probability
    proportional to ``exp(similarity(i, j) / temperature)`` (the softmax choice rule of
    THINGS' SPoSE model), so the odd one out is the third.
    """

    temperature: float = 0.08
    concepts: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(CONCEPTS))

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two categories' concept features."""
        try:
            va, vb = np.asarray(self.concepts[a]), np.asarray(self.concepts[b])
        except KeyError as error:
            raise SceneError(f"no concept features for category {error.args[0]!r}") from None
        return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))

    def odd_one_out(self, categories: tuple[str, str, str], rng: np.random.Generator | None = None) -> int:
        """Position (0-2) of the odd one out; without ``rng`` the noise-free choice.

        >>> ConceptJudge().odd_one_out(("circle", "cross", "circle"))
        1
        """
        kept = [self.similarity(categories[(k + 1) % 3], categories[(k + 2) % 3]) for k in range(3)]
        if rng is None:
            return int(np.argmax(kept))
        weights = np.exp((np.asarray(kept) - max(kept)) / self.temperature)
        return int(rng.choice(3, p=weights / weights.sum()))


def _write_images(world: World, folder: Path, image_size: int) -> list[str]:
    """Render every scene as ``images/<index>.png`` under ``folder``; the relative names."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = []
    for index, scene in enumerate(world.scenes):
        name = f"images/{index:05d}.png"
        render(scene, image_size).save(folder / name)
        names.append(name)
    return names


def make_class_triplets(
    world: World, n: int, rng: np.random.Generator, path: str | Path, *, split: str, image_size: int = 64
) -> Path:
    """Write ``n`` ImageNet-style triplets over ``world`` as a ranked ``.jsonl`` table at ``path``.

    Anchors go through the scenes in a shuffled order; the positive is another scene of the
    anchor's category and the negative a scene of another category, both drawn at random.
    Images are written under ``images/`` next to ``path`` (the table names them relative to
    its folder). Needs two categories, one of them with two scenes.

    >>> import tempfile, pathlib
    >>> from percep_rag.study.worlds import generate_world
    >>> world = generate_world(6, seed=0, shapes=("circle", "star"))
    >>> path = make_class_triplets(world, 3, np.random.default_rng(0),
    ...                            pathlib.Path(tempfile.mkdtemp()) / "train.jsonl", split="train")
    >>> len(path.read_text().splitlines())
    3
    """
    path = Path(path)
    categories = world.labels("category")
    by_category = {c: np.flatnonzero(categories == c) for c in dict.fromkeys(categories.tolist())}
    anchors = [i for i in range(len(world)) if len(by_category[categories[i]]) > 1]
    if len(by_category) < 2 or not anchors:
        raise SceneError("class triplets need two categories and one of them with two scenes")
    names = _write_images(world, path.parent, image_size)
    order = np.concatenate([rng.permutation(anchors) for _ in range(-(-n // len(anchors)))])[:n]
    lines = []
    for t, anchor in enumerate(order.tolist()):
        same = by_category[categories[anchor]]
        positive = int(rng.choice(same[same != anchor]))
        negative = int(rng.choice(np.flatnonzero(categories != categories[anchor])))
        record = {"anchor": names[anchor], "positive": names[positive], "negative": names[negative]}
        lines.append(json.dumps({**record, "id": f"{split}-{t:06d}", "split": split}))
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def make_things_triplets(
    world: World,
    n: int,
    rng: np.random.Generator,
    folder: str | Path,
    *,
    name: str,
    judge: ConceptJudge | None = None,
    image_size: int = 64,
) -> tuple[Path, Path]:
    """Write ``n`` THINGS-style odd-one-out triplets over ``world``'s scenes; returns
    ``(<folder>/<name>.npy, <folder>/<name>_images.txt)``.

    Each triplet is three distinct scenes whose categories are not all the same (THINGS
    shows three different objects); one simulated person (:class:`ConceptJudge`) picks the
    odd one out, which goes to column 2 as in THINGS' ``trainset.npy``. The image list has
    one absolute image path per line, row ``i`` of it being object index ``i``.
    """
    judge = judge or ConceptJudge()
    folder = Path(folder)
    categories = world.labels("category")
    if len(world) < 3 or len(set(categories.tolist())) < 2:
        raise SceneError("odd-one-out triplets need three scenes of at least two categories")
    names = _write_images(world, folder / name, image_size)
    rows = []
    while len(rows) < n:
        triple = rng.choice(len(world), size=3, replace=False)
        cats = tuple(str(categories[i]) for i in triple)
        if len(set(cats)) == 1:
            continue
        odd = judge.odd_one_out(cats, rng)  # type: ignore[arg-type]
        rows.append([int(triple[(odd + 1) % 3]), int(triple[(odd + 2) % 3]), int(triple[odd])])
    array = np.asarray(rows, dtype=np.int64).reshape(-1, 3)

    def save(temporary: Path) -> None:
        with temporary.open("wb") as handle:  # a handle: np.save would add ".npy" to the temporary name
            np.save(handle, array)

    npy = atomic_write(folder / f"{name}.npy", save)
    image_list = atomic_write_text(
        folder / f"{name}_images.txt", "".join(str((folder / name / item).resolve()) + "\n" for item in names)
    )
    return npy, image_list
