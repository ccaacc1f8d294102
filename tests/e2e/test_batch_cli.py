"""Batch runs for CI: a folder of real speech (espeak-ng) with references, streamed to the
emulators by the real CLI with ``--jobs``; WER checked against an independent jiwer call, the
JUnit XML parsed, output templates, the threshold exit code, a failing file among good ones."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import jiwer
import pytest

from . import backend_matrix as bm

# What each file says (espeak-ng) and what its reference says. The emulators' recognizer hands
# out the script's sentences, one per voiced segment, so every file is "recognized" as the
# script's first sentence: the references make the WERs differ, known in advance.
SCRIPT = "The quick brown fox jumps over the lazy dog."
SPOKEN = {
    "alpha": "the quick brown fox jumps over the lazy dog",
    "bravo": "the quick brown fox jumps over a lazy cat",
    "charlie": "hello world, this is a test of streaming speech",
}
REFERENCES = {
    "alpha": "The quick brown fox jumps over the lazy dog.",  # WER 0
    "bravo": "The quick brown fox jumped over a lazy dog.",  # 2 substitutions of 9
    "charlie": "Hello world, this is a test of streaming speech.",  # nothing in common
}


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """audio/{alpha,bravo,charlie}.wav spoken by espeak-ng, refs/{stem}.txt, script.txt."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        if os.environ.get("STREAMCLI_REQUIRE_ESPEAK"):
            pytest.fail("espeak-ng is required here (STREAMCLI_REQUIRE_ESPEAK) but not installed")
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    root = tmp_path_factory.mktemp("batch")
    (root / "audio").mkdir()
    (root / "refs").mkdir()
    for name, text in SPOKEN.items():
        subprocess.run([espeak, "-w", str(root / "audio" / f"{name}.wav"), text], check=True)
        (root / "refs" / f"{name}.txt").write_text(REFERENCES[name] + "\n")
    (root / "script.txt").write_text(SCRIPT + "\n")
    return root


def independent_wer(reference: str, hypothesis: str) -> float:
    """The test's own normalisation (not streamcli's): lower case, letters and spaces only."""

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).replace("'", "").split())

    return jiwer.wer(norm(reference), norm(hypothesis))


async def run_batch(cli, speech: Path, name: str, *more: str, cwd_outputs: Path | None = None):
    emu = bm.emulator(
        name, script=speech / "script.txt", **({"seats": 4} if name == "melvin" else {})
    )
    await emu.start()
    try:
        return await cli(
            name,
            str(speech / "audio"),
            *bm.args(name, emu.url, "--speed", "0", "--jobs", "2", *more),
            env=bm.env(name),
            timeout=120,
        )
    finally:
        await emu.stop()


@pytest.mark.parametrize("name", bm.WEBSOCKET_BACKENDS)
async def test_a_folder_is_scored_per_file_and_overall_for_every_backend(cli, speech, name):
    r = await run_batch(cli, speech, name, "--reference-dir", str(speech / "refs"), "--json")
    assert r.code == 0, r.stderr
    evs = bm.events(r.stdout)
    assert all("input" in e for e in evs if e["type"] != "summary")
    results = {Path(e["input"]).stem: e for e in bm.of_type(evs, "result")}
    assert sorted(results) == sorted(SPOKEN)
    for stem, res in results.items():
        assert res["status"] == "ok" and res["exit_code"] == 0
        # The transcript is what the session's finals said, in order.
        finals = [e for e in bm.of_type(evs, "final") if Path(e["input"]).stem == stem]
        assert res["transcript"] == " ".join(f["text"] for f in finals if f["text"].strip())
        assert res["transcript"]
        # WER: streamcli's figure equals an independent jiwer call on the same texts.
        expected = independent_wer(REFERENCES[stem], res["transcript"])
        assert res["accuracy"]["wer"] == pytest.approx(expected, abs=1e-6)
        acc = res["accuracy"]
        words = len(REFERENCES[stem].split())
        assert acc["reference_words"] == words
        assert acc["hits"] + acc["substitutions"] + acc["deletions"] == words
        errors = acc["substitutions"] + acc["insertions"] + acc["deletions"]
        assert acc["wer"] == pytest.approx(errors / words)
        assert res["rtf"] is not None and res["audio_seconds"] > 1.0
    (summary,) = bm.of_type(evs, "summary")
    assert summary["files"] == 3 and summary["ok"] == 3 and summary["exit_code"] == 0
    scored = [results[s]["accuracy"] for s in SPOKEN]
    weighted = sum(a["substitutions"] + a["insertions"] + a["deletions"] for a in scored) / sum(
        a["reference_words"] for a in scored
    )
    assert summary["wer"] == pytest.approx(weighted, abs=1e-6)
    assert summary["reference_words"] == sum(len(t.split()) for t in REFERENCES.values())


