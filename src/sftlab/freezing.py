"""Architecture-aware layer order and freezing.

`layer_groups(model)` splits a model's parameters into its layers from the bottom up: the embeddings,
the transformer blocks 0..N-1 (for encoder-decoders, the encoder's blocks then the decoder's), the
pooler when the model has one, and the task head (everything else: the freshly added classifier).
Freezing, gradual unfreezing and layer-wise learning rates are all defined on that order, so they work
the same across BERT, RoBERTa, DeBERTa, DistilBERT, ELECTRA, XLNet, T5, BART, GPT-2 and Llama-family
models. For anything else, `freeze.patterns` (regular expressions on parameter names) still works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from sftlab.errors import SftlabError


@dataclass(frozen=True)
class Architecture:
    """Regular expressions (searched in parameter names) that place each parameter in a layer."""

    embeddings: str
    stacks: tuple[str, ...]
    """One pattern per stack of blocks (encoder, then decoder), each capturing the block index."""
    stack_tails: tuple[str, ...] = ()
    """Per stack, parameters after its last block (a final LayerNorm): they count as that block."""
    pooler: str | None = None


_BERT_LIKE = Architecture(
    # DeBERTa's relative-position embeddings sit in the encoder but serve every block: embeddings.
    embeddings=r"(^|\.)embeddings(_project)?\.|(^|\.)encoder\.(rel_embeddings|LayerNorm)\.",
    stacks=(r"(^|\.)encoder\.layer\.(\d+)\.",),
    pooler=r"(^|\.)pooler\.",
)
_LLAMA_LIKE = Architecture(
    embeddings=r"(^|\.)embed_tokens\.",
    stacks=(r"(^|\.)layers\.(\d+)\.",),
    stack_tails=(r"^model\.norm\.",),
)

ARCHITECTURES: dict[str, Architecture] = {
    **dict.fromkeys(
        ["bert", "roberta", "xlm-roberta", "camembert", "deberta", "deberta-v2", "electra", "mpnet"],
        _BERT_LIKE,
    ),
    "distilbert": Architecture(
        embeddings=r"(^|\.)embeddings\.",
        stacks=(r"(^|\.)transformer\.layer\.(\d+)\.",),
        pooler=r"^pre_classifier\.",
    ),
    "xlnet": Architecture(
        embeddings=r"(^|\.)(word_embedding|mask_emb)(\.|$)",
        stacks=(r"(^|\.)transformer\.layer\.(\d+)\.",),
        pooler=r"^sequence_summary\.",
    ),
    "t5": Architecture(
        embeddings=r"(^|\.)shared\.|(^|\.)embed_tokens\.",
        stacks=(r"(^|\.)encoder\.block\.(\d+)\.", r"(^|\.)decoder\.block\.(\d+)\."),
        stack_tails=(r"(^|\.)encoder\.final_layer_norm\.", r"(^|\.)decoder\.final_layer_norm\."),
    ),
    "bart": Architecture(
        embeddings=r"(^|\.)(shared|embed_tokens|embed_positions|layernorm_embedding)\.",
        stacks=(r"(^|\.)encoder\.layers\.(\d+)\.", r"(^|\.)decoder\.layers\.(\d+)\."),
        stack_tails=(r"(^|\.)encoder\.layer_norm\.", r"(^|\.)decoder\.layer_norm\."),
    ),
    "gpt2": Architecture(
        embeddings=r"(^|\.)(wte|wpe)\.",
        stacks=(r"(^|\.)h\.(\d+)\.",),
        stack_tails=(r"(^|\.)ln_f\.",),
    ),
    **dict.fromkeys(
        ["llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "olmo2"],
        _LLAMA_LIKE,
    ),
}
ARCHITECTURES["mt5"] = ARCHITECTURES["t5"]
ARCHITECTURES["mbart"] = ARCHITECTURES["bart"]


@dataclass
class LayerGroup:
    """One layer of the model: `embeddings`, `block 3`, `pooler` or `head`, with its named parameters."""

    name: str
    parameters: list[tuple[str, torch.nn.Parameter]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(parameter.numel() for _, parameter in self.parameters)


def model_type(model: torch.nn.Module) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", type(model).__name__))


def layer_groups(model: torch.nn.Module) -> list[LayerGroup]:
    """The model's parameters by layer, bottom up: embeddings, block 0..N-1, [pooler], head."""
    kind = model_type(model)
    architecture = ARCHITECTURES.get(kind)
    if architecture is None:
        raise SftlabError(
            f"model type '{kind}': sftlab does not know its layer order (known: {', '.join(sorted(ARCHITECTURES))}); "
            "freeze parameters by name with freeze.patterns: [regex, ...] instead"
        )
    named = list(model.named_parameters())
    # Which block each parameter belongs to, per stack; tails join their stack's last block.
    placed: dict[str, tuple[int, int]] = {}
    top_block = [-1] * len(architecture.stacks)
    for name, _ in named:
        for stack, pattern in enumerate(architecture.stacks):
            match = re.search(pattern, name)
            if match:
                index = int(match.groups()[-1])
                placed[name] = (stack, index)
                top_block[stack] = max(top_block[stack], index)
                break
    for name, _ in named:
        for stack, pattern in enumerate(architecture.stack_tails):
            if name not in placed and re.search(pattern, name) and top_block[stack] >= 0:
                placed[name] = (stack, top_block[stack])
    if not placed:
        raise SftlabError(
            f"model type '{kind}': found none of its transformer blocks by name; "
            "freeze parameters with freeze.patterns: [regex, ...] instead"
        )
    offsets = [sum(top + 1 for top in top_block[:stack]) for stack in range(len(top_block))]
    embeddings = LayerGroup("embeddings")
    blocks = [LayerGroup(f"block {index}") for index in range(sum(top + 1 for top in top_block))]
    pooler = LayerGroup("pooler")
    head = LayerGroup("head")
    for name, parameter in named:
        if name in placed:
            stack, index = placed[name]
            blocks[offsets[stack] + index].parameters.append((name, parameter))
        elif re.search(architecture.embeddings, name):
            embeddings.parameters.append((name, parameter))
        elif architecture.pooler is not None and re.search(architecture.pooler, name):
            pooler.parameters.append((name, parameter))
        else:
            head.parameters.append((name, parameter))
    groups = [embeddings, *blocks, pooler, head]
    return [group for group in groups if group.parameters]


