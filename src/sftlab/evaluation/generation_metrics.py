"""Scores for generated text: sacreBLEU BLEU and chrF (translation), ROUGE (summarization).

BLEU and chrF are corpus-level and computed by sacrebleu with its defaults (13a tokenization, cased), so
the numbers compare with published ones. `bleu_uncased` is the same BLEU after lowercasing both sides:
uncased vocabularies (MiniLM's) can never produce capitals, and it shows how much of the gap is case.
ROUGE-1/2/L are F1 averages over examples (rouge-score), with a Unicode word tokenizer instead of
rouge-score's default, which drops every non-ASCII letter and would gut Spanish or German text.
"""

from __future__ import annotations

import re
from typing import Any

WORD = re.compile(r"\w+")


class UnicodeWords:
    """rouge-score tokenizer: lowercase words of letters and digits in any script (no stemming)."""

    def tokenize(self, text: str) -> list[str]:
        return WORD.findall(text.lower())


def bleu_chrf(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (0-100, sacrebleu defaults) of generated replies against one reference each."""
    import sacrebleu

    return {
        "bleu": float(sacrebleu.corpus_bleu(hypotheses, [references]).score),
        "chrf": float(sacrebleu.corpus_chrf(hypotheses, [references]).score),
    }


def generation_metrics(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """Corpus BLEU, uncased BLEU and chrF (0-100), mean ROUGE-1/2/L F1 (0-100), and the example count."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} outputs for {len(references)} references")
    bleu = sacrebleu.corpus_bleu(hypotheses, [references])
    bleu_uncased = sacrebleu.corpus_bleu(hypotheses, [references], lowercase=True)
    chrf = sacrebleu.corpus_chrf(hypotheses, [references])
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=UnicodeWords())
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        scores = scorer.score(reference, hypothesis)
        for key in totals:
            totals[key] += scores[key].fmeasure
    count = max(1, len(references))
    return {
        "bleu": float(bleu.score),
        "bleu_uncased": float(bleu_uncased.score),
        "chrf": float(chrf.score),
        **{key: 100.0 * value / count for key, value in totals.items()},
        "num_examples": len(references),
    }
