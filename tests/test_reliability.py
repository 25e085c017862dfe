"""A silent store costs one time-out, not one per call; nothing readable is a failure (issue 21, item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from percep_rag.store.client import QdrantClientStore
from percep_rag.store.errors import StoreUnavailableError
from percep_rag.store.retry import RetryPolicy

from .test_cli_errors import assert_one_line, run_cli

ROOT = Path(__file__).resolve().parents[1]

# Runs `percep-rag ARGV` as the console script does, and records how long loading the code
# (start-up: the CLI and the store client it imports on first use) and the command itself took,
# so the time-out bound holds on the command, whatever the machine's load.
_TIMED_MAIN = """
import json, sys, time
started = time.monotonic()
from percep_rag.cli import main
import percep_rag.store.client
imported = time.monotonic()
try:
    main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as out:
        json.dump({"startup": imported - started, "command": time.monotonic() - imported}, out)
"""


def test_search_against_a_silent_server_gives_up_within_twice_the_timeout(tmp_path, silent_server):
    query = tmp_path / "q.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(query)
    timings = tmp_path / "timings.json"
    argv = ["search", str(query), "--collection", "c", "--store", silent_server, "--timeout", "2"]
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _TIMED_MAIN, str(timings), *argv],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")])},
    )  # fmt: skip
    wall = time.monotonic() - began
    assert done.returncode == 1, done.stderr
    assert_one_line(done.stderr, silent_server, "unavailable")
    measured = json.loads(timings.read_text())
    assert measured["command"] < 2 * 2, measured  # one 2 s time-out, not one per store call
    assert wall < measured["startup"] + 2 * 2 + 5, (wall, measured)  # + interpreter start and exit


class _SilentClient:
    """A qdrant-client stand-in whose every call times out after ``delay`` seconds."""

    def __init__(self, delay: float):
        self.delay = delay
        self.calls = 0

    def _time_out(self, *args, **kwargs):
        self.calls += 1
        time.sleep(self.delay)
        raise TimeoutError("timed out")

    get_collections = collection_exists = get_collection = _time_out


def test_after_a_time_out_later_calls_fail_at_once_then_the_store_is_tried_again():
    client = _SilentClient(delay=0.3)
    store = QdrantClientStore(client, location="http://silent", remote=True, retry=RetryPolicy(attempts=4), timeout=0.3)
    with pytest.raises(StoreUnavailableError, match="timed out"):
        store.list_collections()
    assert client.calls == 1  # the budget (0.3 s) leaves no time for a retry
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="not tried"):
        store.has_collection("c")
    assert client.calls == 1 and time.monotonic() - started < 0.1
    time.sleep(0.35)  # past the time-out, the store is tried again (a server can come back)
    with pytest.raises(StoreUnavailableError, match="timed out"):
        store.has_collection("c")
    assert client.calls == 2


def test_index_of_a_folder_where_nothing_is_readable_fails_naming_every_file(capsys, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    names = ["a.png", "b.jpg", "c.png"]
    (folder / names[0]).write_bytes(b"")
    (folder / names[1]).write_bytes(b"\xff\xd8\xff not a jpeg")
    (folder / names[2]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    store = f"edge:{tmp_path / 'store'}"
    code, out, err = run_cli(capsys, "index", str(folder), "-c", "bad", "--store", store, "-b", "tiny-vit-random")
    assert code == 1, (out, err)
    assert "Traceback" not in err
    for name in names:
        assert f"skipped {folder / name}" in err, err
    assert err.strip().splitlines()[-1] == "error: none of the 3 images could be read (each is listed above)"
    code, _, err = run_cli(capsys, "embed", str(folder), "-o", str(tmp_path / "v.npy"), "-b", "tiny-vit-random")
    assert code == 1 and all(name in err for name in names), err
    assert not (tmp_path / "v.npy").exists()  # nothing embedded: no empty file left behind


def test_index_of_a_folder_with_some_good_files_still_succeeds(capsys, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (16, 16), (10, 200, 10)).save(folder / "good.png")
    (folder / "bad.png").write_bytes(b"")
    store = f"edge:{tmp_path / 'store'}"
    code, out, err = run_cli(capsys, "index", str(folder), "-c", "mixed", "--store", store, "-b", "tiny-vit-random")
    assert code == 0, err
    assert f"skipped {folder / 'bad.png'}" in err and "1 new points" in out