def is_block(group: LayerGroup) -> bool:
    return group.name.startswith("block ")


def frozen_names(
    model: torch.nn.Module,
    embeddings: bool = False,
    bottom_layers: int = 0,
    patterns: list[str] | tuple[str, ...] = (),
) -> set[str]:
    """Names of the parameters frozen for the whole run.

    `bottom_layers` N freezes blocks 0..N-1 and the embeddings below them; `embeddings` freezes only the
    embeddings; `patterns` freezes every parameter whose name a regular expression finds (re.search).
    """
    names: set[str] = set()
    if embeddings or bottom_layers:
        groups = layer_groups(model)
        blocks = [group for group in groups if is_block(group)]
        if bottom_layers > len(blocks):
            raise SftlabError(
                f"freeze.bottom_layers: {bottom_layers} is more than the model's {len(blocks)} blocks"
            )
        for group in groups:
            if group.name == "embeddings" or group in blocks[:bottom_layers]:
                names.update(name for name, _ in group.parameters)
    for pattern in patterns:
        compiled = re.compile(pattern)
        matched = {name for name, _ in model.named_parameters() if compiled.search(name)}
        if not matched:
            raise SftlabError(f"freeze.patterns: '{pattern}' matches no parameter name of this model")
        names.update(matched)
    return names


def unfreeze_stages(model: torch.nn.Module) -> list[set[str]]:
    """ULMFiT's gradual unfreezing, as the parameter names trainable at each stage.

    Stage 0 trains only what is above the last block (pooler and head); each later stage adds one more
    block from the top; the last stage adds the embeddings, so everything is trainable.
    """
    groups = layer_groups(model)
    top = [name for group in groups if group.name in ("pooler", "head") for name, _ in group.parameters]
    stages = [set(top)]
    for group in reversed([g for g in groups if is_block(g) or g.name == "embeddings"]):
        stages.append(stages[-1] | {name for name, _ in group.parameters})
    return stages


def unfreeze_stage(step: int, epoch: int, every: int, unit: str) -> int:
    """Which gradual-unfreezing stage is active: one more every `every` epochs (or optimizer steps)."""
    return (epoch if unit == "epoch" else step) // every


def set_trainable(model: torch.nn.Module, trainable: set[str]) -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trainable)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    return trainable, total