async def test_thresholds_junit_markdown_and_output_templates(cli, speech, tmp_path):
    junit = tmp_path / "report.xml"
    md = tmp_path / "summary.md"
    r = await run_batch(
        cli,
        speech,
        "melvin",
        "--reference-dir",
        str(speech / "refs"),
        "--max-wer",
        "0.15",
        "--junit",
        str(junit),
        "--summary-md",
        str(md),
        "-o",
        str(tmp_path / "out" / "{stem}.srt"),
        "-o",
        str(tmp_path / "out" / "{index}-{stem}.txt"),
        "--json",
    )
    evs = bm.events(r.stdout)
    results = {Path(e["input"]).stem: e for e in bm.of_type(evs, "result")}
    below = sorted(s for s, e in results.items() if e["status"] == "below-threshold")
    wers = {s: e["accuracy"]["wer"] for s, e in results.items()}
    assert below == sorted(s for s, w in wers.items() if w > 0.15) and below, wers
    # Quality below the threshold has its own exit code, distinct from errors; one line says why.
    assert r.code == 8, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"streamcli: error: {len(below)} of 3 files below the thresholds")
    assert all(results[s]["exit_code"] == 8 for s in below)
    # JUnit: one test case per input, a failure for each file below the threshold.
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "streamcli.melvin"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (
        "3",
        str(len(below)),
        "0",
    )
    cases = {Path(c.get("name")).stem: c for c in suite.findall("testcase")}
    assert sorted(cases) == sorted(SPOKEN)
    for stem, case in cases.items():
        assert case.get("classname") == "streamcli.melvin"
        assert float(case.get("time")) > 0
        failure = case.find("failure")
        if stem in below:
            assert failure is not None and "--max-wer 15.0%" in failure.get("message")
            assert "worst segment: REF:" in failure.text
        else:
            assert failure is None
    # Markdown: a row per input.
    text = md.read_text()
    assert text.startswith("## streamcli melvin: below the thresholds")
    assert all(f"audio/{stem}.wav" in text for stem in SPOKEN)
    # Templates: each input's own files, with its own transcript.
    for i, stem in enumerate(sorted(SPOKEN), 1):
        srt = (tmp_path / "out" / f"{stem}.srt").read_text()
        txt = (tmp_path / "out" / f"{i}-{stem}.txt").read_text()
        assert "-->" in srt
        assert txt.replace("[unconfirmed]", "").split() == results[stem]["transcript"].split()


