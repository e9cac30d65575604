"""Seq2seq training steps with the chunked loss (`train.chunked_loss`) and with the compact logits alone,
interleaved batch by batch in one process: forward + backward of BERT2BERT (MiniLM halves) on 8
length-sorted batches of 32 Bible verses, bf16 autocast, after one warm-up pass.

    python benchmarks/seq2seq_loss_ablation.py
"""

import json
import time

import torch
from transformers import AutoTokenizer

from sftlab.catalog.datasets import fetch_dataset
from sftlab.catalog.models import resolve_model
from sftlab.data.readers import Table
from sftlab.models import load_encoder_decoder
from sftlab.speed.chunked_loss import chunked
from sftlab.tasks.seq2seq import Seq2SeqTask

torch.set_num_threads(1)
tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
rows = [json.loads(line) for line in fetch_dataset("bible_en_es")["train"].read_text().splitlines()[:256]]
torch.manual_seed(0)
model = load_encoder_decoder("minilm", "minilm")
task = Seq2SeqTask(source_column="es", target_column="en", max_length=96, max_target_length=96)
task.decoder_start_token_id = model.config.decoder_start_token_id
examples = task.encode(tokenizer, Table("bible", rows, list(range(len(rows))), "line"))
examples.sort(key=lambda e: len(e["input_ids"]))
batches = [task.collate(examples[i : i + 32], tokenizer.pad_token_id) for i in range(0, 256, 32)]
times = {256: 0.0, 0: 0.0}
for rep in range(2):
    for batch in batches:
        for chunk in (256, 0) if rep % 2 == 0 else (0, 256):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16), chunked(chunk):
                loss, _ = task.forward_loss(model, batch)
            loss.backward()
            model.zero_grad(set_to_none=True)
            if rep:
                times[chunk] += time.perf_counter() - start
print(f"8 batches of 32 verses, bf16: chunked loss {times[256]:.2f} s, compact logits alone {times[0]:.2f} s, "
      f"ratio {times[0] / times[256]:.3f}")  # fmt: skip
