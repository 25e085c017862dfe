"""The four kinds of human judgment of the paper's Figure 8, generated in the world, each
written in the format of the data set it mimics and read back by the readers ``align fit``
uses (:func:`~percep_rag.datasets.triplets.read_triplets`):

=============  ===========================================  =======================
kind           what decides                                  written as
=============  ===========================================  =======================
``mid-level``  the hidden perceptual judge: count, layout,   NIGHTS ``data.csv``
               colour, background of scene variations
``low-level``  pixel distortion strength of one image        BAPPS 2AFC folder
``class``      same category vs another (ImageNet-style)     ranked ``.jsonl`` table
``semantic``   concept similarity of the categories          THINGS ``.npy`` + list
               (odd-one-out)
=============  ===========================================  =======================

>>> TRIPLET_KINDS.names()
['mid-level', 'low-level', 'class', 'semantic']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from percep_rag.datasets.triplets import TripletSet, read_triplets
from percep_rag.registry import Registry
from percep_rag.study.lowlevel import make_bapps_triplets
from percep_rag.study.nights import make_nights_triplets
from percep_rag.study.semantic import make_class_triplets, make_things_triplets
from percep_rag.study.worlds import World


@dataclass(frozen=True)
class TripletFiles:
    """Where one kind's train and val triplets were written (``image_list``: THINGS only)."""

    kind: str
    train: Path
    val: Path
    train_images: Path | None = None
    val_images: Path | None = None

    def read(self) -> tuple[TripletSet, TripletSet]:
        """``(train, val)`` read back through :func:`~percep_rag.datasets.triplets.read_triplets`."""
        return (
            read_triplets(self.train, image_list=self.train_images),
            read_triplets(self.val, image_list=self.val_images),
        )


#: ``(world, n, seed, folder, split, image_size) -> (triplet file, image list or None)``.
Writer = Callable[[World, int, int, Path, str, int], tuple[Path, Path | None]]


@dataclass(frozen=True)
class TripletKind:
    """One kind of judgment: what it mimics and how its files are made."""

    name: str
    mimics: str
    file_format: str
    write: Writer

    def make(
        self, train_world: World, val_world: World, n_train: int, n_val: int, seed: int, folder: Path, image_size: int
    ) -> TripletFiles:
        """Write ``n_train`` triplets over ``train_world`` and ``n_val`` over ``val_world`` under ``folder``."""
        train, train_images = self.write(train_world, n_train, seed, folder / "train", "train", image_size)
        val, val_images = self.write(val_world, n_val, seed + 1, folder / "val", "val", image_size)
        return TripletFiles(self.name, train, val, train_images, val_images)


def _mid_level(world: World, n: int, seed: int, folder: Path, split: str, image_size: int) -> tuple[Path, None]:
    # 6-10 voters: every triplet passes NIGHTS' votes >= 6 filter, so each kind gets n.
    made = make_nights_triplets(world, n, np.random.default_rng(seed), voters=(6, 10), image_size=image_size)
    return made.write_nights(folder), None


def _low_level(world: World, n: int, seed: int, folder: Path, split: str, image_size: int) -> tuple[Path, None]:
    # BAPPS: 2 judgments per training triplet, 5 per validation triplet.
    voters = 2 if split == "train" else 5
    rng = np.random.default_rng(seed)
    return make_bapps_triplets(world, n, rng, folder, voters=voters, image_size=image_size), None


def _class(world: World, n: int, seed: int, folder: Path, split: str, image_size: int) -> tuple[Path, None]:
    rng = np.random.default_rng(seed)
    return make_class_triplets(world, n, rng, folder / f"{split}.jsonl", split=split, image_size=image_size), None


def _semantic(world: World, n: int, seed: int, folder: Path, split: str, image_size: int) -> tuple[Path, Path]:
    # THINGS ships trainset.npy / validationset.npy; here one file per split.
    return make_things_triplets(
        world, n, np.random.default_rng(seed), folder, name=f"{split}set", image_size=image_size
    )


TRIPLET_KINDS: Registry[TripletKind] = Registry("triplet kind")
for _kind in (
    TripletKind("mid-level", "NIGHTS", "NIGHTS data.csv", _mid_level),
    TripletKind("low-level", "BAPPS", "BAPPS 2AFC folder", _low_level),
    TripletKind("class", "ImageNet classes", "ranked .jsonl", _class),
    TripletKind("semantic", "THINGS", "THINGS .npy + image list", _semantic),
):
    TRIPLET_KINDS.register(_kind.name, _kind)
