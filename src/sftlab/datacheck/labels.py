"""Likely wrong labels: K-fold out-of-fold probabilities from the engine, then loss ranking or cleanlab.

Each fold's model is an ordinary sftlab run (`finetune`) on the other folds, with fast settings (few
epochs, frozen bottom blocks whose output the frozen-prefix cache computes once); it then predicts its
held-out fold, so every training row gets probabilities from a model that never saw it. The rows with the
highest out-of-fold loss are flagged, as many as cleanlab's confident-learning `num_label_issues`
estimates (`data_check.method: loss`, the default: on planted noise it was more precise than
`find_label_issues` at about the same recall), or cleanlab's `find_label_issues` flags them
(`method: cleanlab`); each flagged row carries its given label, the suggested label (the out-of-fold
prediction) and its confidence.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sftlab.data.readers import Table, write_jsonl
from sftlab.datacheck.findings import Finding


@dataclass
class OutOfFold:
    rows: list[int]
    """Indices (in the train table) of the rows that were cross-validated."""
    labels: np.ndarray
    """Given label id of each row; multi-label: a (rows, classes) 0/1 matrix."""
    probabilities: np.ndarray
    """(rows, classes) out-of-fold probabilities (softmax; multi-label: one sigmoid per class), classes in
    `label_names` order."""
    label_names: list[str]
    seconds: float
    multi_label: bool = False


def fold_config(config: Any, train_file: Path, output_dir: Path) -> Any:
    """The run that trains one fold's model: the user's model, task and columns, the check's fast settings."""
    from sftlab.config import load_config

    check = config.data_check
    values = config.to_yaml_dict()
    data = values["data"]
    data.update(dataset=None, train=str(train_file), validation=None, test=None, max_train_samples=None,
                max_eval_samples=None, cache_tokenized=False, check="off")  # fmt: skip
    values["output_dir"] = str(output_dir)
    values["train"].update(epochs=check.epochs, keep_last=0, patience=None, save_every=None)
    if check.learning_rate is not None:
        values["train"]["learning_rate"] = check.learning_rate
    values["freeze"].update(bottom_layers=frozen_blocks(config), gradual_unfreeze=False)
    return load_config(values)


def frozen_blocks(config: Any) -> int:
    """data_check.freeze_bottom_layers, or half of the model's blocks (MiniLM: 3 of 6)."""
    if config.data_check.freeze_bottom_layers is not None:
        return int(config.data_check.freeze_bottom_layers)
    from transformers import AutoConfig

    from sftlab.models import locate_model

    model_config = AutoConfig.from_pretrained(
        locate_model(config.model), trust_remote_code=config.trust_remote_code
    )
    return int(getattr(model_config, "num_hidden_layers", 0) or 0) // 2


def stratified_folds(labels: list[str], folds: int, seed: int) -> list[int]:
    """Fold number of each row: every label's rows shuffled (seeded) and dealt round-robin."""
    rng = np.random.default_rng(seed)
    assignment = [0] * len(labels)
    offset = 0
    for label in sorted(set(labels)):
        members = [i for i, value in enumerate(labels) if value == label]
        for position, index in enumerate(rng.permutation(members).tolist()):
            assignment[index] = (offset + position) % folds
        offset += len(members)
    return assignment


def estimate_seconds(config: Any, table: Table, rows: list[int]) -> float:
    """Rough time of the K fold fine-tunes: one forward pass of the model timed on 64 rows, times the
    work (training ~3x a forward pass over the unfrozen share, plus predicting), plus a few seconds per
    fold to load and save the model."""
    import torch

    from sftlab.models import load_tokenizer, locate_model
    from sftlab.tasks import task_class

    check = config.data_check
    location = locate_model(config.model)
    tokenizer = load_tokenizer(location, config.model, config.trust_remote_code)
    sample = table.subset(rows[:64])
    task = task_class(config.task).from_config(config, {"train": sample})
    model = task.load_model(location, config).eval()
    examples = task.encode(tokenizer, sample, with_labels=False)
    started = time.perf_counter()
    with torch.inference_mode():
        task.logits(model, examples, tokenizer.pad_token_id or 0, 64, torch.device("cpu"), _no_autocast)
    per_row = (time.perf_counter() - started) / len(examples)
    layers = getattr(model.config, "num_hidden_layers", 6) or 6
    frozen = frozen_blocks(config)
    trainable = max(0.1, 1 - frozen / layers)
    train_rows = len(rows) * (check.folds - 1) / check.folds
    work = train_rows * check.epochs * (1 + 2 * trainable) * trainable + len(rows) * 2
    return check.folds * (work * per_row + 4.0)


