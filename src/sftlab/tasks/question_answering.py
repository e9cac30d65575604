"""Extractive question answering (SQuAD 1.1 / 2.0 style): predict the answer's start and end tokens.

Each (question, context) pair becomes one or more features: a context longer than `max_length` is cut
into windows that overlap by `doc_stride` tokens, each window keeping the token -> character offsets of
its context tokens. Training labels a window with the answer's first and last tokens, or with [CLS] when
the answer lies outside the window or the question has none. At evaluation each question's best span over
all its windows (n-best starts x n-best ends, at most `max_answer_length` tokens) is compared with the
best "no answer" score ([CLS] start + end); answers map back to exact character spans of the context.

A question gets no answer when its null score exceeds its best span's by more than a threshold
(`data.null_threshold`, as the official SQuAD 2.0 evaluation's `best_f1_thresh`). A model trained on little
data puts much of its start and end mass on [CLS] (every unanswerable question and every window without the
answer is labelled there), so at threshold 0 it answers almost nothing; `auto` (the default) picks the
threshold that maximises F1 on validation with the selected model, before the test split is scored, and
saves it with the model for `predict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sftlab.data.batching import inference_batches
from sftlab.data.readers import Table, require_columns, require_texts
from sftlab.distributed import local_model, map_sharded
from sftlab.errors import SftlabError
from sftlab.evaluation.squad import normalize_answer, squad_metrics


def flatten_squad(table: Table) -> Table:
    """The official SQuAD layout ({"data": [{"paragraphs": [{"context", "qas": [...]}]}]}) as flat rows;
    a table that is already flat comes back unchanged."""
    if not table.rows or "paragraphs" not in table.rows[0]:
        return table
    rows, positions = [], []
    for index, article in enumerate(table.rows):
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                rows.append({"context": paragraph.get("context"), "question": qa.get("question"),
                             "answers": {"text": [a.get("text") for a in answers],
                                         "answer_start": [a.get("answer_start") for a in answers]}})  # fmt: skip
                positions.append(table.positions[index])
    return Table(table.path, rows, positions, table.unit)


@dataclass
class QuestionAnsweringTask:
    question_column: str = "question"
    context_column: str = "context"
    answers_column: str = "answers"
    max_length: int = 384
    doc_stride: int = 128
    max_answer_length: int = 30
    n_best: int = 20
    null_threshold: float | None = None
    """No answer when null score - best span score > this; None: tuned on validation (see tune_on_validation)."""
    name: str = "question_answering"
    main_metric: str = "f1"

    @classmethod
    def from_settings(cls, data: Any) -> QuestionAnsweringTask:
        if data.doc_stride >= data.max_length // 2:
            raise SftlabError(
                f"data.doc_stride ({data.doc_stride}) must be less than half of data.max_length ({data.max_length}), "
                "so consecutive windows still move forward through the context"
            )
        threshold = None if data.null_threshold == "auto" else float(data.null_threshold)
        return cls(data.question_column, data.context_column, data.answers_column, data.max_length,
                   data.doc_stride, data.max_answer_length, data.n_best, threshold)  # fmt: skip

    @classmethod
    def from_config(cls, config: Any, tables: dict[str, Table]) -> QuestionAnsweringTask:
        task = cls.from_settings(config.data)
        for table in tables.values():
            task.gold_answers(flatten_squad(table))
        return task

    @classmethod
    def from_saved(cls, model_dir: Path, config: Any) -> tuple[QuestionAnsweringTask, Any]:
        from transformers import AutoModelForQuestionAnswering

        task, model = cls.from_settings(config.data), AutoModelForQuestionAnswering.from_pretrained(model_dir)
        if task.null_threshold is None:  # auto: the threshold tuned when the run finished (0 for older runs)
            task.null_threshold = float(getattr(model.config, "sftlab_null_threshold", 0.0))
        return task, model

    @property
    def input_column(self) -> str:
        return self.question_column

    def gold_answers(self, table: Table) -> list[list[tuple[str, int]]]:
        """(text, start) of each row's answers; an answer not found at its answer_start names the line."""
        require_columns(table, [self.question_column, self.context_column, self.answers_column])
        contexts = require_texts(table, self.context_column)
        golds = []
        for index, (row, context) in enumerate(zip(table.rows, contexts, strict=True)):
            answers = row[self.answers_column]
            where = table.where(index)
            if (
                not isinstance(answers, dict)
                or not isinstance(answers.get("text"), list)
                or not isinstance(answers.get("answer_start"), list)
            ):
                raise SftlabError(
                    f'{where}: \'{self.answers_column}\' must be {{"text": [...], "answer_start": [...]}} '
                    "(empty lists for an unanswerable question)"
                )
            texts, starts = answers["text"], answers["answer_start"]
            if len(texts) != len(starts):
                raise SftlabError(
                    f"{where}: '{self.answers_column}' has {len(texts)} texts but {len(starts)} answer_start values"
                )
            pairs = []
            for text, start in zip(texts, starts, strict=True):
                if (
                    not isinstance(text, str)
                    or not text.strip()
                    or isinstance(start, bool)
                    or not isinstance(start, int)
                ):
                    raise SftlabError(
                        f"{where}: each answer needs a non-empty text and an integer answer_start"
                    )
                if context[start : start + len(text)] != text:
                    found = context.find(text)
                    hint = f" (it occurs at {found})" if found >= 0 else " (it does not occur in the context)"
                    raise SftlabError(
                        f"{where}: answer {text!r} is not at answer_start {start} of '{self.context_column}'{hint}"
                    )
                pairs.append((text, start))
            golds.append(pairs)
        return golds

    def load_model(self, location: str, config: Any) -> Any:
        from sftlab.models import load_pretrained_with_head

        return load_pretrained_with_head(
            "AutoModelForQuestionAnswering", location, config.model, config.trust_remote_code
        )

    def features(self, tokenizer: Any, questions: list[str], contexts: list[str],
                 golds: list[list[tuple[str, int]]] | None) -> list[dict[str, Any]]:  # fmt: skip
        """Windows over each context, with context-token offsets and (with golds) start/end labels."""
        encoded = tokenizer(
            [q.lstrip() for q in questions], contexts, truncation="only_second", max_length=self.max_length,
            stride=self.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
        )  # fmt: skip
        features = []
        for row, example_index in enumerate(encoded["overflow_to_sample_mapping"]):
            sequence_ids = encoded.sequence_ids(row)
            offsets = [
                tuple(span) if sequence_ids[position] == 1 else None
                for position, span in enumerate(encoded["offset_mapping"][row])
            ]
            feature = {"input_ids": encoded["input_ids"][row], "offsets": offsets, "example": example_index,
                       "context": contexts[example_index]}  # fmt: skip
            if "token_type_ids" in encoded:
                feature["token_type_ids"] = encoded["token_type_ids"][row]
            if golds is not None:
                feature["gold"] = [text for text, _ in golds[example_index]]
                feature["start_positions"], feature["end_positions"] = 0, 0
                if golds[example_index]:
                    text, start_char = golds[example_index][0]
                    end_char = start_char + len(text)
                    inside = [p for p, span in enumerate(offsets) if span is not None]
                    if offsets[inside[0]][0] <= start_char and offsets[inside[-1]][1] >= end_char:
                        feature["start_positions"] = max(p for p in inside if offsets[p][0] <= start_char)
                        feature["end_positions"] = min(p for p in inside if offsets[p][1] >= end_char)
            features.append(feature)
        return features

    def encode(self, tokenizer: Any, table: Table) -> list[dict[str, Any]]:
        table = flatten_squad(table)
        golds = self.gold_answers(table)
        questions = require_texts(table, self.question_column)
        return self.features(tokenizer, questions, require_texts(table, self.context_column), golds)

    def target_count(self, example: dict[str, Any]) -> int:
        """One loss term per window (the mean of its start and end cross-entropies)."""
        return 1

    def collate(self, examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
        from sftlab.tasks.classification import pad_batch

        batch = pad_batch(
            [{k: e[k] for k in ("input_ids", "token_type_ids") if k in e} for e in examples], pad_token_id
        )
        if "start_positions" in examples[0]:
            batch["start_positions"] = torch.tensor([e["start_positions"] for e in examples])
            batch["end_positions"] = torch.tensor([e["end_positions"] for e in examples])
        return batch

    def forward_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """(start CE + end CE) / 2 summed over windows, as BERT's SQuAD loss, but over each window's real
        positions only: a padded position is never an answer, and evaluation reads real positions only, so
        a window's loss no longer depends on how long the other windows of its batch are (and the unpadded
        blocks, which leave padding uncomputed, stay exact)."""
        inputs = {k: v for k, v in batch.items() if k not in ("start_positions", "end_positions")}
        output = model(**inputs)
        padding = batch["attention_mask"] == 0
        start_logits = output.start_logits.float().masked_fill(padding, -math.inf)
        end_logits = output.end_logits.float().masked_fill(padding, -math.inf)
        start = F.cross_entropy(start_logits, batch["start_positions"], reduction="sum")
        end = F.cross_entropy(end_logits, batch["end_positions"], reduction="sum")
        return (start + end) / 2, int(batch["start_positions"].numel())

    @torch.inference_mode()
    def window_logits(self, model: Any, features: list[dict[str, Any]], pad_token_id: int, batch_size: int,
                      device: torch.device, autocast: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
        """(start, end) logits of every window, trimmed to its real length."""
        model.eval()
        lengths = [len(f["input_ids"]) for f in features]
        out: list[Any] = [None] * len(features)
        for batch_indices in inference_batches(lengths, batch_size):
            batch = self.collate([{k: features[i][k] for k in ("input_ids", "token_type_ids") if k in features[i]}
                                  for i in batch_indices], pad_token_id)  # fmt: skip
            with autocast():
                output = model(**{key: value.to(device) for key, value in batch.items()})
            starts, ends = output.start_logits.float().cpu(), output.end_logits.float().cpu()
            for row, index in enumerate(batch_indices):
                out[index] = (starts[row, : lengths[index]], ends[row, : lengths[index]])
        return out

    def best_answers(
        self, features: list[dict[str, Any]], logits: list[Any], threshold: float = 0.0
    ) -> list[dict[str, Any]]:
        """Per question: the best span over its windows, or no answer when [CLS] scores higher by more than
        `threshold`."""
        return [self.choose(candidate, threshold) for candidate in self.candidates(features, logits)]

    @staticmethod
    def choose(candidate: dict[str, Any], threshold: float) -> dict[str, Any]:
        span, null = candidate["span"], candidate["null"]
        if span is None or null["logit"] - span["logit"] > threshold:
            return {"answer": "", "start": None, "end": None, "score": null["score"]}
        return {key: value for key, value in span.items() if key != "logit"}

    def candidates(self, features: list[dict[str, Any]], logits: list[Any]) -> list[dict[str, Any]]:
        """Per question: {"span": its best span over all windows (None if no window has one), "null": the
        lowest [CLS] start + end score over its windows}, each with its logit sum and softmax score."""
        by_example: dict[int, list[int]] = {}
        for index, feature in enumerate(features):
            by_example.setdefault(feature["example"], []).append(index)
        answers = []
        for example in sorted(by_example):
            best: dict[str, Any] | None = None
            null_score, null_probability = math.inf, 0.0
            for index in by_example[example]:
                offsets, context = features[index]["offsets"], features[index]["context"]
                start_logits, end_logits = logits[index]
                normalizer = float(torch.logsumexp(start_logits, 0) + torch.logsumexp(end_logits, 0))
                cls_score = float(start_logits[0] + end_logits[0])
                if cls_score < null_score:
                    null_score, null_probability = cls_score, math.exp(cls_score - normalizer)
                # Candidates come from context tokens only, so question tokens never crowd them out.
                outside = torch.tensor([span is None for span in offsets])
                top = min(self.n_best, int((~outside).sum()))
                candidate_starts = torch.topk(
                    start_logits.masked_fill(outside, -math.inf), top
                ).indices.tolist()
                candidate_ends = torch.topk(end_logits.masked_fill(outside, -math.inf), top).indices.tolist()
                for start in candidate_starts:
                    for end in candidate_ends:
                        if end < start or end - start + 1 > self.max_answer_length:
                            continue
                        score = float(start_logits[start] + end_logits[end])
                        if best is None or score > best["logit"]:
                            first, last = offsets[start][0], offsets[end][1]
                            best = {"answer": context[first:last], "start": first, "end": last, "logit": score,
                                    "score": math.exp(score - normalizer)}  # fmt: skip
            answers.append({"span": best, "null": {"logit": null_score, "score": null_probability}})
        return answers

    def tune_on_validation(self, model: Any, examples: list[dict[str, Any]], pad_token_id: int, batch_size: int,
                           device: torch.device, autocast: Any) -> str:  # fmt: skip
        """With `null_threshold: auto`: fix the threshold that maximises F1 on validation for this (the
        selected) model and save it in the model's config; returns a line for the log."""
        if self.null_threshold is not None:
            return ""
        logits = self.window_logits(model, examples, pad_token_id, batch_size, device, autocast)
        golds = [
            f["gold"]
            for f in sorted({f["example"]: f for f in examples}.values(), key=lambda f: f["example"])
        ]
        self.null_threshold, f1, plain_f1 = best_threshold(self.candidates(examples, logits), golds)
        model.config.sftlab_null_threshold = self.null_threshold
        return (f"question_answering: null threshold {self.null_threshold:.3f} tuned on validation "
                f"(F1 {plain_f1:.2f} at 0 -> {f1:.2f})")  # fmt: skip

    def evaluate(self, model: Any, examples: list[dict[str, Any]], pad_token_id: int, batch_size: int,
                 device: torch.device, autocast: Any) -> dict[str, Any]:  # fmt: skip
        """SQuAD EM and F1 (percent, max over gold answers) per question, and the mean window loss."""
        logits = map_sharded(lambda part: self.window_logits(local_model(model), part, pad_token_id, batch_size,
                                                             device, autocast), examples)  # fmt: skip
        loss = 0.0
        for feature, (start_logits, end_logits) in zip(examples, logits, strict=True):
            loss += float(F.cross_entropy(start_logits[None], torch.tensor([feature["start_positions"]])))
            loss += float(F.cross_entropy(end_logits[None], torch.tensor([feature["end_positions"]])))
        by_example: dict[int, list[str]] = {f["example"]: f["gold"] for f in examples}
        golds = [by_example[k] for k in sorted(by_example)]
        candidates = self.candidates(examples, logits)
        # Before a threshold is fixed (auto, during training) validation is scored at its best threshold, so
        # the model kept is the one that is best once its threshold is tuned.
        threshold = self.null_threshold
        if threshold is None:
            threshold = best_threshold(candidates, golds)[0]
        metrics = squad_metrics([self.choose(c, threshold)["answer"] for c in candidates], golds)
        metrics["null_threshold"] = threshold
        metrics["loss"] = loss / (2 * max(1, len(examples)))
        metrics["num_windows"] = len(examples)
        return metrics

    def predict(self, model: Any, tokenizer: Any, table: Table, pad_token_id: int, batch_size: int,
                device: torch.device, autocast: Any) -> list[dict[str, Any]]:  # fmt: skip
        """Per row: {"answer", "start", "end", "score"}; context[start:end] == answer; no answer gives
        answer "" with start and end null. The score is the span's start x end softmax probability."""
        table = flatten_squad(table)
        require_columns(table, [self.question_column, self.context_column])
        questions = require_texts(table, self.question_column)
        features = self.features(tokenizer, questions, require_texts(table, self.context_column), None)
        logits = self.window_logits(model, features, pad_token_id, batch_size, device, autocast)
        return self.best_answers(features, logits, self.null_threshold or 0.0)

    def report(self, metrics: dict[str, Any], title: str) -> str:
        lines = [title, "", f"{'':<14}{'exact match':>12}{'F1':>8}{'questions':>11}",
                 f"{'all':<14}{metrics['exact_match']:>12.2f}{metrics['f1']:>8.2f}{metrics['num_examples']:>11}"]  # fmt: skip
        if metrics["has_answer_count"] and metrics["no_answer_count"]:
            lines.append(f"{'answerable':<14}{metrics['has_answer_exact_match']:>12.2f}{metrics['has_answer_f1']:>8.2f}"
                         f"{metrics['has_answer_count']:>11}")  # fmt: skip
            lines.append(
                f"{'unanswerable':<14}{metrics['no_answer_exact_match']:>12.2f}{'':>8}{metrics['no_answer_count']:>11}"
            )
        lines += [
            "",
            f"(SQuAD normalization, percent; {metrics['num_windows']} windows, loss {metrics['loss']:.4f}; "
            f"no answer when the null score beats the best span's by more than {metrics['null_threshold']:.3f})",
        ]
        return "\n".join(lines)

    def epoch_summary(self, metrics: dict[str, Any]) -> str:
        return f"exact match {metrics['exact_match']:.2f}, f1 {metrics['f1']:.2f}"


def best_threshold(candidates: list[dict[str, Any]], golds: list[list[str]]) -> tuple[float, float, float]:
    """(threshold, F1 there, F1 at 0): the null-score margin that maximises SQuAD F1 over these questions
    (the official v2.0 script's best_f1_thresh); ties go to the threshold nearest 0."""
    choose = QuestionAnsweringTask.choose
    span_f1 = [
        squad_metrics([choose(c, math.inf)["answer"]], [g])["f1"]
        for c, g in zip(candidates, golds, strict=True)
    ]
    null_f1 = [100.0 * (not [a for a in g if normalize_answer(a)]) for g in golds]
    margins = [
        c["null"]["logit"] - c["span"]["logit"] if c["span"] is not None else math.inf for c in candidates
    ]

    def f1_at(threshold: float) -> float:
        chosen = [n if m > threshold else a for m, n, a in zip(margins, null_f1, span_f1, strict=True)]
        return sum(chosen) / max(1, len(chosen))

    # Only the margins themselves change the answers: answering exactly the questions with margin <= t.
    options = sorted({0.0, *(m for m in margins if math.isfinite(m))}, key=abs)
    best = max(options, key=f1_at)  # max keeps the first of equal scores: the one nearest 0
    return best, f1_at(best), f1_at(0.0)
