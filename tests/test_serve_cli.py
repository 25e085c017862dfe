"""Issue 23: `percep-rag serve` refuses what it cannot serve in one line, before it listens anywhere."""

from __future__ import annotations

import pytest

from percep_rag.cli import main
from tests.serve_world import index_folder, make_photos


def run_cli(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) <= 2, captured.err  # the error, and at most a hint
    return done.value.code or 0, lines[0] if lines else ""


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from percep_rag import AlignedEmbedder, EmbedderSpec

    root = tmp_path_factory.mktemp("serve-cli")
    photos = make_photos(root, per_class=1)
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    index_folder(photos, f"edge:{root / 'a'}", "photos", embedder)
    index_folder(photos, f"edge:{root / 'b'}", "photos", embedder)
    return root


def test_serve_never_creates_a_store(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    code, line = run_cli(capsys, "serve", "--store", f"edge:{missing}")
    assert code == 1 and line.startswith(f"error: no store at {missing}") and not missing.exists()


def test_serve_names_a_collection_that_is_not_there(capsys, stores):
    code, line = run_cli(capsys, "serve", "--store", f"edge:{stores / 'a'}", "--collection", "dogs")
    assert code == 2 and "no collection 'dogs'" in line


def test_serve_refuses_one_name_in_two_stores(capsys, stores):
    code, line = run_cli(capsys, "serve", "--store", f"edge:{stores / 'a'}", "--store", f"edge:{stores / 'b'}")
    assert code == 2 and "'photos' is in both" in line


def test_serve_options_are_checked(capsys, stores):
    code, line = run_cli(capsys, "serve", "--store", f"edge:{stores / 'a'}", "--port", "70000")
    assert code == 2 and "--port" in line
    code, line = run_cli(capsys, "serve", "--store", f"edge:{stores / 'a'}", "--log-level", "loud")
    assert code == 2 and "--log-level" in line


def test_serve_help_says_where_it_binds(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "127.0.0.1" in out and "--api-key" in out and "--max-upload-mb" in out