def _no_autocast() -> Any:
    import contextlib

    return contextlib.nullcontext()


def out_of_fold(config: Any, table: Table, rows: list[int], labels: list[Any], echo: bool = True,
                finetune: Any = None) -> OutOfFold:  # fmt: skip
    """Out-of-fold probabilities for `rows` of the train table (their labels as strings, or tuples of
    strings for multi-label rows)."""
    import torch
    from tqdm.auto import tqdm

    from sftlab.predictor import load

    if finetune is None:
        from sftlab.recipes.finetune import finetune
    check = config.data_check
    multi_label = bool(labels) and isinstance(labels[0], tuple)
    every = {name for label in labels for name in label} if multi_label else set(labels)
    names = sorted(every, key=lambda name: (0, int(name)) if name.lstrip("-").isdigit() else (1, name))
    index_of = {name: i for i, name in enumerate(names)}
    assignment = stratified_folds([str(label) for label in labels], check.folds, config.train.seed)
    probabilities = np.zeros((len(rows), len(names)), dtype=np.float64)
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="sftlab-folds-"))
    try:
        progress = tqdm(
            range(check.folds), desc="label check folds", unit="fold", file=sys.stderr, disable=not echo
        )
        for fold in progress:
            held = [position for position, f in enumerate(assignment) if f == fold]
            kept = [position for position, f in enumerate(assignment) if f != fold]
            train_file = workdir / f"fold{fold}.jsonl"
            write_jsonl(train_file, [table.rows[rows[p]] for p in kept])
            output_dir = workdir / f"fold{fold}"
            finetune(fold_config(config, train_file, output_dir), overwrite=True, echo=False)
            predictor = load(output_dir)
            held_table = table.subset([rows[p] for p in held])
            task = predictor.task
            examples = task.encode(predictor.tokenizer, held_table, with_labels=False)
            logits = task.logits(predictor.model, examples, predictor.pad_id, predictor.batch_size,
                                 predictor.device, predictor.autocast)  # fmt: skip
            fold_probabilities = (
                logits.float().sigmoid() if multi_label else torch.softmax(logits.float(), dim=-1)
            ).numpy()
            # A label missing from this fold's training part has no column: it gets probability 0.
            for column, name in enumerate(task.label_names):
                probabilities[held, index_of[name]] = fold_probabilities[:, column]
            shutil.rmtree(output_dir, ignore_errors=True)
        progress.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if multi_label:
        given = np.zeros((len(labels), len(names)), dtype=int)
        for position, label in enumerate(labels):
            given[position, [index_of[name] for name in label]] = 1
    else:
        given = np.array([index_of[label] for label in labels])
    return OutOfFold(rows, given, probabilities, names, time.perf_counter() - started, multi_label)


