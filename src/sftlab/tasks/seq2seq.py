"""Sequence to sequence (translation, summarization): an encoder-decoder generates the target text.

Any Hugging Face encoder-decoder (`AutoModelForSeq2SeqLM`: T5, BART, Marian) works as is. Since no such
checkpoint is available offline, an encoder-decoder can also be warm-started from encoder checkpoints
(BERT2BERT, Rothe et al. 2020): `model: {encoder: minilm, decoder: minilm}` copies the encoder's weights
into both halves; only the decoder's cross-attention starts from scratch.

Training is teacher forcing: the decoder reads the target shifted right by one and is scored on every
target token; padding positions hold -100 and never count in the loss. Evaluation and predict generate
(greedy or beam search) and score with sacreBLEU BLEU and chrF, and ROUGE.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sftlab.data.batching import inference_batches, padded_length
from sftlab.data.readers import Table, require_columns, require_texts
from sftlab.evaluation.generation_metrics import generation_metrics

IGNORE_INDEX = -100


@dataclass
class Seq2SeqTask:
    """Column names, lengths and generation settings; the model carries everything else."""

    source_column: str = "source"
    target_column: str = "target"
    source_prefix: str = ""
    max_length: int = 128
    max_target_length: int = 128
    generation: dict[str, Any] = field(default_factory=dict)
    decoder_start_token_id: int | None = None
    """Dropped from the front of tokenized targets: BERT-style tokenizers start every text with [CLS],
    which is also the decoder's start token, so the model must not learn to predict it."""
    tokenizer: Any = field(default=None, repr=False)
    """Remembered by `encode`, so `evaluate` (whose protocol signature has no tokenizer) can decode."""
    target_logits_only: bool = True
    """The output layer computes real target tokens only (`train.target_logits_only`; exact)."""
    name: str = "seq2seq"
    main_metric: str = "bleu"

    @classmethod
    def from_config(cls, config: Any, tables: dict[str, Table]) -> Seq2SeqTask:
        """Check that every split has non-empty source and target texts (errors name the line)."""
        data = config.data
        for table in tables.values():
            require_columns(table, [data.source_column, data.target_column])
            require_texts(table, data.source_column)
            require_texts(table, data.target_column)
        start = None
        if isinstance(config.model, str):  # a ready encoder-decoder names its own start token (BART: </s>)
            from sftlab.models import decoder_start_token_id, locate_model

            start = decoder_start_token_id(locate_model(config.model), config.model, config.trust_remote_code)
        return cls.from_settings(config, start)

    @classmethod
    def from_settings(cls, config: Any, decoder_start_token_id: int | None = None) -> Seq2SeqTask:
        data = config.data
        return cls(
            source_column=data.source_column,
            target_column=data.target_column,
            source_prefix=data.source_prefix,
            max_length=data.max_length,
            max_target_length=data.max_target_length or data.max_length,
            generation=config.generation.model_dump(),
            decoder_start_token_id=decoder_start_token_id,
            target_logits_only=config.train.target_logits_only,
        )

    @classmethod
    def from_saved(cls, model_dir: Path, config: Any) -> tuple[Seq2SeqTask, Any]:
        """The task and the fine-tuned encoder-decoder from a finished run's model/ folder."""
        from transformers import AutoModelForSeq2SeqLM

        model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
        return cls.from_settings(config, model.config.decoder_start_token_id), model

    @property
    def input_column(self) -> str:
        return self.source_column

    def load_model(self, location: str, config: Any) -> Any:
        from sftlab.models import load_encoder_decoder, load_seq2seq

        if isinstance(config.model, str):
            model = load_seq2seq(location, config.model, config.trust_remote_code)
        else:
            model = load_encoder_decoder(config.model.encoder, config.model.decoder or config.model.encoder)
        self.decoder_start_token_id = model.config.decoder_start_token_id
        return model

    def encode(self, tokenizer: Any, table: Table, with_targets: bool = True) -> list[dict[str, Any]]:
        self.tokenizer = tokenizer
        require_columns(table, [self.source_column])
        sources = [self.source_prefix + text for text in require_texts(table, self.source_column)]
        encoded = tokenizer(sources, truncation=True, max_length=self.max_length)
        examples = [{"input_ids": ids} for ids in encoded["input_ids"]]
        if not with_targets:
            return examples
        require_columns(table, [self.target_column])
        targets = require_texts(table, self.target_column)
        labels = tokenizer(text_target=targets, truncation=True, max_length=self.max_target_length)[
            "input_ids"
        ]
        start = self._decoder_start(tokenizer)
        for example, ids, text in zip(examples, labels, targets, strict=True):
            example["labels"] = ids[1:] if start is not None and ids[:1] == [start] else ids
            example["target_text"] = text
        return examples

    def _decoder_start(self, tokenizer: Any) -> int | None:
        # A warm-started BERT2BERT is built after encoding; its decoder will start with [CLS].
        if self.decoder_start_token_id is not None:
            return self.decoder_start_token_id
        return tokenizer.cls_token_id

    def target_count(self, example: dict[str, Any]) -> int:
        """Loss terms of one example: its target tokens (end-of-sequence included)."""
        return len(example["labels"])

    def collate(self, examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
        """Sources padded with the pad token, targets with -100 (ignored by the loss), both to a multiple of
        `batching.PAD_MULTIPLE`: fewer shapes for the matrix library's kernel cache and malloc to keep."""
        batch = {
            "input_ids": _pad([e["input_ids"] for e in examples], pad_token_id),
            "attention_mask": _pad([[1] * len(e["input_ids"]) for e in examples], 0),
        }
        if "labels" in examples[0]:
            batch["labels"] = _pad([e["labels"] for e in examples], IGNORE_INDEX)
        return batch

    def forward_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Token cross-entropy summed over real target tokens, and their count (the loop normalizes)."""
        from sftlab.speed.chunked_loss import active_chunk_tokens, linear_cross_entropy
        from sftlab.speed.target_logits import (
            CHUNKED_SEQ2SEQ,
            supports_target_logits,
            target_logits_only,
            with_spare_rows,
        )

        labels = batch["labels"]
        unwrapped = getattr(model, "module", model)  # DDP wraps the model; the shift lives on the model
        decoder_input_ids = unwrapped.prepare_decoder_input_ids_from_labels(labels=labels)
        targets = labels != IGNORE_INDEX
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                  "decoder_input_ids": decoder_input_ids}  # fmt: skip
        compact = self.target_logits_only and supports_target_logits(unwrapped)
        chunk = active_chunk_tokens() if compact and type(unwrapped).__name__ in CHUNKED_SEQ2SEQ else 0
        if chunk:  # training's chunked loss: the real targets' hidden rows, logits a chunk at a time
            with target_logits_only(unwrapped, targets, hidden_only=True) as layer:
                hidden = model(**inputs).logits
            loss = linear_cross_entropy(hidden, layer.weight, labels[targets], chunk, bias=layer.bias)
            return loss, int(targets.sum())
        # The compact rows: the real targets plus a few padding positions (label -100, ignored below), so
        # the output layer meets a few dozen row counts rather than a new one at every step.
        rows = with_spare_rows(targets) if compact else targets
        with target_logits_only(unwrapped, rows) if compact else contextlib.nullcontext():
            logits = model(**inputs).logits
        # Compact logits are the real targets' rows already; else the whole grid, padding ignored.
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            labels[rows] if compact else labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        return loss, int(targets.sum())

    @torch.inference_mode()
    def generate(self, model: Any, tokenizer: Any, examples: list[dict[str, Any]], pad_token_id: int,
                 batch_size: int, device: torch.device, autocast: Any) -> list[str]:  # fmt: skip
        """Generated texts in input order, from length-sorted batches."""
        model.eval()
        unwrapped = getattr(model, "module", model)
        # Only the settings that apply: transformers warns about a length penalty without beams.
        settings = dict(self.generation)
        if settings.get("no_repeat_ngram_size") == 0:
            settings.pop("no_repeat_ngram_size")
        if settings.get("num_beams", 1) == 1:
            settings.pop("length_penalty", None)
        outputs: list[str] = [""] * len(examples)
        for indices in inference_batches([len(e["input_ids"]) for e in examples], batch_size):
            batch = self.collate([{"input_ids": examples[i]["input_ids"]} for i in indices], pad_token_id)
            with autocast():
                generated = unwrapped.generate(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                    do_sample=False,
                    **settings,
                )
            texts = tokenizer.batch_decode(
                generated, skip_special_tokens=True, clean_up_tokenization_spaces=True
            )
            for index, text in zip(indices, texts, strict=True):
                outputs[index] = text.strip()
        return outputs

    @torch.inference_mode()
    def loss(self, model: Any, examples: list[dict[str, Any]], pad_token_id: int, batch_size: int,
             device: torch.device, autocast: Any) -> float:  # fmt: skip
        """Mean teacher-forced cross-entropy per target token."""
        model.eval()
        total, count = 0.0, 0
        for indices in inference_batches([len(e["input_ids"]) for e in examples], batch_size):
            batch = self.collate([examples[i] for i in indices], pad_token_id)
            with autocast():
                loss_sum, terms = self.forward_loss(model, {k: v.to(device) for k, v in batch.items()})
            total += float(loss_sum)
            count += terms
        return total / max(1, count)

    def evaluate(self, model: Any, examples: list[dict[str, Any]], pad_token_id: int, batch_size: int,
                 device: torch.device, autocast: Any) -> dict[str, Any]:  # fmt: skip
        """BLEU, chrF and ROUGE of generated outputs against the targets, plus the teacher-forced loss."""
        hypotheses = self.generate(
            model, self.tokenizer, examples, pad_token_id, batch_size, device, autocast
        )
        metrics = generation_metrics(hypotheses, [e["target_text"] for e in examples])
        metrics["loss"] = self.loss(model, examples, pad_token_id, batch_size, device, autocast)
        metrics["samples"] = [
            {"target": e["target_text"], "generated": h}
            for e, h in zip(examples[:3], hypotheses[:3], strict=True)
        ]
        return metrics

    def predict(self, model: Any, tokenizer: Any, table: Table, pad_token_id: int, batch_size: int,
                device: torch.device, autocast: Any) -> list[dict[str, Any]]:  # fmt: skip
        """{"generated_text"} per row (the key transformers' generation pipelines use)."""
        examples = self.encode(tokenizer, table, with_targets=False)
        texts = self.generate(model, tokenizer, examples, pad_token_id, batch_size, device, autocast)
        return [{"generated_text": text} for text in texts]

    def report(self, metrics: dict[str, Any], title: str) -> str:
        lines = [title, ""]
        for key in ("bleu", "bleu_uncased", "chrf", "rouge1", "rouge2", "rougeL"):
            lines.append(f"{key:<14}{metrics[key]:8.2f}")
        lines.append(f"{'loss':<14}{metrics['loss']:8.4f}")
        lines.append(f"{'examples':<14}{metrics['num_examples']:8d}")
        for sample in metrics.get("samples", []):
            lines += ["", f"  target:    {sample['target']}", f"  generated: {sample['generated']}"]
        return "\n".join(lines)

    def epoch_summary(self, metrics: dict[str, Any]) -> str:
        return f"bleu {metrics['bleu']:.2f}, chrf {metrics['chrf']:.2f}"


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    out = torch.full((len(rows), padded_length(max(len(row) for row in rows))), value, dtype=torch.long)
    for index, row in enumerate(rows):
        out[index, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out
