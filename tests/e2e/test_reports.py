"""HTML reports (``--report``) in a real browser (Chromium through Playwright): a load test of
50 sessions, and a batch run with a failing file; each page loads with no console error and no
network request, every chart is drawn, and its figures are the run's JSON summary. (The README's
CI example writes one too: ``test_readme.py``.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import soundfile as sf
from conftest import speechlike

from streamcli.emulators.melvin import MelvinEmulator

from .browser import assert_report_matches, open_report
from .conftest import KEY

ENV = {"MELVIN_API_KEY": KEY}
# STREAMCLI_REPORT_SCREENSHOTS=docs python -m pytest tests/e2e/test_reports.py: the screenshots
# of docs/ made anew.
SHOTS = os.environ.get("STREAMCLI_REPORT_SCREENSHOTS")


def screenshot(name: str) -> Path | None:
    return Path(SHOTS) / f"report-{name}.png" if SHOTS else None


async def test_a_load_test_of_fifty_sessions_writes_a_report_a_browser_shows(
    cli, speech_wav, script_file, tmp_path
):
    emu = MelvinEmulator(api_keys=[KEY], script=script_file, seats=50, rest_port=None)
    await emu.start()
    report = tmp_path / "load.html"
    try:
        r = await cli(
            "melvin", str(speech_wav), "--url", emu.url, "--concurrency", "50", "--ramp", "2",
            "--speed", "4", "--json", "--report", str(report), env=ENV, timeout=120,
        )  # fmt: skip
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    (summary,) = [json.loads(line) for line in r.lines]  # --report keeps stdout JSON only
    assert summary["type"] == "loadtest" and summary["ok"] == 50
    seen = await open_report(report, screenshot("load"))
    assert_report_matches(seen, report, summary)
    assert set(seen["charts"]) == {"sessions", "latency", "pacing"}


async def test_a_batch_report_shows_the_failing_file_and_the_threshold(cli, script_file, tmp_path):
    folder, refs = tmp_path / "audio", tmp_path / "refs"
    folder.mkdir()
    refs.mkdir()
    for name, text in (("good", "Hello streaming world. The second sentence ends here."),
                       ("bad", "Something else was said.")):  # fmt: skip
        sf.write(str(folder / f"{name}.wav"), speechlike(16000, [0.6, 0.8]), 16000)
        (refs / f"{name}.txt").write_text(text)
    emu = MelvinEmulator(api_keys=[KEY], script=script_file, seats=2, rest_port=None)
    await emu.start()
    report = tmp_path / "batch.html"
    try:
        r = await cli(
            "melvin", str(folder), "--url", emu.url, "--speed", "4", "--jobs", "2",
            "--reference-dir", str(refs), "--max-wer", "0.2", "--json", "--report", str(report),
            env=ENV, timeout=120,
        )  # fmt: skip
    finally:
        await emu.stop()
    assert r.code == 8, r.stderr
    events = [json.loads(line) for line in r.lines]  # --report keeps stdout JSON only
    (summary,) = [e for e in events if e["type"] == "summary"]
    seen = await open_report(report, screenshot("batch"))
    assert_report_matches(seen, report, summary)
    assert set(seen["charts"]) == {"accuracy", "timing", "latency"}
    page = report.read_text()
    assert "below-threshold" in page and "max WER 0.2" in page
    assert "REF:" in page and "HYP:" in page  # the worst segment, aligned
