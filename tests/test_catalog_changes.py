"""A catalog that changes: index --sync (replaced, removed, renamed files; dry run; kill -9 then
rerun), delete by filter and uri with its confirmation, and duplicates (exact, JPEG-100, resized,
no false pair among distinct images)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.datasets.records import read_manifest, scan_folder
from percep_rag.duplicates import calibrate, find_duplicates, similar_pairs
from percep_rag.indexing import index_records
from percep_rag.store import content_hash, open_store, point_id
from percep_rag.store.layouts import MEMORY_LAYOUTS, memory_layout
from percep_rag.sync import sync_records

from .conftest import kill_after_acks, make_crash_folder, make_image, run_cli, start_script, without_stats

COLLECTION = "shapes"


@pytest.fixture(scope="module")
def embedder() -> AlignedEmbedder:
    return AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=8))


def ids_of(paths) -> set[str]:
    return {point_id(content_hash(Path(p).read_bytes()), COLLECTION) for p in paths}


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".jpg", ".bmp"))


# --------------------------------------------------------------------------- sync


def test_sync_after_a_replaced_a_removed_and_a_renamed_file(tmp_path, embedder, capsys):
    folder = tmp_path / "catalog"
    (folder / "shoes").mkdir(parents=True)
    for n in range(6):
        make_image(100 + n, size=(32, 32)).save(folder / "shoes" / f"{n}.png")
    spec = f"edge:{tmp_path / 'store'}"
    with open_store(spec) as store:
        first = sync_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
    assert (first.added, first.kept, first.replaced, first.removed, first.relinked) == (6, 0, 0, 0, 0)

    old = ids_of(images_in(folder))
    make_image(999, size=(32, 32)).save(folder / "shoes" / "0.png")  # replaced: same path, new picture
    (folder / "shoes" / "1.png").unlink()  # withdrawn
    (folder / "boots").mkdir()
    (folder / "shoes" / "2.png").rename(folder / "boots" / "2b.png")  # renamed and relabelled
    wanted = ids_of(images_in(folder))

    code, out, _ = run_cli(capsys, "index", str(folder), "-c", COLLECTION, "--store", spec, "--sync", "--dry-run")
    assert code == 0 and "1 added, 4 kept, 1 replaced, 1 removed, 1 relinked, 0 failed (dry run" in out
    with open_store(spec) as store:
        assert {p.id for p in store.iterate(COLLECTION)} == old  # a dry run changes nothing

    sync = ("--sync", "--no-progress", "--memory", "balanced")
    code, out, err = run_cli(capsys, "index", str(folder), "-c", COLLECTION, "--store", spec, *sync)
    assert code == 0 and "1 added, 4 kept, 1 replaced, 1 removed, 1 relinked, 0 failed" in out
    assert "exists with the low memory layout; --memory balanced applies to new collections only" in err
    with open_store(spec) as store:
        points = {p.id: p.payload for p in store.iterate(COLLECTION)}
        assert set(points) == wanted
        moved = points[point_id(content_hash((folder / "boots" / "2b.png").read_bytes()), COLLECTION)]
        assert (moved["uri"], moved["label"], moved["record_id"]) == (
            str(folder / "boots" / "2b.png"),
            "boots",
            "boots/2b.png",
        )
        # Synced: a second sync changes nothing, and search only finds images that exist.
        again = sync_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        assert (again.added, again.kept, again.replaced, again.removed, again.relinked) == (0, 5, 0, 0, 0)
        assert all(Path(payload["uri"]).is_file() for payload in points.values())


def payloads_by_uri(store) -> dict[str, dict]:
    """Primary uri -> payload, the files' stats left out (whether one was recorded depends on the file's age)."""
    return {p.payload["uri"]: without_stats(p.payload) for p in store.iterate(COLLECTION)}


def test_sync_relink_stores_what_a_fresh_index_stores(tmp_path, embedder):
    """A file moved out of its label folder, and a manifest column cleared: the old fields go."""
    folder = tmp_path / "catalog"
    (folder / "cat").mkdir(parents=True)
    for n, name in enumerate(("a", "b")):
        make_image(300 + n, size=(32, 32)).save(folder / "cat" / f"{name}.png")
    with open_store(":memory:") as store:
        sync_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        assert store.count(COLLECTION, {"label": "cat"}) == 2
        (folder / "cat" / "a.png").rename(folder / "a.png")  # no label folder now
        report = sync_records(
            scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False
        )
        assert (report.added, report.kept, report.relinked, report.removed) == (0, 2, 1, 0)
        moved = payloads_by_uri(store)[str(folder / "a.png")]
        assert "label" not in moved and moved["record_id"] == "a.png"
        assert store.count(COLLECTION, {"label": "cat"}) == 1
        synced = payloads_by_uri(store)
    with open_store(":memory:") as fresh:
        index_records(scan_folder(folder), embedder=embedder, store=fresh, collection=COLLECTION, progress=False)
        assert payloads_by_uri(fresh) == synced


def test_sync_sees_a_manifest_column_cleared(tmp_path, embedder):
    folder = tmp_path / "catalog"
    folder.mkdir()
    for n in range(2):
        make_image(310 + n, size=(32, 32)).save(folder / f"{n}.png")
    manifest = folder / "catalog.jsonl"

    def write(rows) -> list:
        manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return read_manifest(manifest)

    rows = [{"uri": "0.png", "label": "cat", "colour": "red"}, {"uri": "1.png", "label": "dog", "colour": "blue"}]
    with open_store(":memory:") as store:
        sync_records(write(rows), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        del rows[0]["colour"]
        del rows[1]["label"]
        report = sync_records(write(rows), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        assert report.relinked == 2
        payloads = sorted(payloads_by_uri(store).values(), key=lambda p: p["record_id"])
        assert "colour" not in payloads[0] and payloads[0]["label"] == "cat"
        assert "label" not in payloads[1] and payloads[1]["colour"] == "blue"
        again = sync_records(write(rows), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        assert again.relinked == 0
        synced = payloads_by_uri(store)
    with open_store(":memory:") as fresh:
        index_records(write(rows), embedder=embedder, store=fresh, collection=COLLECTION, progress=False)
        assert payloads_by_uri(fresh) == synced


def test_a_file_replaced_while_sync_runs_keeps_the_point_sync_wrote(tmp_path, embedder, monkeypatch):
    """red -> green, sync starts, and right after sync stat-ed the source the file becomes white."""
    import percep_rag.sync as sync_module

    folder = tmp_path / "catalog"
    folder.mkdir()
    Image.new("RGB", (32, 32), "red").save(folder / "a.png")
    Image.new("RGB", (32, 32), "blue").save(folder / "b.png")
    with open_store(":memory:") as store:
        sync_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        Image.new("RGB", (32, 32), "green").save(folder / "a.png")
        stated = sync_module.source_stats

        def stated_then_replaced(*args, **kwargs):
            found = stated(*args, **kwargs)
            Image.new("RGB", (32, 32), "white").save(folder / "a.png")
            return found

        monkeypatch.setattr(sync_module, "source_stats", stated_then_replaced)
        report = sync_records(
            scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False
        )
        points = {p.id: p.payload["uri"] for p in store.iterate(COLLECTION)}
    assert sorted(points.values()) == [str(folder / "a.png"), str(folder / "b.png")]
    assert set(points) == ids_of([folder / "a.png", folder / "b.png"])  # a.png's point is the white one
    assert (report.added, report.kept, report.replaced, report.removed) == (1, 1, 1, 0)


def test_a_half_written_file_keeps_its_old_point(tmp_path, embedder):
    """A copy in progress: the file reads but does not decode, so it is no withdrawn image."""
    folder = tmp_path / "catalog"
    folder.mkdir()
    make_image(320, size=(32, 32)).save(folder / "a.png")
    make_image(321, size=(32, 32)).save(folder / "b.png")
    with open_store(":memory:") as store:
        sync_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        before = {p.id for p in store.iterate(COLLECTION)}
        whole = tmp_path / "new.png"
        make_image(322, size=(32, 32)).save(whole)
        (folder / "a.png").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        report = sync_records(
            scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False
        )
        assert (report.added, report.replaced, report.removed, len(report.failures)) == (0, 0, 0, 1)
        assert {p.id for p in store.iterate(COLLECTION)} == before


_SYNCER = textwrap.dedent(
    """
    import sys, time
    from percep_rag import AlignedEmbedder, EmbedderSpec
    from percep_rag.datasets.records import read_manifest, scan_folder
    from percep_rag.store import open_store
    from percep_rag.sync import sync_records

    folder, store_spec = sys.argv[1], sys.argv[2]
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=4,
                                                   num_workers=0))

    def acknowledged(n):
        print(n, flush=True)
        time.sleep(0.3)  # keeps the indexing step long enough to be killed in the middle

    with open_store(store_spec) as store:
        sync_records(scan_folder(folder), embedder=embedder, store=store, collection="shapes",
                     progress=False, on_upsert=acknowledged)
    print("done", flush=True)
    """
)


def test_sync_killed_by_kill_9_then_rerun_ends_synced_and_loses_nothing(tmp_path, embedder):
    folder = tmp_path / "images"
    make_crash_folder(folder, first_seed=700)
    (folder / "zz_bad.jpg").unlink()
    spec = f"edge:{tmp_path / 'store'}"
    with open_store(spec) as store:
        index_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        before = {p.id for p in store.iterate(COLLECTION)}
    for n in range(5):
        (folder / f"{n:02d}.png").unlink()  # withdrawn
    for n in range(5, 8):
        make_image(5000 + n, size=(32, 32)).save(folder / f"{n:02d}.png")  # replaced
    for n in range(16):
        make_image(6000 + n, size=(32, 32)).save(folder / f"new{n:02d}.png")  # added
    wanted = ids_of(images_in(folder))
    still_there = before & wanted

    proc = start_script(_SYNCER, str(folder), spec)
    acknowledged = kill_after_acks(proc, 2)
    assert acknowledged >= 2, proc.stderr.read()
    with open_store(spec) as store:
        partial = {p.id for p in store.iterate(COLLECTION)}
    assert still_there <= partial  # nothing that is still in the source was lost
    assert wanted - partial  # killed in the middle: not everything new was written yet

    with open_store(spec) as store:
        report = sync_records(
            scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False
        )
        assert {p.id for p in store.iterate(COLLECTION)} == wanted
    assert report.added == len(wanted - partial) and report.removed + report.replaced == len(partial - wanted)


# --------------------------------------------------------------------------- delete


def test_delete_by_filter_and_uri_asks_first(tmp_path, image_folder, embedder, capsys):
    spec = f"edge:{tmp_path / 'store'}"
    with open_store(spec) as store:
        index_records(scan_folder(image_folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
    code, _, err = run_cli(capsys, "delete", "-c", COLLECTION, "--store", spec, "--filter", "label=circle")
    assert code == 1 and "refusing to delete 4 points" in err and "--yes" in err  # no terminal to ask on
    code, _, err = run_cli(
        capsys, "delete", "-c", COLLECTION, "--store", spec, "--filter", "label=circle", "--uri", "x"
    )
    assert code == 2 and "exactly one of --id, --filter or --uri" in err
    code, out, _ = run_cli(capsys, "delete", "-c", COLLECTION, "--store", spec, "--filter", "label=circle", "--yes")
    assert code == 0 and "deleted 4 points" in out and "8 left" in out
    target = image_folder / "square" / "1.jpg"
    code, out, _ = run_cli(capsys, "delete", "-c", COLLECTION, "--store", spec, "--uri", str(target), "--yes")
    assert code == 0 and "deleted 1 point of" in out
    with open_store(spec) as store:
        victim = next(iter(store.iterate(COLLECTION)))
    twice = ("--id", victim.id, "--id", victim.id)
    code, out, _ = run_cli(capsys, "delete", "-c", COLLECTION, "--store", spec, *twice, "-y")
    assert code == 0 and "deleted 1 point of" in out and "6 left" in out
    with open_store(spec) as store:
        labels = [p.payload for p in store.iterate(COLLECTION)]
    assert len(labels) == 6 and not any(p["label"] == "circle" or p["uri"] == str(target) for p in labels)
    assert victim.payload not in labels


# --------------------------------------------------------------------------- duplicates


def _shapes(seed: int) -> Image.Image:
    """A distinct picture: a background and six coloured ellipses, all from ``seed``."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (96, 96), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, 80, 2))
        w, h = (int(v) for v in rng.integers(10, 40, 2))
        draw.ellipse([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


@pytest.fixture(scope="module")
def duplicated(tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("dups")
    for n in range(10):
        _shapes(n).save(folder / f"{n}.png")
    _shapes(0).save(folder / "0-copy.bmp")  # the same pixels, other bytes
    _shapes(0).save(folder / "0-q100.jpg", quality=100)  # JPEG 100: nearly, not exactly, the same pixels
    _shapes(1).resize((64, 64), Image.Resampling.BICUBIC).save(folder / "1-small.png")  # a resized copy
    _shapes(2).save(folder / "2-other.webp", lossless=True)  # lossless: exact
    store = open_store(":memory:")
    index_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
    assert store.count(COLLECTION) == 14
    return folder, store


def test_duplicates_finds_exact_jpeg_and_resized_copies_and_no_false_pair(duplicated):
    folder, store = duplicated
    threshold = 0.99
    # What makes the test mean something: distinct pictures stay below the threshold (random weights
    # put them at ~0.96 at most), and every copy is above it.
    pairs, payloads = similar_pairs(store, COLLECTION, threshold=-1.0, neighbours=13)
    name = {pid: Path(payload["uri"]).name for pid, payload in payloads.items()}
    source = {n: n.split("-")[0].split(".")[0] for n in name.values()}
    distinct = [s for (a, b), s in pairs.items() if source[name[a]] != source[name[b]]]
    copies = [s for (a, b), s in pairs.items() if source[name[a]] == source[name[b]]]
    assert max(distinct) < threshold - 0.01 and min(copies) > 0.999

    report = find_duplicates(store, COLLECTION, threshold=threshold)
    groups = {frozenset(Path(m.uri).name for m in g.members): g for g in report.groups}
    assert set(groups) == {
        frozenset({"0.png", "0-copy.bmp", "0-q100.jpg"}),
        frozenset({"1.png", "1-small.png"}),
        frozenset({"2.png", "2-other.webp"}),
    }
    zero = groups[frozenset({"0.png", "0-copy.bmp", "0-q100.jpg"})]
    exact_names = [{name[i] for i in ids} for ids in zero.exact_sets]
    assert zero.kind == "near" and exact_names == [{"0.png", "0-copy.bmp"}]  # the JPEG is near, not exact
    assert groups[frozenset({"2.png", "2-other.webp"})].kind == "exact"
    assert groups[frozenset({"1.png", "1-small.png"})].kind == "near"
    assert report.duplicate_points == 4


def test_duplicates_cli_table_json_figure_and_calibration(duplicated, tmp_path, capsys, embedder):
    folder, memory_store = duplicated
    spec = f"edge:{tmp_path / 'store'}"
    with open_store(spec) as store:
        index_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
    # Calibration wants the confusing pairs labelled: the two most similar distinct pictures among them.
    pairs, payloads = similar_pairs(memory_store, COLLECTION, threshold=-1.0, neighbours=13)
    uri = {pid: payload["uri"] for pid, payload in payloads.items()}
    hardest = max(((s, a, b) for (a, b), s in pairs.items() if s < 0.999), key=lambda t: t[0])
    labelled = tmp_path / "pairs.csv"
    labelled.write_text(
        f"a,b,same\n{folder / '0.png'},{folder / '0-q100.jpg'},1\n{folder / '1.png'},{folder / '1-small.png'},yes\n"
        f"{uri[hardest[1]]},{uri[hardest[2]]},0\n{folder / '5.png'},{folder / '6.png'},no\n"
    )
    figure = tmp_path / "groups.png"
    args = ["duplicates", "-c", COLLECTION, "--store", spec, "--no-progress"]
    code, out, _ = run_cli(capsys, *args, "--calibrate", str(labelled), "--figure", str(figure))
    assert code == 0 and "stored aligned near-copy threshold" in out and "3 groups (1 exact, 2 near)" in out, out
    assert figure.is_file() and Image.open(figure).height > 3 * 128
    code, out, _ = run_cli(capsys, *args, "--threshold", "0.99", "--json", "--space", "base")
    found = json.loads(out)
    assert code == 0 and found["space"] == "base" and len(found["groups"]) == 3 and found["duplicate_points"] == 4


def test_calibrate_separates_labelled_pairs():
    assert calibrate([0.99, 0.995, 0.90, 0.95], [True, True, False, False]).threshold == pytest.approx(0.97)
    # One same pair below a different one cannot be separated: it is missed, no different pair is marked.
    chosen = calibrate([0.99, 0.995, 0.93, 0.90, 0.95], [True, True, True, False, False])
    assert 0.95 < chosen.threshold <= 0.99 and chosen.precision == 1.0 and chosen.recall == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- memory layouts


@pytest.mark.parametrize("layout", sorted(MEMORY_LAYOUTS))
def test_every_memory_layout_builds_and_answers_on_edge(layout, tmp_path):
    from percep_rag.store.edge import EdgeStore

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 32)).astype(np.float32)
    ids = [point_id(str(i), "m") for i in range(300)]
    fingerprint = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random")).fingerprint
    fingerprint = fingerprint.model_copy(update={"base_dim": 32, "dim": 32})
    options = memory_layout(layout, index_threshold=100)
    with EdgeStore(tmp_path / "edge") as store:
        store.create_collection("m", fingerprint, options=options)
        store.upsert_arrays("m", ids, {"base": vectors[:, ::-1], "aligned": vectors})
        store.optimize("m")
    with EdgeStore(tmp_path / "edge") as store:  # reopened: the layout is recorded with the collection
        assert store.collection_info("m").options == options
        hits = store.query_batch("m", vectors[:20], k=1)
    assert [row[0].id for row in hits] == ids[:20]  # rescoring from the originals finds each point itself
