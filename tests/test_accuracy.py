"""Scoring against references (jiwer does the alignment) and the batch run's input/output names."""

from __future__ import annotations

import jiwer
import pytest

from streamcli.accuracy import normalized_words, score, weighted_cer, weighted_wer
from streamcli.batch import expand_inputs, output_names
from streamcli.exit import UsageError


def test_the_score_matches_jiwer_on_normalized_text():
    ref, hyp = "The cat sat on the mat.", "the cat, sit on mat today"
    s = score(ref, hyp)
    assert s.wer == pytest.approx(jiwer.wer("the cat sat on the mat", "the cat sit on mat today"))
    assert s.cer == pytest.approx(jiwer.cer("the cat sat on the mat", "the cat sit on mat today"))
    assert (s.reference_words, s.hits) == (6, 3)
    assert s.substitutions + s.insertions + s.deletions == s.errors == 3
    assert [c["op"] for c in s.alignment] == ["equal", "substitute", "equal", "substitute"]


def test_no_normalize_scores_case_and_punctuation():
    assert score("Hello, world.", "hello world").wer == 0.0
    assert score("Hello, world.", "hello world", normalize=False).wer == 1.0
    assert normalized_words("  Don't   STOP! ") == ["dont", "stop"]


def test_empty_sides():
    assert score("", "").wer == 0.0
    nothing_said = score("one two three", "")
    assert (nothing_said.wer, nothing_said.deletions) == (1.0, 3)
    said_too_much = score("", "noise")
    assert said_too_much.wer is None and said_too_much.insertions == 1


def test_the_worst_segment_is_the_longest_run_of_errors_with_context():
    s = score("one two three four five six seven", "one two tree for five six seven")
    assert (
        s.worst_segment()
        == "REF: one two [three four] five six seven / HYP: one two [tree for] five six seven"
    )
    assert score("same words", "same words").worst_segment() == ""


def test_overall_rates_are_weighted_by_reference_size():
    a = score("one two three four", "one two three four")  # 0 of 4
    b = score("five six", "five")  # 1 of 2
    assert weighted_wer([a, b]) == pytest.approx(1 / 6)  # not the mean of 0 and 0.5
    assert weighted_cer([a, b]) == pytest.approx(
        b.char_errors / (a.reference_chars + b.reference_chars)
    )
    assert weighted_wer([]) is None


def test_output_templates_per_input():
    names = output_names(("out/{stem}.srt", "{index}-{name}.txt"), ["a/x.wav", "b/y.flac"])
    assert names == [["out/x.srt", "1-x.wav.txt"], ["out/y.srt", "2-y.flac.txt"]]
    with pytest.raises(UsageError, match="give a template"):
        output_names(("out.srt",), ["x.wav", "y.wav"])
    with pytest.raises(UsageError, match="the same output file"):
        output_names(("{stem}.srt",), ["a/x.wav", "b/x.wav"])
    with pytest.raises(UsageError, match="bad template"):
        output_names(("{nope}.srt",), ["x.wav"])


def test_a_directory_stands_for_its_audio_files(tmp_path):
    for name in ("b.wav", "a.flac", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert expand_inputs([str(tmp_path)]) == [str(tmp_path / "a.flac"), str(tmp_path / "b.wav")]
    with pytest.raises(UsageError, match="given twice"):
        expand_inputs([str(tmp_path), str(tmp_path / "a.flac")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="is a directory with no audio files"):
        expand_inputs([str(tmp_path / "empty")])


def test_a_reference_of_several_lines_is_scored_word_by_word():
    # A transcript file has a sentence a line: the line break parts words as a space does.
    reference = "he was not\nan ill disposed\tyoung man\n"
    assert normalized_words(reference) == [
        "he",
        "was",
        "not",
        "an",
        "ill",
        "disposed",
        "young",
        "man",
    ]
    assert normalized_words(reference, normalize=False) == normalized_words(reference)
    result = score(reference, "he was not an ill disposed young man")
    assert (result.wer, result.reference_words) == (0.0, 8)
