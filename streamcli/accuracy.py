"""Accuracy against a reference transcript: word and character error rate, with ``jiwer``.

``jiwer`` (an optional extra: ``pip install 'streamcli[wer]'``) does the alignment; this module
only chooses the normalisation and shapes the result for JSON, tables and JUnit. The usual
normalisation (on both sides): lower case, punctuation removed, whitespace collapsed;
``normalize=False`` scores the raw words (split on whitespace).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamcli.exit import UsageError
from streamcli.metrics import rounded

INSTALL_HINT = "pip install 'streamcli[wer]'"


def _jiwer() -> Any:
    try:
        import jiwer
    except ImportError:
        raise UsageError(f"scoring against a reference needs jiwer: {INSTALL_HINT}") from None
    return jiwer


def require_jiwer() -> None:
    """Fail before the run, not after it, when scoring is asked for and jiwer is missing."""
    _jiwer()


def _transforms(jiwer: Any, normalize: bool, chars: bool) -> Any:
    steps = [jiwer.ToLowerCase(), jiwer.RemovePunctuation()] if normalize else []
    # A line break (or tab) parts words too: jiwer splits on spaces only.
    steps += [jiwer.RemoveWhiteSpace(replace_by_space=True), jiwer.RemoveMultipleSpaces()]
    steps.append(jiwer.Strip())
    steps.append(jiwer.ReduceToListOfListOfChars() if chars else jiwer.ReduceToListOfListOfWords())
    return jiwer.Compose(steps)


def normalized_words(text: str, normalize: bool = True) -> list[str]:
    """The words that are scored, as ``score`` sees them."""
    jiwer = _jiwer()
    words = _transforms(jiwer, normalize, chars=False)(text)
    return [w for sentence in words for w in sentence]


@dataclass(frozen=True)
class Score:
    wer: float | None  # None: an empty reference with a non-empty hypothesis
    cer: float | None
    reference_words: int
    hits: int
    substitutions: int
    insertions: int
    deletions: int
    reference_chars: int = 0
    char_errors: int = 0
    # One entry per aligned chunk: {"op": equal|substitute|insert|delete, "ref": ..., "hyp": ...}
    alignment: tuple[dict[str, str], ...] = field(default=())

    @property
    def errors(self) -> int:
        return self.substitutions + self.insertions + self.deletions

    def worst_segment(self, context: int = 3) -> str:
        """The longest run of errors, with a few words around it: ``REF: … / HYP: …``."""
        chunks = self.alignment
        best, best_len = -1, 0
        for i, c in enumerate(chunks):
            if c["op"] != "equal":
                size = max(len(c["ref"].split()), len(c["hyp"].split()))
                if size > best_len:
                    best, best_len = i, size
        if best < 0:
            return ""

        def side(key: str) -> str:
            before = chunks[best - 1][key].split()[-context:] if best > 0 else []
            after = chunks[best + 1][key].split()[:context] if best + 1 < len(chunks) else []
            middle = chunks[best][key] or "∅"
            return " ".join([*before, f"[{middle}]", *after])

        return f"REF: {side('ref')} / HYP: {side('hyp')}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "wer": rounded(self.wer),
            "cer": rounded(self.cer),
            "reference_words": self.reference_words,
            "hits": self.hits,
            "substitutions": self.substitutions,
            "insertions": self.insertions,
            "deletions": self.deletions,
            "alignment": list(self.alignment),
        }


def score(reference: str, hypothesis: str, normalize: bool = True) -> Score:
    """Score ``hypothesis`` against ``reference`` (WER, CER, S/I/D and the aligned words)."""
    jiwer = _jiwer()
    words = _transforms(jiwer, normalize, chars=False)
    chars = _transforms(jiwer, normalize, chars=True)
    ref_words = normalized_words(reference, normalize)
    hyp_words = normalized_words(hypothesis, normalize)
    if not ref_words:
        # jiwer refuses an empty reference: nothing to say is right only when nothing was said.
        rate = 0.0 if not hyp_words else None
        alignment = ({"op": "insert", "ref": "", "hyp": " ".join(hyp_words)},) if hyp_words else ()
        return Score(rate, rate, 0, 0, 0, len(hyp_words), 0, 0, len(hypothesis), alignment)
    if not hyp_words:
        ref = " ".join(ref_words)
        n = len(ref)
        return Score(
            1.0,
            1.0,
            len(ref_words),
            0,
            0,
            0,
            len(ref_words),
            n,
            n,
            ({"op": "delete", "ref": ref, "hyp": ""},),
        )
    out = jiwer.process_words(
        reference,
        hypothesis,
        reference_transform=words,
        hypothesis_transform=words,
    )
    c = jiwer.process_characters(
        reference, hypothesis, reference_transform=chars, hypothesis_transform=chars
    )
    aligned = []
    for chunk in out.alignments[0]:
        ref = " ".join(out.references[0][chunk.ref_start_idx : chunk.ref_end_idx])
        hyp = " ".join(out.hypotheses[0][chunk.hyp_start_idx : chunk.hyp_end_idx])
        aligned.append({"op": chunk.type, "ref": ref, "hyp": hyp})
    return Score(
        wer=float(out.wer),
        cer=float(c.cer),
        reference_words=len(ref_words),
        hits=out.hits,
        substitutions=out.substitutions,
        insertions=out.insertions,
        deletions=out.deletions,
        reference_chars=c.hits + c.substitutions + c.deletions,
        char_errors=c.substitutions + c.insertions + c.deletions,
        alignment=tuple(aligned),
    )


def weighted_wer(scores: list[Score]) -> float | None:
    """Overall WER: all errors over all reference words (not the mean of the files' WERs)."""
    words = sum(s.reference_words for s in scores)
    if not words:
        return None
    return sum(s.errors for s in scores) / words


def weighted_cer(scores: list[Score]) -> float | None:
    """Overall CER: all character errors over all reference characters."""
    chars = sum(s.reference_chars for s in scores)
    if not chars:
        return None
    return sum(s.char_errors for s in scores) / chars
