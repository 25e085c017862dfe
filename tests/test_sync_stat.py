"""Sync at catalog scale (issue 39) and every record kept (issue 38, item 4): the stat fast path
(unchanged files are not read), --checksum, byte-identical files as records of one point, a sync
that changes only their entries, old points without stats, delete --uri of one record."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import percep_rag.indexing as indexing_module
from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.datasets.records import ImageRecord, scan_folder
from percep_rag.indexing import index_records, record_payload
from percep_rag.point_records import payload_records
from percep_rag.store import content_hash, open_store, point_id
from percep_rag.sync import sync_records

from .conftest import make_image, run_cli, settle, without_stats

COLLECTION = "catalog"


@pytest.fixture(scope="module")
def embedder() -> AlignedEmbedder:
    return AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=8))


def pid_of(path: Path) -> str:
    return point_id(content_hash(path.read_bytes()), COLLECTION)


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The files indexing reads (every read of a record goes through read_image_file)."""
    seen: list[str] = []
    real = indexing_module.read_image_file

    def counted(source):
        seen.append(str(source))
        return real(source)

    monkeypatch.setattr(indexing_module, "read_image_file", counted)
    return seen


def sync(folder: Path, store, embedder, **kwargs):
    return sync_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False,
                        **kwargs)  # fmt: skip


# --------------------------------------------------------------------------- the stat fast path


def test_content_changed_with_size_and_mtime_kept_needs_checksum_a_normal_edit_does_not(tmp_path, capsys):
    """The issue's "Must show": ``touch -d`` back after an edit of the same size is kept by default
    (the rsync trade-off), replaced by --checksum; an ordinary edit is picked up by default."""
    folder = tmp_path / "catalog"
    folder.mkdir()
    for n in range(3):
        make_image(900 + n, size=(32, 32)).save(folder / f"{n}.bmp")  # BMP: same size for any pixels
    settle(folder)
    spec = f"edge:{tmp_path / 'store'}"
    args = ("index", str(folder), "-c", COLLECTION, "--store", spec, "-b", "tiny-vit-random", "--no-progress")
    code, out, _ = run_cli(capsys, *args, "--sync")
    assert code == 0 and "3 added, 0 kept" in out and "3 of 3 files read" in out, out
    target = folder / "0.bmp"
    old_id, before = pid_of(target), os.stat(target)

    make_image(999, size=(32, 32)).save(target)  # new pixels, same byte count, same inode
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # touch -d back
    after = os.stat(target)
    assert (after.st_size, after.st_mtime_ns, after.st_ino, after.st_dev) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
        before.st_dev,
    )
    assert pid_of(target) != old_id
    code, out, _ = run_cli(capsys, *args, "--sync")
    assert code == 0 and "0 added, 3 kept, 0 replaced" in out and "0 of 3 files read" in out, out
    with open_store(spec) as store:
        assert old_id in {p.id for p in store.iterate(COLLECTION)}  # the stat said unchanged: kept

    code, out, _ = run_cli(capsys, *args, "--sync", "--checksum")
    assert code == 0 and "1 added, 2 kept, 1 replaced" in out and "3 of 3 files read" in out, out
    with open_store(spec) as store:
        ids = {p.id for p in store.iterate(COLLECTION)}
    assert pid_of(target) in ids and old_id not in ids

    make_image(1000, size=(32, 32)).save(folder / "1.bmp")  # an ordinary edit: mtime moves on
    code, out, _ = run_cli(capsys, *args, "--sync")
    assert code == 0 and "1 added, 2 kept, 1 replaced" in out and "1 of 3 files read" in out, out
    with open_store(spec) as store:
        assert pid_of(folder / "1.bmp") in {p.id for p in store.iterate(COLLECTION)}
    code, _, err = run_cli(capsys, *args, "--checksum")
    assert code == 2 and "--checksum goes with --sync" in err


def test_a_no_op_sync_reads_no_file_and_a_just_written_one_is_read_until_it_settles(tmp_path, embedder, reads):
    folder = tmp_path / "catalog"
    folder.mkdir()
    for n in range(4):
        make_image(910 + n, size=(32, 32)).save(folder / f"{n}.png")
    settle(folder)
    with open_store(":memory:") as store:
        first = sync(folder, store, embedder)
        assert (first.added, first.read) == (4, 4) and len(reads) == 4
        entries = [e for p in store.iterate(COLLECTION) for e in payload_records(p.payload)]
        assert all(set(e["stat"]) == {"size", "mtime_ns", "ino", "dev"} for e in entries)
        reads.clear()
        again = sync(folder, store, embedder)
        assert (again.added, again.kept, again.relinked, again.read, reads) == (0, 4, 0, 0, [])

        make_image(920, size=(32, 32)).save(folder / "new.png")  # just written: its stat is not trusted yet
        for expected_reads in (1, 1):
            reads.clear()
            report = sync(folder, store, embedder)
            assert report.read == expected_reads and reads == [str(folder / "new.png")]
        old = os.stat(folder / "0.png").st_mtime_ns
        os.utime(folder / "new.png", ns=(old, old))  # settled now (older than the racy window): read once more

        reads.clear()
        assert sync(folder, store, embedder).read == 1
        reads.clear()
        assert (sync(folder, store, embedder).read, reads) == (0, [])


