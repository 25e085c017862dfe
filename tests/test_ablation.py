"""Issue 25: the triplet-source ablation's protocol, not its outcome.

Each generator's triplets are written in the format they mimic, parse with the reader
``align fit`` uses, and have the property their kind is defined by; ``percep-rag study
ablation --size small`` (a micro world: a 1-epoch, 16-d base, a few dozen triplets per kind)
runs end to end and writes a table with every kind x method x task, finite intervals and
the figure. The default-size run and what it found are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from percep_rag.cli import main
from percep_rag.datasets.bapps import read_bapps_2afc
from percep_rag.datasets.triplets import TripletFileError, read_triplets
from percep_rag.study.ablation import TASKS, TWO_AFC, AblationConfig, AblationResult
from percep_rag.study.kinds import TRIPLET_KINDS
from percep_rag.study.lowlevel import make_bapps_triplets
from percep_rag.study.nights import make_nights_triplets
from percep_rag.study.pixels import PIXEL_DISTORTIONS, distort_pixels, pixel_distance
from percep_rag.study.semantic import ConceptJudge
from percep_rag.study.worlds import generate_world

SHAPES = ("circle", "triangle", "cross")


@pytest.fixture(scope="module")
def world():
    return generate_world(60, seed=4, shapes=SHAPES, split_fractions={"train": 0.5, "val": 0.5})


def made(world, kind: str, folder: Path, n: int = 40):
    files = TRIPLET_KINDS.get(kind).make(world.subset("train"), world.subset("val"), n, n // 2, 7, folder, 32)
    return files, files.read()


def category_of(world, split: str):
    """Image path -> the category of the scene it shows (images/<index>.png is scene <index>)."""
    categories = world.subset(split).labels("category")
    return lambda path: categories[int(Path(path).stem)]


def test_mid_level_triplets_are_nights_csv_variations_of_one_scene(world, tmp_path):
    files, (train, val) = made(world, "mid-level", tmp_path)
    assert files.train.name == "data.csv" and (len(train), len(val)) == (40, 20)
    assert set(train.split) == {"train"} and set(val.split) == {"val"}
    assert ((train.target * 6) % 1 != 0).any() or train.target.max() <= 1  # vote shares
    # The same generator, the same seed: every triplet is a scene and two variations of it, of one category.
    again = make_nights_triplets(world.subset("train"), 40, np.random.default_rng(7), voters=(6, 10), image_size=32)
    for anchor, left, right in zip(again.triplets.anchor, again.triplets.left, again.triplets.right, strict=True):
        assert again.scenes[anchor].category == again.scenes[left].category == again.scenes[right].category
    assert [Path(p).name for p in train.anchor] == [Path(p).name for p in again.triplets.anchor]


def test_low_level_triplets_are_bapps_folders_whose_positive_is_less_distorted(world, tmp_path):
    files, (train, val) = made(world, "low-level", tmp_path)
    assert all((files.train / part).is_dir() for part in ("ref", "p0", "p1", "judge"))
    assert (len(train), len(val)) == (40, 20)
    assert set(np.unique(train.target)) <= {0.0, 0.5, 1.0}  # 2 judgments per training triplet, as in BAPPS
    agree, decided = 0, 0
    for triplets in (train, val):
        for anchor, left, right, target in zip(
            triplets.anchor, triplets.left, triplets.right, triplets.target, strict=True
        ):
            ref = Image.open(anchor)
            d_left, d_right = pixel_distance(ref, Image.open(left)), pixel_distance(ref, Image.open(right))
            if target != 0.5:
                decided += 1
                agree += (target > 0.5) == (d_right < d_left)
    assert decided > 40 and agree / decided > 0.85, (agree, decided)


def test_class_triplets_are_a_ranked_table_two_of_one_category_one_of_another(world, tmp_path):
    files, (train, val) = made(world, "class", tmp_path)
    assert files.train.suffix == ".jsonl" and (len(train), len(val)) == (40, 20)
    for split, triplets in (("train", train), ("val", val)):
        category = category_of(world, split)
        for anchor, negative, positive in zip(triplets.anchor, triplets.left, triplets.right, strict=True):
            assert category(anchor) == category(positive) != category(negative)
            assert anchor != positive


def test_semantic_triplets_are_things_odd_one_out_by_concept(world, tmp_path):
    files, (train, val) = made(world, "semantic", tmp_path)
    assert files.train.suffix == ".npy" and np.load(files.train).shape == (40, 3)
    assert (len(train), len(val)) == (40, 20)
    judge, category = ConceptJudge(), category_of(world, "train")
    by_concept, two_and_one, odd_is_the_other = 0, 0, 0
    for anchor, odd, right in zip(train.anchor, train.left, train.right, strict=True):
        cats = (category(anchor), category(right), category(odd))
        assert len(set(cats)) > 1 and len({anchor, right, odd}) == 3
        by_concept += judge.odd_one_out(cats) == 2
        if len(set(cats)) == 2:
            two_and_one += 1
            odd_is_the_other += cats[2] not in cats[:2]
    assert by_concept / len(train) > 0.7
    assert two_and_one > 10 and odd_is_the_other / two_and_one > 0.9


def test_pixel_distortions_grow_with_strength():
    image = Image.new("RGB", (32, 32), (40, 120, 200))
    image.paste((230, 230, 30), (8, 8, 24, 24))
    for kind in PIXEL_DISTORTIONS:
        weak, strong = (
            pixel_distance(image, distort_pixels(image, kind, s, np.random.default_rng(0))) for s in (0.1, 1)
        )
        assert 0 <= weak < strong, kind


def test_bapps_reader_reports_every_bad_triplet_and_reads_a_2afc_root(world, tmp_path):
    root = tmp_path / "2afc"
    for number, folder in enumerate(("train/traditional", "train/cnn", "val/traditional")):
        make_bapps_triplets(world, 3, np.random.default_rng(number), root / folder, image_size=16)
    both = read_triplets(root)  # what `align fit 2afc/` reads: train and val, each labelled
    assert len(both) == 9 and both.split_counts() == {"train": 6, "val": 3}
    assert both.ids.tolist()[:2] == ["train/cnn/000000", "train/cnn/000001"]
    one = root / "val" / "traditional"
    (one / "judge" / "000001.npy").unlink()
    np.save(one / "judge" / "000002.npy", np.array([1.5]))
    with pytest.raises(TripletFileError) as error:
        read_bapps_2afc(one)
    assert "missing judge" in str(error.value) and "must be in [0, 1]" in str(error.value)
    assert len(read_bapps_2afc(one, on_error="skip")) == 1


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    with pytest.raises(SystemExit) as done:
        main(["study", "ablation", "--size", "small", "--seed", "0", "--seed", "1", "--out", str(out)])
    assert (done.value.code or 0) == 0
    return out


def test_the_small_ablation_writes_every_kind_method_and_task_with_finite_intervals(small_run):
    result = AblationResult.from_dict(json.loads((small_run / "results.json").read_text()))
    config = AblationConfig.small()
    assert result.config == config and [s.seed for s in result.seeds] == [0, 1]
    arms = config.arms
    assert len(arms) == 1 + 2 * 4
    for seed in result.seeds:
        for task in (*TASKS, TWO_AFC):
            metric = TASKS[task][0] if task in TASKS else task
            assert set(seed.metrics[metric]) == set(arms)
        budget = {"train": config.study.train_triplets, "val": config.study.val_triplets}
        assert seed.triplets == dict.fromkeys(config.kinds, budget)  # one budget for every kind
        assert set(seed.fits) == set(arms) - {"base"}
    for arm in arms[1:]:
        for task in (*TASKS, TWO_AFC):
            gain = result.gain(task, arm)
            assert np.isfinite([gain.mean, gain.half_width]).all() and gain.n == 2
    table = (small_run / "table.md").read_text().splitlines()
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| method")]
    assert len(rows) == 2 * 4 + 1 and all(line.count("|") == 8 for line in rows)
    assert "generated world, base ViT random init, trained here" in table[0]
    assert Image.open(small_run / "gains.png").size == (1120, 460)


def test_runs_made_seed_by_seed_merge_into_one_result(small_run, tmp_path):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "triplet_ablation_merge.py"
    spec = importlib.util.spec_from_file_location("triplet_ablation_merge", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved = json.loads((small_run / "results.json").read_text())
    for seed in saved["seeds"]:
        (tmp_path / str(seed["seed"])).mkdir()
        one = {**saved, "seeds": [seed]}
        (tmp_path / str(seed["seed"]) / "results.json").write_text(json.dumps(one))
    merged, headers = module.merge([tmp_path / "1", tmp_path / "0"])
    assert merged == AblationResult.from_dict(saved) and len(headers) == 2
