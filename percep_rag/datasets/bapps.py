"""BAPPS 2AFC folders (LPIPS, Zhang et al. 2018): ``ref/``, ``p0/``, ``p1/`` and ``judge/``.

A BAPPS 2AFC set (``dataset/2afc/train/traditional``, ``.../val/cnn``, ...) is a folder with
four sub-folders holding one file per triplet under the same stem: the reference
``ref/<stem>.png``, two distortions ``p0/<stem>.png`` and ``p1/<stem>.png``, and
``judge/<stem>.npy``, the share of people who found ``p1`` closer to the reference. In the
package's convention (:mod:`~percep_rag.datasets.triplet_set`) that is ``left=p0``,
``right=p1``, ``target=judge``. A folder whose sub-folders are such sets (``2afc/val``
holding ``traditional``, ``cnn``, ...) is read as all of them, in name order, and a
``2afc/`` root holding ``train/`` and ``val/`` as both, each triplet labelled with its split
(so ``percep-rag align fit 2afc/`` fits on train and selects on val).

>>> import tempfile, pathlib
>>> from PIL import Image
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for part in ("ref", "p0", "p1"):
...     (root / part).mkdir()
...     Image.new("RGB", (8, 8)).save(root / part / "000000.png")
>>> (root / "judge").mkdir(); np.save(root / "judge" / "000000.npy", np.array([0.75]))
>>> read_bapps_2afc(root).target.tolist(), is_bapps_folder(root)
([0.75], True)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from percep_rag.datasets.triplet_set import OnError, Problem, TripletError, TripletFileError, TripletSet

BAPPS_PARTS = ("ref", "p0", "p1", "judge")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_SPLITS = ("train", "val", "test")


def _is_set(folder: Path) -> bool:
    return all((folder / part).is_dir() for part in BAPPS_PARTS)


def _sets(folder: Path, split: str | None = None) -> list[tuple[Path, str | None]]:
    """``(set folder, split)`` pairs: the folder itself, its sets, or (a BAPPS ``2afc/``
    root) the sets of its ``train``/``val`` sub-folders, labelled with that split."""
    if _is_set(folder):
        return [(folder, split)]
    children = sorted(child for child in folder.iterdir() if child.is_dir())
    sets = [(child, split) for child in children if _is_set(child)]
    if sets or split is not None:
        return sets
    return [pair for child in children if child.name in _SPLITS for pair in _sets(child, child.name)]


def is_bapps_folder(path: str | Path) -> bool:
    """True when ``path`` is a BAPPS 2AFC folder, or a folder of them."""
    path = Path(path)
    return path.is_dir() and bool(_sets(path))


def _image(folder: Path, stem: str) -> Path | None:
    for suffix in _IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _judge(path: Path) -> float | str:
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        return f"{path.name}: not a readable .npy array ({error})"
    if not isinstance(value, np.ndarray) or value.size != 1 or value.dtype.kind not in "fiu":
        return f"{path.name}: expected one number, got {getattr(value, 'shape', value)!r}"
    share = float(value.reshape(-1)[0])
    if not (math.isfinite(share) and 0.0 <= share <= 1.0):
        return f"{path.name}: the share for p1 must be in [0, 1], got {share}"
    return share


def read_bapps_2afc(path: str | Path, *, split: str | None = None, on_error: OnError = "raise") -> TripletSet:
    """Read a BAPPS 2AFC folder (or a folder of them) as ``left=p0, right=p1, target=judge``.

    Every ``ref/`` image is one triplet; a missing ``p0``/``p1`` image or ``judge`` file, or a
    judge that is not one share in [0, 1], is a problem (numbered by the triplet's position,
    1-based, in name order): one :class:`TripletFileError` lists them all, or with
    ``on_error="skip"`` those triplets are dropped. ``ids`` are ``<set>/<stem>``; ``split``
    (e.g. ``"train"``, ``"val"``) labels every triplet when given (a ``2afc/`` root labels
    them with their sub-folder's name).
    """
    path = Path(path)
    if not path.is_dir():
        raise TripletError(f"BAPPS 2AFC folder {path} does not exist")
    folders = _sets(path, split)
    if not folders:
        raise TripletFileError(path, [(0, f"no BAPPS 2AFC set: expected sub-folders {', '.join(BAPPS_PARTS)}")])
    rows: dict[str, list] = {key: [] for key in ("anchor", "left", "right", "target", "ids", "lines", "split")}
    problems: list[Problem] = []
    number = 0
    for folder, folder_split in folders:
        for ref in sorted(p for p in (folder / "ref").iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
            number += 1
            stem = ref.stem
            p0, p1 = _image(folder / "p0", stem), _image(folder / "p1", stem)
            judge_path = folder / "judge" / f"{stem}.npy"
            missing = [name for name, found in (("p0", p0), ("p1", p1)) if found is None]
            missing += [] if judge_path.is_file() else ["judge"]
            if missing:
                problems.append((number, f"{folder.name}/{stem}: missing {', '.join(missing)}"))
                continue
            share = _judge(judge_path)
            if isinstance(share, str):
                problems.append((number, f"{folder.name}/{stem}: {share}"))
                continue
            for key, value in (("anchor", ref), ("left", p0), ("right", p1)):
                rows[key].append(str(value))
            rows["target"].append(share)
            rows["ids"].append(str((folder / stem).relative_to(path)) if folder != path else stem)
            rows["split"].append(folder_split)
            rows["lines"].append(number)
    if problems and on_error == "raise":
        raise TripletFileError(path, problems)
    return TripletSet(
        rows["anchor"],
        rows["left"],
        rows["right"],
        rows["target"],
        ids=rows["ids"],
        split=rows["split"] if any(name is not None for name in rows["split"]) else None,
        lines=rows["lines"],
        source=str(path),
        problems=problems,
    )
