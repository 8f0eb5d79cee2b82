"""End to end: Debian's headless Chromium, a fake camera playing the astronaut photo, the server
started the documented way (`python -m webapp`) on localhost. Screenshots go to test-artifacts/."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from webapp_testutil import ROOT, dev_cmd, free_port, server_env, start, stop, wait_healthy, write_y4m

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def browser_models(tiny_models):
    return Path(os.environ.get("FER_BROWSER_MODELS") or tiny_models)


@pytest.fixture(scope="module")
def server(browser_models, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("browser") / "server.log"
    # fer-insecure.test: the made-up name of test_insecure_context_message, allowed like a deployment's own
    proc = start(dev_cmd(port, browser_models), server_env(browser_models, FER_ALLOWED_HOSTS="fer-insecure.test"), log)
    try:
        health = wait_healthy(port, proc, log)
        yield port, health
    finally:
        stop(proc)


def _driver(y4m: Path, profile: Path, width: int, height: int, extra=()):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    camera = () if y4m is None else ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                                     f"--use-file-for-fake-video-capture={y4m}")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *camera,
              "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
              f"--user-data-dir={profile}", f"--window-size={width},{height}", "--hide-scrollbars", *extra):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.fixture(scope="module")
def y4m(astronaut_bgr, tmp_path_factory):
    return write_y4m(tmp_path_factory.mktemp("cam") / "face.y4m", astronaut_bgr)


def _skip_without_browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium / chromium-driver not installed (apt-get install -y chromium chromium-driver)")


def _full_page_screenshot(d, path: Path) -> None:
    """The whole page, not just the viewport: grow the window to the document's height first."""
    w = d.get_window_size()["width"]
    h = d.execute_script("return Math.ceil(document.documentElement.scrollHeight)")
    d.set_window_size(w, min(int(h) + 140, 8000))
    time.sleep(0.5)
    d.save_screenshot(str(path))


def _wait(fn, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("size", [(1280, 1000), (390, 1400)], ids=["desktop", "phone"])
def test_live_page_shows_a_label(server, y4m, size, tmp_path):
    _skip_without_browser()
    port, health = server
    ARTIFACTS.mkdir(exist_ok=True)
    d = _driver(y4m, tmp_path / "profile", *size)
    try:
        from selenium.webdriver.common.by import By

        labels = {"Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"}
        d.get(f"http://localhost:{port}/")
        label = _wait(lambda: d.find_element(By.ID, "label").text in labels and d.find_element(By.ID, "label").text,
                      30, "a label under the video")
        assert label in labels
        # the frames keep flowing (one in flight at a time) and the page shows the numbers
        _wait(lambda: d.find_element(By.ID, "fps").text not in ("", "–"), 15, "frames/s")
        bars = d.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert len(bars) == 7
        votes = d.find_elements(By.CSS_SELECTOR, "#votes li")
        assert len(votes) == len(health["members"])  # one vote per ensemble member
        assert "never stored" in d.find_element(By.ID, "privacy").text
        assert d.find_element(By.ID, "notice").get_attribute("hidden") is not None
        # the overlay canvas covers the displayed video
        v = d.find_element(By.ID, "video").rect
        c = d.find_element(By.ID, "overlay").rect
        assert abs(v["width"] - c["width"]) < 2 and abs(v["height"] - c["height"]) < 2
        time.sleep(1.0)
        _full_page_screenshot(d, ARTIFACTS / f"index-{'desktop' if size[0] > 600 else 'phone'}.png")
        if size[0] > 600:
            d.get(f"http://localhost:{port}/admin")
            _wait(lambda: d.find_element(By.ID, "s-clients").text not in ("", "–"), 10, "admin live numbers")
            _full_page_screenshot(d, ARTIFACTS / "admin.png")
            logs = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
            assert not logs, logs
    finally:
        d.quit()


def test_insecure_context_message(server, y4m, tmp_path):
    """Over plain http on a non-localhost origin the page explains why the camera is not available."""
    _skip_without_browser()
    port, _ = server
    # a made-up host name mapped onto the local server: plain http, not localhost, so not secure
    d = _driver(y4m, tmp_path / "profile", 1000, 800, ["--host-resolver-rules=MAP fer-insecure.test 127.0.0.1"])
    try:
        from selenium.webdriver.common.by import By

        d.get(f"http://fer-insecure.test:{port}/")
        assert d.execute_script("return window.isSecureContext") is False
        title = _wait(lambda: "secure" in d.find_element(By.ID, "noticeTitle").text.lower(), 10, "the notice")
        assert title
        assert "https://" in d.find_element(By.ID, "noticeText").text
    finally:
        d.quit()


@pytest.mark.parametrize("case", ["refused", "no_camera"])
def test_camera_problems_are_explained(server, tmp_path, case):
    """A refused permission and a machine without a camera each get a clear message over the video."""
    _skip_without_browser()
    port, _ = server
    extra = (["--use-fake-device-for-media-stream", "--deny-permission-prompts"] if case == "refused"
             else ["--use-fake-ui-for-media-stream"])  # no fake device: headless Chromium has no camera
    d = _driver(None, tmp_path / "profile", 1000, 800, extra)
    try:
        from selenium.webdriver.common.by import By

        d.get(f"http://localhost:{port}/")
        want = "refused" if case == "refused" else "no camera"
        _wait(lambda: want in d.find_element(By.ID, "noticeTitle").text.lower(), 15, f"the '{want}' notice")
        assert d.find_element(By.ID, "retry").is_displayed()
        assert d.find_element(By.ID, "label").text == "Camera off"
    finally:
        d.quit()