def flag_rows(oof: OutOfFold, method: str, keep_per_class: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(flagged positions, out-of-fold loss of every row): flagged by cleanlab's find_label_issues, or the
    `num_label_issues` highest-loss rows; positions ranked most suspicious first. `keep_per_class`: at least
    this share of each given class's rows stays unflagged (single-label; the class's least suspicious
    flags are dropped), so a rare class the fold models never predict is not flagged wholesale."""
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues

    if oof.multi_label:
        probabilities = np.clip(oof.probabilities, 1e-6, 1 - 1e-6)
        loss = -(oof.labels * np.log(probabilities) + (1 - oof.labels) * np.log(1 - probabilities)).sum(
            axis=1
        )
        given = [np.flatnonzero(row).tolist() for row in oof.labels]
        if method == "loss":
            count = int(num_label_issues(given, probabilities, multi_label=True))
            return np.argsort(-loss, kind="stable")[:count], loss
        flagged = find_label_issues(
            given, probabilities, multi_label=True, return_indices_ranked_by="self_confidence"
        )
        return np.asarray(flagged, dtype=int), loss
    probabilities = np.clip(oof.probabilities, 1e-12, 1.0)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    loss = -np.log(probabilities[np.arange(len(oof.labels)), oof.labels])
    if method == "loss":
        count = int(num_label_issues(oof.labels, probabilities))
        flagged = np.argsort(-loss, kind="stable")[:count]
    else:
        flagged = np.asarray(
            find_label_issues(oof.labels, probabilities, return_indices_ranked_by="self_confidence"),
            dtype=int,
        )
    return class_floor(flagged, oof.labels, keep_per_class), loss


def class_floor(flagged: np.ndarray, labels: np.ndarray, keep_per_class: float) -> np.ndarray:
    """`flagged` (most suspicious first) less each class's flags beyond what leaves `keep_per_class` of the
    class's rows unflagged: the most suspicious ones stay flagged, the order is kept."""
    if keep_per_class <= 0:
        return flagged
    sizes = np.bincount(labels)
    allowed = sizes - np.ceil(keep_per_class * sizes).astype(int)
    taken = np.zeros_like(sizes)
    kept = []
    for position in flagged.tolist():
        label = labels[position]
        if taken[label] < allowed[label]:
            taken[label] += 1
            kept.append(position)
    return np.asarray(kept, dtype=int)


def label_findings(
    oof: OutOfFold, table: Table, method: str, threshold: float = 0.5, keep_per_class: float = 0.0
) -> list[Finding]:
    flagged, loss = flag_rows(oof, method, keep_per_class)
    findings = []
    for position in flagged.tolist():
        index = oof.rows[position]
        if oof.multi_label:
            findings.append(_multi_label_finding(oof, table, position, float(loss[position]), threshold))
            continue
        given = oof.label_names[oof.labels[position]]
        suggested_id = int(np.argmax(oof.probabilities[position]))
        suggested = oof.label_names[suggested_id]
        confidence = float(oof.probabilities[position, suggested_id])
        given_probability = float(oof.probabilities[position, oof.labels[position]])
        findings.append(Finding(
            "label_issue", "train", index, table.where(index),
            f"label {given!r}, out-of-fold model says {suggested!r} ({confidence:.2f}; {given!r} {given_probability:.2f})",
            round(given_probability, 4), None,
            {"given_label": given, "suggested_label": suggested, "confidence": round(confidence, 4),
             "given_label_probability": round(given_probability, 4), "loss": round(float(loss[position]), 4)},
        ))  # fmt: skip
    return findings


def _multi_label_finding(
    oof: OutOfFold, table: Table, position: int, loss: float, threshold: float
) -> Finding:
    """A multi-label row: given and suggested label sets; confidence is the mean over classes of the
    model's probability for its own decision, given_label_probability the same for the given set."""
    index = oof.rows[position]
    probabilities = oof.probabilities[position]
    given = [oof.label_names[i] for i in np.flatnonzero(oof.labels[position])]
    suggested = [name for name, p in zip(oof.label_names, probabilities, strict=True) if p > threshold]
    confidence = float(np.maximum(probabilities, 1 - probabilities).mean())
    agreement = float(np.where(oof.labels[position] == 1, probabilities, 1 - probabilities).mean())
    return Finding(
        "label_issue", "train", index, table.where(index),
        f"labels {given}, out-of-fold model says {suggested} (mean probability of the given set {agreement:.2f})",
        round(agreement, 4), None,
        {"given_label": given, "suggested_label": suggested, "confidence": round(confidence, 4),
         "given_label_probability": round(agreement, 4), "loss": round(loss, 4)},
    )  # fmt: skip


