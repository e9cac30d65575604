"""The top block at labelled sub-tokens (`train.labelled_tokens_top`) on and off, interleaved batch by batch in one
process: forward + backward of MiniLM with a token head on 40 length-sorted batches of 16 WNUT-16 tweets, bf16.

    python benchmarks/labelled_top_ablation.py
"""

import json
import time

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from sftlab.catalog.datasets import fetch_dataset
from sftlab.catalog.models import resolve_model
from sftlab.speed.unpadded import unpadded_encoder
from sftlab.tasks.token_classification import TokenClassificationTask

torch.set_num_threads(1)
loc = resolve_model("minilm")
tok = AutoTokenizer.from_pretrained(loc)
rows = [json.loads(line) for line in fetch_dataset("wnut16")["train"].read_text().splitlines()[:640]]
rows.sort(key=lambda r: len(r["tokens"]))
task = TokenClassificationTask(
    ["O"] + [f"{p}-{i}" for i in range(10) for p in "BI"], max_length=96, scheme="plain"
)
examples = task.encode_words(tok, [r["tokens"] for r in rows])
for e in examples:
    e["labels"] = [-100] * len(e["input_ids"])
    for w, p in enumerate(e["word_starts"]):
        if p >= 0:
            e["labels"][p] = w % 21
batches = [task.collate(examples[i : i + 16], tok.pad_token_id) for i in range(0, 640, 16)]
torch.manual_seed(0)
model = AutoModelForTokenClassification.from_pretrained(loc, num_labels=21)
times = {True: 0.0, False: 0.0}
for rep in range(2):
    for b in batches:
        labels = b["labels"]
        inputs = {k: v for k, v in b.items() if k != "labels"}
        for on in (True, False) if rep % 2 == 0 else (False, True):
            t = time.perf_counter()
            with (
                torch.autocast("cpu", dtype=torch.bfloat16),
                unpadded_encoder(model, b["attention_mask"], labels != -100 if on else None),
            ):
                logits = model(**inputs).logits
                loss = torch.nn.functional.cross_entropy(
                    logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
                )
            loss.backward()
            model.zero_grad(set_to_none=True)
            if rep:
                times[on] += time.perf_counter() - t
lab = sum(int((b["labels"] != -100).sum()) for b in batches)
real = sum(int(b["attention_mask"].sum()) for b in batches)
print(
    f"labelled {lab} of {real} real sub-tokens ({lab / real:.2f}); forward+backward over 40 batches of 16 tweets, bf16: "
    f"lever on {times[True]:.2f} s, off {times[False]:.2f} s, ratio {times[False] / times[True]:.3f}"
)
