"""One process of the sharded-checkpoint test (tests/test_sharded_checkpoints.py), started twice by torchrun.

The real MiniLM with a classification head is sharded with FSDP2 (`fully_shard`, every parameter a DTensor
holding half of each tensor) over gloo on the CPU, trained two AdamW steps on real TREC questions, saved
with sftlab's checkpoint code, trained on, and then a freshly built and sharded model is resumed from the
checkpoint. accelerate refuses FSDP on the CPU, so the model is sharded here with torch's own call; the
checkpoint code under test is the one the engine calls under `accelerate launch --use_fsdp`.
Usage: torchrun --nproc_per_node 2 sharded_checkpoint_worker.py OUTPUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import trec_texts
from sftlab.adapters import save_model
from sftlab.catalog.models import resolve_model
from sftlab.checkpoints import (
    ShardedState,
    full_state_dict,
    is_sharded,
    read_state,
    restore_checkpoint,
    save_checkpoint,
)


def sharded_model(source: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)  # the same fresh head on every process and in every build
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=6)
    for layer in model.bert.encoder.layer:
        fully_shard(layer)
    fully_shard(model)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)


def whole(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Every weight and both AdamW moments, gathered whole (a collective: every process calls it)."""
    out = {f"weight/{name}": whole(p.detach()).clone() for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        for key in ("exp_avg", "exp_avg_sq"):
            out[f"{key}/{name}"] = whole(optimizer.state[p][key]).clone()
    return out


def main() -> None:
    output = Path(sys.argv[1])
    accelerator = Accelerator(cpu=True)
    source = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(source)
    texts = trec_texts("train", 24)
    batches = [tokenizer(texts[i : i + 8], padding=True, return_tensors="pt") for i in range(0, 24, 8)]
    labels = [torch.tensor([(i + j) % 6 for j in range(8)]) for i in range(0, 24, 8)]

    def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, index: int) -> None:
        loss = model(**batches[index], labels=labels[index]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model, optimizer = sharded_model(source)
    step(model, optimizer, 0)
    best = {key: value.detach().clone() for key, value in model.state_dict().items()}  # the step-1 model
    best_whole = {key: whole(value) for key, value in best.items()}
    step(model, optimizer, 1)
    saved_at_2 = snapshot(model, optimizer)
    record = {"best_step": 1, "best_value": 0.5}
    checkpoint = save_checkpoint(
        accelerator, output, 2, ShardedState(model, optimizer), None, best, record, keep_last=2
    )
    step(model, optimizer, 2)  # the uninterrupted run's third step
    uninterrupted = snapshot(model, optimizer)

    # A fresh run: built and sharded again, resumed from the checkpoint, then its third step.
    resumed, resumed_optimizer = sharded_model(source)
    restored_best = restore_checkpoint(
        checkpoint, read_state(checkpoint), accelerator, resumed, resumed_optimizer
    )
    after_restore = snapshot(resumed, resumed_optimizer)
    step(resumed, resumed_optimizer, 2)
    continued = snapshot(resumed, resumed_optimizer)

    weights = full_state_dict(resumed, accelerator)  # every process takes part in the gathering
    result = {
        "rank": accelerator.process_index,
        "sharded": is_sharded(resumed),
        "restored_equal": all(torch.equal(after_restore[k], saved_at_2[k]) for k in saved_at_2),
        "continued_equal": all(torch.equal(continued[k], uninterrupted[k]) for k in uninterrupted),
        "changed_by_step_3": any(not torch.equal(continued[k], saved_at_2[k]) for k in saved_at_2),
        "best_equal": all(torch.equal(whole(restored_best[k]), best_whole[k]) for k in best_whole),
        "files": sorted(str(p.relative_to(checkpoint)) for p in checkpoint.rglob("*") if p.is_file()),
    }
    if accelerator.is_main_process:
        # The saved model is a plain transformers folder holding the whole weights.
        save_model(accelerator.unwrap_model(resumed), output / "model", weights)
        tokenizer.save_pretrained(output / "model")
        plain = AutoModelForSequenceClassification.from_pretrained(output / "model")
        result["saved_equal"] = all(
            torch.equal(plain.state_dict()[name], whole(p.detach())) for name, p in resumed.named_parameters()
        )
    else:
        for p in resumed.parameters():
            whole(p.detach())  # the main process's gathering above is a collective
    (output / f"result-rank{accelerator.process_index}.json").write_text(json.dumps(result))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
