"""SQuAD EM / F1 with the official normalization, checked on hand-computed cases."""

from __future__ import annotations

import pytest

from sftlab.catalog.datasets import locate_answer
from sftlab.evaluation.squad import normalize_answer, squad_metrics, token_f1


def test_normalization_drops_case_punctuation_articles_and_spaces():
    assert normalize_answer("  The Eiffel-Tower, in   Paris!") == "eiffeltower in paris"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_f1_and_exact_match_take_the_best_gold_answer():
    # pred {cat, sat, on, mat} vs gold {cat, on, mat}: P = 3/4, R = 1, F1 = 6/7
    assert token_f1("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    metrics = squad_metrics(
        ["the cat sat on the mat", "Denver Broncos", "", "", "yes"],
        [["a cat on a mat", "dog"], ["Broncos", "the Denver Broncos"], [], ["x"], []],
    )
    assert metrics["exact_match"] == pytest.approx(100 * (0 + 1 + 1 + 0 + 0) / 5)
    assert metrics["f1"] == pytest.approx(100 * (6 / 7 + 1 + 1 + 0 + 0) / 5)
    assert (metrics["has_answer_count"], metrics["no_answer_count"]) == (3, 2)
    assert metrics["no_answer_exact_match"] == 50.0


def test_disflqa_answers_are_located_ignoring_whitespace():
    context = "It had 40 , 000 people in the Earth ' s atmosphere ."
    assert locate_answer(context, "40,000") == (7, "40 , 000")
    assert locate_answer(context, "people") == (16, "people")
    assert locate_answer(context, "Earth's") == (30, "Earth ' s")
    assert locate_answer(context, "Mars") is None
