"""End to end: Debian's headless Chromium, a fake camera playing the astronaut photo, the server
started the documented way (`python -m webapp`) on localhost. Screenshots go to test-artifacts/."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from harness.server import ROOT, dev_cmd, free_port, server_env, start, stop, wait_healthy, write_y4m

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def browser_models(tiny_models, tmp_path_factory):
    """$FER_BROWSER_MODELS (e.g. the shipped models/), else the tiny models with random tables and
    real training-curve pictures, so that /admin has every part to show."""
    if os.environ.get("FER_BROWSER_MODELS"):
        return Path(os.environ["FER_BROWSER_MODELS"])
    from conftest import write_random_metrics
    from fer_core.plots import curves_png

    md = tmp_path_factory.mktemp("browser_models") / "models"
    shutil.copytree(tiny_models, md)
    for i, n in enumerate(write_random_metrics(md)):
        log = md / n / "log.csv"
        ep = np.arange(1, 21)
        acc = 0.65 - 0.4 * np.exp(-ep / (4 + i))
        rows = ["epoch,loss,accuracy,val_loss,val_accuracy"] + [
            f"{e},{2.2 - 2 * a:.4f},{a + 0.002 * e:.4f},{2.25 - 2 * a:.4f},{a:.4f}" for e, a in zip(ep, acc)]
        log.write_text("\n".join(rows) + "\n")
        curves_png(log, md / n / "curve.png", n)
    return md


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
    d.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    d.save_screenshot(str(path))


# Counts the timeline canvas's pixels in each class colour (within a small tolerance, so edges that
# are blended with the background do not count): what the chart really drew, per class.
_TIMELINE_PIXELS = """
const c = document.getElementById('timeline'), ctx = c.getContext('2d');
const d = ctx.getImageData(0, 0, c.width, c.height).data;
const out = {}, rgb = {};
for (const l of window.FerIcons.names) {
  const h = window.FerIcons.color(l);
  rgb[l] = [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)); out[l] = 0;
}
// the plot's area covered by the samples' time span (timeline.js: 60 s across the plot, padding 2 / 38 px
// left / right, 7 / 18 px top / bottom), in canvas pixels
const tl = window.ferTimeline, faces = tl.samples.filter(s => s.probs), dpr = window.devicePixelRatio || 1;
const span = faces[faces.length - 1].t - faces[0].t;
const expected = span / 60000 * (c.clientWidth - 40) * dpr * (c.clientHeight - 25) * dpr;
let opaque = 0;
for (let i = 0; i < d.length; i += 4) {
  if (d[i + 3] < 250) continue;
  opaque++;
  for (const l in rgb) {
    const q = rgb[l];
    if (Math.abs(d[i] - q[0]) < 8 && Math.abs(d[i + 1] - q[1]) < 8 && Math.abs(d[i + 2] - q[2]) < 8) { out[l]++; break; }
  }
}
return {perClass: out, opaque: opaque, expected: Math.round(expected), span: span};
"""


def _check_csv(text: str, labels: list[str]) -> list[list[str]]:
    """The timeline's CSV: the header, then one row per answer, oldest first, each label the
    highest of its row's probabilities, which add up to 1."""
    import csv
    import datetime
    import io

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["time", "seconds", "faces", "label", "smoothed", *labels]
    body = rows[1:]
    assert len(body) >= 3
    times = [datetime.datetime.fromisoformat(r[0].replace("Z", "+00:00")) for r in body]
    secs = [float(r[1]) for r in body]
    assert times == sorted(times) and secs == sorted(secs) and secs[0] == 0.0
    # seconds count the same time as the wall clock (to the clock's resolution)
    span = (times[-1] - times[0]).total_seconds()
    assert abs(span - secs[-1]) < 0.05, (span, secs[-1])
    for r in body:
        assert len(r) == 5 + len(labels)
        if r[3]:
            p = [float(v) for v in r[5:]]
            assert r[2] == "1" and r[4] == "1"  # one face (the astronaut); smoothing is on by default
            assert abs(sum(p) - 1) < 0.01, r
            assert r[3] == labels[int(np.argmax(p))], r
        else:
            assert r[2] == "0" and r[4:] == [""] * (1 + len(labels))
    return body


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
        # icons are inline SVG faces, not emoji (which depend on the fonts installed): one per bar,
        # the big one beside the label, none missing
        icons = [b.find_element(By.CSS_SELECTOR, "svg.face-icon").get_attribute("data-icon") for b in bars]
        assert [i.capitalize() for i in icons] == [b.text.split("\n")[0].strip() for b in bars]
        _wait(lambda: d.find_elements(By.CSS_SELECTOR, f"#icon svg[data-icon='{d.find_element(By.ID, 'label').text.lower()}']"),
              5, "the label's icon")
        assert not d.execute_script("return /[\\u{1F300}-\\u{1FAFF}]/u.test(document.body.innerText)")

        # the timeline: samples keep arriving and are drawn in the classes' colours
        labels7 = d.execute_script("return window.ferTimeline.labels")
        assert [l.capitalize() for l in labels7] == [b.text.split("\n")[0].strip() for b in bars]
        _wait(lambda: d.execute_script("const f = window.ferTimeline.samples.filter(s => s.probs);"
                                       "return f.length > 4 && f[f.length - 1].t - f[0].t > 2000"),
              30, "two seconds of answers in the timeline")
        d.execute_script("window.ferTimeline.draw(window.ferTimeline.samples.slice(-1)[0].t)")
        px = d.execute_script(_TIMELINE_PIXELS)
        shown = d.find_element(By.ID, "label").text.lower()
        assert px["perClass"][shown] > 0, px  # the shown label's band is there...
        # ...and the bands fill the plot's height over the time the answers span (less blended edges)
        assert 0.75 * px["expected"] < sum(px["perClass"].values()) < 1.1 * px["expected"] + 200, px
        csv_text = d.execute_script("return window.ferTimeline.csv()")
        body = _check_csv(csv_text, labels7)
        assert any(r[3] == shown for r in body[-3:])
        # the button downloads that CSV, made in the browser (a blob: URL, not a request to the server)
        dl = tmp_path / "downloads"
        dl.mkdir()
        d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(dl)})
        assert d.find_element(By.ID, "csv").is_enabled()
        d.find_element(By.ID, "csv").click()
        # Chromium makes an empty file under the final name first and writes through a .crdownload
        got = _wait(lambda: not list(dl.glob("*.crdownload"))
                    and [f for f in dl.glob("expressions-*.csv") if f.stat().st_size > 0], 10, "the downloaded CSV")
        saved = got[0].read_bytes().decode()  # as written: CRLF line ends kept
        assert saved.startswith(csv_text.split("\r\n", 2)[0] + "\r\n" + csv_text.split("\r\n", 2)[1])
        assert len(_check_csv(saved, labels7)) >= len(body)
        (ARTIFACTS / f"timeline-{'desktop' if size[0] > 600 else 'phone'}.csv").write_text(saved, newline="")
        # the builder itself: a frame without a face, and a label that needs quoting
        assert d.execute_script("""return FerTimeline.toCSV(['a', 'b,c'], [
            {t: 1000, wall: Date.UTC(2026, 0, 2, 3, 4, 5, 6), faces: 2, label: 'a', probs: {a: 0.7, 'b,c': 0.3}, smoothed: true},
            {t: 2501, wall: Date.UTC(2026, 0, 2, 3, 4, 6, 507), faces: 0, label: null, probs: null, smoothed: false}])""") \
            == ('time,seconds,faces,label,smoothed,a,"b,c"\r\n'
                "2026-01-02T03:04:05.006Z,0.000,2,a,1,0.7000,0.3000\r\n"
                "2026-01-02T03:04:06.507Z,1.501,0,,,,\r\n")
        # the CSV keeps ten minutes: older samples are dropped as new ones come
        assert d.execute_script("""const t = new FerTimeline(document.createElement('canvas'), null, {});
            t.setLabels(['a']);
            for (let s = 0; s <= 660; s += 30) t.add({t: s * 1000, wall: s * 1000, faces: 1, label: 'a', probs: {a: 1}});
            return t.samples.map(x => x.t / 1000)""") == list(range(60, 661, 30))
        votes = d.find_elements(By.CSS_SELECTOR, "#votes li")
        assert len(votes) == len(health["members"])  # one vote per ensemble member
        assert "never stored" in d.find_element(By.ID, "privacy").text
        assert d.find_element(By.ID, "notice").get_attribute("hidden") is not None
        # the overlay canvas covers the displayed video
        v = d.find_element(By.ID, "video").rect
        c = d.find_element(By.ID, "overlay").rect
        assert abs(v["width"] - c["width"]) < 2 and abs(v["height"] - c["height"]) < 2
        time.sleep(3.0)
        kind = 'desktop' if size[0] > 600 else 'phone'
        _full_page_screenshot(d, ARTIFACTS / f"index-{kind}.png")
        # the results card alone (the window is now as tall as the page, so it is not cut off)
        d.find_element(By.CSS_SELECTOR, "section.results").screenshot(str(ARTIFACTS / f"results-{kind}.png"))
        if size[0] > 600:
            d.set_window_size(*size)
            d.get(f"http://localhost:{port}/admin")
            _wait(lambda: d.find_element(By.ID, "s-clients").text not in ("", "–"), 10, "admin live numbers")
            # the curves are below the fold and load without being scrolled to
            assert d.execute_script("return window.scrollY") == 0
            curves = d.find_elements(By.CSS_SELECTOR, ".curves img")
            assert curves and not curves[-1].is_displayed() or curves[-1].location["y"] > size[1]
            _wait(lambda: d.execute_script(
                "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"), 10,
                "every picture loaded")
            # the chosen ensemble's row is marked in every accuracy table, and the key says what green is
            tables = d.find_elements(By.CSS_SELECTOR, "table.acc:not(.info)")
            assert len(tables) == 4
            for t in tables:
                chosen = t.find_elements(By.CSS_SELECTOR, "tr.chosen")
                assert len(chosen) == 1 and chosen[0].find_element(By.CSS_SELECTOR, ".tag-chosen").is_displayed()
                assert chosen[0].text.startswith("CHOSEN ensemble (chosen: ")
            assert "best number in its column" in d.find_element(By.ID, "table-key").text
            _full_page_screenshot(d, ARTIFACTS / "admin.png")
            # the parts docs/img/admin-chosen.png is made of (scripts/docs_images.py)
            d.find_element(By.ID, "table-key").screenshot(str(ARTIFACTS / "admin-key.png"))
            tables[-1].find_element(By.XPATH, "ancestor::section").screenshot(str(ARTIFACTS / "admin-table.png"))
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


