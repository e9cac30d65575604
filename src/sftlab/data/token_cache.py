"""Tokenized examples cached on disk, so a dataset is tokenized once, not at every run.

The key is a SHA-256 of everything that decides the encoding: the split's rows, the tokenizer (its full
serialized form, vocabulary, special tokens and chat template) and the config outside the training
sections (task, model, data columns and lengths, ...). A changed file, tokenizer or setting is a new key,
never a stale hit. Files are JSON (no pickle), written atomically under `$SFTLAB_CACHE/tokenized/`.

Only encodings that took at least `MIN_SECONDS` are written: tokenizing TREC (5,452 questions) takes
0.2 s and is not worth a file; the 31,084 verse pairs of bible_en_es take 3.5 s to tokenize and 0.45 s
to read back. Encodings that do not survive JSON unchanged (tuples, say) are never cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

FORMAT = 1
MIN_SECONDS = 1.0
TRAINING_ONLY = ("train", "optim", "schedule", "freeze", "loss", "generate", "output_dir")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """What decides the tokens. A fast tokenizer's truncation and padding state is left out: each call sets
    it anew (from the arguments the task passes, which the settings in the key already cover)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        serialized = json.loads(backend.to_str())
        serialized.pop("truncation", None)
        serialized.pop("padding", None)
        vocabulary = json.dumps(serialized, sort_keys=True)
    else:
        vocabulary = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    parts = [
        type(tokenizer).__name__,
        vocabulary,
        json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str),
        str(getattr(tokenizer, "chat_template", None)),
        str(getattr(tokenizer, "padding_side", None)),
        str(getattr(tokenizer, "truncation_side", None)),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def settings_digest(config: Any, tokenizer: Any) -> str:
    """The part of the key shared by every split of a run: the settings and the tokenizer."""
    settings = {key: value for key, value in config.to_yaml_dict().items() if key not in TRAINING_ONLY}
    payload = json.dumps({"format": FORMAT, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(f"{payload}\n{tokenizer_fingerprint(tokenizer)}".encode()).hexdigest()


def cache_path(settings: str, rows: str) -> Path:
    """The file for one split: `settings` from `settings_digest`, `rows` the split's digest from
    `checkpoints.data_fingerprint` (which a run computes anyway)."""
    from sftlab.catalog.fetch import cache_dir

    return cache_dir() / "tokenized" / f"{hashlib.sha256(f'{settings}:{rows}'.encode()).hexdigest()}.json"


def encode_cached(
    task: Any, tokenizer: Any, tables: dict[str, Any], config: Any, row_digests: dict[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """`task.encode(tokenizer, table)` for each split, read from the cache when this exact encoding was made
    before. `row_digests`: each split's digest from `checkpoints.data_fingerprint`."""
    if not config.data.cache_tokenized:
        return {split: task.encode(tokenizer, table) for split, table in tables.items()}
    settings = settings_digest(config, tokenizer)
    return {
        split: _encode_split(task, tokenizer, table, cache_path(settings, row_digests[split]))
        for split, table in tables.items()
    }


def _encode_split(task: Any, tokenizer: Any, table: Any, path: Path) -> list[dict[str, Any]]:
    if path.exists():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # a damaged file: encode again and rewrite it
    started = time.perf_counter()
    encoded = task.encode(tokenizer, table)
    if time.perf_counter() - started >= MIN_SECONDS:
        store(path, encoded)
    return encoded


def store(path: Path, encoded: list[dict[str, Any]]) -> None:
    text = json.dumps(encoded, separators=(",", ":"))
    if json.loads(text) != encoded:  # tuples, numpy values...: would not come back the same
        return
    try:  # a read-only or full cache never fails a run
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
