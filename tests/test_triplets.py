"""Triplet readers (NIGHTS CSV, THINGS npy, JSONL/CSV tables) and the agreement metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from percep_rag.alignment.metrics import (
    MetricInputError,
    cosine_distance,
    odd_one_out_accuracy,
    two_afc_agreement,
    two_afc_from_embeddings,
)
from percep_rag.alignment.triplets import (
    TripletError,
    TripletFileError,
    TripletSet,
    read_nights_csv,
    read_things_triplets,
    read_triplet_table,
)
from percep_rag.datasets.triplets import read_triplets
from percep_rag.errors import DimensionMismatchError, PercepRagError

HEADER = "id,left_vote,right_vote,votes,ref_path,left_path,right_path,split,is_imagenet,prompt"


def nights_row(
    i: int, left: str, right: str, votes: str, split: str, is_imagenet: str = "True", prompt: str = "a cat"
) -> str:
    paths = f"ref/{i:03d}.png,distort/{i:03d}_0.png,distort/{i:03d}_1.png"
    return f"{i},{left},{right},{votes},{paths},{split},{is_imagenet},{prompt}"


def touch_images(root: Path, ids: range) -> None:
    for i in ids:
        for relative in (f"ref/{i:03d}.png", f"distort/{i:03d}_0.png", f"distort/{i:03d}_1.png"):
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(b"")


@pytest.fixture
def nights_csv(tmp_path: Path) -> Path:
    touch_images(tmp_path, range(6))
    lines = [
        HEADER,
        nights_row(0, "0.0", "1.0", "6", "train"),  # line 2: shares, right wins
        nights_row(1, "1.0", "0.0", "5", "train"),  # line 3: too few votes
        nights_row(2, "1", "5", "6", "test", "True"),  # line 4: counts, 5/6 for right
        nights_row(3, "1.0", "0.0", "7", "test", "False"),  # line 5
        nights_row(4, "0.5", "0.5", "6.0", "val", "0"),  # line 6: pandas-style float votes
        nights_row(5, "0.0", "1.0", "6", "test", "1", '"two\nline prompt"'),  # lines 7-8
    ]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- NIGHTS


def test_nights_reads_targets_votes_and_paths(nights_csv: Path):
    triplets = read_nights_csv(nights_csv)
    assert triplets.ids.tolist() == ["0", "2", "3", "4", "5"]  # id 1 has 5 < 6 votes
    assert triplets.target.tolist() == pytest.approx([1.0, 5 / 6, 0.0, 0.5, 1.0])
    assert triplets.lines.tolist() == [2, 4, 5, 6, 7]
    assert triplets.anchor[0] == str(nights_csv.parent / "ref/000.png")
    assert triplets.right[1] == str(nights_csv.parent / "distort/002_1.png")
    assert triplets.extra["prompt"][-1] == "two\nline prompt"
    assert triplets.problems == []
    assert len(read_nights_csv(nights_csv, min_votes=0)) == 6


def test_nights_derived_test_splits(nights_csv: Path):
    triplets = read_nights_csv(nights_csv)
    assert triplets.subsplit.tolist() == [None, "test_imagenet", "test_no_imagenet", None, "test_imagenet"]
    assert triplets.by_split("test").ids.tolist() == ["2", "3", "5"]
    assert triplets.by_split("test_imagenet").ids.tolist() == ["2", "5"]
    assert read_nights_csv(nights_csv, splits=["test_no_imagenet"]).ids.tolist() == ["3"]
    assert read_nights_csv(nights_csv, splits=["train", "val"]).ids.tolist() == ["0", "4"]
    assert triplets.split_counts() == {"train": 1, "test": 3, "val": 1, "test_imagenet": 2, "test_no_imagenet": 1}


def test_nights_bad_rows_are_reported_with_line_numbers(tmp_path: Path):
    touch_images(tmp_path, range(12))
    lines = [
        HEADER,
        nights_row(0, "0.0", "1.0", "6", "train"),  # 2 ok
        nights_row(1, "0.0", "1.0", "six", "train"),  # 3 votes not an integer
        nights_row(2, "-1", "1.0", "6", "train"),  # 4 negative vote
        nights_row(3, "2", "3", "6", "train"),  # 5 2 + 3 is neither 6 nor 1
        nights_row(0, "0.0", "1.0", "6", "val"),  # 6 duplicate id 0
        nights_row(99, "0.0", "1.0", "6", "train"),  # 7 files do not exist
        "7,0.0,1.0,6,ref/007.png",  # 8 too few fields
        nights_row(8, "0.0", "1.0", "6", "train", "maybe"),  # 9 bad boolean
        nights_row(9, "0.0", "1.0", "6", "train", prompt='"multi\nline"'),  # 10-11 ok
        nights_row(10, "0.0", "1.0", "2.5", "train"),  # 12 fractional votes
        "",  # 13 blank: ignored
        nights_row(11, "0.0", "1.0", "6", ""),  # 14 empty split
    ]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TripletFileError) as caught:
        read_nights_csv(path)
    error = caught.value
    assert isinstance(error, PercepRagError) and isinstance(error, ValueError)
    assert [line for line, _ in error.problems] == [3, 4, 5, 6, 7, 8, 9, 12, 14]
    messages = dict(error.problems)
    assert "not an integer" in messages[3]
    assert "negative" in messages[4]
    assert "neither votes (6) nor 1" in messages[5]
    assert "duplicate id '0' (first on line 2)" in messages[6]
    assert "ref/099.png" in messages[7] and "missing file" in messages[7]
    assert "expected 10 fields, got 5" in messages[8]
    assert "is_imagenet" in messages[9]
    assert "empty split" in messages[14]
    assert "line 3: votes 'six' is not an integer" in str(error)

    skipped = read_nights_csv(path, on_error="skip")
    assert skipped.ids.tolist() == ["0", "9"]
    assert skipped.lines.tolist() == [2, 10]
    assert [line for line, _ in skipped.problems] == [3, 4, 5, 6, 7, 8, 9, 12, 14]
    # Without the file check the missing images are fine.
    assert "99" in read_nights_csv(path, check_files=False, on_error="skip").ids.tolist()


def test_nights_missing_columns_and_empty_file(tmp_path: Path):
    path = tmp_path / "data.csv"
    path.write_text("id,left_vote,votes,ref_path\n1,0,6,a.png\n")
    with pytest.raises(TripletFileError, match="line 1: missing columns: right_vote, left_path"):
        read_nights_csv(path, check_files=False)
    path.write_text("")
    with pytest.raises(TripletFileError, match="empty file"):
        read_nights_csv(path)


def test_read_triplets_recognises_nights_written_with_a_byte_order_mark(nights_csv: Path):
    nights_csv.write_bytes(b"\xef\xbb\xbf" + nights_csv.read_bytes())  # as Excel saves CSV
    triplets = read_triplets(nights_csv)
    assert triplets.ids.tolist() == ["0", "2", "3", "4", "5"] and triplets.lines.tolist() == [2, 4, 5, 6, 7]


def test_error_message_lists_first_twenty_then_counts():
    error = TripletFileError("x.csv", [(line, "bad") for line in range(30, 0, -1)])
    text = str(error)
    assert text.startswith("x.csv: 30 problems")
    assert "line 1: bad" in text and "line 20: bad" in text and "line 21:" not in text
    assert text.endswith("... and 10 more")


# --------------------------------------------------------------------------- THINGS


def test_things_triplets_positive_is_right(tmp_path: Path):
    path = tmp_path / "train_90.npy"
    np.save(path, np.array([[0, 1, 2], [3, 2, 0]], dtype=np.int64))
    names = tmp_path / "images.txt"
    names.write_text("aardvark.jpg\nabacus.jpg\naccordion.jpg\nacorn.jpg\n")
    indexed = read_things_triplets(path)
    assert indexed.is_indexed and indexed.is_hard
    assert indexed.anchor.tolist() == [0, 3] and indexed.right.tolist() == [1, 2] and indexed.left.tolist() == [2, 0]
    assert indexed.target.tolist() == [1.0, 1.0]
    assert indexed.indices().tolist() == [[0, 2, 1], [3, 0, 2]]
    named = read_things_triplets(path, names)
    assert named.right.tolist() == ["abacus.jpg", "accordion.jpg"]


def test_things_bad_rows_by_row_number(tmp_path: Path):
    path = tmp_path / "t.npy"
    np.save(path, np.array([[0, 1, 2], [3, 3, 1], [1, 2, 0], [-1, 2, 3], [0, 1, 9]]))
    with pytest.raises(TripletFileError) as caught:
        read_things_triplets(path, ["a", "b", "c", "d"])
    assert [line for line, _ in caught.value.problems] == [2, 4, 5]
    assert "repeated object" in dict(caught.value.problems)[2]
    skipped = read_things_triplets(path, ["a", "b", "c", "d"], on_error="skip")
    assert skipped.lines.tolist() == [1, 3] and skipped.anchor.tolist() == ["a", "b"]
    np.save(path, np.zeros((3, 2)))
    with pytest.raises(TripletFileError, match=r"expected an \(N, 3\) array"):
        read_things_triplets(path)


# --------------------------------------------------------------------------- tables


def test_jsonl_table(tmp_path: Path):
    records = [
        json.dumps({"anchor": "a.jpg", "positive": "b.jpg", "negative": "c.jpg", "id": "t1", "split": "train"}),  # 1
        "",  # 2 blank
        "{not json",  # 3
        json.dumps({"anchor": "a.jpg", "positive": "b.jpg"}),  # 4 missing negative
        json.dumps({"anchor": "a.jpg", "positive": "b.jpg", "negative": "b.jpg"}),  # 5 same image
        json.dumps({"anchor": "d.jpg", "positive": "e.jpg", "negative": "f.jpg", "id": "t1"}),  # 6 duplicate id
        json.dumps({"anchor": "d.jpg", "positive": "e.jpg", "negative": "f.jpg", "weight": -1}),  # 7 bad weight
        json.dumps({"anchor": 1, "positive": 2, "negative": 3}),  # 8 ints after strs
        json.dumps(["a", "b", "c"]),  # 9 not an object
        json.dumps({"anchor": "g.jpg", "positive": "h.jpg", "negative": "i.jpg", "weight": 2.5, "split": "val"}),  # 10
    ]
    path = tmp_path / "triplets.jsonl"
    path.write_text("\n".join(records) + "\n")
    with pytest.raises(TripletFileError) as caught:
        read_triplet_table(path)
    assert [line for line, _ in caught.value.problems] == [3, 4, 5, 6, 7, 8, 9]
    assert "missing negative" in dict(caught.value.problems)[4]
    triplets = read_triplet_table(path, on_error="skip")
    assert triplets.anchor.tolist() == ["a.jpg", "g.jpg"]
    assert triplets.right.tolist() == ["b.jpg", "h.jpg"] and triplets.left.tolist() == ["c.jpg", "i.jpg"]
    assert triplets.weight.tolist() == [1.0, 2.5]
    assert triplets.split.tolist() == ["train", "val"]
    assert triplets.ids.tolist() == ["t1", None]


def test_csv_table_with_root_and_file_check(tmp_path: Path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / "triplets.csv"
    path.write_text(
        "anchor,positive,negative,weight\na.jpg,b.jpg,c.jpg,1\na.jpg, b.jpg ,zzz.jpg,0.5\na.jpg,b.jpg,c.jpg,oops\n"
    )
    with pytest.raises(TripletFileError) as caught:
        read_triplet_table(path, check_files=True)
    assert [line for line, _ in caught.value.problems] == [3, 4]
    assert "zzz.jpg" in dict(caught.value.problems)[3]
    triplets = read_triplet_table(path, root=tmp_path, on_error="skip")  # no file check
    assert triplets.right.tolist() == [str(tmp_path / "b.jpg")] * 2
    assert triplets.weight.tolist() == [1.0, 0.5]
    with pytest.raises(TripletError, match="unknown triplet table format"):
        read_triplet_table(tmp_path / "t.parquet")


# --------------------------------------------------------------------------- TripletSet


def test_tripletset_helpers():
    triplets = TripletSet.from_ranked(
        ["a", "b", "c"], ["p", "q", "r"], ["x", "y", "z"], split=["train", "val", "train"]
    )
    assert triplets.left.tolist() == ["x", "y", "z"] and triplets.target.tolist() == [1.0] * 3
    assert triplets.by_split("train").anchor.tolist() == ["a", "c"]
    assert triplets.subset(np.array([2, 0])).split.tolist() == ["train", "train"]
    rows = triplets.indices({ref: i for i, ref in enumerate(triplets.refs())})
    assert rows.shape == (3, 3)
    with pytest.raises(TripletError, match="no feature row: 'z'"):
        triplets.indices(["a", "b", "c", "p", "q", "r", "x", "y"])
    with pytest.raises(TripletError, match=r"\[0, 1\]"):
        TripletSet(["a"], ["b"], ["c"], [1.5])
    with pytest.raises(TripletError, match="mix str and int"):
        TripletSet(["a"], [1], [2], [1.0])


def test_object_disjoint_split_shares_no_image():
    rng = np.random.default_rng(0)
    rows = np.array([rng.choice(60, 3, replace=False) for _ in range(2000)])
    triplets = TripletSet.from_ranked(rows[:, 0], rows[:, 1], rows[:, 2])
    train, val = triplets.object_disjoint_split(0.3, seed=1)
    assert len(train) > 0 and len(val) > 0
    assert not set(train.refs().tolist()) & set(val.refs().tolist())


# --------------------------------------------------------------------------- metrics


def test_two_afc_ties_and_soft_votes():
    # left closer & humans chose left; right closer & humans chose right; tie.
    assert two_afc_agreement([0.1, 0.5, 0.3], [0.2, 0.4, 0.3], [0.0, 1.0, 1.0]) == pytest.approx(2.5 / 3)
    # 5 of 6 votes for right: choosing right earns 5/6, choosing left 1/6, a tie 1/2.
    assert two_afc_agreement([0.4], [0.2], [5 / 6]) == pytest.approx(5 / 6)
    assert two_afc_agreement([0.2], [0.4], [5 / 6]) == pytest.approx(1 / 6)
    assert two_afc_agreement([0.3], [0.3], [5 / 6]) == 0.5
    assert two_afc_agreement(torch.tensor([0.1]), torch.tensor([0.2]), torch.tensor([0.0])) == 1.0
    with pytest.raises(MetricInputError):
        two_afc_agreement([0.1], [0.2], [1.5])
    with pytest.raises(DimensionMismatchError):
        two_afc_agreement([0.1, 0.2], [0.2], [1.0])
    with pytest.raises(MetricInputError):
        two_afc_agreement([], [], [])


def test_two_afc_from_embeddings_cosine_and_euclidean():
    anchor = np.array([[1.0, 0.0], [1.0, 0.0]])
    left = np.array([[2.0, 0.1], [0.0, 1.0]])  # same direction, far away | orthogonal
    right = np.array([[0.7, 0.7], [0.5, 0.0]])
    target = np.array([0.0, 1.0])
    assert two_afc_from_embeddings(anchor, left, right, target) == 1.0  # cosine: left, right
    # Euclidean: row 0 left is at 1.0 and right at 0.76, so it picks right (score 0); row 1 right.
    assert two_afc_from_embeddings(anchor, left, right, target, distance="euclidean") == 0.5
    assert cosine_distance([[1, 0], [1, 1]], [[0, 1], [2, 2]]) == pytest.approx([1.0, 0.0])
    assert cosine_distance([[0, 0]], [[1, 0]]) == pytest.approx([1.0])  # zero vector: no NaN


def test_odd_one_out_accuracy_similarities_and_ties():
    # a and b point the same way but b is tiny; c is large and diagonal.
    features = np.array([[1.0, 0.0], [0.1, 0.01], [5.0, 5.0]])
    triplets = np.array([[0, 1, 2]])
    assert odd_one_out_accuracy(features, triplets, "cosine") == 1.0
    assert odd_one_out_accuracy(features, triplets, "euclidean") == 1.0
    assert odd_one_out_accuracy(features, triplets, "dot") == 0.0  # dot favours (a, c)
    equal = np.ones((3, 4))
    assert odd_one_out_accuracy(equal, triplets) == 0.0  # three-way tie is wrong
    partial = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, -1.0]])  # s01 == s02 > s12
    assert odd_one_out_accuracy(partial, triplets) == 0.0
    assert odd_one_out_accuracy(torch.tensor(features), torch.tensor([[0, 1, 2], [0, 2, 1]])) == 0.5
    with pytest.raises(MetricInputError):
        odd_one_out_accuracy(features, np.array([[0, 1, 3]]))
    with pytest.raises(DimensionMismatchError):
        odd_one_out_accuracy(features, np.array([[0.0, 1.0, 2.0]]))
