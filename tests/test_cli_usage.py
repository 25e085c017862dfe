"""Issue 13 through the real entry point: collections that remember their embedder, labels and
splits end to end, filters that cannot silently miss, figures read alone, CLI basics.

Every failure is checked for its exact exit code, one line on stderr and no traceback.
"""

from __future__ import annotations

import json
import re

import click
import numpy as np
import pytest
import typer
from PIL import Image

from percep_rag.cli import app, main
from percep_rag.io.vectors import read_vectors

COLOURS = {"cat": (200, 40, 40), "dog": (40, 40, 200)}


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return done.value.code or 0, captured.out, captured.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _image(path, colour, seed):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.array(colour) + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """photos/<split>/<label>/ (the VTAB layout), a query, and a store with collection 'photos' of tiny-vit-random."""
    from percep_rag import AlignedEmbedder, EmbedderSpec
    from percep_rag.datasets.sources import load_source
    from percep_rag.indexing import index_records
    from percep_rag.store import open_store

    root = tmp_path_factory.mktemp("usage")
    seed = 0
    for split in ("train", "test"):
        for label, colour in COLOURS.items():
            for n in range(3):
                seed += 1
                _image(root / "photos" / split / label / f"{n}.png", colour, seed)
    _image(root / "query.png", COLOURS["cat"], 99)
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", pooling="cls+patchmean"))
    with open_store(f"edge:{root / 'store'}") as store:
        index_records(load_source(root / "photos").records, embedder=embedder, store=store, collection="photos")
    return root


def store_args(world):
    return ("--collection", "photos", "--store", f"edge:{world / 'store'}")


# --------------------------------------------------------------------------- 3. collections remember their embedder


