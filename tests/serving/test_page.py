"""The listening page (``GET /``) in a real browser: headless Chromium, driven by Selenium, against real Serve.

One Ray, one Serve and one browser for the module. The service runs the default bundle (musicnn-msd-mtt, a
tagger, so the page shows tags) with a 1 MiB body limit, so that a 2.6 MB file meets the size check.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); without
them they are skipped, and the HTTP checks of the page and of ``?spectrogram=true`` still run. Set
``ACOUSTICSENSE_SCREENSHOT=docs/listening-page.png`` to also write the screenshot of a classified file there
(it always goes to the test's temporary folder).
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import ROOT, write_audio
from tests.serving.conftest import _free_port, _no_cpu, assert_error, post_audio, post_form, request

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LIMIT_MB = 1.0
WAIT_S = 180.0  # a busy 2-core machine: model replica start, featurization, inference
SCREENSHOT_ENV = "ACOUSTICSENSE_SCREENSHOT"


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Two synthetic clips (12 s, 22.05 kHz mono WAV, 0.5 MB), a tone, a text file and a 2.6 MB WAV.

    The default bundle finds the "classical" clip Classical but is unsure (uncertainty ~0.72 > 0.7: the page
    shows its review warning), and the "jazz" one Jazz (~0.52, no warning).
    """
    from acousticsense.demo.corpus import synthesize_clip

    root = tmp_path_factory.mktemp("page")
    song = root / "string quartet.wav"
    sf.write(song, synthesize_clip("Classical", np.random.default_rng(3), 12.0, 22050), 22050, subtype="PCM_16")
    jazz = root / "jazz trio.wav"
    sf.write(jazz, synthesize_clip("Jazz", np.random.default_rng(3), 12.0, 22050), 22050, subtype="PCM_16")
    tone = root / "tone.flac"
    write_audio(tone, 6.0, 22050, 1, frequency_hz=330.0, seed=1)
    notes = root / "liner notes.txt"
    notes.write_text("These are liner notes, not audio.\n" * 20)
    big = root / "long take.wav"
    write_audio(big, 30.0, 44100, 1, seed=2)
    assert song.stat().st_size < LIMIT_MB * 2**20 < big.stat().st_size
    return {"song": song, "jazz": jazz, "tone": tone, "notes": notes, "big": big}


