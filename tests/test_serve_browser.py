"""Issue 23: `percep-rag serve` as a real process on a loopback port, driven by a real headless Chromium.

The service runs with an API key (``$PERCEP_RAG_API_KEY``): the page asks for it, then sends
it with every request, thumbnails included. Upload an image, see the base and aligned grids,
filter, click a result (mouse and keyboard) to query with it, see an error state; on a CLIP
collection, type a text query and see the same grids (a DINO collection disables the text box). Screenshots
at desktop and phone widths are kept in ``$PERCEP_RAG_ARTIFACTS`` (else the test's temp
folder) and their paths printed.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); without them
the test FAILS saying so: a browser test that is skipped proves nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.serve_world import index_folder, make_photos

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "browser-test-key"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def find_browser() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail(
            "the browser test needs Chromium and its driver: apt-get install -y chromium chromium-driver "
            f"(found chromium: {browser or 'no'}, chromedriver: {driver or 'no'})",
            pytrace=False,
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("the browser test needs selenium: pip install -e '.[dev]'", pytrace=False)
    return browser, driver


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_health(url: str, server: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"percep-rag serve exited with {server.returncode}:\n{log.read_text()}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"percep-rag serve did not answer /healthz in {seconds:.0f} s:\n{log.read_text()}", pytrace=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from percep_rag import AlignedEmbedder, EmbedderSpec

    root = tmp_path_factory.mktemp("browser")
    photos = make_photos(root, per_class=4)
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32"))
    index_folder(photos, f"edge:{root / 'store'}", "photos", embedder)
    clip = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-clip-random", precision="fp32"))
    index_folder(photos, f"edge:{root / 'store'}", "words", clip)  # a CLIP collection, for text search
    port = free_port()
    log = root / "serve.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")]),
        "PERCEP_RAG_API_KEY": API_KEY,  # the page must ask for it, and send it with every request
    }
    command = [sys.executable, "-m", "percep_rag", "serve", "--store", f"edge:{root / 'store'}", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen([*command, "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process, log)
        yield {"url": url, "photos": photos, "root": root, "log": log}
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def browser(tmp_path):
    browser_path, driver_path = find_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, read by the tests
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def thumbnails_in_view_loaded(column: str, *, some_in_view: bool = True):
    """A wait condition: the column's results are there and its thumbnails in the window are shown.

    With a key, thumbnails are fetched as they come within 200 px of the window, so one further
    down is rightly not fetched yet. At a phone's width the columns stack and the base column may
    lie wholly below the window: ``some_in_view=False`` then accepts that none of it is in view."""

    def loaded(driver) -> bool:
        return driver.execute_script(
            f"const all = [...document.querySelectorAll('#{column} .hit img')];"
            "const seen = all.filter((i) => {"
            "  const box = i.getBoundingClientRect();"
            "  return box.bottom > 0 && box.top < window.innerHeight; });"
            "return all.length > 0 && (seen.length > 0 || !arguments[0])"
            "  && seen.every((i) => i.complete && i.naturalWidth > 0);",
            some_in_view,
        )

    return loaded


def search_settled(driver) -> bool:
    """A wait condition: no search is in flight, so the grids are the latest query's answer.

    The page marks the results ``aria-busy`` in the same task that shows the new query's name,
    so waiting for the name to change and then for this never reads the previous grids."""
    return driver.execute_script("return document.querySelector('.results').getAttribute('aria-busy') === 'false';")


def query_with_file(browser, wait, path: Path) -> None:
    """Upload ``path`` as the query and wait for its answer: the query's name changes, then the
    search settles (``search_settled``), so what the grids show next is this query's."""
    from selenium.webdriver.common.by import By

    before = browser.find_element(By.ID, "query-name").text
    browser.find_element(By.ID, "file").send_keys(str(path))
    wait.until(lambda d: d.find_element(By.ID, "query-name").text != before)
    wait.until(search_settled)


