"""Mean pooling inside an ordinary sequence classifier, for sentence encoders trained with it.

A sentence-transformers model such as all-MiniLM-L6-v2 was trained to embed a text as the mean of its
last hidden states; its [CLS] vector was never trained as an embedding (on TREC-6 with 8 questions per
label, nearest-centroid accuracy of the pretrained embeddings: mean 0.485, [CLS] 0.264). A
`BertForSequenceClassification` head only reads position 0, so sftlab appends one fixed transformer
layer that *computes* the mean there, and the saved folder stays a plain Hugging Face model:

- attention: query and key weights 0, so every score is 0 and each position attends uniformly to the
  unmasked tokens; value = identity, so the context is the masked mean of the hidden states;
- attention output: dense = s * identity (s = 1e5) plus the residual, then LayerNorm (weight 1, bias 0):
  LayerNorm is scale-invariant, so this is LayerNorm(mean + h / s), the mean standardized (to 1e-4);
- feed-forward: all weights 0, so it adds 0 and the last LayerNorm leaves the standardized mean as is;
- pooler (BERT): dense = identity, so the head reads tanh(standardized mean).

The layer and the pooler are fixed functions: no stage trains them (the patterns
`add_mean_pooling_layer` returns), and the layer has no dropout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sftlab.errors import SftlabError

RESIDUAL_SCALE = 1e5
"""How much the mean outweighs the residual inside the pooling layer's LayerNorm."""


def sentence_transformers_pooling(location: str) -> str | None:
    """`mean` or `cls` when the model folder is a sentence-transformers model (its 1_Pooling/config.json,
    else modules.json naming a Pooling module, whose default is mean); None otherwise."""
    folder = Path(location)
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file():
        modes = json.loads(pooling.read_text(encoding="utf-8"))
        if modes.get("pooling_mode_mean_tokens"):
            return "mean"
        if modes.get("pooling_mode_cls_token"):
            return "cls"
        return None
    modules = folder / "modules.json"
    if modules.is_file():
        kinds = [str(module.get("type", "")) for module in json.loads(modules.read_text(encoding="utf-8"))]
        if any(kind.endswith("models.Pooling") for kind in kinds):
            return "mean"
    return None


def resolve_pooling(setting: str, location: str) -> str:
    """`few_shot.pooling` made concrete: auto follows the model (mean for sentence-transformers models
    trained with mean pooling), else the classifier's own [CLS] pooling."""
    if setting != "auto":
        return setting
    return "mean" if sentence_transformers_pooling(location) == "mean" else "cls"


def add_mean_pooling_layer(model: Any) -> list[str]:
    """Append the mean-pooling layer to a BERT-style sequence classifier, in place; returns the regular
    expressions naming the parameters that must stay fixed (the layer, and the pooler when there is one)."""
    import torch

    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or not _has_bert_layout(layers[-1]):
        raise SftlabError(
            f"few_shot.pooling: mean needs a BERT-style encoder (bert, roberta, xlm-roberta); this model is "
            f"{model.config.model_type}: set few_shot.pooling: cls"
        )
    config = model.config
    index = len(layers)
    layer = type(layers[-1])(config, layer_idx=index)
    hidden = config.hidden_size
    identity = torch.eye(hidden)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.zero_()
        layer.attention.self.value.weight.copy_(identity)
        layer.attention.output.dense.weight.copy_(identity * RESIDUAL_SCALE)
        layer.attention.output.LayerNorm.weight.fill_(1.0)
        layer.output.LayerNorm.weight.fill_(1.0)
    for module in layer.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # a fixed function while training too (a reloaded model only runs it in eval mode)
    layer.to(next(model.parameters()).dtype).train(model.training)
    layers.append(layer)
    config.num_hidden_layers = index + 1
    prefix = model.base_model_prefix
    fixed = [rf"^{prefix}\.encoder\.layer\.{index}\."]
    pooler = getattr(model.base_model, "pooler", None)
    if pooler is not None and hasattr(pooler, "dense"):
        with torch.no_grad():
            pooler.dense.weight.copy_(identity)
            pooler.dense.bias.zero_()
        fixed.append(rf"^{prefix}\.pooler\.")
    return fixed


def _has_bert_layout(layer: Any) -> bool:
    attention = getattr(layer, "attention", None)
    return all(
        hasattr(part, name)
        for part, name in (
            (getattr(attention, "self", None), "value"),
            (getattr(attention, "output", None), "LayerNorm"),
            (getattr(layer, "output", None), "LayerNorm"),
            (layer, "intermediate"),
        )
    )