@pytest.fixture(scope="module")
def service(local_ray):
    """The default bundle on a free loopback port; yields the port once the model answers."""
    from ray import serve

    from serving.app import build_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {
        "max_body_mb": LIMIT_MB,
        "max_files_per_request": 4,
        "featurize_threads": 2,
        "ingress_options": _no_cpu(),
        "model_options": _no_cpu(),
    }
    serve.run(build_app(args), name="listening", route_prefix="/")
    try:
        deadline = time.monotonic() + WAIT_S
        while request(port, "GET", "/v1/health")[0] != 200:
            if time.monotonic() > deadline:
                pytest.fail("the model replica did not become ready")
            time.sleep(0.5)
        yield port
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through Debian's chromedriver; Selenium Manager never downloads anything."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")  # Debian: /usr/bin/...
    if chromium is None or chromedriver is None:
        pytest.skip(
            "no Chromium: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
            ".ci/run does) to run the browser tests"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--force-device-scale-factor=1",
        "--lang=en-US",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # Selenium Manager: never reach the network
        driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


# ------------------------------------------------------------------------------------------------- helpers


def _open(driver, port: int) -> None:
    driver.get(f"http://127.0.0.1:{port}/")
    _wait(driver, lambda d: d.find_element("id", "model-version").text not in ("", "…"), "the model info")


def _wait(driver, condition, what: str, timeout_s: float = WAIT_S) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(condition, f"waited {timeout_s:g} s for {what}")


def _upload(driver, *paths: Path, state: str) -> None:
    driver.execute_script("document.body.dataset.state = 'idle'")
    driver.find_element("id", "file-input").send_keys("\n".join(str(p) for p in paths))
    _wait(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-state") in (state, "error"), state)
    got = driver.find_element("tag name", "body").get_attribute("data-state")
    if got != state:
        pytest.fail(f"the page shows an error instead of {state}: {driver.find_element('id', 'error').text}")


def _text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text.strip()


def _canvas_stats(driver) -> dict[str, Any]:
    """Distinct colours and the share of non-background pixels in the canvas's plot area."""
    return driver.execute_script(
        """
        const c = document.getElementById('spectrogram');
        const x0 = 60, y0 = 8, w = c.width - x0 - 10, h = c.height - y0 - 30;
        const d = c.getContext('2d').getImageData(x0, y0, w, h).data;
        const colours = new Set(); let painted = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3] > 0) painted++;
          colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        }
        return {width: c.width, height: c.height, colours: colours.size, painted: painted / (w * h),
                drawn: c.dataset.drawn || null, label: c.getAttribute('aria-label')};
        """
    )


# True when there is no result to draw, or the canvas's bitmap has been drawn at its current CSS size (as the
# page's drawSpectrogram sizes it); drawing is one synchronous task, so a screenshot never sees half of it.
_DRAWN_AT_CURRENT_SIZE = """
const c = document.getElementById('spectrogram');
if (document.getElementById('result').hidden) return true;
const box = c.getBoundingClientRect(), ratio = window.devicePixelRatio || 1;
return c.dataset.drawn === 'true' && c.width === Math.max(1, Math.round(box.width * ratio))
  && c.height === Math.max(1, Math.round(box.height * ratio));
"""


def _screenshot(driver, path: Path) -> Path:
    """The whole page at 1280 CSS pixels wide, as PNG (the viewport is stretched to the content's height)."""
    content = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    metrics = {"width": 1280, "height": int(content["height"]) + 1, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        # The page redraws the spectrogram (debounced) when the viewport changes size: shoot once it has.
        _wait(driver, lambda d: d.execute_script(_DRAWN_AT_CURRENT_SIZE), "the spectrogram drawn at the new size")
        png = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(png))
    return path


def _policy_violations(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


# ------------------------------------------------------------------------------------- HTTP, no browser


def test_the_page_and_the_spectrogram_over_http(service, clips):
    status, headers, html = request(service, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html"), headers
    assert "<canvas" in html and "default-src 'none'" in headers["content-security-policy"]
    data = clips["song"].read_bytes()
    status, _, plain = post_audio(service, data)
    assert status == 200 and "spectrogram" not in plain
    status, _, out = post_audio(service, data, path="/v1/classify?spectrogram=true")
    assert status == 200, out
    assert out["probabilities"] == pytest.approx(plain["probabilities"], abs=1e-6)  # same windows, same answer
    picture = out["spectrogram"]
    rows, cols = picture["shape"]
    frames = round(out["excerpt_s"] * 16000) // 256 + 1  # musicnn: 16 kHz, hop 256, centred frames
    assert rows == 96 and cols == -(-frames // picture["frames_per_column"]) and cols <= 512
    assert len(base64.b64decode(picture["data"])) == rows * cols
    assert picture["max"] > picture["min"] and picture["front_end"] == "log_compressed_mel"
    assert picture["segments"] == [{"offset_s": 0.0, "duration_s": pytest.approx(12.0, abs=0.02), "columns": cols}]
    assert (picture["f_min_hz"], picture["f_max_hz"], picture["mel_scale"]) == (0.0, 8000.0, "slaney")
    assert "spectrogram" in out["timings_ms"]
    status, _, batch = post_form(service, {"files": ("a.wav", data, "audio/wav")}, "/v1/classify/batch")
    assert status == 200 and "spectrogram" not in batch["results"][0]
    status, _, out = post_audio(service, data, path="/v1/classify?spectrogram=maybe")
    assert_error(status, out, 422, "invalid_parameter")


# --------------------------------------------------------------------------------------------- browser


def test_a_file_is_classified_in_the_browser(service, browser, clips, tmp_path):
    """Top genre as the API says, tags, uncertainty, facts and a painted spectrogram; then a screenshot."""
    started = time.perf_counter()
    _open(browser, service)
    assert _text(browser, "model-name") == "musicnn-msd-mtt"
    _upload(browser, clips["song"], state="result")
    status, _, api = post_audio(service, clips["song"].read_bytes())
    assert status == 200
    assert _text(browser, "top-genre") == api["top_genre"]
    assert _text(browser, "top-confidence") == f"{100 * api['confidence']:.1f}%"
    bars = browser.find_elements("css selector", "#genre-chart li")
    assert len(bars) == len(api["top_k"])
    assert bars[0].text.split("\n") == [api["top_genre"], f"{100 * api['confidence']:.1f}%"]
    chart_label = browser.find_element("id", "genre-chart").get_attribute("aria-label")
    assert chart_label.startswith(f"Top genres: {api['top_genre']} ")
    tags = browser.find_elements("css selector", "#tag-chart li")
    assert tags and tags[0].text.split("\n") == [api["tags"][0]["tag"], f"{api['tags'][0]['score']:.2f}"]
    assert _text(browser, "uncertainty") == f"{api['uncertainty']:.2f}"
    assert browser.find_element("id", "review-warning").is_displayed() == api["needs_review"]
    assert _text(browser, "duration") == "0:12"
    assert _text(browser, "windows").startswith(str(api["windows"]))
    facts = _text(browser, "facts")  # the page reads the record's fields by their names: no NaN from a stale one
    assert f"{api['rms_dbfs']:.1f} dBFS" in facts and "NaN" not in facts, facts
    stats = _canvas_stats(browser)
    assert stats["drawn"] == "true" and stats["painted"] > 0.99 and stats["colours"] > 50, stats
    assert "Spectrogram the model classified" in stats["label"] and "96 mel bands" in stats["label"]
    shot = _screenshot(browser, tmp_path / "listening-page.png")
    assert shot.stat().st_size > 20_000
    target = os.environ.get(SCREENSHOT_ENV)
    if target:
        shutil.copyfile(shot, ROOT / target if not Path(target).is_absolute() else Path(target))
    # keyboard: the file chooser is reachable with Tab and has a label
    from selenium.webdriver.common.keys import Keys

    browser.execute_script("document.querySelector('a.skip').focus()")  # the first stop of the tab order
    visited = []
    for _ in range(3):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        visited.append(browser.switch_to.active_element.get_attribute("id") or browser.switch_to.active_element.text)
        if visited[-1] == "file-input":
            break
    else:
        pytest.fail(f"Tab went {visited}, never to the file chooser")
    assert browser.find_element("css selector", "label[for=file-input]").text == "Choose audio files…"
    assert _policy_violations(browser) == []
    print(f"\nbrowser: page to screenshot in {time.perf_counter() - started:.1f} s; screenshot {shot}")


def test_errors_are_readable_and_the_page_stays_usable(service, browser, clips, tmp_path):
    _open(browser, service)
    _upload(browser, clips["notes"], state="error")
    assert _text(browser, "error-title") == "This file is not audio the service can decode"
    assert _text(browser, "error-code") == "undecodable · HTTP 400"
    assert "Traceback" not in browser.find_element("id", "error").text
    assert not browser.find_element("id", "retry").is_displayed()  # retrying cannot help
    _upload(browser, clips["big"], state="error")  # refused before the upload: over max_body_mb
    assert _text(browser, "error-title") == "The file is too large"
    assert (
        "up to 1 MiB per request" in _text(browser, "error-detail")
        and _text(browser, "error-code") == "body_too_large · HTTP 413"
    )
    # answers the service gives under load or to a mangled upload, stubbed in the page for one request each
    for status, body, title, detail in [
        (503, {"error": "overloaded", "detail": "the model queue is full"}, "The service is busy", "Try again in 2 s."),
        (503, "Service Unavailable", "The service is busy", "Service Unavailable Try again in 2 s."),
        (413, {"error": "body_too_large", "detail": "the limit is 1048576 bytes"}, "too large", "is 1048576 bytes"),
        (415, {"error": "unsupported_media_type", "detail": "send audio/*"}, "did not accept", "send audio/*"),
    ]:
        browser.execute_script(
            """
            const [status, body] = arguments;
            const real = window.fetch;
            window.fetch = async () => { window.fetch = real;
              return new Response(typeof body === 'string' ? body : JSON.stringify(body),
                                  {status, headers: {'Retry-After': '2'}}); };
            """,
            status,
            body,
        )
        _upload(browser, clips["tone"], state="error")
        assert title in _text(browser, "error-title")
        assert _text(browser, "error-detail").endswith(detail)
    assert browser.find_element("id", "retry").is_displayed() is False  # 415: no retry
    browser.execute_script(
        """const real = window.fetch; window.fetch = async () => { window.fetch = real;
           return new Response('{"error": "overloaded", "detail": "full"}',
                               {status: 503, headers: {'Retry-After': '2'}}); };"""
    )
    _upload(browser, clips["tone"], state="error")
    retry = browser.find_element("id", "retry")
    assert retry.is_displayed() and not retry.is_enabled() and "(2 s)" in retry.text
    _wait(browser, lambda d: d.find_element("id", "retry").is_enabled(), "the retry countdown", timeout_s=10)
    browser.execute_script("document.body.dataset.state = 'idle'")
    retry.click()  # the real service answers this time
    _wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-state") == "result", "the retry")
    assert not browser.find_element("id", "error").is_displayed() and _text(browser, "top-genre")
    assert _policy_violations(browser) == []


def test_several_files_make_a_table(service, browser, clips, tmp_path):
    _open(browser, service)
    _upload(browser, clips["song"], clips["jazz"], clips["notes"], state="batch")
    expected_results = []  # one request per file: the two together exceed the service's 1 MiB (the page split them)
    for path in (clips["song"], clips["jazz"]):
        fields = {"files": (path.name, path.read_bytes(), "application/octet-stream")}
        status, _, answer = post_form(service, fields, "/v1/classify/batch")
        assert status == 200
        expected_results += answer["results"]
    rows = browser.find_elements("css selector", "#batch-table tbody tr")
    assert len(rows) == 3
    cells = [[td.text for td in row.find_elements("tag name", "td")] for row in rows]
    for row, expected in zip(cells, expected_results):
        assert row[0] == expected["filename"] and row[1] == "classified"
        assert row[2] == expected["top_genre"] and row[3] == f"{100 * expected['confidence']:.1f}%"
        assert row[4].startswith("needs review") == expected["needs_review"]
        assert row[5].startswith(f"{expected['tags'][0]['tag']} {expected['tags'][0]['score']:.2f}")
    assert cells[2][0] == "liner notes.txt" and cells[2][1] == "undecodable"
    assert "not audio the service can decode" in cells[2][2]
    review = sum(r["needs_review"] for r in expected_results)
    assert _text(browser, "batch-title") == "3 files: 2 classified, 1 failed" + (
        f", {review} need review" if review else ""
    )
    _screenshot(browser, tmp_path / "listening-page-batch.png")
    # a row's Details button analyses that file alone, spectrogram included
    rows[1].find_element("tag name", "button").click()
    _wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-state") == "result", "details")
    assert _text(browser, "result-file").startswith("jazz trio.wav") and _canvas_stats(browser)["drawn"] == "true"