def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PERCEP_RAG_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(driver, folder: Path, name: str) -> Path:
    path = folder / f"serve-{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_the_page_in_a_real_browser(server, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException])  # grids re-render
    kept = artifacts(tmp_path)
    browser.get(server["url"] + "/")
    # The service wants a key: the page says so and opens the key field.
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "API key" in browser.find_element(By.ID, "error").text
    key_field = browser.find_element(By.ID, "api-key")
    assert key_field.is_displayed()
    key_field.send_keys(API_KEY, Keys.TAB)
    wait.until(lambda d: "photos" in d.find_element(By.ID, "collection").text)
    wait.until(lambda d: d.find_element(By.ID, "collection-meta").text)
    assert "tiny-vit-random" in browser.find_element(By.ID, "collection-meta").text
    assert browser.find_element(By.ID, "random-note").is_displayed()  # random weights are said, always
    assert browser.find_element(By.ID, "empty").is_displayed()
    shoot(browser, kept, "empty-desktop")

    def hits(column: str) -> list:
        return browser.find_elements(By.CSS_SELECTOR, f"#{column} button.hit")

    # Upload: both grids fill, the images arrive, labels and scores are shown.
    query = server["photos"] / "test" / "dog" / "0.png"
    browser.find_element(By.ID, "file").send_keys(str(query))
    wait.until(lambda d: len(hits("aligned")) == 8 and len(hits("base")) == 8)
    wait.until(thumbnails_in_view_loaded("aligned"))
    assert (
        browser.find_element(By.ID, "columns").is_displayed()
        and not browser.find_element(By.ID, "empty").is_displayed()
    )
    first = hits("aligned")[0]
    # Sent with the key (an <img> cannot send a header): fetched, then shown from a blob URL.
    assert first.find_element(By.TAG_NAME, "img").get_attribute("src").startswith("blob:")
    assert "#1" in first.text and "dog" in first.text
    assert all(img.get_attribute("loading") == "lazy" for img in browser.find_elements(By.CSS_SELECTOR, ".hit img"))
    shoot(browser, kept, "results-desktop")

    # Filter by label: every hit is a fish.
    Select(browser.find_element(By.ID, "label-filter")).select_by_visible_text("fish")
    wait.until(lambda d: all("fish" in hit.text for hit in hits("base")) and len(hits("base")) == 8)
    Select(browser.find_element(By.ID, "label-filter")).select_by_visible_text("any")
    wait.until(lambda d: len(hits("base")) == 8 and not all("fish" in hit.text for hit in hits("base")))

    # Click a result: it becomes the query (and is not its own neighbour).
    clicked = hits("aligned")[2]
    clicked_label = clicked.accessible_name
    assert clicked_label.startswith(clicked.find_element(By.CLASS_NAME, "label").text)
    before = browser.find_element(By.ID, "query-name").text
    clicked.click()
    wait.until(lambda d: d.find_element(By.ID, "query-name").text != before)
    wait.until(search_settled)
    assert "Searching" not in browser.find_element(By.ID, "status").text
    wait.until(thumbnails_in_view_loaded("aligned"))
    assert len(hits("aligned")) == 8
    assert browser.find_element(By.ID, "query-preview").get_attribute("src")

    # The keyboard alone: focus a result, press Enter.
    target = hits("base")[1]
    name_before = browser.find_element(By.ID, "query-name").text
    target.send_keys(Keys.ENTER)
    wait.until(lambda d: d.find_element(By.ID, "query-name").text != name_before)
    wait.until(search_settled)
    assert clicked_label  # every result button has an accessible name: what it shows, and what it does

    # Phone width: the columns stack, nothing overflows sideways.
    browser.set_window_size(390, 844)
    wait.until(thumbnails_in_view_loaded("base", some_in_view=False))
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone"
    shoot(browser, kept, "query-phone")
    browser.execute_script("document.getElementById('status').scrollIntoView()")
    wait.until(thumbnails_in_view_loaded("base", some_in_view=False))
    shoot(browser, kept, "results-phone")

    # An upload the service refuses: the error it names is shown, the page stays usable.
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not really a png")
    browser.set_window_size(1280, 900)
    browser.find_element(By.ID, "file").send_keys(str(bad))
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    message = browser.find_element(By.ID, "error").text
    assert "not an image" in message and "415" in message
    assert not browser.find_element(By.ID, "columns").is_displayed()  # not the previous query's results
    shoot(browser, kept, "error-desktop")
    assert "Traceback" not in server["log"].read_text()