# The class view's canvas: pixels in each class colour (as _TIMELINE_PIXELS counts them).
_CLASS_PIXELS = """
const c = document.getElementById('class-timeline'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
const out = {};
for (const l of window.FerIcons.names) {
  const h = window.FerIcons.color(l), q = [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16));
  out[l] = 0;
  for (let i = 0; i < d.length; i += 4)
    if (d[i + 3] >= 250 && Math.abs(d[i] - q[0]) < 8 && Math.abs(d[i + 1] - q[1]) < 8 && Math.abs(d[i + 2] - q[2]) < 8) out[l]++;
}
return out;
"""


# The "Why?" panel's canvases, read back: per canvas, how many pixels are grey (r = g = b) or
# coloured, the grey pixels' spread, and whether every 4x4 block is one colour (the 48x48 crop drawn
# with nearest-neighbour pixels on a 192 px canvas; 2x2 on the members' 96 px ones).
_WHY_PIXELS = """
const out = {};
for (const c of document.querySelectorAll('#whyPanel canvas[role=img]')) {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, k = c.width / 48;
  let grey = 0, colour = 0, s = 0, s2 = 0, blocky = true;
  for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
    const i = 4 * (y * c.width + x);
    if (d[i] === d[i + 1] && d[i + 1] === d[i + 2]) { grey++; s += d[i]; s2 += d[i] * d[i]; } else colour++;
    const j = 4 * ((y - y % k) * c.width + (x - x % k));
    if (d[i] !== d[j] || d[i + 1] !== d[j + 1] || d[i + 2] !== d[j + 2]) blocky = false;
  }
  const mean = grey ? s / grey : 0;
  out[c.id || c.dataset.member] = {grey, colour, sd: grey ? Math.sqrt(s2 / grey - mean * mean) : 0, blocky,
                                   label: c.getAttribute('aria-label')};
}
return out;
"""


