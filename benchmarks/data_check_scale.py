"""The cheap data checks on 100k rows: time and peak memory, against datasketch's MinHash LSH.

    PYTHONPATH=src python benchmarks/data_check_scale.py --rows 100000

The rows are real text of the built-in datasets (Bible verses in English and Spanish, their first halves,
TREC questions, SMS messages), 100k in all, split 90/5/5 into train/validation/test files with a label
each (6 classes, seeded). Prints one JSON line: seconds and peak resident memory of `run_checks` (exact
and near duplicates, leakage, conflicts, truncation with MiniLM's tokenizer, encoding damage), the time of
sftlab's near-duplicate search alone, and datasketch's MinHashLSH on the same texts when it is installed.
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
    tables = load_tables(config.data)
    tokenizer = load_tokenizer(locate_model("minilm"), "minilm")
    started = time.perf_counter()
    result = run_checks(config, tables, tokenizer, 0.8)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    normals = list(dict.fromkeys(normalize(row["text"]) for row in rows))
    started = time.perf_counter()
    pairs = near_duplicate_pairs(normals, 0.8)
    near_seconds = time.perf_counter() - started
    out = {"rows": len(rows), "run_checks_seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb),
           "findings": len(result.findings), "near_duplicate_seconds": round(near_seconds, 1), "near_pairs": len(pairs)}  # fmt: skip
    try:
        from datasketch import MinHash, MinHashLSH

        started = time.perf_counter()
        shingles = [{text[i : i + 3].encode() for i in range(max(1, len(text) - 2))} for text in normals]
        hashes = MinHash.bulk(shingles, num_perm=100)
        lsh = MinHashLSH(threshold=0.5, num_perm=100)
        with lsh.insertion_session() as session:
            for key, minhash in enumerate(hashes):
                session.insert(key, minhash)
        candidates = sum(len(lsh.query(minhash)) - 1 for minhash in hashes)
        out["datasketch_lsh_seconds"] = round(time.perf_counter() - started, 1)
        out["datasketch_candidates"] = candidates
    except ImportError:
        pass
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