def token_out_of_fold(config: Any, table: Table, rows: list[int], echo: bool = True,
                      finetune: Any = None) -> tuple[list[np.ndarray], list[list[int]], list[str], float]:  # fmt: skip
    """Token classification: per row of `rows`, (words x tags) out-of-fold probabilities, the given IOB2
    tag ids per word, the tag names, and the seconds it took. Folds are dealt at random (seeded)."""
    from tqdm.auto import tqdm

    from sftlab.predictor import load
    from sftlab.tasks.token_classification import TokenClassificationTask

    if finetune is None:
        from sftlab.recipes.finetune import finetune
    check = config.data_check
    reference = TokenClassificationTask.from_config(config, {"train": table.subset(rows)})
    names = reference.label_names
    index_of = {name: i for i, name in enumerate(names)}
    given = [[index_of[tag] for tag in tags] for tags in reference.sentences(table.subset(rows))[1]]
    assignment = stratified_folds([""] * len(rows), check.folds, config.train.seed)
    probabilities: list[np.ndarray] = [np.empty(0)] * len(rows)
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="sftlab-folds-"))
    try:
        for fold in tqdm(
            range(check.folds), desc="label check folds", unit="fold", file=sys.stderr, disable=not echo
        ):
            held = [position for position, f in enumerate(assignment) if f == fold]
            kept = [position for position, f in enumerate(assignment) if f != fold]
            train_file = workdir / f"fold{fold}.jsonl"
            write_jsonl(train_file, [table.rows[rows[p]] for p in kept])
            output_dir = workdir / f"fold{fold}"
            finetune(fold_config(config, train_file, output_dir), overwrite=True, echo=False)
            predictor = load(output_dir)
            task = predictor.task
            words = reference.sentences(table.subset([rows[p] for p in held]))[0]
            examples = task.encode_words(predictor.tokenizer, words)
            fold_probabilities = task.word_probabilities(predictor.model, examples, predictor.pad_id,
                                                         predictor.batch_size, predictor.device, predictor.autocast)  # fmt: skip
            for position, word_probabilities in zip(held, fold_probabilities, strict=True):
                full = np.zeros((word_probabilities.shape[0], len(names)))
                for column, name in enumerate(task.label_names):
                    full[:, index_of[name]] = word_probabilities[:, column].numpy()
                probabilities[position] = full / full.sum(axis=1, keepdims=True)
            shutil.rmtree(output_dir, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return probabilities, given, names, time.perf_counter() - started


def token_label_findings(table: Table, rows: list[int], probabilities: list[np.ndarray], given: list[list[int]],
                         names: list[str], words: list[list[str]]) -> list[Finding]:  # fmt: skip
    """cleanlab.token_classification's flagged words, one finding per sentence (its words in `details`)."""
    from cleanlab.token_classification.filter import find_label_issues

    flagged = find_label_issues(given, probabilities)
    by_sentence: dict[int, list[int]] = {}
    for sentence, word in flagged:
        by_sentence.setdefault(int(sentence), []).append(int(word))
    findings = []
    for position, flagged_words in sorted(by_sentence.items()):
        index = rows[position]
        details = []
        for word in sorted(flagged_words):
            suggested = int(np.argmax(probabilities[position][word]))
            details.append({"position": word, "word": words[position][word], "given_label": names[given[position][word]],
                            "suggested_label": names[suggested],
                            "confidence": round(float(probabilities[position][word][suggested]), 4),
                            "given_label_probability": round(float(probabilities[position][word][given[position][word]]), 4)})  # fmt: skip
        first = details[0]
        findings.append(Finding(
            "label_issue", "train", index, table.where(index),
            "; ".join(f"word {d['position'] + 1} {d['word']!r}: tag {d['given_label']}, out-of-fold model says "
                      f"{d['suggested_label']} ({d['confidence']:.2f})" for d in details),
            first["given_label_probability"], None,
            {"given_label": first["given_label"], "suggested_label": first["suggested_label"],
             "confidence": first["confidence"], "given_label_probability": first["given_label_probability"],
             "words": details},
        ))  # fmt: skip
    return findings
