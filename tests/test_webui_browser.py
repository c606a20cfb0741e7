"""The web UI in a real browser: Debian's Chromium driven by Selenium through chromedriver.

One test walks the whole page on the tiny checkpoints and the eSpeak demo speech: extraction and
a 5-step training started from the page with the curve updating, speech in the trained voice
fetched from the page's audio element and decoded, the clear message for empty text, and a
screenshot. Nothing downloads a browser: without /usr/bin/chromium and chromedriver it skips.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1900")
SERVER_START_SECONDS = 120
JOB_SECONDS = 150

if CHROMIUM is None or CHROMEDRIVER is None:
    MISSING_BROWSER = ("needs Debian's chromium and chromium-driver packages (apt-get install chromium "
                       "chromium-driver); .ci/run installs them")
    if os.environ.get("INDEXTTS_REQUIRE_BROWSER") == "1":  # CI: a missing browser is a failure, not a skip
        pytest.fail(MISSING_BROWSER, pytrace=False)
    pytest.skip(MISSING_BROWSER, allow_module_level=True)
pytest.importorskip("gradio", reason="the web UI needs the [webui] extra (pip install -e '.[webui]')")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the [webui] extra)")
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the web UI exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the web UI did not answer on {url} within {SERVER_START_SECONDS} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def demo_lists(tmp_path_factory) -> list[Path]:
    """Four eSpeak utterances for each of the two demo speakers."""
    from demo_data import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo_speech"), sentences_per_speaker=4)


@contextlib.contextmanager
def served_page(model_dir: Path, tmp_path: Path, *allowed: Path):
    """``python -m indextts.webui`` on ``model_dir`` serving on a free loopback port (``allowed`` folders too);
    yields (url, workdir)."""
    port, workdir, log = free_port(), tmp_path / "work", tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "-m", "indextts.webui", "--model_dir", str(model_dir), "--workdir", str(workdir),
               "--device", "cpu", "--port", str(port)]
    for folder in allowed:
        command += ["--allow_dir", str(folder)]
    with open(log, "wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url, server, log)
        yield url, workdir
    finally:
        server.terminate()
        server.wait(60)


@pytest.fixture
def webui(tiny_model_dir, tmp_path, demo_lists):
    """The page on the tiny 1.5 checkpoints, the demo lists' folder allowed; yields (url, workdir)."""
    with served_page(tiny_model_dir, tmp_path, demo_lists[0].parent) as page:
        yield page


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_tab(driver, name: str) -> None:
    WebDriverWait(driver, 60).until(
        lambda d: d.find_element(By.XPATH, f"//button[@role='tab'][normalize-space()='{name}']")).click()


def set_field(driver, elem_id: str, value: str) -> None:
    """Type into a Gradio textbox or number field the way a user's edit reaches Svelte: an input event."""
    field = WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input"))
    driver.execute_script("arguments[0].value = arguments[1];"
                          "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
                          "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));", field, value)


def click(driver, elem_id: str) -> None:
    driver.find_element(By.ID, elem_id).click()


def wait_for_text(driver, elem_id: str, expected: str, seconds: float = JOB_SECONDS) -> str:
    """Wait until the element's text holds ``expected``; the failure shows what it held instead."""
    def holds(d):
        text = d.find_element(By.ID, elem_id).text
        return text if expected in text else False
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.5).until(holds)
    except TimeoutException:
        pytest.fail(f"#{elem_id} never showed {expected!r}; it shows {driver.find_element(By.ID, elem_id).text!r}")


def curve_images(driver) -> int:
    return len(driver.find_elements(By.CSS_SELECTOR, "#train-curves img"))


def extract_and_train(driver, lists: list[Path]) -> None:
    open_tab(driver, "Extract & train")
    set_field(driver, "extract-audio-lists", "\n".join(str(p) for p in lists))
    click(driver, "extract-start")
    status = wait_for_text(driver, "extract-status", "finished")
    assert f"{4 * len(lists)} / {4 * len(lists)} (100%)" in status
    assert curve_images(driver) == 0
    set_field(driver, "train-max-steps", "5")
    driver.find_element(By.CSS_SELECTOR, "#train-more button").click()
    set_field(driver, "train-extra", "data.num_workers=0\ntrain.grad_accum=1\ndata.max_batch_size=4\ntrain.log_every_steps=1")
    click(driver, "train-start")
    wait_for_text(driver, "train-status", "finished")
    assert "5 / 5" in driver.find_element(By.ID, "train-status").text
    wait_for_text(driver, "train-curve-caption", "Logged up to step 5", seconds=30)
    WebDriverWait(driver, 30).until(lambda d: curve_images(d) > 0)
    driver.find_element(By.CSS_SELECTOR, "#train-more button").click()


