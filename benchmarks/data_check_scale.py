"""The cheap data checks on 100k rows: time and peak memory, against datasketch's MinHash LSH.

    PYTHONPATH=src python benchmarks/data_check_scale.py --rows 100000
    PYTHONPATH=src python benchmarks/data_check_scale.py --rows 100000 --near-only   # the search alone

The rows are real text of the built-in datasets (Bible verses in English and Spanish, their first halves,
TREC questions, SMS messages), 100k in all, split 90/5/5 into train/validation/test files with a label
each (6 classes, seeded). Prints one JSON line: seconds and peak resident memory of `run_checks` (exact
and near duplicates, leakage, conflicts, truncation with MiniLM's tokenizer, encoding damage), the time of
sftlab's near-duplicate search alone with each candidate backend (sftlab's numpy MinHash and banding,
and datasketch's `MinHash.bulk` + `MinHashLSH` with the same bands), both confirmed by the same exact
edit similarity: wall and CPU seconds, pairs found, their overlap, and datasketch / numpy time ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from pathlib import Path

from sftlab.catalog.datasets import fetch_dataset
from sftlab.config import load_config
from sftlab.data.loading import load_tables
from sftlab.data.readers import write_jsonl
from sftlab.datacheck.checks import run_checks
from sftlab.datacheck.text import near_duplicate_pairs, normalize
from sftlab.models import load_tokenizer, locate_model


def texts(count: int) -> list[str]:
    bible = [json.loads(line) for line in fetch_dataset("bible_en_es")["train"].read_text().splitlines()]
    pool = [row["en"] for row in bible] + [row["es"] for row in bible]
    pool += [row["en"][: len(row["en"]) // 2] for row in bible if len(row["en"]) > 40]
    for name in ("trec6", "sms_spam"):
        pool += [json.loads(line)["text"] for line in fetch_dataset(name)["train"].read_text().splitlines()]
    return pool[:count]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--near-only", action="store_true", help="only the near-duplicate search")
    args = parser.parse_args()
    rng = random.Random(0)
    rows = [{"text": text, "label": rng.choice("ABCDEF")} for text in texts(args.rows)]
    rng.shuffle(rows)
    folder = Path(tempfile.mkdtemp(prefix="data-check-scale-"))
    cut1, cut2 = int(0.9 * len(rows)), int(0.95 * len(rows))
    for split, part in (("train", rows[:cut1]), ("validation", rows[cut1:cut2]), ("test", rows[cut2:])):
        write_jsonl(folder / f"{split}.jsonl", part)
    config = load_config(
        {"data": {split: str(folder / f"{split}.jsonl") for split in ("train", "validation", "test")}}
    )
    out: dict[str, object] = {"rows": len(rows)}
    if not args.near_only:
        tables = load_tables(config.data)
        tokenizer = load_tokenizer(locate_model("minilm"), "minilm")
        started = time.perf_counter()
        result = run_checks(config, tables, tokenizer, 0.8)
        out["run_checks_seconds"] = round(time.perf_counter() - started, 1)
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        out["findings"] = len(result.findings)
    normals = list(dict.fromkeys(normalize(row["text"]) for row in rows))
    out["distinct_texts"] = len(normals)
    found = {}
    for backend in ("numpy", "datasketch"):
        wall, cpu = time.perf_counter(), time.process_time()
        found[backend] = {(i, j) for i, j, _ in near_duplicate_pairs(normals, 0.8, backend)}
        out[f"{backend}_seconds"] = round(time.perf_counter() - wall, 2)
        out[f"{backend}_cpu_seconds"] = round(time.process_time() - cpu, 2)
        out[f"{backend}_pairs"] = len(found[backend])
    out["pairs_in_both"] = len(found["numpy"] & found["datasketch"])
    out["datasketch_over_numpy_cpu"] = round(out["datasketch_cpu_seconds"] / out["numpy_cpu_seconds"], 2)  # type: ignore[operator]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
