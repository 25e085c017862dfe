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
    # The gains (8 arms and the base), then the contrasts (2 methods x 5 pairs of kinds).
    assert len(rows) == 2 * 4 + 1 + 2 * 5 and all(line.count("|") == 8 for line in rows)
    assert "generated world, base ViT random init, trained here" in table[0]
    assert sum(line.startswith("half-widths reached (95%, 2 seeds; target <= 0.02)") for line in table) == 1
    verdicts = [line for line in table if line.startswith("- ")]
    assert len(verdicts) == 2 * 6 and all(
        any(f"**{v}**" in line for v in ("holds", "contradicted", "unresolved")) for line in verdicts
    )
    assert Image.open(small_run / "gains.png").size == (1120, 920)  # gains and contrasts, a column per method


def test_a_killed_small_run_resumes_to_the_same_table(small_run, tmp_path):
    """What a killed run left (seed 0 written) plus --resume gives the uninterrupted run's numbers."""
    saved = json.loads((small_run / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps({**saved, "seeds": saved["seeds"][:1]}))
    with pytest.raises(SystemExit) as done:
        main(["study", "ablation", "--size", "small", "--seed", "0", "--seed", "1", "--out", str(tmp_path), "--resume"])
    assert (done.value.code or 0) == 0
    resumed = json.loads((tmp_path / "results.json").read_text())
    assert [s["metrics"] for s in resumed["seeds"]] == [s["metrics"] for s in saved["seeds"]]
    tables = [(folder / "table.md").read_text().split("\n", 1)[1] for folder in (small_run, tmp_path)]
    assert tables[0] == tables[1]  # below the header line (times, load), every printed digit


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


# The contrasts, verdicts and sizing on synthetic per-seed numbers, against scipy and numpy.

KINDS = ("mid-level", "low-level", "class", "semantic")
METRICS = {"counting": "count MAE", "instance retrieval": "recall@1", TWO_AFC: TWO_AFC}


def synthetic(per_seed: dict[str, dict[str, list[float]]], methods=("glocal", "lora")) -> AblationResult:
    """An ablation whose ``metrics[metric][arm]`` per seed are given (the other tasks: the base's)."""
    from percep_rag.study.ablation import AblationSeed

    config = AblationConfig.small().model_copy(update={"methods": methods})
    n = len(next(iter(next(iter(per_seed.values())).values())))
    seeds = []
    for seed in range(n):
        metrics = {}
        for metric in (*(m for m, _ in TASKS.values()), TWO_AFC):
            values = per_seed.get(metric, {})
            metrics[metric] = {
                arm: (values[arm][seed] if arm in values else values.get("base", [0.5] * n)[seed])
                for arm in config.arms
            }
        seeds.append(AblationSeed(seed, metrics))
    return AblationResult(config, seeds)


def t_interval(values):
    """The paired 95% t-interval, independently: scipy's t quantile, numpy's sd."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean(), half


def test_contrasts_are_paired_t_intervals_of_gain_differences_signed_per_task():
    from percep_rag.study.ablation_contrasts import contrast
    from percep_rag.study.ablation_report import contrast_table

    rng = np.random.default_rng(3)
    per_seed = {
        metric: {arm: rng.normal(0.5, 0.1, 6).tolist() for arm in AblationConfig.small().arms}
        for metric in METRICS.values()
    }
    result = synthetic(per_seed)
    for task, metric in METRICS.items():
        sign = -1.0 if task == "counting" else 1.0  # counting: the drop in MAE is the gain
        for method in ("glocal", "lora"):
            for kind, other in (("mid-level", "semantic"), ("low-level", "semantic"), ("mid-level", "class")):
                a, b = (np.array(per_seed[metric][f"{method}/{k}"]) for k in (kind, other))
                mean, half = t_interval(sign * (a - b))  # the base cancels: paired by seed
                got = contrast(result, task, method, kind, other)
                assert got.n == 6 and abs(got.mean - mean) < 1e-12 and abs(got.half_width - half) < 1e-10
    mean, half = t_interval(-(np.array(per_seed["count MAE"]["lora/class"]) - per_seed["count MAE"]["lora/semantic"]))
    row = next(line for line in contrast_table(result).splitlines() if line.startswith("| LoRA-HA | class - semantic"))
    assert row.split(" | ")[2] == f"{mean:+.4f} ± {half:.4f}"


def _spread(centre: float, width: float, n: int = 5) -> list[float]:
    """n values around ``centre`` whose 95% t half-width is ``width`` (checked against scipy)."""
    offsets = np.linspace(-1, 1, n)
    unit = t_interval(offsets)[1]
    values = (centre + offsets * width / unit).tolist()
    assert abs(t_interval(values)[1] - width) < 1e-12
    return values


def test_verdicts_hold_contradict_or_stay_unresolved_by_the_deciding_interval():
    from percep_rag.study.ablation_contrasts import claim_verdicts

    base = [0.5] * 5

    def arms(method, **gains):
        return {
            f"{method}/{kind}": [b + g for b, g in zip(base, values, strict=True)] for kind, values in gains.items()
        }

    flat = [0.0] * 5
    per_seed = {
        # counting (MAE: lower is better): gLocal mid-level lowers MAE by 0.2 ± 0.05, others by 0.05 ± 0.01.
        "count MAE": {
            "base": base,
            **arms(
                "glocal",
                **{
                    "mid-level": _spread(-0.2, 0.05),
                    "low-level": _spread(-0.02, 0.01),
                    "class": _spread(-0.01, 0.01),
                    "semantic": _spread(0.1, 0.01),
                },
            ),
            **arms("lora", **{"mid-level": flat, "low-level": flat, "class": flat, "semantic": flat}),
        },
        # instance: gLocal low-level beats mid-level for sure; LoRA mid-level vs others within noise.
        "recall@1": {
            "base": base,
            **arms(
                "glocal",
                **{
                    "mid-level": _spread(0.05, 0.01),
                    "low-level": _spread(0.15, 0.01),
                    "class": _spread(0.0, 0.005),
                    "semantic": _spread(-0.05, 0.01),
                },
            ),
            **arms(
                "lora",
                **{
                    "mid-level": _spread(0.01, 0.03),
                    "low-level": flat,
                    "class": flat,
                    "semantic": _spread(-0.005, 0.002),
                },
            ),
        },
        TWO_AFC: {
            "base": base,
            **arms(
                "glocal",
                **{
                    "mid-level": _spread(0.05, 0.01),
                    "low-level": _spread(0.01, 0.005),
                    "class": _spread(0.0, 0.005),
                    "semantic": _spread(-0.02, 0.005),
                },
            ),
            **arms("lora", **{"mid-level": flat, "low-level": flat, "class": flat, "semantic": flat}),
        },
    }
    verdicts = {(v.claim, v.method): v for v in claim_verdicts(synthetic(per_seed))}
    assert len(verdicts) == 2 * 6
    counting = verdicts[("mid-level helps counting most", "glocal")]
    # The smallest lower end decides: mid-level - low-level, 0.18 ± 0.04 (the spreads share their pattern).
    diff = -(np.array(per_seed["count MAE"]["glocal/mid-level"]) - per_seed["count MAE"]["glocal/low-level"])
    mean, half = t_interval(diff)
    assert counting.verdict == "holds" and counting.deciding == "mid-level - low-level on counting"
    assert abs(counting.interval.low - (mean - half)) < 1e-12
    instance = verdicts[("mid-level helps instance retrieval most", "glocal")]
    assert instance.verdict == "contradicted" and instance.deciding == "mid-level - low-level on instance retrieval"
    assert instance.interval.high < 0
    assert verdicts[("mid-level helps 2AFC (mid-level test) most", "glocal")].verdict == "holds"
    # LoRA: nothing moves but noise, so nothing is decided; a zero-spread tie is no "most" either.
    assert verdicts[("mid-level helps instance retrieval most", "lora")].verdict == "unresolved"
    assert verdicts[("mid-level helps counting most", "lora")].verdict == "unresolved"
    # Semantic is below every other kind on all three tasks under gLocal (holds); under LoRA it is
    # surely below 0 on instance retrieval but only tied elsewhere: unresolved, the tie decides.
    assert verdicts[("semantic helps least or hurts", "glocal")].verdict == "holds"
    lora_semantic = verdicts[("semantic helps least or hurts", "lora")]
    assert lora_semantic.verdict == "unresolved" and "counting" in lora_semantic.deciding
    # gLocal low-level gains 0.15 ± 0.01 on instance retrieval: more than "little" (0.02) for sure.
    low = verdicts[("low-level changes little", "glocal")]
    assert low.verdict == "contradicted" and low.deciding.startswith("low-level gain on instance retrieval")
    assert abs(low.interval.mean - 0.15) < 1e-12
    # class: counting 0.01 ± 0.01 (inside ±0.05), instance 0 ± 0.005, 2AFC 0 ± 0.005: holds.
    assert verdicts[("class-based changes little", "glocal")].verdict == "holds"
    assert verdicts[("class-based changes little", "lora")].verdict == "holds"  # zero gain, zero spread


def test_seeds_needed_is_the_fewest_seeds_whose_t_half_width_meets_the_target():
    from scipy import stats

    from percep_rag.study.ablation_power import half_width, seeds_needed

    for sd in (0.0, 0.004, 0.0196, 0.03, 0.0647, 0.1181):
        n = seeds_needed(sd, 0.02)

        def width(k, sd=sd):
            return stats.t.ppf(0.975, k - 1) * sd / np.sqrt(k)

        assert n >= 5 and width(n) <= 0.02 and (n == 5 or width(n - 1) > 0.02), (sd, n)
        assert abs(half_width(sd, n) - width(n)) < 1e-12


def test_choose_size_takes_the_size_reaching_most_cells_in_budget_and_says_what_all_would_cost():
    from percep_rag.study.ablation_power import Pilot, choose_size, sizing_report

    def pilot(triplets, sds, cpu):
        unit = np.linspace(-1, 1, 5) / np.linspace(-1, 1, 5).std(ddof=1)  # sd exactly 1
        return Pilot(triplets, 2, 5, {f"cell{i}": (sd * unit).tolist() for i, sd in enumerate(sds)}, cpu, 40.0)

    cheap = pilot(400, [0.12, 0.01, 0.01, 0.004], 80.0)  # many seeds, one cell far off
    dear = pilot(1200, [0.06, 0.06, 0.02, 0.01], 150.0)  # fewer seeds, two cells short
    choice = choose_size([dear, cheap], budget_minutes=20, target=0.02, wall_per_cpu=0.44)
    # 20 min = 1200 s wall = 2727 CPU s: (2727 - 40) // 80 = 33 seeds, // 150 = 17 seeds.
    assert [o.affordable for o in choice.options] == [17, 33]
    assert choice.chosen.pilot is cheap and choice.chosen.seeds == 33 and choice.chosen.reached == 3
    from scipy import stats

    need = next(k for k in range(5, 10_000) if stats.t.ppf(0.975, k - 1) * 0.12 / np.sqrt(k) <= 0.02)
    assert choice.chosen.needed["cell0"] == need
    minutes = (40 + need * 80) * 0.44 / 60
    assert abs(choice.chosen.minutes_for_all - minutes) < 1e-9
    report = sizing_report(choice)
    assert (
        "chosen: 400 triplets / 2 LoRA epochs, 33 seeds" in report and "every cell at the target would take" in report
    )


def test_the_default_size_is_what_the_sizing_chooses_on_the_recorded_pilots():
    from percep_rag.study import ablation
    from percep_rag.study.ablation_power import PLANNING_MINUTES, calibrate_wall_per_cpu, choose_size, load_pilot

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    folders = sorted((results / "triplet_ablation_power").glob("t*_e*"))
    runs = [AblationResult.from_dict(json.loads((f / "results.json").read_text())) for f in folders]
    # The idle 2-core run at the chosen size on the pilots' CPU kind (the AMX Xeon, 2026-12-07) calibrates wall time.
    idle = AblationResult.from_dict(json.loads((results / "triplet_ablation_powered" / "results.json").read_text()))
    wall_per_cpu = calibrate_wall_per_cpu(idle, next(r for r in runs if r.config == idle.config))
    chosen = choose_size(
        [load_pilot(f) for f in folders], budget_minutes=PLANNING_MINUTES, target=0.02, wall_per_cpu=wall_per_cpu
    )
    size = (chosen.chosen.pilot.train_triplets, chosen.chosen.pilot.lora_epochs, chosen.chosen.seeds)
    assert size == (ablation.DEFAULT_TRAIN_TRIPLETS, ablation.DEFAULT_LORA_EPOCHS, ablation.DEFAULT_SEEDS)
    assert AblationConfig.default() == AblationConfig.at_size(size[0], size[1])