def test_admin_class_view_counts_the_clients_and_draws_them(server, astronaut_jpeg, y4m, tmp_path):
    """Four clients (three faces, one empty frame) answered for a dozen seconds: /admin shows four
    clients in the last 10 s, each counted once, and draws their periods in the classes' colours."""
    import cv2
    from harness.server import Client, grey_jpeg

    _skip_without_browser()
    port, _ = server
    ARTIFACTS.mkdir(exist_ok=True)
    img = cv2.imdecode(np.frombuffer(astronaut_jpeg, np.uint8), cv2.IMREAD_COLOR)
    mirrored = cv2.imencode(".jpg", img[:, ::-1])[1].tobytes()
    frames = [astronaut_jpeg, mirrored, astronaut_jpeg, grey_jpeg()]
    clients = [Client(port) for _ in frames]
    try:
        last = {}
        end = time.monotonic() + 12  # more than one 10-s period: at least two bars
        while time.monotonic() < end:
            for k, (c, f) in enumerate(zip(clients, frames)):
                name, res = c.send(f)
                assert name == "result", res
                last[k] = res["faces"][0]["label"] if res["faces"] else None
            time.sleep(0.5)
        d = _driver(y4m, tmp_path / "profile", 1280, 1000)
        try:
            from selenium.webdriver.common.by import By
            d.get(f"http://localhost:{port}/admin")
            _wait(lambda: d.find_element(By.ID, "class-clients").text.startswith("4 clients"), 10, "the class view")
            # the live numbers say how the frames were read, in words; the test-time views' names on hover
            import requests
            stats = requests.get(f"http://localhost:{port}/admin/stats", timeout=5).json()
            views, served = stats["views"], stats["worker"]["tta"]
            n = {"in full": views.get(served, 0), "followed": sum(v for k, v in views.items() if k.endswith(", spread"))}
            n["in a hurry"] = sum(views.values()) - n["in full"] - n["followed"]
            assert views and d.find_element(By.ID, "s-views").text == " · ".join(f"{v:,} {w}" for w, v in n.items() if v)
            assert d.find_element(By.ID, "s-views-card").get_attribute("title").startswith(
                " · ".join(f"{k} {v:,}" for k, v in views.items()))
            shown = {li.find_element(By.CSS_SELECTOR, ".class-name").text: int(li.find_element(By.TAG_NAME, "b").text)
                     for li in d.find_elements(By.CSS_SELECTOR, "#class-now li")}
            want = {}
            for label in last.values():
                key = label.capitalize() if label else "No face"
                want[key] = want.get(key, 0) + 1
            assert {k: v for k, v in shown.items() if v} == want
            # a bar per period with answers, as tall as the period's clients in /admin/stats (the page's
            # own earlier test may add its camera client to the first one); twelve seconds span two periods
            drawn = d.execute_script("return window.FerClassView.drawn")
            data = d.execute_script("return window.FerClassView.last")
            totals = [(i, sum(r["counts"]) + r["no_face"]) for i, r in enumerate(data["timeline"])]
            assert [(b["period"], b["clients"]) for b in drawn] == [(i, n) for i, n in totals if n]
            assert len(drawn) >= 2 and max(b["clients"] for b in drawn) >= 4
            px = d.execute_script(_CLASS_PIXELS)
            for label in {l for l in last.values() if l}:
                assert px[label] > 50, px
            assert sum(px.values()) > 0
            d.find_element(By.CSS_SELECTOR, "section.classview").screenshot(str(ARTIFACTS / "admin-class.png"))
            logs = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
            assert not logs, logs
        finally:
            d.quit()
    finally:
        for c in clients:
            c.close()