def test_text_search_in_a_real_browser(server, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException])
    browser.get(server["url"] + "/")
    wait.until(lambda d: d.find_element(By.ID, "api-key").is_displayed())
    browser.find_element(By.ID, "api-key").send_keys(API_KEY, Keys.TAB)
    wait.until(lambda d: "words" in d.find_element(By.ID, "collection").text)
    wait.until(lambda d: "tiny-vit-random" in d.find_element(By.ID, "collection-meta").text)
    # A DINO collection has no text tower: the text box is off and says why.
    assert not browser.find_element(By.ID, "text-query").is_enabled()
    assert "has no text tower" in browser.find_element(By.ID, "text-help").text

    Select(browser.find_element(By.ID, "collection")).select_by_value("words")
    wait.until(lambda d: "tiny-clip-random" in d.find_element(By.ID, "collection-meta").text)
    wait.until(lambda d: d.find_element(By.ID, "text-query").is_enabled())

    def hits(column: str) -> list:
        return browser.find_elements(By.CSS_SELECTOR, f"#{column} button.hit")

    box = browser.find_element(By.ID, "text-query")
    box.send_keys("a small brown dog", Keys.ENTER)
    wait.until(lambda d: len(hits("base")) == 8 and len(hits("aligned")) == 8)
    assert "a small brown dog" in browser.find_element(By.ID, "query-name").text
    assert not browser.find_element(By.ID, "query-preview").is_displayed()
    assert "#1" in hits("base")[0].text
    wait.until(
        lambda d: d.execute_script(
            "const i = document.querySelector('#base .hit img'); return i && i.complete && i.naturalWidth > 0;"
        )
    )
    shoot(browser, artifacts(tmp_path), "text-desktop")

    # A filter applies to a text query as to an image query.
    Select(browser.find_element(By.ID, "label-filter")).select_by_visible_text("fish")
    wait.until(lambda d: len(hits("base")) > 0 and all("fish" in hit.text for hit in hits("base")))

    # Too long for the text tower: the service's reason is shown, the page stays usable.
    box.clear()
    box.send_keys("dog " * 40, Keys.ENTER)
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    message = browser.find_element(By.ID, "error").text
    assert "tokens long" in message and "422" in message


