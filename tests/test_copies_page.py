"""Issue 38 on the page, in a real headless Chromium (as tests/test_serve_browser.py): the tile of
the query's pixel-identical copy says "copy", a calibrated near copy says "near copy, cos 0.9xx",
other tiles say nothing, and a tile standing for several byte-identical files says how many."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.copies_world import make_world, reencoded, resized
from tests.test_copies_surfaces import calibrate_world
from tests.test_serve_browser import (
    CHROMIUM_FLAGS,
    ROOT,
    find_browser,
    free_port,
    query_with_file,
    serious_violations,
    wait_for_health,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from percep_rag import AlignedEmbedder, EmbedderSpec
    from percep_rag.datasets.records import scan_folder
    from percep_rag.indexing import index_records
    from percep_rag.store import content_hash, open_store, point_id

    root = tmp_path_factory.mktemp("copies-page")
    catalog = make_world(root)
    original = catalog / "circle" / "0.png"
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32"))
    with open_store(f"edge:{root / 'store'}") as store:
        index_records(scan_folder(catalog), embedder=embedder, store=store, collection="world", progress=False)
        calibrate_world(store, "world", catalog, root, embedder)
        # The original also uploaded twice more under other names: one point, three files.
        copies = [str(original)] + [str(shutil.copy(original, root / f"upload-{n}.png")) for n in range(2)]
        pid = point_id(content_hash(original.read_bytes()), "world")
        [point] = store.retrieve("world", [pid], with_vectors=True)
        records = [{"record_id": uri, "uri": uri, "label": "circle"} for uri in sorted(copies)]
        store.upsert_arrays("world", [pid], {k: [v] for k, v in point.vectors.items()},
                            [{**point.payload, **records[0], "records": records}])  # fmt: skip
    port = free_port()
    log = root / "serve.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")])}
    env.pop("PERCEP_RAG_API_KEY", None)
    command = [sys.executable, "-m", "percep_rag", "serve", "--store", f"edge:{root / 'store'}", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen([*command, "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process, log)
        yield {"url": url, "reencoded": reencoded(original, root / "q-reencoded.png"),
               "resized": resized(original, root / "q-resized.png")}  # fmt: skip
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_page_tells_exact_and_near_copies_apart(served, tmp_path):
    browser_path, driver_path = find_browser()
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        wait = WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException])
        browser.get(served["url"] + "/")
        wait.until(lambda d: "world" in d.find_element(By.ID, "collection").text)

        def badges(query) -> list[tuple[str, str]]:
            query_with_file(browser, wait, query)  # settled: never the previous query's tiles, about to be replaced
            tiles = browser.find_elements(By.CSS_SELECTOR, "#aligned button.hit")
            assert len(tiles) >= 8
            return [
                (
                    " ".join(b.text for b in tile.find_elements(By.CSS_SELECTOR, ".copy")),
                    " ".join(b.text for b in tile.find_elements(By.CSS_SELECTOR, ".files")),
                )
                for tile in tiles
            ]

        exact = badges(served["reencoded"])
        assert exact[0] == ("copy", "3 files") and all(marks == ("", "") for marks in exact[1:]), exact
        near = badges(served["resized"])
        assert near[0][0].startswith("near copy, cos ") and near[0][1] == "3 files", near
        assert all(marks == ("", "") for marks in near[1:]), near
        assert serious_violations(browser) == []  # the badges keep the page accessible (axe-core)
    finally:
        browser.quit()
