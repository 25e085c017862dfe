"""Indexing and embedding on Ray Data (local Ray, 2 CPUs, started once for this module):
the same points as the local path, bad images reported, a rerun adds nothing, another
embedder refused, parquet shards, and a driver killed with kill -9 then a rerun whose
embedding actor dies once -> exactly one point per good image."""

from __future__ import annotations

import os
import shutil
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the Ray tests need the [ray] extra: pip install 'percep-rag[ray]'")

from percep_rag import AlignedEmbedder, EmbedderSpec, FingerprintMismatchError  # noqa: E402
from percep_rag.cli import main  # noqa: E402
from percep_rag.datasets.records import scan_folder  # noqa: E402
from percep_rag.distributed import RayOptions, index_with_ray, read_vector_shards  # noqa: E402
from percep_rag.distributed import pipeline as pipeline_module  # noqa: E402
from percep_rag.distributed.runtime import ray_session  # noqa: E402
from percep_rag.distributed.sinks import StoreWriter  # noqa: E402
from percep_rag.distributed.stages import EmbedActor, fingerprint_of, read_images, rows_batch  # noqa: E402
from percep_rag.errors import ConfigError  # noqa: E402
from percep_rag.indexing import index_records  # noqa: E402
from percep_rag.store import StoreSpec, content_hash, open_store, point_id  # noqa: E402

from .conftest import kill_after_acks, make_crash_folder, settle, start_script, without_stats  # noqa: E402