def test_a_late_answer_never_replaces_the_latest_query(server, browser):
    """Two queries in a row, the first answered last (its response held back in the page): the
    grids and the query's name are the second query's, before and after the first answer lands."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException])
    browser.get(server["url"] + "/static/favicon.svg")
    browser.execute_script("sessionStorage.setItem('percep-rag-api-key', arguments[0])", API_KEY)
    browser.get(server["url"] + "/")
    wait.until(lambda d: "photos" in d.find_element(By.ID, "collection").text)

    def query(path: Path) -> list[str]:
        query_with_file(browser, wait, path)
        return shown()

    def shown() -> list[str]:
        return [hit.get_attribute("title") for hit in browser.find_elements(By.CSS_SELECTOR, "#aligned button.hit")]

    first, second = server["photos"] / "test" / "dog" / "0.png", server["photos"] / "test" / "fish" / "1.png"
    first_hits, second_hits = query(first), query(second)
    assert first_hits != second_hits and len(first_hits) == 8  # else the test could not tell them apart

    # Hold the next search's answer back for 2 s; the one after it goes through at once.
    browser.execute_script("""
        const realFetch = window.fetch;
        let held = false;
        window.lateAnswerLanded = false;
        window.fetch = async (...args) => {
          const response = await realFetch(...args);
          if (!held && String(args[0]).endsWith("/search")) {
            held = true;
            await new Promise((resolve) => setTimeout(resolve, 2000));
            setTimeout(() => { window.lateAnswerLanded = true; }, 500);  // after the page has handled it
          }
          return response;
        };
    """)
    browser.find_element(By.ID, "file").send_keys(str(first))
    wait.until(lambda d: d.find_element(By.ID, "query-name").text == first.name)
    assert query(second) == second_hits  # the second query answered while the first is held
    wait.until(lambda d: d.execute_script("return window.lateAnswerLanded"))
    assert shown() == second_hits, "the first query's late answer replaced the grids"
    assert browser.find_element(By.ID, "query-name").text == second.name
    assert search_settled(browser) and browser.find_element(By.ID, "columns").is_displayed()
    assert "Searching" not in browser.find_element(By.ID, "status").text


# --------------------------------------------------------------------------- issue 37: a changing catalog

AXE_VERSION = "4.14.1"


def axe_source() -> str:
    """axe-core (Deque's accessibility rules), from npm: ``$PERCEP_RAG_AXE`` or ``.node/`` (``.ci/run`` installs it)."""
    path = Path(os.environ.get("PERCEP_RAG_AXE") or ROOT / ".node" / "node_modules" / "axe-core" / "axe.min.js")
    if not path.is_file():
        pytest.fail(
            f"the browser test needs axe-core: npm install --prefix .node --no-save axe-core@{AXE_VERSION} "
            f"(looked for {path})",
            pytrace=False,
        )
    return path.read_text(encoding="utf-8")


def serious_violations(driver) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    driver.execute_script(axe_source())
    driver.set_script_timeout(60)
    found = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then("
        "  (r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact, nodes: v.nodes.length,"
        "                                         target: v.nodes[0].target}))),"
        "  (e) => done([{id: 'axe-failed', impact: 'critical', nodes: 0, target: String(e)}]));"
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_the_page_follows_a_catalog_that_changes(server, browser, tmp_path):
    import httpx
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.serve_world import draw

    wait = WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException])
    kept = artifacts(tmp_path)
    api = httpx.Client(base_url=server["url"], headers={"X-API-Key": API_KEY}, timeout=60)
    points = api.get("/collections").json()["collections"][0]["points"]
    # The key is already in the session (the first test shows the page asking for it): no 401 here.
    browser.get(server["url"] + "/static/favicon.svg")
    browser.execute_script("sessionStorage.setItem('percep-rag-api-key', arguments[0])", API_KEY)
    browser.get(server["url"] + "/")
    wait.until(lambda d: d.find_element(By.ID, "collection-meta").text.endswith(f"{points} points"))
    assert serious_violations(browser) == []  # the empty page

    # An image added through the API: the count follows without a reload, a new search finds it.
    label = "green square"  # 12 characters: shown whole next to the score at desktop width
    image = draw(tmp_path / "added.png", (30, 200, 40), 4242)
    added = api.post("/collections/photos/points", files={"image": ("added.png", image.read_bytes(), "image/png")},
                     data={"label": label})  # fmt: skip
    assert added.status_code == 200 and added.json()["added"] == 1, added.text
    wait.until(lambda d: d.find_element(By.ID, "collection-meta").text.endswith(f"{points + 1} points"))
    Select(browser.find_element(By.ID, "k")).select_by_visible_text("24")
    browser.find_element(By.ID, "file").send_keys(str(server["photos"] / "test" / "cat" / "1.png"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#aligned button.hit")) == 24)
    # Query with a stored point: every other point of the 25 comes back, the added one with them.
    browser.find_elements(By.CSS_SELECTOR, "#aligned button.hit")[0].click()
    wait.until(search_settled)

    def added_hit(d):
        found = [b for b in d.find_elements(By.CSS_SELECTOR, "#aligned button.hit") if label in b.text]
        return found[0] if found else False

    shown = wait.until(added_hit)
    caption = shown.find_element(By.CLASS_NAME, "label")
    assert caption.text.endswith(label)
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", caption)
    shoot(browser, kept, "added-desktop")
    assert serious_violations(browser) == []  # a page of results
    assert console_errors(browser) == []

    # A point deleted while on the screen: its thumbnail answers 404, the page shows a placeholder.
    last = browser.find_elements(By.CSS_SELECTOR, "#aligned button.hit")[-1]
    img = last.find_element(By.TAG_NAME, "img")
    assert not img.get_attribute("src"), "the last thumbnail should not be loaded before it scrolls into view"
    deleted = api.post("/collections/photos/delete", data={"uri": last.get_attribute("title")})
    assert deleted.status_code == 200 and deleted.json()["deleted"] == 1, deleted.text
    browser.execute_script("arguments[0].scrollIntoView()", last)
    wait.until(lambda d: "gone" in img.get_attribute("class") and d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", img))  # fmt: skip
    assert img.get_attribute("alt") == "image no longer available"
    wait.until(lambda d: d.find_element(By.ID, "collection-meta").text.endswith(f"{points} points"))
    shoot(browser, kept, "deleted-placeholder")
    errors = console_errors(browser)
    assert all("404" in message and "/image" in message for message in errors), errors  # only that thumbnail
    assert "Traceback" not in server["log"].read_text()
