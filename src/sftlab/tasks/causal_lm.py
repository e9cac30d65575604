"""Instruction SFT of a causal language model: chat-template rendering, loss on the answers, packing, LoRA.

Rows are conversations (`messages`, `prompt`/`completion` or `instruction`/`input`/`output`, see
`sftlab.data.chat`); the loss is the cross-entropy summed over the trained tokens (answers, each ending in
EOS), and `target_count` is how many there are, so the shared loop normalizes by real tokens across
micro-batches and processes. Evaluation reports loss and perplexity on the answers, and exact match and
token F1 of generated answers against the references.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sftlab.data.batching import inference_batches
from sftlab.data.chat import conversation, encode_conversation, ensure_chat_template, render, row_format
from sftlab.data.packing import packed_lm_batch, padded_lm_batch
from sftlab.data.readers import Table
from sftlab.errors import SftlabError
from sftlab.evaluation.answers import answer_metrics
from sftlab.evaluation.generation_metrics import bleu_chrf
from sftlab.generation import generate_answers
from sftlab.speed.chunked_loss import causal_lm_loss, chunked


def packing_is_exact(model: Any) -> bool:
    """Packed rows (restarting positions, no attention mask) keep attention inside each example: true where
    the model builds its mask with transformers' `create_causal_mask`, which turns restarting positions into
    a block-diagonal mask (SDPA, eager) or varlen flash attention (tested on SmolLM2 with SDPA and eager)."""
    import sys

    module = sys.modules.get(type(model).__module__)
    return module is not None and hasattr(module, "create_causal_mask")


@dataclass
class CausalLMTask:
    max_length: int = 512
    completion_only_loss: bool = True
    packing: bool | str = "auto"
    """True, False, or auto (decided by `load_model`: on where packed rows are exact)."""
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    eval_samples: int = 100
    seed: int = 42
    loss_chunk_tokens: int = 0
    """Evaluation's loss in chunks of this many tokens (0: from the full logits), as the lever trains."""
    tokenizer: Any = field(default=None, repr=False)
    """Set by `encode` (or `from_saved`); evaluation generates answers with it."""
    name: str = "causal_lm"
    main_metric: str = "loss"

    @classmethod
    def _from(cls, config: Any) -> CausalLMTask:
        data, generate = config.data, config.generate
        return cls(
            data.max_length, data.completion_only_loss, data.packing, generate.max_new_tokens,
            generate.temperature, generate.top_p, generate.eval_samples, config.train.seed,
            config.train.loss_chunk_tokens if config.train.chunked_loss else 0,
        )  # fmt: skip

    @classmethod
    def from_config(cls, config: Any, tables: dict[str, Table]) -> CausalLMTask:
        """Every split must hold one of the instruction formats (checked here, before any model loads)."""
        for table in tables.values():
            try:
                row_format(table.column_names())
            except SftlabError as error:
                raise SftlabError(f"{table.path}: {error}") from None
        return cls._from(config)

    @classmethod
    def from_saved(cls, model_dir: Path, config: Any) -> tuple[CausalLMTask, Any]:
        """The task and the fine-tuned model; an adapter run is loaded onto its pretrained base."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from sftlab.adapters import is_adapter_dir, load_adapter
        from sftlab.models import locate_model

        task = cls._from(config)
        task.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if is_adapter_dir(model_dir):
            base = AutoModelForCausalLM.from_pretrained(locate_model(config.model), dtype=torch.float32)
            return task, load_adapter(base, model_dir)
        return task, AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    @property
    def input_column(self) -> str:
        return "prompt"

    def load_model(self, location: str, config: Any) -> Any:
        from transformers import AutoModelForCausalLM

        from sftlab.adapters import apply_adapter

        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=torch.float32, trust_remote_code=config.trust_remote_code
        )
        if self.packing == "auto":
            self.packing = packing_is_exact(model)
        return apply_adapter(model, config.adapter, "CAUSAL_LM")

    def encode(self, tokenizer: Any, table: Table) -> list[dict[str, Any]]:
        """input_ids, labels (-100 on untrained tokens), the prompt's ids and the reference answers."""
        ensure_chat_template(tokenizer)
        self.tokenizer = tokenizer
        kind = row_format(table.column_names())
        examples = []
        for index, row in enumerate(table.rows):
            where = table.where(index)
            messages = conversation(row, kind, where, with_answer=True)
            example = encode_conversation(
                tokenizer, messages, self.completion_only_loss, self.max_length, where
            )
            answers = row.get("answers")
            example["references"] = (
                [str(a) for a in answers]
                if isinstance(answers, list) and answers
                else [messages[-1]["content"]]
            )
            examples.append(example)
        return examples

    def target_count(self, example: dict[str, Any]) -> int:
        """Trained tokens in the example (answer tokens and their EOS; the first token is never predicted)."""
        return sum(1 for label in example["labels"] if label != -100)

    def collate(self, examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
        if self.packing is True:
            return packed_lm_batch(examples, pad_token_id, self.max_length)
        return padded_lm_batch(examples, pad_token_id)

    def forward_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Cross-entropy summed over trained tokens; logits are computed only where a target follows."""
        targets = batch["labels"][:, 1:]
        trained = targets != -100
        # Positions whose next token is trained in any row: the vocabulary projection (49k x 576 for
        # SmolLM2) runs only there, which skips most of its cost and memory on prompt tokens.
        keep = trained.any(dim=0).nonzero().squeeze(-1)
        inputs = {"input_ids": batch["input_ids"], "use_cache": False, "logits_to_keep": keep}
        if "position_ids" in batch:
            inputs["position_ids"] = batch["position_ids"]  # packed: no mask, so attention is per example
        else:
            inputs["attention_mask"] = batch["attention_mask"]
        # In training the chunked-loss lever (`sftlab.speed.chunked_loss`) computes the output layer and
        # cross-entropy a chunk of tokens at a time; evaluation chunks with the same size.
        return causal_lm_loss(model, inputs, targets[:, keep]), int(trained.sum())

    @torch.inference_mode()
    def answer_loss(self, model: Any, examples: list[dict[str, Any]], batch_size: int, device: torch.device,
                    autocast: Any) -> tuple[float, int]:  # fmt: skip
        """Summed loss and trained-token count over the examples (padded batches, no packing)."""
        model.eval()
        total, count = 0.0, 0
        for indices in inference_batches([len(e["input_ids"]) for e in examples], batch_size):
            batch = padded_lm_batch([examples[i] for i in indices], 0)
            with autocast(), chunked(self.loss_chunk_tokens):
                loss, terms = self.forward_loss(model, {k: v.to(device) for k, v in batch.items()})
            total += float(loss)
            count += terms
        return total, count

    def evaluate(self, model: Any, examples: list[dict[str, Any]], pad_token_id: int, batch_size: int,
                 device: torch.device, autocast: Any) -> dict[str, Any]:  # fmt: skip
        """Mean loss and perplexity per answer token; exact match, token F1, BLEU and chrF of generated answers on the
        first `generate.eval_samples` examples (greedy unless a temperature is set)."""
        total, count = self.answer_loss(model, examples, batch_size, device, autocast)
        loss = total / max(1, count)
        metrics: dict[str, Any] = {
            "loss": loss, "perplexity": math.exp(min(loss, 50.0)), "num_examples": len(examples), "answer_tokens": count,
        }  # fmt: skip
        sample = examples[: self.eval_samples]
        if sample:
            answers = self.generate([e["prompt_ids"] for e in sample], model, device, autocast, batch_size)
            metrics.update(answer_metrics(answers, [e["references"] for e in sample]))
            metrics.update(bleu_chrf(answers, [e["references"][0] for e in sample]))
            metrics["generated_examples"] = len(sample)
            metrics["samples"] = [
                {"reference": e["references"][0], "answer": a}
                for e, a in zip(sample[:5], answers[:5], strict=True)
            ]
        return metrics

    def generate(self, prompts: list[list[int]], model: Any, device: torch.device, autocast: Any,
                 batch_size: int) -> list[str]:  # fmt: skip
        return generate_answers(
            model, self.tokenizer, prompts, device, autocast, batch_size, self.max_new_tokens,
            self.temperature, self.top_p, self.seed,
        )  # fmt: skip

    def prompt_ids(self, tokenizer: Any, table: Table) -> list[list[int]]:
        """Each row's conversation so far, rendered with the generation prompt and tokenized."""
        ensure_chat_template(tokenizer)
        kind = row_format(table.column_names())
        texts = [
            render(
                tokenizer,
                conversation(row, kind, table.where(i), with_answer=False),
                add_generation_prompt=True,
            )
            for i, row in enumerate(table.rows)
        ]
        return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]

    def predict(self, model: Any, tokenizer: Any, table: Table, pad_token_id: int, batch_size: int,
                device: torch.device, autocast: Any) -> list[dict[str, Any]]:  # fmt: skip
        """{"answer"} per row: the generated reply to the row's prompt (or conversation)."""
        self.tokenizer = tokenizer
        answers = self.generate(self.prompt_ids(tokenizer, table), model, device, autocast, batch_size)
        return [{"answer": answer} for answer in answers]

    def report(self, metrics: dict[str, Any], title: str) -> str:
        lines = [
            title,
            "",
            f"loss (per answer token)  {metrics['loss']:.4f}",
            f"perplexity               {metrics['perplexity']:.3f}",
        ]
        if "exact_match" in metrics:
            lines += [
                f"exact match              {metrics['exact_match']:.4f}  (greedy answers to {metrics['generated_examples']} prompts)",
                f"token F1                 {metrics['token_f1']:.4f}",
            ]
            if "bleu" in metrics:
                lines += [
                    f"BLEU / chrF              {metrics['bleu']:.2f} / {metrics['chrf']:.2f}  (sacreBLEU, first reference)"
                ]
            lines += ["", "examples (reference -> generated):"]
            lines += [f"  {s['reference']!r} -> {s['answer']!r}" for s in metrics.get("samples", [])]
        return "\n".join(lines)

    def epoch_summary(self, metrics: dict[str, Any]) -> str:
        text = f"perplexity {metrics['perplexity']:.3f}"
        if "exact_match" in metrics:
            text += f", exact_match {metrics['exact_match']:.4f}, token_f1 {metrics['token_f1']:.4f}"
        if "bleu" in metrics:
            text += f", bleu {metrics['bleu']:.2f}, chrf {metrics['chrf']:.2f}"
        return text
