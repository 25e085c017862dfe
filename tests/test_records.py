"""Image records from manifests and the SOURCE argument: folders, CSV/TSV/JSONL, DeepFashion2 prefix."""

from __future__ import annotations

import pytest

from percep_rag.datasets.records import ManifestError, load_records, read_manifest
from percep_rag.datasets.sources import load_source
from percep_rag.errors import ConfigError


def test_manifest_with_a_byte_order_mark_is_read(image_folder, tmp_path):
    # Excel writes UTF-8 CSV with a BOM; it must not become part of the first column's name.
    manifest = tmp_path / "excel.csv"
    rows = ["image,label,colour", f"{image_folder / 'circle' / '0.png'},circle,red", "square/1.jpg,square,"]
    manifest.write_bytes(("\ufeff" + "\r\n".join(rows) + "\r\n").encode("utf-8"))
    records = read_manifest(manifest)
    assert [record.label for record in records] == ["circle", "square"]
    assert records[0].extra == {"colour": "red"} and records[1].extra == {}
    assert records[1].uri == str(tmp_path / "square" / "1.jpg")


def test_tsv_and_jsonl_manifests_and_their_line_numbers(tmp_path):
    tsv = tmp_path / "m.tsv"
    tsv.write_text("path\tid\na.png\tfirst\n")
    assert [record.id for record in read_manifest(tsv)] == ["first"]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"uri": "a.png"}\n\n{not json\n')
    with pytest.raises(ManifestError, match=r"m.jsonl:3: not valid JSON"):
        read_manifest(jsonl)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("uri,label\na.png,cat,extra\n")
    with pytest.raises(ManifestError, match=r"ragged.csv:2: expected 2 fields, got 3"):
        read_manifest(ragged)
    duplicate = tmp_path / "dup.csv"
    duplicate.write_text("uri\na.png\nb.png\na.png\n")
    with pytest.raises(ManifestError, match=r"dup.csv:4: duplicate id 'a.png' \(first on line 2\)"):
        read_manifest(duplicate)
    no_image = tmp_path / "no_image.csv"
    no_image.write_text("label\ncat\n")
    with pytest.raises(ManifestError, match="no_image.csv:2: no image column"):
        read_manifest(no_image)


def test_load_source_folder_is_absolute_and_missing_path_is_a_config_error(image_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(image_folder.parent)
    source = load_source(image_folder.name)
    assert len(source.records) == 12 and source.dataset is None and source.payload_indexes == {}
    assert all(record.uri.startswith(str(image_folder)) for record in source.records)
    assert [r.id for r in source.records] == [r.id for r in load_records(image_folder)]
    with pytest.raises(ConfigError, match="nope does not exist"):
        load_source(tmp_path / "nope")
