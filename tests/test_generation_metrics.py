"""BLEU, chrF and ROUGE on tiny pairs whose scores are worked out by hand."""

from __future__ import annotations

import pytest

from sftlab.evaluation.generation_metrics import generation_metrics


def test_bleu_on_a_known_pair_matches_the_hand_computation():
    # hyp "the cat the cat on the mat" (7 tokens), ref "the cat is on the mat" (6): no brevity penalty.
    # Clipped n-gram precisions: 1-grams 5/7, 2-grams 3/6, 3-grams 1/5, 4-grams 0/4; sacreBLEU's default
    # "exp" smoothing turns the first zero into 1/(2 * 4). BLEU = (5/7 * 1/2 * 1/5 * 1/8) ** (1/4) = 112 ** -0.25.
    metrics = generation_metrics(["the cat the cat on the mat"], ["the cat is on the mat"])
    assert metrics["bleu"] == pytest.approx(100 * 112**-0.25, abs=1e-9)
    assert metrics["bleu_uncased"] == pytest.approx(metrics["bleu"])


def test_bleu_is_cased_and_bleu_uncased_is_not():
    metrics = generation_metrics(
        ["in the beginning god created the heaven"], ["In the beginning God created the heaven"]
    )
    assert metrics["bleu_uncased"] == pytest.approx(100.0)
    assert metrics["bleu"] < 50.0


def test_chrf_on_a_known_pair_matches_the_hand_computation():
    # Characters of "ab" vs "abc": 1-grams P 2/2, R 2/3; 2-grams P 1/1, R 1/2; no longer n-grams in the hypothesis.
    # Mean P = 1, mean R = 7/12; chrF (beta 2) = 5 P R / (4 P + R) = (35/12) / (55/12) = 7/11.
    assert generation_metrics(["ab"], ["abc"])["chrf"] == pytest.approx(100 * 7 / 11)


def test_rouge_on_known_pairs():
    # "the cat sat" vs "the cat sat down": unigram P 1, R 3/4 -> F 6/7; bigram P 1, R 2/3 -> F 4/5; LCS = 3 words.
    metrics = generation_metrics(["the cat sat"], ["the cat sat down"])
    assert metrics["rouge1"] == pytest.approx(100 * 6 / 7)
    assert metrics["rouge2"] == pytest.approx(80.0)
    assert metrics["rougeL"] == pytest.approx(100 * 6 / 7)


def test_rouge_keeps_accented_words():
    # rouge-score's default tokenizer would drop "É" and "ó"; sftlab's keeps whole words in any script.
    metrics = generation_metrics(["Él comió pan"], ["él comió"])
    assert metrics["rouge1"] == pytest.approx(80.0)  # P 2/3, R 1
    assert metrics["rouge2"] == pytest.approx(100 * 2 / 3)  # P 1/2, R 1


def test_identical_outputs_score_100_and_counts_are_reported():
    metrics = generation_metrics(["Y dijo Dios: Sea la luz.", "Amén."], ["Y dijo Dios: Sea la luz.", "Amén."])
    assert metrics["bleu"] == pytest.approx(100.0)
    assert metrics["chrf"] == pytest.approx(100.0)
    assert metrics["rougeL"] == pytest.approx(100.0)
    assert metrics["num_examples"] == 2