async def test_a_failing_file_among_passing_ones_fails_alone(cli, speech, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(speech / "audio", folder)
    (folder / "broken.wav").write_bytes(b"this is not audio at all" * 10)
    emu = bm.emulator("vosk", script=speech / "script.txt")
    await emu.start()
    try:
        r = await cli(
            "vosk",
            str(folder),
            "--url",
            emu.url,
            "--speed",
            "0",
            "--jobs",
            "3",
            "--json",
            timeout=120,
        )
    finally:
        await emu.stop()
    assert r.code == 2, r.stderr  # the worst file's code: unreadable input
    evs = bm.events(r.stdout)
    results = {Path(e["input"]).stem: e for e in bm.of_type(evs, "result")}
    assert results["broken"]["status"] == "failed" and results["broken"]["exit_code"] == 2
    assert all(results[s]["status"] == "ok" for s in SPOKEN)
    (summary,) = bm.of_type(evs, "summary")
    assert (summary["ok"], summary["failed"], summary["exit_code"]) == (3, 1, 2)
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("streamcli: error: 1 of 4 files failed; ") and "broken.wav" in line


async def test_one_input_with_a_reference_is_scored(cli, speech):
    emu = bm.emulator("melvin", script=speech / "script.txt")
    await emu.start()
    try:
        r = await cli(
            "melvin",
            str(speech / "audio" / "bravo.wav"),
            *bm.args("melvin", emu.url, "--speed", "0", "--json"),
            "--reference",
            str(speech / "refs" / "bravo.txt"),
            env=bm.env("melvin"),
        )
    finally:
        await emu.stop()
    assert r.code == 0, r.stderr
    (res,) = bm.of_type(bm.events(r.stdout), "result")
    assert res["accuracy"]["wer"] == pytest.approx(
        independent_wer(REFERENCES["bravo"], res["transcript"])
    )


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (["--reference", "REF"], "--reference scores one input; for several, use --reference-dir"),
        (["-o", "out.srt"], "-o out.srt: with several inputs, give a template"),
        (["--mic"], "--mic cannot be combined with a batch run"),
        (["--reference-dir", "/nonexistent-refs"], "--reference-dir /nonexistent-refs: no such"),
    ],
)
async def test_bad_batch_options_are_one_line_and_exit_2(cli, speech, more, message):
    more = [str(speech / "refs" / "alpha.txt") if m == "REF" else m for m in more]
    r = await cli("vosk", str(speech / "audio"), "--url", "ws://127.0.0.1:9", *more)
    assert r.code == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("streamcli: error: " + message), line


def test_junit_and_summary_read_the_same_results(speech, tmp_path):
    """Without sockets: the reports agree with each other for a hand-made run."""
    from streamcli.batch import BatchRun, FileResult, summary_dict
    from streamcli.engine.session import SessionOptions
    from streamcli.present.batch import write_junit
    from streamcli.specs import BatchSpec, InputSpec, OutputSpec

    run = BatchRun(
        [],
        "vosk",
        lambda s: None,
        SessionOptions(),
        BatchSpec(max_wer=0.1),
        OutputSpec(),
        InputSpec(),
    )  # type: ignore[arg-type,return-value]
    run.results = [FileResult("a.wav", 1, ended_at=2.0, started_at=1.0, started=True)]
    run.results[0].below.append("WER 20.0% > --max-wer 10.0%")
    summary = summary_dict(run)
    assert summary["exit_code"] == 8 and summary["below_threshold"] == 1
    write_junit(str(tmp_path / "r.xml"), run, summary)
    case = ET.parse(tmp_path / "r.xml").getroot().find("testsuite/testcase")
    assert case is not None and case.find("failure") is not None
    assert json.dumps(summary)  # JSON-serializable


async def test_ctrl_c_ends_the_running_file_and_starts_no_more(speech, make_wav):
    """The first Ctrl-C: the running file ends its audio and keeps its finals (not scored: it
    was cut short); the files still waiting never start; a summary, then exit 130."""
    import signal

    from conftest import speechlike

    from .test_signals import Running

    long = make_wav("long.wav", speechlike(16000, [1.0] * 12), 16000)
    folder = long.parent / "many"
    folder.mkdir()
    for i in range(3):
        os.link(long, folder / f"take{i}.wav")
    emu = bm.emulator("melvin", script=speech / "script.txt")
    await emu.start()
    try:
        run = await Running.start(
            "melvin",
            str(folder),
            *bm.args("melvin", emu.url, "--speed", "4", "--jobs", "1", "--json"),
            "--reference-dir",
            str(speech / "refs"),
            env=bm.env("melvin"),
        )
        await run.until_final()
        run.send(signal.SIGINT)
        code, evs, err = await run.finish()
    finally:
        await emu.stop()
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "streamcli: interrupted"
    (first,) = bm.of_type(evs, "result")
    assert first["input"].endswith("take0.wav") and first["status"] == "interrupted"
    assert first["transcript"] and first["accuracy"] is None
    (summary,) = bm.of_type(evs, "summary")
    assert (summary["interrupted_files"], summary["not_run"], summary["exit_code"]) == (1, 2, 130)
    assert summary["interrupted"] is True