def test_points_indexed_before_stats_are_read_once_and_get_their_stat(tmp_path, embedder, reads):
    folder = tmp_path / "catalog"
    folder.mkdir()
    for n in range(3):
        make_image(930 + n, size=(32, 32)).save(folder / f"{n}.png")
    settle(folder)
    records = scan_folder(folder)
    with open_store(":memory:") as store:
        index_records(records, embedder=embedder, store=store, collection=COLLECTION, progress=False)
        # As an older percep-rag wrote them: the record's fields at the top level, no list, no stat.
        points = store.retrieve(COLLECTION, [p.id for p in store.iterate(COLLECTION)], with_vectors=True)
        by_uri = {r.uri: r for r in records}
        legacy = [record_payload(by_uri[p.payload["uri"]], p.payload["content_hash"], None) for p in points]
        store.upsert_arrays(
            COLLECTION, [p.id for p in points], {n: [p.vectors[n] for p in points] for n in ("base", "aligned")}, legacy
        )
        assert all("records" not in p.payload for p in store.iterate(COLLECTION))
        reads.clear()
        report = sync(folder, store, embedder)
        # Read once; rewritten with their list and stats, which is no relink (the same records).
        assert (report.read, report.kept, report.relinked, report.removed) == (3, 3, 0, 0)
        assert all("stat" in p.payload["records"][0] for p in store.iterate(COLLECTION))
        assert sync(folder, store, embedder).read == 0


# --------------------------------------------------------------------------- every record kept


def copies_folder(root: Path) -> Path:
    """3 images, each as 3 byte-identical files in two label folders (9 records)."""
    for label in ("shoes", "boots"):
        (root / label).mkdir(parents=True)
    for n in range(3):
        make_image(940 + n, size=(32, 32)).save(root / "shoes" / f"{n}.png")
        shutil.copy(root / "shoes" / f"{n}.png", root / "shoes" / f"{n}-copy.png")
        shutil.copy(root / "shoes" / f"{n}.png", root / "boots" / f"{n}.png")
    settle(root)
    return root


def test_index_keeps_every_byte_identical_file_as_a_record_of_one_point(tmp_path, embedder, capsys):
    folder = copies_folder(tmp_path / "catalog")
    spec = f"edge:{tmp_path / 'store'}"
    code, out, _ = run_cli(
        capsys, "index", str(folder), "-c", COLLECTION, "--store", spec, "-b", "tiny-vit-random", "--no-progress"
    )
    assert code == 0 and "3 new points for 9 records" in out and "6 byte-identical copies kept" in out, out
    assert "duplicate images" not in out
    with open_store(spec) as store:
        points = list(store.iterate(COLLECTION))
    assert len(points) == 3
    for point in points:
        records = point.payload["records"]
        uris = [r["uri"] for r in records]
        assert uris == sorted(uris) and len(uris) == 3 and point.id == pid_of(Path(uris[0]))
        assert {pid_of(Path(uri)) for uri in uris} == {point.id}  # every file there holds the point's bytes
        assert (point.payload["uri"], point.payload["label"], point.payload["record_id"]) == (
            records[0]["uri"],
            records[0]["label"],
            records[0]["record_id"],
        )
        assert sorted(r["label"] for r in records) == ["boots", "shoes", "shoes"] and all("stat" in r for r in records)


