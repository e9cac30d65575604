"""How long a MiniLM checkpoint takes to write (fsync and checksums included) and to verify and read back.

    .venv/bin/python benchmarks/checkpoint_cost.py

Prints sizes and seconds; compare against a run on the same machine, never an absolute threshold.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import AutoModelForSequenceClassification

from sftlab.catalog.models import resolve_model
from sftlab.checkpoints import latest_checkpoint, load_optimizer_state, load_tensors, save_checkpoint
from sftlab.models import quiet_transformers


def main() -> None:
    quiet_transformers()
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm"), num_labels=6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(input_ids=torch.ones(2, 8, dtype=torch.long)).logits.sum().backward()
    optimizer.step()
    one_process = SimpleNamespace(is_main_process=True, process_index=0, wait_for_everyone=lambda: None)
    with tempfile.TemporaryDirectory() as folder:
        for step, best in ((1, None), (2, model.state_dict())):
            started = time.perf_counter()
            path = save_checkpoint(one_process, Path(folder), step, model.state_dict(), optimizer.state_dict(),
                                   best, {"step": step}, keep_last=2)  # fmt: skip
            written = time.perf_counter() - started
            size = sum(file.stat().st_size for file in path.iterdir()) / 1e6
            started = time.perf_counter()
            latest_checkpoint(Path(folder))
            load_tensors(path / "model.safetensors")
            load_optimizer_state(path / "optimizer.pt")
            read = time.perf_counter() - started
            kind = "with" if best is not None else "without"
            print(
                f"checkpoint {kind} best.safetensors: {size:.0f} MB, write {written:.2f} s, verify+read {read:.2f} s"
            )


if __name__ == "__main__":
    main()