COLLECTION = "shapes"
SPEC = EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=4)
# One actor of 1 CPU leaves 1 CPU of the 2 to reading and writing; one read task at a time keeps
# the worker processes (each loads torch) few.
OPTIONS = RayOptions(actors=1, cpus_per_actor=1, read_cpus=0.5, read_tasks=1)


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the whole module (starting one takes seconds); every run joins it."""
    with ray_session(RayOptions(num_cpus=2), progress=False):
        import ray

        yield ray.get_runtime_context().gcs_address


@pytest.fixture(scope="module")
def embedder() -> AlignedEmbedder:
    return AlignedEmbedder.from_spec(SPEC)


def with_bad_files(folder: Path) -> Path:
    shutil.copy(folder / "circle" / "0.png", folder / "square" / "copy.png")
    (folder / "circle" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "triangle" / "text.png").write_text("not an image")
    return folder


def stored(store, collection: str = COLLECTION) -> dict[str, tuple[dict, np.ndarray, np.ndarray]]:
    points = store.retrieve(collection, [p.id for p in store.iterate(collection)], with_vectors=True)
    return {p.id: (p.payload, p.vectors["base"], p.vectors["aligned"]) for p in points}


def test_ray_and_local_paths_write_the_same_points_and_a_rerun_adds_nothing(
    ray_address, image_folder, embedder, tmp_path
):
    records = scan_folder(with_bad_files(image_folder))
    settle(image_folder)  # both paths record the files' stats, so the payloads are equal whole
    with open_store(":memory:") as local_store:
        local = index_records(records, embedder=embedder, store=local_store, collection=COLLECTION, progress=False)
        want = stored(local_store)
    spec = f"edge:{tmp_path / 'store'}"
    report = index_with_ray(records, spec=SPEC, store=spec, collection=COLLECTION, options=OPTIONS, progress=False)
    assert (report.records, report.indexed, report.duplicates) == (local.records, local.indexed, local.duplicates)
    assert (report.indexed, report.duplicates) == (12, 1)
    assert [(f.record_id, f.reason) for f in report.failures] == [(f.record_id, f.reason) for f in local.failures]
    assert {f.record_id for f in report.failures} == {"circle/corrupt.jpg", "triangle/text.png"}
    assert report.fingerprint == embedder.fingerprint and report.stage_seconds["embed"] > 0
    with open_store(spec) as store:
        got = stored(store)
    assert set(got) == set(want)
    for pid, (payload, base, aligned) in want.items():
        assert got[pid][0] == payload
        np.testing.assert_allclose(got[pid][1], base, atol=1e-5)
        np.testing.assert_allclose(got[pid][2], aligned, atol=1e-5)

    # The bad files left out, a rerun has nothing to embed: no actor even starts.
    readable = [r for r in records if r.id not in {"circle/corrupt.jpg", "triangle/text.png"}]
    again = index_with_ray(readable, spec=SPEC, store=spec, collection=COLLECTION, options=OPTIONS, progress=False)
    assert (again.indexed, again.already_present, again.duplicates, again.failures) == (0, 12, 1, [])
    assert "embed" not in again.stage_seconds

    other = SPEC.model_copy(update={"backbone": "tiny-clip-random"})
    with pytest.raises(FingerprintMismatchError, match="backbone: tiny-vit-random != tiny-clip-random"):
        index_with_ray(records, spec=other, store=spec, collection=COLLECTION, options=OPTIONS, progress=False)
    with open_store(spec) as store:
        assert store.count(COLLECTION) == 12


def test_embed_engine_ray_writes_parquet_shards_like_the_local_embedder(ray_address, image_folder, embedder, tmp_path):
    (image_folder / "circle" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "vectors.parquet"
    args = ["embed", str(image_folder), "--engine", "ray", "--out", str(out), "--backbone", "tiny-vit-random"]
    args += ["--device", "cpu", "--batch-size", "4", "--actors", "1", "--no-progress"]
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 0
    shards = read_vector_shards(out)
    records = [r for r in scan_folder(image_folder) if r.id != "circle/corrupt.jpg"]
    assert shards.ids == [r.id for r in records] and shards.uris == [r.uri for r in records]
    local = embedder.embed_many([r.uri for r in records])
    np.testing.assert_allclose(shards.aligned, local.aligned, atol=1e-5)
    np.testing.assert_allclose(shards.base, local.base, atol=1e-5)
    assert [f["id"] for f in shards.meta["failures"]] == ["circle/corrupt.jpg"]
    assert shards.meta["fingerprint"] == embedder.fingerprint.model_dump()
    with pytest.raises(SystemExit) as again:  # shards are never mixed with an earlier run's
        main(args)
    assert again.value.code == 1


# --------------------------------------------------------------------------- kill -9 of the driver

_DRIVER = textwrap.dedent(
    """
    import sys, time
    from percep_rag import EmbedderSpec
    from percep_rag.datasets.records import scan_folder
    from percep_rag.distributed import RayOptions, index_with_ray

    folder, store, address, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

    def acknowledged(n):
        print("ack", n, flush=True)  # printed only after the upsert returned (durable)
        time.sleep(pause)  # keeps the run long enough to be killed in the middle

    index_with_ray(scan_folder(folder), spec=EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=4),
                   store=store, collection="shapes", progress=False, on_upsert=acknowledged,
                   options=RayOptions(address=address, actors=1, cpus_per_actor=1, read_cpus=0.5, read_tasks=1))
    print("done", flush=True)
    """
)


def crashing_once(marker: Path) -> type:
    """An embedding actor whose process dies on its first batch, once per ``marker`` file."""

    class CrashingOnce(EmbedActor):
        def __call__(self, batch):
            if not marker.exists():
                marker.touch()
                os._exit(1)  # as a segfault or an OOM kill would: no exception, no clean-up
            return super().__call__(batch)

    return CrashingOnce


def test_driver_killed_then_rerun_with_a_dying_actor_ends_with_each_good_image_once(ray_address, tmp_path, monkeypatch):
    folder = tmp_path / "images"
    wanted = {point_id(content_hash(p.read_bytes()), COLLECTION) for p in make_crash_folder(folder, first_seed=700)}
    assert len(wanted) == 40
    spec = f"edge:{tmp_path / 'store'}"

    driver = start_script(_DRIVER, str(folder), spec, ray_address, "0.5")
    # A new driver starts its own workers: slow on a busy machine.
    acknowledged = kill_after_acks(driver, 8, timeout=300, prefix="ack ")
    assert acknowledged >= 8, driver.stderr.read()
    with open_store(spec) as store:
        partial = store.count(COLLECTION)
    assert acknowledged <= partial < len(wanted)  # killed in the middle, nothing acknowledged lost

    marker = tmp_path / "actor-died"
    monkeypatch.setattr(pipeline_module, "EmbedActor", crashing_once(marker))
    report = index_with_ray(
        scan_folder(folder), spec=SPEC, store=spec, collection=COLLECTION, options=OPTIONS, progress=False
    )
    assert marker.exists()  # an actor did die, and Ray restarted it and retried its batch
    assert (report.indexed, report.already_present) == (len(wanted) - partial, partial)
    assert [f.record_id for f in report.failures] == ["zz_bad.jpg"]
    with open_store(spec) as store:
        assert store.count(COLLECTION) == len(wanted)
        assert {p.id for p in store.iterate(COLLECTION)} == wanted


# --------------------------------------------------------------------------- without Ray


def test_a_writer_actor_writes_what_the_local_path_writes(image_folder, embedder, tmp_path):
    records = scan_folder(image_folder)
    batch = rows_batch(records, range(len(records)))
    embedded = EmbedActor(SPEC, fingerprint_of(SPEC), threads=1)(read_images(batch, collection=COLLECTION))
    spec = StoreSpec.parse(f"local:{tmp_path / 'qdrant'}")
    with open_store(spec) as store:
        store.ensure_collection(COLLECTION, embedder.fingerprint)
    writer = StoreWriter(spec, COLLECTION, dataset="shapes-set")
    try:
        summary = writer(embedded)
        got = stored(writer.store)
    finally:
        writer.store.close()
    assert summary["written"].all() and set(summary) >= {"row", "point_id", "read_s", "embed_s", "write_s"}
    with open_store(":memory:") as store:
        index_records(records, embedder=embedder, store=store, collection=COLLECTION, dataset="shapes-set")
        want = stored(store)
    assert set(got) == set(want)
    for pid, (payload, _, aligned) in want.items():
        assert without_stats(got[pid][0]) == without_stats(payload)  # a lone writer records no stat
        np.testing.assert_allclose(got[pid][2], aligned, atol=1e-5)


def test_an_actor_with_another_embedder_refuses_to_start():
    other = fingerprint_of(SPEC.model_copy(update={"pooling": "cls+patchmean"}))
    with pytest.raises(FingerprintMismatchError, match="pooling: cls\\+patchmean != cls"):
        EmbedActor(SPEC, other, threads=1)


def test_an_output_folder_with_shards_is_refused_before_ray_starts(tmp_path):
    from percep_rag.distributed.embed import check_shard_folder

    (tmp_path / "v.parquet").mkdir()
    (tmp_path / "v.parquet" / "part-000000000-000000003.parquet").write_bytes(b"")
    with pytest.raises(ConfigError, match="already holds parquet shards"):
        check_shard_folder(tmp_path / "v.parquet")


# --------------------------------------------------------------------------- a real Qdrant server

QDRANT_URL = os.environ.get("QDRANT_URL")


@pytest.mark.qdrant_server
@pytest.mark.skipif(not QDRANT_URL, reason="needs a Qdrant server: set QDRANT_URL=http://host:6333 to run")
def test_writer_actors_write_to_a_qdrant_server_in_parallel(ray_address, image_folder):
    collection = f"percep-rag-test-{uuid.uuid4().hex[:8]}"
    records = scan_folder(with_bad_files(image_folder))
    options = OPTIONS.model_copy(update={"writers": 2})
    try:
        report = index_with_ray(records, spec=SPEC, store=QDRANT_URL, collection=collection, options=options)
        assert (report.indexed, report.duplicates, len(report.failures)) == (12, 1, 2)
        again = index_with_ray(records, spec=SPEC, store=QDRANT_URL, collection=collection, options=options)
        assert (again.indexed, again.already_present) == (0, 12)
        with open_store(QDRANT_URL) as store:
            assert store.count(collection) == 12
    finally:
        with open_store(QDRANT_URL) as store:
            store.delete_collection(collection, missing_ok=True)


def test_sync_on_ray_removes_withdrawn_and_replaced_images(ray_address, image_folder, embedder, tmp_path):
    from percep_rag.distributed import sync_with_ray

    from .conftest import make_image

    spec = f"edge:{tmp_path / 'store'}"
    settle(image_folder)  # the stats are recorded: the stat pass (Ray tasks) finds the unchanged files
    with open_store(spec) as store:
        index_records(scan_folder(image_folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
    (image_folder / "circle" / "0.png").unlink()  # withdrawn
    make_image(4242, size=(40, 36)).save(image_folder / "square" / "0.png")  # replaced at the same path
    files = sorted(p for p in image_folder.rglob("*") if p.is_file())
    wanted = {point_id(content_hash(p.read_bytes()), COLLECTION) for p in files}
    records = scan_folder(image_folder)
    dry = sync_with_ray(records, spec=SPEC, store=spec, collection=COLLECTION, options=OPTIONS, dry_run=True)
    assert (dry.added, dry.kept, dry.replaced, dry.removed) == (1, 10, 1, 1)
    report = sync_with_ray(records, spec=SPEC, store=spec, collection=COLLECTION, options=OPTIONS, progress=False)
    assert (report.added, report.kept, report.replaced, report.removed) == (1, 10, 1, 1)
    assert (report.read, report.records) == (1, 11)  # only the replaced file: every other stat unchanged
    with open_store(spec) as store:
        assert {p.id for p in store.iterate(COLLECTION)} == wanted


def test_cli_ray_on_a_memory_store_ends_as_the_local_engine_does(ray_address, image_folder, capsys):
    """Issue 33: the CLI held no store through a Ray run and opened ``:memory:`` again to count
    (a new, empty store): 'collection not found' after all the work. Index and --sync alike."""

    def run(*extra: str) -> list[str]:
        args = ["index", str(image_folder), "-c", COLLECTION, "--store", ":memory:", "-b", "tiny-vit-random"]
        with pytest.raises(SystemExit) as done:
            main([*args, "--device", "cpu", "--batch-size", "4", "--no-progress", *extra])
        out = capsys.readouterr()
        assert done.value.code == 0, out.err
        # The timings differ between runs; what was written does not.
        return [line.split(" in ")[0] if " new points " in line else line for line in out.out.splitlines()]

    ray = ("--engine", "ray", "--actors", "1")
    local = run()
    assert local[-1] == f"collection {COLLECTION!r} in :memory: now holds 12 points"
    assert run(*ray) == local
    synced = run("--sync")
    assert "12 added" in synced[1] and synced[-1] == local[-1]
    assert run("--sync", *ray) == synced


def test_an_actor_compiles_its_cpu_forward_for_a_long_run_only():
    spec = SPEC.model_copy(update={"precision": "fp32"})
    long_run = EmbedActor(spec, fingerprint_of(spec), threads=1, job_images=10_000)
    short_run = EmbedActor(spec, fingerprint_of(spec), threads=1, job_images=8)
    assert long_run.embedder.compiled and not short_run.embedder.compiled  # compiled lazily, on the first batch


def test_the_pipeline_tells_each_actor_its_share_of_the_run(monkeypatch):
    from percep_rag.distributed.runtime import plan_resources

    class Rows:
        def count(self) -> int:
            return 1001

    given = {}
    monkeypatch.setattr(pipeline_module, "_read_stage", lambda rows, plan, **_: rows)
    monkeypatch.setattr(
        pipeline_module, "_actor_stage", lambda data, cls, kwargs, plan, **_: given.update(kwargs) or data
    )
    plan = plan_resources(RayOptions(actors=2), {"CPU": 4.0}, spec_batch_size=8)
    pipeline_module.embedding_pipeline(Rows(), SPEC, fingerprint_of(SPEC), plan)
    assert given["job_images"] == 501
