"""Entity-level metrics checked against values computed by hand (and seqeval's documented examples)."""

from __future__ import annotations

import pytest

from sftlab.evaluation.entities import entity_metrics, entity_spans, iob1_to_iob2


def test_spans_iob2_and_iob1():
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    # IOB1: entities start with I-; B- only separates two adjacent entities of the same type
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]
    assert entity_spans(iob1) == [("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4), ("ORG", 5, 5)]
    assert iob1_to_iob2(iob1) == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"]
    assert iob1_to_iob2(["B-PER", "I-PER", "O", "B-LOC"]) == ["B-PER", "I-PER", "O", "B-LOC"]
    assert entity_spans(["B-geo-loc", "I-geo-loc"]) == [("geo-loc", 0, 1)]


def test_strict_mode_drops_entities_without_b():
    tags = ["I-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-ORG", "I-PER"]
    assert entity_spans(tags) == [("PER", 0, 1), ("LOC", 3, 4), ("ORG", 5, 5), ("PER", 6, 6)]
    assert entity_spans(tags, strict=True) == [("LOC", 3, 4), ("ORG", 5, 5)]
    # seqeval README: default mode counts I-NP I-NP as an NP chunk, strict IOB2 mode does not
    truth, guess = [["B-NP", "I-NP", "O"]], [["I-NP", "I-NP", "O"]]
    assert entity_metrics(truth, guess)["entity_f1"] == 1.0
    assert entity_metrics(truth, guess, strict=True)["entity_f1"] == 0.0


def test_metrics_match_seqeval_example_and_hand_counts():
    # seqeval README example: precision = recall = f1 = 0.5 (MISC boundary wrong, PER right)
    truth = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    guess = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    metrics = entity_metrics(truth, guess)
    assert metrics["entity_precision"] == metrics["entity_recall"] == metrics["entity_f1"] == 0.5
    assert metrics["per_type"]["MISC"]["f1"] == 0.0 and metrics["per_type"]["PER"]["f1"] == 1.0
    assert metrics["entity_f1_macro"] == 0.5
    assert metrics["token_accuracy"] == pytest.approx(8 / 10)  # tokens 3 and 4 differ
    # 3 true entities, 4 predicted, 2 right: P = 1/2, R = 2/3, F1 = 4/7
    truth = [["B-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "O"]]
    guess = [["B-PER", "B-PER", "B-LOC", "I-LOC"], ["B-LOC", "O"]]
    metrics = entity_metrics(truth, guess)
    assert (metrics["num_entities"], metrics["num_predicted_entities"]) == (3, 4)
    assert metrics["entity_precision"] == 0.5
    assert metrics["entity_recall"] == pytest.approx(2 / 3)
    assert metrics["entity_f1"] == pytest.approx(4 / 7)
    assert metrics["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