def test_search_takes_the_embedder_from_the_collection(capsys, world):
    # The collection was written with tiny-vit-random and cls+patchmean; no -b or --pooling given.
    code, out, err = run_cli(capsys, "search", str(world / "query.png"), *store_args(world), "-k", "2", "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["backbone"] == "tiny-vit-random" and found["random_weights"] is True
    assert [hit["rank"] for hit in found["hits"]["aligned"]] == [1, 2]
    assert found["hits"]["base"][0]["payload"]["label"] == "cat"


def test_collections_and_info_describe_the_store(capsys, world):
    code, out, _ = run_cli(capsys, "collections", "--store", f"edge:{world / 'store'}", "--json")
    assert code == 0
    assert json.loads(out)["collections"] == [
        {"name": "photos", "points": 12, "backbone": "tiny-vit-random", "alignment": "identity", "random_weights": True}
    ]
    code, out, _ = run_cli(capsys, "info", "photos", "--store", f"edge:{world / 'store'}", "--json")
    described = json.loads(out)
    assert code == 0 and described["points"] == 12 and described["fingerprint"]["pooling"] == "cls+patchmean"
    assert described["payload_fields"]["label"] == "str" and "split" in described["payload_indexes"]
    code, out, _ = run_cli(capsys, "info", "photos", "--store", f"edge:{world / 'store'}")
    assert code == 0 and "12 points" in out and "payload fields:" in out


def test_read_commands_never_create_a_store(capsys, world, tmp_path):
    missing = tmp_path / "nowhere"
    for args in (
        ("collections", "--store", f"edge:{missing}"),
        ("info", "photos", "--store", f"edge:{missing}"),
        ("search", str(world / "query.png"), "--collection", "photos", "--store", f"edge:{missing}"),
    ):
        code, _, err = run_cli(capsys, *args)
        assert code == 1 and one_line(err).startswith(f"error: no store at {missing}")
        assert not missing.exists()
    code, _, err = run_cli(capsys, "info", "dogs", "--store", f"edge:{world / 'store'}")
    assert code == 1 and "collections here: photos" in one_line(err)


def test_eval_deepfashion2_on_a_collection_takes_its_embedder(capsys, tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("df2", Path(__file__).parent / "test_retrieval_eval.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)  # type: ignore[union-attr]
    maker.make_mini_df2(tmp_path / "df2", pairs=2)
    args = ("eval", "deepfashion2", str(tmp_path / "df2"), "--collection", "df2", "--store", f"edge:{tmp_path / 's'}")
    code, out, err = run_cli(capsys, *args, "-b", "tiny-vit-random", "--no-progress")
    assert code == 0, err
    code, out, err = run_cli(capsys, *args, "--no-progress", "--filter", "label=short sleeve top")
    assert code == 0, err
    assert "tiny-vit-random, identity alignment" in out and "0 new points" in out


# --------------------------------------------------------------------------- 4. labels and splits end to end


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_embed_writes_labels_and_splits(capsys, world, tmp_path, suffix):
    out = tmp_path / f"v{suffix}"
    code, _, err = run_cli(capsys, "embed", str(world / "photos"), "-o", str(out), "-b", "tiny-vit-random")
    assert code == 0, err
    stored = read_vectors(out)
    assert stored.labels[:3] == ["cat"] * 3 and stored.labels[-1] == "dog"
    assert stored.splits[0] == "test" and stored.splits[-1] == "train" and len(stored.ids) == 12


def test_index_split_keeps_one_split_of_a_folder(capsys, world, tmp_path):
    store = f"edge:{tmp_path / 'store'}"
    code, out, err = run_cli(
        capsys, "index", str(world / "photos"), "-c", "test", "--store", store, "-b", "tiny-vit-random",
        "--split", "test",
    )  # fmt: skip
    assert code == 0, err
    assert "now holds 6 points" in out
    code, _, err = run_cli(capsys, "index", str(world / "photos"), "-c", "x", "--store", store, "--split", "dev")
    assert code == 1 and "its splits: test, train" in one_line(err)


# --------------------------------------------------------------------------- 5. filters that cannot silently miss


@pytest.mark.parametrize("command", ["search", "show", "classify"])
def test_filters_on_missing_fields_or_matching_nothing_fail_the_same_everywhere(capsys, world, tmp_path, command):
    extra = {"show": ("-o", str(tmp_path / "f.png")), "classify": ("--vlm", "tiny-flamingo-random")}.get(command, ())
    base = (command, str(world / "query.png"), *store_args(world), *extra)
    code, _, err = run_cli(capsys, *base, "--filter", "colour=red")
    assert code == 2 and "'colour', a field no point of 'photos' has" in one_line(err) and "label" in err
    code, _, err = run_cli(capsys, *base, "--filter", "split=dev")
    assert code == 1 and one_line(err) == "error: no point of 'photos' matches --filter split=dev"


def test_a_filter_that_matches_returns_only_what_it_names(capsys, world):
    code, out, err = run_cli(
        capsys, "search", str(world / "query.png"), *store_args(world), "--filter", "split=train", "--json", "-k", "20"
    )
    assert code == 0, err
    hits = json.loads(out)["hits"]["aligned"]
    assert len(hits) == 6 and {hit["payload"]["split"] for hit in hits} == {"train"}


# --------------------------------------------------------------------------- 7. figures read alone


def test_figure_format_follows_the_extension_or_is_refused(capsys, world, tmp_path):
    for suffix, magic in ((".svg", b"<svg"), (".pdf", b"%PDF"), (".jpg", b"\xff\xd8")):
        out = tmp_path / f"grid{suffix}"
        code, _, err = run_cli(capsys, "search", str(world / "query.png"), *store_args(world), "--grid", str(out))
        assert code == 0, err
        assert out.read_bytes().startswith(magic)
    code, _, err = run_cli(capsys, "show", str(world / "query.png"), *store_args(world), "-o", str(tmp_path / "f.gif"))
    assert code == 2 and "use .png, .jpg, .jpeg, .pdf or .svg" in one_line(err)


def test_figures_name_the_embedder_and_mark_by_shape(tmp_path):
    from percep_rag import AlignedEmbedder, EmbedderSpec
    from percep_rag.cli.output import figure_title
    from percep_rag.viz import GridLayout, metric_bars, retrieval_grid

    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    assert figure_title(embedder) == "tiny-vit-random | alignment: identity | RANDOM weights, for tests only"
    grey = Image.new("RGB", (32, 32), (128, 128, 128))
    out = retrieval_grid([grey], [[grey]], [[grey]], tmp_path / "g.png", base_correct=[[True]],
                         aligned_correct=[[False]], title="t")  # fmt: skip
    pixels = set(map(tuple, np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3).tolist()))
    assert (0, 114, 178) in pixels and (213, 94, 0) in pixels  # Okabe-Ito blue and vermillion
    assert (46, 160, 67) not in pixels and (214, 39, 40) not in pixels  # no red/green frames
    assert Image.open(out).size == GridLayout(title=True).size(1, 1)
    table = {"recall@1": {"base": [0.2, 0.3], "aligned": [0.5, 0.6]}}
    bars = metric_bars(table, tmp_path / "m.svg", chance={"recall@1": 0.1})
    assert bars.read_text().lstrip().startswith("<?xml")


# --------------------------------------------------------------------------- 8. CLI basics


def test_version_and_short_help(capsys):
    from percep_rag._version import __version__

    assert run_cli(capsys, "--version")[:2] == (0, f"percep-rag {__version__}\n")
    code, out, _ = run_cli(capsys, "search", "-h")
    assert code == 0 and "--filter" in out and "--json" in out


def _commands(command: click.Command, path: str = "percep-rag"):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def test_every_option_has_help():
    missing = [
        f"{path} {param.opts[0]}"
        for path, command in _commands(typer.main.get_command(app))
        for param in command.params
        if isinstance(param, click.Option) and not (param.help or "").strip()
    ]
    assert missing == []


def test_classify_requires_vlm(capsys, world):
    code, _, err = run_cli(capsys, "classify", str(world / "query.png"), *store_args(world))
    assert code == 2 and one_line(err).startswith("error: classify needs --vlm")


def test_progress_is_plain_lines_off_a_terminal(capsys, world, tmp_path):
    code, _, err = run_cli(capsys, "embed", str(world / "photos" / "test"), "-o", str(tmp_path / "v.npy"),
                           "-b", "tiny-vit-random")  # fmt: skip
    assert code == 0 and "\r" not in err and re.search(r"embedding: +100%", err)


def test_fewshot_seeds_draw_different_query_samples(tmp_path):
    from percep_rag import AlignedEmbedder, EmbedderSpec
    from percep_rag.datasets.vtab import read_task
    from percep_rag.fewshot.evaluate import evaluate_fewshot
    from percep_rag.store import open_store

    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 8)):
        for label in ("a", "b"):
            for n in range(count):  # noise: labels the vectors cannot predict
                _image(tmp_path / split / label / f"{n}.png", tuple(rng.integers(0, 255, 3)), int(rng.integers(1e6)))
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    with open_store(":memory:") as store:
        report = evaluate_fewshot(read_task(tmp_path), embedder=embedder, store=store, collection="c",
                                  methods=("knn-base",), seeds=range(4))  # fmt: skip
    assert len(set(report.accuracy["knn-base"])) > 1 and report.interval("knn-base").half_width > 0
