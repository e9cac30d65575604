"""The contrastive stage of few-shot classification (SetFit-style): the encoder learns from pairs.

Each training item is a pair of encoded texts and whether they share a label. Both texts of every pair
go through the encoder in one batch; the loss is SetFit's CosineSimilarityLoss, (cos(u, v) - y)^2 with
y = 1 for a same-label pair and 0 otherwise, summed over the pairs (the engine divides by their count).

The embedding is the sequence classifier's own pooled output (BERT: the pooler on position 0, which
with `few_shot.pooling: mean` reads the mean of the tokens, `sftlab.tasks.pooling`), so the head
trained next reads exactly the space the pairs shaped, and the saved model stays an ordinary
`AutoModelForSequenceClassification`. Pairs come from `sftlab.data.pairs.PairSampler`, on the fly:
`PairExamples` is a sequence whose item k is computed when the engine asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sftlab.data.pairs import PairSampler
from sftlab.tasks.classification import pad_batch


class PairExamples(Sequence[dict[str, Any]]):
    """`count` pairs of `examples` (encoded texts with labels), item k being `sampler.pair(start + k)`:
    a view, never a list of pairs."""

    def __init__(self, examples: list[dict[str, Any]], sampler: PairSampler, start: int, count: int) -> None:
        self.examples, self.sampler, self.start, self.count = examples, sampler, start, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if not 0 <= index < self.count:
            raise IndexError(index)
        pair = self.sampler.pair(self.start + index)
        first, second = self.examples[pair.first], self.examples[pair.second]
        return {
            "first": first,
            "second": second,
            "same": 1.0 if pair.same else 0.0,
            # What the engine reads from a training example: the tokens it holds (for the used embedding rows).
            "input_ids": first["input_ids"] + second["input_ids"],
        }


def pooled_embedding(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The pooled representation the sequence classifier's head reads (BERT-style: the pooler on [CLS])."""
    outputs = model.base_model(**batch)
    pooled = getattr(outputs, "pooler_output", None)
    return pooled if pooled is not None else outputs.last_hidden_state[:, 0]


@dataclass
class ContrastivePairTask:
    """Collate and loss for pairs; evaluation is the pair loss on held-out pairs."""

    name: str = "contrastive"
    main_metric: str = "loss"

    def target_count(self, example: dict[str, Any]) -> int:
        return 1

    def collate(self, examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
        """Both texts of every pair in one padded batch: rows 0..B-1 the first texts, B..2B-1 the second."""
        texts = [{k: v for k, v in e["first"].items() if k != "labels"} for e in examples]
        texts += [{k: v for k, v in e["second"].items() if k != "labels"} for e in examples]
        batch = pad_batch(texts, pad_token_id)
        batch["same"] = torch.tensor([e["same"] for e in examples], dtype=torch.float32)
        return batch

    def forward_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        inputs = {key: value for key, value in batch.items() if key != "same"}
        embeddings = pooled_embedding(model, inputs).float()
        first, second = embeddings.chunk(2)
        similarity = F.cosine_similarity(first, second, dim=-1)
        return ((similarity - batch["same"]) ** 2).sum(), int(batch["same"].numel())

    @torch.inference_mode()
    def evaluate(self, model: Any, examples: Sequence[dict[str, Any]], pad_token_id: int, batch_size: int,
                 device: torch.device, autocast: Any) -> dict[str, Any]:  # fmt: skip
        """The mean pair loss, and how often a pair's similarity is on the right side of 0.5."""
        model.eval()
        total, right = 0.0, 0
        for start in range(0, len(examples), batch_size):
            chunk = [examples[i] for i in range(start, min(start + batch_size, len(examples)))]
            batch = {key: value.to(device) for key, value in self.collate(chunk, pad_token_id).items()}
            with autocast():
                inputs = {key: value for key, value in batch.items() if key != "same"}
                first, second = pooled_embedding(model, inputs).float().chunk(2)
            similarity = F.cosine_similarity(first, second, dim=-1)
            total += float(((similarity - batch["same"]) ** 2).sum())
            right += int(((similarity > 0.5).float() == batch["same"]).sum())
        count = max(1, len(examples))
        return {"loss": total / count, "pair_accuracy": right / count, "num_examples": len(examples)}

    def epoch_summary(self, metrics: dict[str, Any]) -> str:
        return f"pair accuracy {metrics['pair_accuracy']:.4f}"
