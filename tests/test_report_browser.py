"""The voice report in a real browser: it renders without console errors, its audio loads, and its
evaluation table holds the numbers of summary.csv (Debian's Chromium through Selenium, as the web UI test)."""

from __future__ import annotations

import csv
import io

import pytest

from test_webui_browser import browser  # noqa: F401  (the fixture; the module skips or fails without a browser)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_report_renders_plays_and_matches_the_summary(built_voice, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    project, _ = built_voice
    browser.get((project / "report.html").as_uri())
    audios = browser.find_elements(By.TAG_NAME, "audio")
    assert len(audios) >= 4  # a recording and a synthesis per voice
    WebDriverWait(browser, 30).until(lambda d: all(
        d.execute_script("return arguments[0].readyState >= 1 && arguments[0].duration > 0", a) for a in audios))
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    tables = browser.find_elements(By.TAG_NAME, "table")
    shown = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
             for row in tables[1].find_elements(By.CSS_SELECTOR, "tbody tr")]
    summary = list(csv.DictReader(io.StringIO((project / "run" / "eval" / "summary.csv").read_text(encoding="utf-8"))))
    columns = ("checkpoint", "step", "speaker", "utterances", "mer", "wer_en", "cer_zh", "sim", "best")
    assert [row[:len(columns)] for row in shown] == [[row[c] for c in columns] for row in summary]
    best = browser.find_element(By.ID, "best").text
    assert best == next(row["checkpoint"] for row in summary if row["best"] == "1" and row["speaker"] == "all")
