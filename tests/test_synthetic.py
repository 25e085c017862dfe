"""The synthetic perceptual world: scenes, renders, the judge, NIGHTS files, the semantic ViT, viz."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from percep_rag.alignment.triplets import read_nights_csv
from percep_rag.backbones import Backbone
from percep_rag.datasets.synthetic import (
    SHAPES,
    HumanJudge,
    SceneError,
    SceneObject,
    SceneSpec,
    World,
    distort,
    generate_world,
    make_nights_triplets,
    render,
    sample_scene,
)
from percep_rag.datasets.synthetic_backbone import (
    SemanticBackboneConfig,
    load_semantic_backbone,
    load_semantic_model,
    train_semantic_backbone,
)
from percep_rag.embedder import AlignedEmbedder
from percep_rag.viz import GridLayout, mean_ci, metric_bars, retrieval_grid


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


# --------------------------------------------------------------------------- scenes and renders


def test_world_is_a_deterministic_function_of_its_seed():
    world = generate_world(30, seed=11)
    assert world == generate_world(30, seed=11)
    assert world != generate_world(30, seed=12)
    assert generate_world(40, seed=11).scenes[:30] == world.scenes  # scene i depends on (seed, i) only
    assert [render(s).tobytes() for s in world.scenes[:5]] == [render(s).tobytes() for s in world.scenes[:5]]
    assert World.from_dict(world.to_dict()) == world


def test_world_balances_categories_and_assigns_splits():
    world = generate_world(60, seed=0)
    assert sorted(world.labels().tolist()) == sorted(list(SHAPES) * 10)
    assert {"train": 48, "val": 6, "test": 6} == {name: world.split.count(name) for name in ("train", "val", "test")}
    assert len(world.subset("test")) == 6 and world.labels("count").min() >= 1


def test_jittered_render_is_the_same_instance_not_the_same_pixels():
    world = generate_world(40, seed=2)
    others = [np.abs(pixels(render(a)) - pixels(render(b))).mean() for a, b in itertools.pairwise(world.scenes)]
    for scene in world.scenes:
        exact, jittered = render(scene), render(scene, jitter_seed=3)
        change = np.abs(pixels(exact) - pixels(jittered)).mean()
        assert 0.0 < change < 0.5 * np.median(others)
        assert jittered.tobytes() == render(scene, jitter_seed=3).tobytes()
        assert jittered.tobytes() != render(scene, jitter_seed=4).tobytes()


def test_sampled_scenes_have_the_asked_count_and_category_and_do_not_overlap():
    rng = np.random.default_rng(0)
    for count, category in itertools.product(range(1, 11), SHAPES):
        scene = sample_scene(rng, count=count, category=category)
        assert scene.count == count and scene.category == category and scene.has_majority
        for obj in scene.objects:  # fully inside the frame, so every object can be counted
            assert obj.size <= obj.x <= 1 - obj.size and obj.size <= obj.y <= 1 - obj.size
        for a, b in itertools.combinations(scene.objects, 2):
            assert (a.x - b.x) ** 2 + (a.y - b.y) ** 2 >= (a.size + b.size) ** 2
    assert render(scene, size=96).size == (96, 96)


def test_scene_validation_is_precise():
    with pytest.raises(SceneError, match="unknown shape 'blob'"):
        SceneObject("blob", "red", 0.5, 0.5, 0.1)
    with pytest.raises(SceneError, match="1 to 10 objects"):
        SceneSpec((), "grey")
    with pytest.raises(SceneError, match="unknown label kind"):
        generate_world(1, seed=0).scenes[0].label("mood")


def test_distortions_keep_the_category():
    rng = np.random.default_rng(5)
    for scene in generate_world(30, seed=4).scenes:
        variant = distort(scene, rng, n_edits=2)
        assert variant != scene and variant.category == scene.category and variant.has_majority


# --------------------------------------------------------------------------- the judge


def _row(count: int, colour: str = "red", y: float = 0.5, shape: str = "circle", first_colour: str = "") -> SceneSpec:
    xs = np.linspace(0.15, 0.85, count) if count > 1 else [0.5]
    colours = [first_colour or colour] + [colour] * (count - 1)
    objects = tuple(SceneObject(shape, c, float(x), y, 0.06) for x, c in zip(xs, colours, strict=True))
    return SceneSpec(objects, "grey", "flat")


@pytest.mark.parametrize(
    ("name", "closer", "farther"),
    [
        ("count", _row(4), _row(9)),
        ("layout", _row(3, y=0.45), _row(3, y=0.9)),
        ("colour", _row(3, first_colour="blue"), _row(3, colour="blue")),
        ("hue", _row(3, colour="orange"), _row(3, colour="blue")),  # red -> orange is the smaller change
        ("background", replace(_row(3), texture="stripes"), replace(_row(3), background="navy", texture="checker")),
    ],
)
def test_judge_prefers_the_variant_closer_in_its_hidden_attributes(name, closer, farther):
    judge, ref, rng = HumanJudge(), _row(3), np.random.default_rng(0)
    assert judge.distance(ref, closer) < judge.distance(ref, farther)
    assert judge.prefers_right(ref, farther, closer) and not judge.prefers_right(ref, closer, farther)
    left_votes, right_votes = judge.votes(ref, farther, closer, rng, n_voters=40)
    assert left_votes + right_votes == 40 and right_votes >= 28  # noisy voters, a clear majority


def test_judge_ignores_shapes_so_the_category_is_invisible_to_it():
    judge = HumanJudge()
    assert judge.distance(_row(3), _row(3, shape="star")) == 0.0
    left, right = judge.votes(_row(3), _row(3, shape="star"), _row(3, shape="cross"), np.random.default_rng(1), 200)
    assert 70 < right < 130  # a coin flip per voter


# --------------------------------------------------------------------------- NIGHTS triplets


def test_nights_folder_round_trips_through_read_nights_csv(tmp_path):
    world = generate_world(24, seed=7)
    made = make_nights_triplets(world, 60, np.random.default_rng(3))
    again = make_nights_triplets(world, 60, np.random.default_rng(3))
    assert made.triplets.target.tolist() == again.triplets.target.tolist()
    votes = made.triplets.extra["votes"]
    assert votes.min() >= 5 and votes.max() <= 10 and (votes < 6).any()
    assert np.allclose(made.triplets.target, made.triplets.extra["right_votes"] / votes)
    for ref, left, right in zip(made.triplets.anchor, made.triplets.left, made.triplets.right, strict=True):
        assert made.scenes[ref].category == made.scenes[left].category == made.scenes[right].category

    csv_path = made.write_nights(tmp_path / "nights")
    read = read_nights_csv(csv_path)  # votes >= 6 by default, and every file must exist
    kept = made.with_min_votes(6)
    assert len(read) == len(kept) == int((votes >= 6).sum())
    assert read.ids.tolist() == kept.ids.tolist()
    assert np.allclose(read.target, kept.target)
    assert read.split.tolist() == kept.split.tolist()
    assert read.subsplit.tolist() == kept.subsplit.tolist()
    assert read.anchor[0] == str(tmp_path / "nights" / kept.anchor[0])
    assert Image.open(read.left[0]).size == (64, 64)
    assert len(read_nights_csv(csv_path, min_votes=1)) == 60


# --------------------------------------------------------------------------- the semantic backbone


@pytest.fixture(scope="module")
def semantic(tmp_path_factory):
    # An easier world than the default (3 shapes, up to 4 objects) so that a test-sized
    # budget (about 15 s on one core) gets well above chance.
    world = generate_world(1500, seed=0, max_objects=4, shapes=("circle", "triangle", "cross"))
    result = train_semantic_backbone(world, SemanticBackboneConfig.tiny(epochs=8))
    directory = result.save(tmp_path_factory.mktemp("semantic"))
    return world, result, directory


def test_semantic_backbone_learns_the_category_of_held_out_scenes(semantic):
    _world, result, _directory = semantic
    report = result.report
    assert result.classes == ["circle", "triangle", "cross"] and report["chance"] == pytest.approx(1 / 3)
    held_out = (report["test_accuracy"] + report["val_accuracy"]) / 2  # 150 scenes each
    assert held_out >= report["chance"] + 0.17, report  # about 0.6 measured; 0.5 is ~3.5 standard errors below


def test_semantic_backbone_loads_back_bit_identically(semantic):
    world, result, directory = semantic
    loaded = load_semantic_backbone(directory)
    assert isinstance(loaded, Backbone) and loaded.preprocess.image_size == 64
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())  # folded into the convs
    assert loaded.weights_digest() == result.backbone.weights_digest()
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x).cls, result.backbone(x).cls)
    model = load_semantic_model(directory)
    assert model.accuracy(world, "test") == result.report["test_accuracy"]
    embedder = AlignedEmbedder(loaded, pooling="cls+patchmean", device="cpu", num_workers=0)
    vectors = embedder.embed([render(world.scenes[0]), render(world.scenes[1])])
    assert vectors.shape == (2, 2 * loaded.dim)


# --------------------------------------------------------------------------- viz


def test_retrieval_grid_writes_a_png_of_the_layout_size(tmp_path):
    scenes = generate_world(7, seed=1).scenes
    images = [render(s) for s in scenes]
    out = retrieval_grid(
        images[:2],
        [images[2:5], images[3:6]],
        [images[4:7], images[2:5]],
        tmp_path / "grid.png",
        query_captions=["count 3", "count 5"],
        aligned_captions=[[f"count {s.count}\ncos 0.9" for s in scenes[4:7]]] * 2,
        aligned_correct=[[True, False, None]] * 2,
        title="demo",
    )
    assert Image.open(out).size == GridLayout(title=True).size(n_queries=2, k=3)
    with pytest.raises(ValueError, match="aligned_neighbours must have 2 rows of 3"):
        retrieval_grid(images[:2], [images[2:5]] * 2, [images[2:4]] * 2, tmp_path / "bad.png")


def test_metric_bars_writes_a_png_of_the_asked_size(tmp_path):
    pytest.importorskip("matplotlib")
    table = {
        "2AFC": {"base": [0.70, 0.72, 0.71], "LoRA": [0.90, 0.91, 0.93]},
        "count MAE": {"base": [2.0, 2.2, 1.9], "LoRA": [1.2, 1.3, 1.1]},
    }
    out = metric_bars(
        table, tmp_path / "bars.png", lower_is_better=["count MAE"], chance={"2AFC": 0.5}, size=(640, 320)
    )
    assert Image.open(out).size == (640, 320)
    grouped = {"recall@1": {"DINO": {"base": 0.2, "HA": [0.3, 0.32]}, "CLIP": {"base": 0.1, "HA": 0.2}}}
    assert Image.open(metric_bars(grouped, tmp_path / "grouped.png")).size == (960, 420)
    eight = {f"metric {i}": {"base": [0.5, 0.6], "gLocal": 0.7, "LoRA": 0.8} for i in range(8)}
    assert Image.open(metric_bars(eight, tmp_path / "eight.png")).size == (960, 750)  # two rows of four
    with pytest.raises(ValueError, match="columns"):
        metric_bars(eight, tmp_path / "bad.png", columns=0)


def test_mean_ci_uses_the_t_distribution():
    estimate = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    t_975_4 = 2.7764451  # Student's t, 4 degrees of freedom
    assert estimate.mean == 3.0 and estimate.half_width == pytest.approx(t_975_4 * np.sqrt(2.5) / np.sqrt(5))
    assert not mean_ci([0.5]).has_interval and "no interval" in str(mean_ci([0.5]))  # one seed: no spread known