def test_why_panel_shows_the_crop_and_the_maps(server, y4m, tmp_path):
    """The Why? button under the bars: the 48x48 crop the members saw (grey, pixelated), the
    ensemble's heat map over it and one map per member, each labelled with the member's name and
    vote; the button then waits out the server's interval. The colormap is viridis."""
    _skip_without_browser()
    port, health = server
    ARTIFACTS.mkdir(exist_ok=True)
    d = _driver(y4m, tmp_path / "profile", 1280, 1000)
    try:
        from matplotlib import colormaps
        from selenium.webdriver.common.by import By

        # the colormap computed in the page is matplotlib's viridis, to within 5/255
        ts = np.linspace(0, 1, 51)
        d.get(f"http://localhost:{port}/")
        js = np.array(d.execute_script("return arguments[0].map(t => FerWhy.viridis(t))", ts.tolist()))
        assert np.abs(js - 255 * colormaps["viridis"](ts)[:, :3]).max() <= 5
        _wait(lambda: d.find_element(By.ID, "label").text not in ("", "Waiting for a face…", "Camera off"),
              30, "a label under the video")
        button = d.find_element(By.ID, "why")
        assert button.text == "Why?" and button.get_attribute("aria-controls") == "whyPanel"
        _wait(button.is_enabled, 10, "the Why? button")
        assert d.find_element(By.ID, "whyPanel").get_attribute("hidden") is not None
        button.click()
        assert not button.is_enabled()  # one request in flight
        # the server's first 'why': the page says why it takes a while
        assert d.find_element(By.ID, "whyStatus").text.startswith("Getting the explanations ready")
        try:
            _wait(lambda: d.find_element(By.ID, "whyPanel").get_attribute("hidden") is None, 120, "the Why? panel")
        except AssertionError:
            raise AssertionError(f"no Why? panel; the page says {d.find_element(By.ID, 'whyStatus').text!r}") from None
        assert button.get_attribute("aria-expanded") == "true"
        px = d.execute_script(_WHY_PIXELS)
        crop, heat = px["whyCrop"], px["whyHeat"]
        # the crop: grey only, a face (not a flat patch), pixelated
        assert crop["colour"] == 0 and crop["sd"] > 15 and crop["blocky"], crop
        # the ensemble's map over it: coloured where there is evidence, the face still grey elsewhere
        assert heat["colour"] > 0.1 * 192 * 192 and heat["blocky"], heat
        label = d.find_element(By.ID, "label").text.lower()
        assert "heat map" in heat["label"].lower() and "strongest in" in heat["label"]
        members = health["members"]
        assert sorted(k for k in px if k not in ("whyCrop", "whyHeat")) == sorted(members)
        for m in members:
            assert px[m]["colour"] > 0 and px[m]["blocky"] and m in px[m]["label"], (m, px[m])
        captions = [f.text for f in d.find_elements(By.CSS_SELECTOR, "#whyMembers figcaption")]
        assert [c.split(":")[0] for c in captions] == list(members)
        assert all(c.split(": ")[1].split(" ")[0] in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
                   for c in captions), captions
        assert d.find_element(By.ID, "whyHeatCap").text.startswith("Ensemble: ")
        assert label  # a label was shown under the video throughout
        # the server's interval (2 s by default): the button comes back by itself
        _wait(button.is_enabled, 10, "the Why? button again")
        d.execute_script("document.querySelector('.why').scrollIntoView()")
        time.sleep(0.5)
        d.find_element(By.CSS_SELECTOR, ".why").screenshot(str(ARTIFACTS / "why-desktop.png"))
        logs = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        assert not logs, logs
    finally:
        d.quit()