def test_sync_changes_only_the_entries_of_copies_added_removed_renamed_and_the_last_one_deletes(tmp_path, embedder):
    folder = copies_folder(tmp_path / "catalog")
    with open_store(":memory:") as store:
        index_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        ids = [pid_of(folder / "shoes" / f"{n}.png") for n in range(3)]
        before = {p.id: p.payload for p in store.iterate(COLLECTION)}

        for path in (folder / "shoes" / "0.png", folder / "shoes" / "0-copy.png", folder / "boots" / "0.png"):
            path.unlink()  # image 0: every file gone
        (folder / "shoes" / "1-copy.png").unlink()  # image 1: one copy withdrawn
        (folder / "boots" / "2.png").rename(folder / "shoes" / "2-moved.png")  # image 2: a copy moved and relabelled
        shutil.copy2(folder / "shoes" / "1.png", folder / "boots" / "1-again.png")  # image 1: a copy added (mtime kept)
        report = sync(folder, store, embedder)
        assert (report.added, report.kept, report.replaced, report.removed, report.relinked) == (0, 2, 0, 1, 2)
        assert report.read == 2  # the moved file and the added one: new uris; every other stat unchanged
        after = {p.id: p.payload for p in store.iterate(COLLECTION)}
        assert set(after) == set(ids[1:])

        def names(pid: str) -> list[tuple[str, str]]:
            return [(Path(r["uri"]).relative_to(folder).as_posix(), r["label"]) for r in after[pid]["records"]]

        assert names(ids[1]) == [("boots/1-again.png", "boots"), ("boots/1.png", "boots"), ("shoes/1.png", "shoes")]
        moved = [("shoes/2-copy.png", "shoes"), ("shoes/2-moved.png", "shoes"), ("shoes/2.png", "shoes")]
        assert names(ids[2]) == moved
        # Only entries changed: the unchanged files keep their entries, stats included, and the content fields.
        kept = {r["uri"]: r for r in before[ids[1]]["records"]}
        assert all(kept[r["uri"]] == r for r in after[ids[1]]["records"] if r["uri"] in kept)
        assert after[ids[2]]["content_hash"] == before[ids[2]]["content_hash"]
        again = sync(folder, store, embedder)
        assert (again.added, again.relinked, again.removed, again.read) == (0, 0, 0, 0)
        synced = {pid: without_stats(p) for pid, p in after.items()}
    with open_store(":memory:") as fresh:  # exactly what indexing the folder from scratch stores
        index_records(scan_folder(folder), embedder=embedder, store=fresh, collection=COLLECTION, progress=False)
        assert {p.id: without_stats(p.payload) for p in fresh.iterate(COLLECTION)} == synced


def test_a_copy_that_cannot_be_read_keeps_its_entry(tmp_path, embedder):
    folder = copies_folder(tmp_path / "catalog")
    with open_store(":memory:") as store:
        index_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
        copy = folder / "shoes" / "0-copy.png"
        pid = pid_of(copy)
        copy.unlink()
        copy.mkdir()  # still listed by a manifest or a walk, but no longer readable as a file
        records = [*scan_folder(folder), ImageRecord(id="shoes/0-copy.png", uri=str(copy), label="shoes")]
        report = sync_records(records, embedder=embedder, store=store, collection=COLLECTION, progress=False)
        assert len(report.failures) == 1 and (report.removed, report.replaced) == (0, 0)
        [point] = store.retrieve(COLLECTION, [pid])
        assert str(copy) in [r["uri"] for r in point.payload["records"]]


def test_delete_uri_removes_one_record_and_the_point_only_with_its_last(tmp_path, embedder, capsys):
    folder = copies_folder(tmp_path / "catalog")
    spec = f"edge:{tmp_path / 'store'}"
    with open_store(spec) as store:
        index_records(scan_folder(folder), embedder=embedder, store=store, collection=COLLECTION, progress=False)
    pid = pid_of(folder / "shoes" / "0.png")
    delete = ("delete", "-c", COLLECTION, "--store", spec, "--yes")
    code, out, _ = run_cli(capsys, *delete, "--uri", str(folder / "shoes" / "0.png"))
    assert code == 0 and "deleted 0 points" in out and "1 record from 1 point that other files still hold" in out, out
    assert "3 left" in out
    with open_store(spec) as store:
        [point] = store.retrieve(COLLECTION, [pid])
    assert [Path(r["uri"]).name for r in point.payload["records"]] == ["0.png", "0-copy.png"]
    assert point.payload["uri"] == str(folder / "boots" / "0.png")  # the next record is the primary now
    code, out, _ = run_cli(
        capsys, *delete, "--uri", str(folder / "boots" / "0.png"), "--uri", str(folder / "shoes" / "0-copy.png")
    )
    assert code == 0 and "deleted 1 point of" in out and "2 left" in out, out
    with open_store(spec) as store:
        assert pid not in {p.id for p in store.iterate(COLLECTION)}


def test_a_stat_entry_is_plain_json_for_any_inode():
    """Qdrant payload integers are int64; some network file systems' inodes are not."""
    from percep_rag.point_records import file_stat

    class Huge:
        st_size, st_mtime_ns, st_ino, st_dev = 5, 10**18, 2**64 - 1, 3

    assert file_stat(Huge()) == {"size": 5, "mtime_ns": 10**18, "ino": str(2**64 - 1), "dev": 3}
