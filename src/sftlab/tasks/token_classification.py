"""Token classification (NER, POS, chunking): one tag per word, a linear head on every token.

Words are split into sub-word tokens; only each word's first sub-token carries the word's tag (the rest
get -100 and add nothing to the loss), and a word's prediction is its first sub-token's. Entity tags
(`data.tag_scheme` iob1 or iob2) are stored as IOB2 (every entity starts with B-), which is what
`transformers.pipeline` groups, and scored with seqeval's entity metrics (see `sftlab.evaluation.entities`).
Plain tags (part-of-speech and other per-word labels) are kept as they are and scored per word: token
accuracy and per-tag precision / recall / F1. Unset, the scheme is detected from the training tags.

Text and offsets: for word input (CoNLL files, JSONL `tokens`), the text is the words joined by single
spaces (no space next to a Chinese / Japanese character: `sftlab.data.spaceless`) and entity offsets index
that text; raw `text` input is split into words by the tokenizer's own pre-tokenizer, every CJK character
a word of its own (Chinese NER is tagged per character), and offsets index the text as given.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sftlab.data.batching import inference_batches
from sftlab.data.readers import Table
from sftlab.data.spaceless import is_wide, join_words, joins, split_words, word_start_marker
from sftlab.distributed import local_model, map_sharded
from sftlab.errors import SftlabError
from sftlab.evaluation.entities import entity_metrics, entity_spans, iob1_to_iob2, split_tag
from sftlab.evaluation.metrics import classification_metrics

IGNORE = -100
IOB_TAG = re.compile(r"O|[BI]-\S+")


def detect_tag_scheme(sequences: list[list[str]]) -> str:
    """iob2 when every tag is O, B-TYPE or I-TYPE and every entity starts with B-; iob1 when some start
    with I-; plain for any other tag set (e.g. part-of-speech tags)."""
    if not all(IOB_TAG.fullmatch(tag) for tags in sequences for tag in tags):
        return "plain"
    return "iob2" if all(iob1_to_iob2(tags) == tags for tags in sequences) else "iob1"


def _tag_key(tag: str) -> tuple[int, str, str]:
    prefix, kind = split_tag(tag)
    return (0, "", "") if prefix == "O" else (1, kind, prefix)


@dataclass
class TokenClassificationTask:
    """Tag names (IOB2) plus the columns; built from the training table, then applied to every split."""

    label_names: list[str]
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    conll_tag_field: int = -1
    text_column: str = "text"
    max_length: int = 128
    strict: bool = False
    scheme: str = "iob2"
    """iob2 or iob1 (entity tags, stored as IOB2) or plain (tags kept as they are)."""
    name: str = "token_classification"
    setup_note: str = ""
    """One line for the run's log: which tag scheme was chosen and why."""

    @property
    def main_metric(self) -> str:
        return "token_accuracy" if self.scheme == "plain" else "entity_f1"

    @classmethod
    def from_config(cls, config: Any, tables: dict[str, Table]) -> TokenClassificationTask:
        data = config.data
        task = cls([], data.tokens_column, data.tags_column, data.conll_tag_field, data.text_column,
                   data.max_length, data.entity_eval_mode == "strict", scheme="plain")  # fmt: skip
        raw = task.sentences(tables["train"])[1]
        seen = {tag for tags in raw for tag in tags}
        detected = detect_tag_scheme(raw)
        scheme = data.tag_scheme or detected
        if scheme != "plain" and detected == "plain":
            bad = sorted(tag for tag in seen if not IOB_TAG.fullmatch(tag))
            raise SftlabError(
                f"{tables['train'].path}: data.tag_scheme {scheme} needs tags O, B-TYPE, I-TYPE, found "
                f"{', '.join(map(repr, bad[:5]))}; set data.tag_scheme: plain for per-word tags such as POS"
            )
        task.scheme = scheme
        if scheme == "plain":
            # Rare tags (a POS tag only in test) are normal for per-word tags: every split's tags get an
            # output, and one never seen in training simply scores as misses.
            others = [tag for split, table in tables.items() if split != "train" for tags in task.sentences(table)[1]
                      for tag in tags]  # fmt: skip
            task.label_names = sorted(seen | set(others))
        else:
            kinds = {split_tag(tag)[1] for tag in seen} - {""}
            # Both B- and I- of every type, so a type seen only in one-word entities can still be continued.
            names = {"O"} | {f"{prefix}-{kind}" for kind in kinds for prefix in ("B", "I")}
            task.label_names = sorted(names, key=_tag_key)
        how = "set by data.tag_scheme" if data.tag_scheme else "detected; set data.tag_scheme to choose"
        metrics = "token accuracy, per-tag P/R/F1" if scheme == "plain" else "entity P/R/F1"
        examples = ", ".join(sorted(seen)[:6]) + (", ..." if len(seen) > 6 else "")
        task.setup_note = (
            f"tags: {scheme} ({how}), {len(seen)} tags in train ({examples}); metrics: {metrics}"
        )
        for split, table in tables.items():
            if split != "train":
                task.encode_labels(table)
        return task

    @classmethod
    def from_saved(cls, model_dir: Path, config: Any) -> tuple[TokenClassificationTask, Any]:
        from transformers import AutoModelForTokenClassification

        model = AutoModelForTokenClassification.from_pretrained(model_dir)
        names = [model.config.id2label[i] for i in range(len(model.config.id2label))]
        data = config.data
        # The scheme a run trained with is saved in its config; runs from before tag_scheme were entity runs.
        scheme = data.tag_scheme or getattr(model.config, "sftlab_tag_scheme", None) or "iob2"
        return cls(names, data.tokens_column, data.tags_column, data.conll_tag_field, data.text_column,
                   data.max_length, data.entity_eval_mode == "strict", scheme), model  # fmt: skip

    @property
    def input_column(self) -> str:
        """Raw text for `predict` (rows with a `tokens` list are accepted too)."""
        return self.text_column

    @property
    def label2id(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.label_names)}

    def words(self, table: Table, index: int) -> list[str]:
        row = table.rows[index]
        if self.tokens_column not in row:
            raise SftlabError(
                f"{table.where(index)}: missing column '{self.tokens_column}' (a list of words)"
            )
        words = row[self.tokens_column]
        if not isinstance(words, list) or not words:
            raise SftlabError(
                f"{table.where(index)}: '{self.tokens_column}' must be a non-empty list of words"
            )
        for word in words:
            if not isinstance(word, str) or not word.strip() or any(ch.isspace() for ch in word):
                raise SftlabError(
                    f"{table.where(index)}: '{self.tokens_column}' holds {word!r}; each word must be non-empty text without spaces"
                )
        return words

    def sentences(self, table: Table) -> tuple[list[list[str]], list[list[str]]]:
        """(words, tags) of every row, entity tags as IOB2; CoNLL rows take their tags from column
        `conll_tag_field` (a column other than the last is taken from `fields` even when rows have tags)."""
        all_words, all_tags = [], []
        for index, row in enumerate(table.rows):
            words = self.words(table, index)
            if self.tags_column in row and (self.conll_tag_field == -1 or "fields" not in row):
                tags = row[self.tags_column]
            elif "fields" in row:
                fields = row["fields"]
                if not -len(fields) <= self.conll_tag_field < len(fields) or self.conll_tag_field in (
                    0,
                    -len(fields),
                ):
                    raise SftlabError(
                        f"{table.where(index)}: data.conll_tag_field {self.conll_tag_field} is not a tag column "
                        f"(the file has {len(fields)} columns; column 0 holds the words)"
                    )
                tags = fields[self.conll_tag_field]
            else:
                raise SftlabError(
                    f"{table.where(index)}: missing column '{self.tags_column}' (one tag per word)"
                )
            if (
                not isinstance(tags, list)
                or len(tags) != len(words)
                or not all(isinstance(t, str) for t in tags)
            ):
                raise SftlabError(
                    f"{table.where(index)}: '{self.tags_column}' must be a list of {len(words)} tags, one per word"
                )
            tags = [tag.strip() for tag in tags]
            all_words.append(words)
            all_tags.append(tags if self.scheme == "plain" else iob1_to_iob2(tags))
        return all_words, all_tags

    def encode_labels(self, table: Table) -> list[list[int]]:
        """Tag ids per word; a tag the model does not know is an error naming the row."""
        label2id = self.label2id
        ids = []
        for index, tags in enumerate(self.sentences(table)[1]):
            unknown = [tag for tag in tags if tag not in label2id]
            if unknown:
                raise SftlabError(
                    f"{table.where(index)}: tag {unknown[0]!r} is not one of the training tags ({', '.join(self.label_names)})"
                )
            ids.append([label2id[tag] for tag in tags])
        return ids

    def load_model(self, location: str, config: Any) -> Any:
        from sftlab.models import load_pretrained_with_head

        model = load_pretrained_with_head(
            "AutoModelForTokenClassification", location, config.model, config.trust_remote_code,
            num_labels=len(self.label_names), id2label=dict(enumerate(self.label_names)), label2id=self.label2id,
        )  # fmt: skip
        model.config.sftlab_tag_scheme = self.scheme  # saved with the model: predict reads the same scheme
        return model

    def encode_words(self, tokenizer: Any, sentences: list[list[str]]) -> list[dict[str, Any]]:
        """Token ids per sentence and where each word's first sub-token sits (-1: truncated or no tokens).

        Between words written without a space (Chinese characters) a SentencePiece tokenizer's lone
        word-start token is left out (see `sftlab.data.spaceless`), then the sentence is truncated."""
        marker = word_start_marker(tokenizer)
        if marker is None or not any(
            joins(a, b) for words in sentences for a, b in zip(words, words[1:], strict=False)
        ):
            encoded = tokenizer(
                sentences, is_split_into_words=True, truncation=True, max_length=self.max_length
            )
            rows = [(encoded["input_ids"][row], encoded.word_ids(row), encoded.get("token_type_ids", [None] * len(sentences))[row])
                    for row in range(len(sentences))]  # fmt: skip
        else:
            encoded = tokenizer(sentences, is_split_into_words=True, verbose=False)  # truncated below
            rows = [
                self._without_markers(tokenizer, encoded, row, words, marker)
                for row, words in enumerate(sentences)
            ]
        examples = []
        for (input_ids, word_ids, token_type_ids), words in zip(rows, sentences, strict=True):
            first = [-1] * len(words)
            for position, word in enumerate(word_ids):
                if word is not None and first[word] == -1:
                    first[word] = position
            example = {"input_ids": input_ids, "word_starts": first}
            if token_type_ids is not None:
                example["token_type_ids"] = token_type_ids
            examples.append(example)
        return examples

    def _without_markers(self, tokenizer: Any, encoded: Any, row: int, words: list[str], marker: int) -> tuple[list[int], list[int | None], list[int] | None]:  # fmt: skip
        """One sentence's (ids, word ids, token type ids) with no word-start marker on the words joined to
        the one before (a lone `▁` is left out, `▁中` becomes `中` when the vocabulary has it), then
        truncated to max_length (its closing special tokens kept, as the tokenizer truncates)."""
        ids, word_ids = list(encoded["input_ids"][row]), encoded.word_ids(row)
        marker_text = tokenizer.convert_ids_to_tokens(marker)
        pieces = tokenizer.convert_ids_to_tokens(ids)
        word_ids = list(word_ids)
        keep = []
        for position, (token, word) in enumerate(zip(ids, word_ids, strict=True)):
            first = word is not None and (position == 0 or word_ids[position - 1] != word)
            lone = token == marker and position + 1 < len(ids) and word_ids[position + 1] == word
            if (
                first
                and lone
                and is_wide(words[word][0])
                and not (word > 0 and joins(words[word - 1], words[word]))
            ):
                word_ids[position] = None  # the sentence's opening `▁` stays, the character carries the tag
            elif first and word > 0 and joins(words[word - 1], words[word]):
                if lone:
                    continue
                piece = pieces[position]
                if piece.startswith(marker_text) and len(piece) > len(marker_text):
                    bare = tokenizer.convert_tokens_to_ids(piece[len(marker_text) :])
                    if bare is not None and bare != tokenizer.unk_token_id:
                        ids[position] = bare
            keep.append(position)
        if len(keep) > self.max_length:
            tail = 0
            while tail < len(keep) and word_ids[keep[len(keep) - 1 - tail]] is None:
                tail += 1
            keep = keep[: self.max_length - tail] + keep[len(keep) - tail :]
        types = encoded["token_type_ids"][row] if "token_type_ids" in encoded else None
        return (
            [ids[i] for i in keep],
            [word_ids[i] for i in keep],
            [types[i] for i in keep] if types else None,
        )

    def encode(self, tokenizer: Any, table: Table) -> list[dict[str, Any]]:
        words, _ = self.sentences(table)
        examples = self.encode_words(tokenizer, words)
        for example, tag_ids in zip(examples, self.encode_labels(table), strict=True):
            labels = [IGNORE] * len(example["input_ids"])
            for position, tag_id in zip(example["word_starts"], tag_ids, strict=True):
                if position >= 0:
                    labels[position] = tag_id
            example["labels"] = labels
            example["word_tags"] = tag_ids
        return examples

    def target_count(self, example: dict[str, Any]) -> int:
        """Loss terms: the labelled (first) sub-tokens."""
        return sum(label != IGNORE for label in example["labels"])

    def collate(self, examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
        from sftlab.tasks.classification import pad_batch

        batch = pad_batch([{k: v for k, v in e.items() if k != "labels"} for e in examples], pad_token_id)
        if "labels" in examples[0]:
            labels = torch.full(batch["input_ids"].shape, IGNORE, dtype=torch.long)
            for row, example in enumerate(examples):
                labels[row, : len(example["labels"])] = torch.tensor(example["labels"])
            batch["labels"] = labels
        return batch

    def forward_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Cross-entropy summed over labelled sub-tokens (the loop divides by their real count)."""
        labels = batch["labels"]
        logits = model(**{key: value for key, value in batch.items() if key != "labels"}).logits
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum"
        )
        return loss, int((labels != IGNORE).sum())

    @torch.inference_mode()
    def word_probabilities(self, model: Any, examples: list[dict[str, Any]], pad_token_id: int, batch_size: int,
                           device: torch.device, autocast: Any) -> list[torch.Tensor]:  # fmt: skip
        """Per example, (words x tags) probabilities at each word's first sub-token (uniform where truncated)."""
        model.eval()
        lengths = [len(example["input_ids"]) for example in examples]
        out: list[torch.Tensor] = [torch.empty(0)] * len(examples)
        for batch_indices in inference_batches(lengths, batch_size):
            batch = self.collate([{k: v for k, v in examples[i].items() if k != "labels"} for i in batch_indices],
                                 pad_token_id)  # fmt: skip
            with autocast():
                logits = model(**{key: value.to(device) for key, value in batch.items()}).logits
            probabilities = logits.float().softmax(-1).cpu()
            for row, index in enumerate(batch_indices):
                starts = torch.tensor(examples[index]["word_starts"])
                words = probabilities[row, starts.clamp(min=0)]
                words[starts < 0] = 1.0 / len(self.label_names)
                out[index] = words
        return out

    def word_tags(self, probabilities: torch.Tensor, starts: list[int]) -> list[str]:
        # A truncated word (start -1) was never seen: O for entity tags, the first tag for plain tags.
        ids = probabilities.argmax(-1).tolist()
        unseen = self.label_names[0] if self.scheme == "plain" else "O"
        return [self.label_names[i] if start >= 0 else unseen for i, start in zip(ids, starts, strict=True)]

    def evaluate(self, model: Any, examples: list[dict[str, Any]], pad_token_id: int, batch_size: int,
                 device: torch.device, autocast: Any) -> dict[str, Any]:  # fmt: skip
        """Entity P/R/F1 per type and overall (entity tags) or per-tag P/R/F1 (plain tags), token accuracy
        (over words), and cross-entropy per word."""
        probabilities = map_sharded(lambda part: self.word_probabilities(local_model(model), part, pad_token_id,
                                                                         batch_size, device, autocast), examples)  # fmt: skip
        true_tags, pred_tags, loss, words = [], [], 0.0, 0
        for example, word_probabilities in zip(examples, probabilities, strict=True):
            gold = example["word_tags"]
            true_tags.append([self.label_names[i] for i in gold])
            pred_tags.append(self.word_tags(word_probabilities, example["word_starts"]))
            for start, tag_id, row in zip(example["word_starts"], gold, word_probabilities, strict=True):
                if start >= 0:
                    loss -= math.log(max(float(row[tag_id]), 1e-12))
                    words += 1
        if self.scheme == "plain":
            label2id = self.label2id
            flat = classification_metrics(
                [label2id[t] for tags in true_tags for t in tags], [label2id[t] for tags in pred_tags for t in tags],
                self.label_names,
            )  # fmt: skip
            metrics = {"token_accuracy": flat["accuracy"], "tag_f1_macro": flat["f1_macro"],
                       "tag_f1_weighted": flat["f1_weighted"], "num_words": flat["num_examples"],
                       "per_tag": flat["per_class"]}  # fmt: skip
        else:
            metrics = entity_metrics(true_tags, pred_tags, strict=self.strict)
        metrics["loss"] = loss / max(1, words)
        metrics["num_examples"] = len(examples)
        return metrics

    def predict(self, model: Any, tokenizer: Any, table: Table, pad_token_id: int, batch_size: int,
                device: torch.device, autocast: Any) -> list[dict[str, Any]]:  # fmt: skip
        """Per row: the text, its words, their tags, and the entities with character offsets into the text."""
        texts, spans = [], []
        for index, row in enumerate(table.rows):
            if self.tokens_column in row:
                text, offsets = join_words(self.words(table, index))
                texts.append(text)
            elif isinstance(row.get(self.text_column), str) and row[self.text_column].strip():
                texts.append(row[self.text_column])
                pieces = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(texts[-1])
                offsets = split_words(texts[-1], [span for _, span in pieces])
            else:
                raise SftlabError(
                    f"{table.where(index)}: expected a non-empty '{self.text_column}' or a '{self.tokens_column}' list"
                )
            spans.append(offsets)
        sentences = [[text[s:e] for s, e in offsets] for text, offsets in zip(texts, spans, strict=True)]
        examples = self.encode_words(tokenizer, sentences)
        probabilities = self.word_probabilities(model, examples, pad_token_id, batch_size, device, autocast)
        predictions = []
        for text, offsets, words, example, word_probabilities in zip(
            texts, spans, sentences, examples, probabilities, strict=True
        ):
            tags = self.word_tags(word_probabilities, example["word_starts"])
            scores = word_probabilities.max(-1).values.tolist()
            entities = []
            for kind, first, last in entity_spans(tags) if self.scheme != "plain" else []:
                start, end = offsets[first][0], offsets[last][1]
                entities.append({"label": kind, "start": start, "end": end, "text": text[start:end],
                                 "score": sum(scores[first : last + 1]) / (last - first + 1)})  # fmt: skip
            prediction = {"text": text, "tokens": words, "tags": tags}
            predictions.append(prediction if self.scheme == "plain" else {**prediction, "entities": entities})
        return predictions

    def report(self, metrics: dict[str, Any], title: str) -> str:
        if self.scheme == "plain":
            lines = [title, "", f"{'tag':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
            for tag, scores in metrics["per_tag"].items():
                lines.append(f"{tag:<16}{scores['precision']:>10.4f}{scores['recall']:>10.4f}{scores['f1']:>10.4f}"
                             f"{scores['support']:>10}")  # fmt: skip
            lines += ["", f"token accuracy {metrics['token_accuracy']:.4f} over {metrics['num_words']} words, "
                          f"macro F1 {metrics['tag_f1_macro']:.4f}, loss {metrics['loss']:.4f}"]  # fmt: skip
            return "\n".join(lines)
        from sftlab.evaluation.report import ljust

        lines = [title, "", f"{'type':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
        for kind, scores in metrics["per_type"].items():
            lines.append(f"{ljust(kind, 16)}{scores['precision']:>10.4f}{scores['recall']:>10.4f}{scores['f1']:>10.4f}"
                         f"{scores['support']:>10}")  # fmt: skip
        lines.append(f"{'overall (micro)':<16}{metrics['entity_precision']:>10.4f}"
                     f"{metrics['entity_recall']:>10.4f}{metrics['entity_f1']:>10.4f}{metrics['num_entities']:>10}")  # fmt: skip
        lines += ["", f"entity F1 ({metrics['mode']} mode) {metrics['entity_f1']:.4f}, macro F1 {metrics['entity_f1_macro']:.4f}, "
                      f"token accuracy {metrics['token_accuracy']:.4f}, loss {metrics['loss']:.4f}"]  # fmt: skip
        return "\n".join(lines)

    def epoch_summary(self, metrics: dict[str, Any]) -> str:
        if self.scheme == "plain":
            return f"token accuracy {metrics['token_accuracy']:.4f}, macro f1 {metrics['tag_f1_macro']:.4f}"
        return f"entity f1 {metrics['entity_f1']:.4f}, token accuracy {metrics['token_accuracy']:.4f}"
