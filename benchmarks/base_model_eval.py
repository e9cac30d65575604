"""The "before" numbers: evaluate a config's pretrained model, untrained, on the split its run reports on.

.venv/bin/python benchmarks/base_model_eval.py examples/smollm2_commonsense_lora.yaml
"""

from __future__ import annotations

import contextlib
import sys

import torch

from sftlab.config import load_config
from sftlab.data.loading import load_tables
from sftlab.models import load_tokenizer, locate_model, quiet_transformers
from sftlab.tasks import task_class


def main(path: str, *overrides: str) -> None:
    quiet_transformers()
    config = load_config(path, list(overrides)).model_copy(update={"adapter": None})
    tables = load_tables(config.data)
    split = "test" if "test" in tables else "validation"
    task = task_class(config.task).from_config(config, tables)
    location = locate_model(config.model)
    tokenizer = load_tokenizer(location, config.model)
    examples = task.encode(tokenizer, tables[split])
    model = task.load_model(location, config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    metrics = task.evaluate(
        model, examples, pad_id, config.train.eval_batch_size, torch.device("cpu"), contextlib.nullcontext
    )
    print(
        task.report(metrics, f"{config.model} before fine-tuning, {split} split ({len(examples)} examples)")
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