def fetch_audio(driver, elem_id: str) -> tuple[np.ndarray, int]:
    """Download the src of the audio element inside #elem_id and decode it."""
    try:
        source = WebDriverWait(driver, 20).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f"#{elem_id} audio").get_attribute("src"))
    except TimeoutException:
        pytest.fail(driver.find_element(By.ID, elem_id).get_attribute("outerHTML"))
    with urllib.request.urlopen(source, timeout=30) as response:
        return soundfile.read(io.BytesIO(response.read()), dtype="float32")


def save_screenshot(driver, path: Path) -> None:
    """A PNG of the page as the test left it (kept in the pytest tmp folder as an artifact)."""
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_extracts_trains_and_speaks_the_trained_voice(webui, browser, demo_lists, tiny_model_dir, tmp_path):
    from indextts.checkpoint_folder import CheckpointFolder

    url, workdir = webui
    browser.get(url)
    extract_and_train(browser, demo_lists)
    assert (workdir / "runs" / "voice" / "adapter").is_dir()
    save_screenshot(browser, tmp_path / "webui-train.png")

    open_tab(browser, "Listen")
    click(browser, "speak-load")
    wait_for_text(browser, "speak-load-message", "Loaded 2 trained voices on an IndexTTS-1.5 base", seconds=120)
    hidden = browser.find_elements(By.ID, "speak-emotion")  # 1.5 has no emotion control; Gradio leaves it out
    assert not any(element.is_displayed() for element in hidden)
    set_field(browser, "speak-text", "Hello there, how are you today?")
    click(browser, "speak-button")
    wait_for_text(browser, "speak-status", "Done", seconds=120)
    waveform, sample_rate = fetch_audio(browser, "speak-output")
    assert sample_rate == CheckpointFolder(tiny_model_dir).sample_rate
    assert waveform.ndim == 1 and len(waveform) > 0 and np.isfinite(waveform).all()

    set_field(browser, "speak-text", "")
    click(browser, "speak-button")
    message = wait_for_text(browser, "speak-status", "The text is empty", seconds=60)
    assert "Traceback" not in message and "Traceback" not in browser.page_source

    save_screenshot(browser, tmp_path / "webui-speak.png")


def _exported_v2_folder(tiny_v2_dirs, root: Path) -> Path:
    """A copy of the tiny IndexTTS-2.5 folder with one speaker by name in its speakers.safetensors (as an
    exported voice folder has), made from a clip."""
    from indextts.inference import IndexTTS
    from indextts.lora import TrainedSpeaker, save_speakers

    folder = shutil.copytree(tiny_v2_dirs["2.5"], root / "v25")
    clip = root / "voice.wav"
    t = np.arange(36000) / 24000
    soundfile.write(clip, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(7 * t))).astype(np.float32), 24000)
    voice = IndexTTS.from_pretrained(folder, device="cpu").voice(reference_audio=clip)
    speaker = TrainedSpeaker(voice.condition.float(), voice.prompt.mel, emotion=voice.emotion.float(),
                             prompt_semantic=voice.prompt.semantic, style=voice.prompt.style)
    save_speakers(folder, {"dana": speaker}, {})
    return folder


def test_page_speaks_an_indextts25_voice_with_its_emotion_controls(browser, tiny_v2_dirs, tmp_path):
    folder = _exported_v2_folder(tiny_v2_dirs, tmp_path)
    with served_page(folder, tmp_path) as (url, _):
        browser.get(url)
        open_tab(browser, "Listen")
        set_field(browser, "speak-runs", "")
        click(browser, "speak-load")
        wait_for_text(browser, "speak-load-message", "Loaded 1 trained voices on an IndexTTS-2.5 base: v25:dana",
                      seconds=120)
        assert browser.find_element(By.ID, "speak-emotion").is_displayed()
        browser.find_element(By.CSS_SELECTOR, "#speak-emotion button").click()  # unfold the section
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "speak-duration").is_displayed())
        set_field(browser, "speak-text", "Hello there.")
        set_field(browser, "speak-emotion-text", "cheerful")  # reaches the options: the tiny folder has no Qwen
        click(browser, "speak-button")
        wait_for_text(browser, "speak-status", "needs the Qwen emotion model", seconds=120)
        set_field(browser, "speak-emotion-text", "")
        click(browser, "speak-button")
        wait_for_text(browser, "speak-status", "Done", seconds=120)
        waveform, sample_rate = fetch_audio(browser, "speak-output")
        assert sample_rate == 22050 and len(waveform) > 0 and np.isfinite(waveform).all()
        save_screenshot(browser, tmp_path / "webui-speak-v2.png")
