"""``nemo-hf explore`` in a real browser: Playwright drives Debian's chromium against the page the command serves.

The command runs as a user starts it, on a free 127.0.0.1 port, with a tiny synthetic
dataset (saved with ``save_to_disk``), the shipped CLIP and a tiny CLIPSeg for the segment
tab. The browser opens the page, moves K, and sees the ranking and the mosaics change; then
segments an uploaded picture and checks that the mask arrives at the picture's size.

It needs chromium (``apt-get install -y chromium``: no browser is downloaded), Playwright's
Python package and Gradio (``pip install -e ".[dev,app]"``); ``.ci/run`` installs all three.
Where one is missing it skips with a warning — except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from PIL import Image

from tests.training_runs import REPO

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run"]


def _missing(what: str) -> None:
    message = (f"THE BROWSER TEST DID NOT RUN: {what}. Install chromium (apt-get install -y chromium) and "
               'pip install -e ".[dev,app]" to run it.')
    if os.environ.get("CI"):
        pytest.fail(message)
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


def _requirements() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _missing("no chromium on PATH")
    for module, extra in (("playwright", "dev"), ("gradio", "app")):
        try:
            __import__(module)
        except ImportError:
            _missing(f"{module} is not installed (the [{extra}] extra)")
    return str(chromium)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(refer_tree, tiny_clipseg_dir, tmp_path_factory):
    """The running ``nemo-hf explore`` (its URL), stopped after the module's tests."""
    chromium = _requirements()
    from nemo_hf.data.load import load_refcoco

    folder = tmp_path_factory.mktemp("explore")
    train = load_refcoco("refcoco_unc", refer_tree.root, refer_tree.image_dir, split="train",
                         cache_dir=folder / "build")
    train.save_to_disk(folder / "data")
    port = _free_port()
    log = (folder / "server.log").open("w")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_TEMP_DIR": str(folder / "gradio")}
    server = subprocess.Popen(
        [sys.executable, "-m", "nemo_hf.cli", "explore", str(folder / "data"), "--port", str(port), "--model",
         str(tiny_clipseg_dir), "--cache-dir", str(folder / "mining")],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            if server.poll() is not None:
                pytest.fail(f"nemo-hf explore exited with {server.returncode}:\n"
                            f"{(folder / 'server.log').read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"nemo-hf explore did not serve within 240 s:\n"
                                f"{(folder / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, chromium, folder
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def page(served):
    from playwright.sync_api import sync_playwright

    url, chromium, _ = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_function("document.querySelector('#summary')?.innerText.includes('kept')")
        yield page
        browser.close()


def _mosaic_sources(page) -> list[str]:
    return page.eval_on_selector_all("#mosaics img", "images => images.map(image => image.src)")


def test_moving_k_recuts_the_ranking_and_redraws_the_mosaics(page) -> None:
    summary = page.inner_text("#summary")
    assert "candidates:" in summary and "K 20" in summary
    before = _mosaic_sources(page)
    assert len(before) == 4
    kept_before = page.inner_text("#ranking").count("kept (top K)")
    assert kept_before > 3

    k = page.locator("#top-k input[type=number]")
    k.fill("3")
    k.press("Enter")
    page.wait_for_function("document.querySelector('#summary').innerText.includes('3 kept')")
    assert "K 3," in page.inner_text("#summary")
    page.wait_for_function("document.querySelector('#ranking').innerText.split('kept (top K)').length - 1 === 3")
    page.wait_for_function(
        "(old) => { const now = Array.from(document.querySelectorAll('#mosaics img')).map(i => i.src);"
        " return now.length === 4 && now.join() !== old; }", arg=",".join(before))
    assert page.locator("#candidates img").count() > 3  # the candidates' pictures, decoded for the page
    # K = 3 keeps exactly the 3 negatives a 2x2 mosaic needs: each is drawn in all four epochs
    page.wait_for_function("document.querySelector('#ranking').innerText.split('0, 1, 2, 3').length - 1 === 3")


def test_an_expression_found_by_its_words_becomes_the_row_shown(page) -> None:
    page.fill("#search textarea, #search input", "the")
    page.press("#search textarea, #search input", "Enter")
    page.wait_for_function("document.querySelector('#matches').innerText.includes('the first is selected')")
    number, sentence = page.locator("#matches li").first.inner_text().split(": ", 1)
    page.wait_for_function("(sentence) => document.querySelector('#summary').innerText.includes(sentence)",
                           arg=sentence.strip())
    assert f"Sentence {number} of" in page.inner_text("#summary")


def test_a_dataset_that_does_not_load_is_named_and_the_page_keeps_its_split(page) -> None:
    summary = page.inner_text("#summary")
    page.fill("#data-source textarea, #data-source input", "/no/such/folder")
    page.click("#data-load")
    page.wait_for_function("document.querySelector('#data-status').innerText.includes('Could not load')")
    assert "/no/such/folder is not a folder here" in page.inner_text("#data-status")
    page.wait_for_function("(before) => document.querySelector('#summary').innerText === before", arg=summary)


def test_the_segment_tab_shows_the_mask_of_an_uploaded_picture(page, served) -> None:
    folder = served[2]
    picture = folder / "upload.png"
    Image.new("RGB", (70, 45), "red").save(picture)
    page.get_by_role("tab", name="Segment a picture").click()
    page.set_input_files("#segment-image input[type=file]", str(picture))
    page.fill("#segment-text textarea", "the red square")
    page.click("#segment-run")
    page.wait_for_function("document.querySelector('#segment-score')?.innerText.includes('score')")
    assert "for CLIPSeg, the score is" in page.inner_text("#segment-score")
    page.wait_for_selector("#segment-mask img")
    page.wait_for_function("document.querySelector('#segment-mask img').naturalWidth > 0")
    assert page.eval_on_selector("#segment-mask img", "i => [i.naturalWidth, i.naturalHeight]") == [70, 45]
    assert page.eval_on_selector("#segment-overlay img", "i => i.naturalWidth") == 70


def test_the_server_listens_on_loopback_only(served) -> None:
    url = served[0]
    assert url.startswith("http://127.0.0.1:")
    port = int(url.rsplit(":", 1)[1].strip("/"))
    outside = [address for address in {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None,
                                                                              socket.AF_INET)}
               if not address.startswith("127.")]
    for address in outside:
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=1).close()
    assert Path(served[2] / "server.log").read_text().count("http://127.0.0.1:") >= 1
