"""Layer order per architecture, from tiny randomly initialised models (no weights needed, offline)."""

from __future__ import annotations

import pytest
import torch

from sftlab.errors import SftlabError
from sftlab.freezing import frozen_names, layer_groups, unfreeze_stage, unfreeze_stages

SMALL = {"hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 20,
         "vocab_size": 50}  # fmt: skip
CONFIGS = {
    "bert": SMALL,
    "roberta": SMALL,
    "deberta": SMALL,
    "deberta-v2": {**SMALL, "relative_attention": True, "pos_att_type": ["p2c", "c2p"]},
    "electra": {**SMALL, "embedding_size": 8},
    "distilbert": {"dim": 16, "n_layers": 3, "n_heads": 2, "hidden_dim": 20, "vocab_size": 50},
    "xlnet": {"d_model": 16, "n_layer": 3, "n_head": 2, "d_inner": 20, "vocab_size": 50},
    "t5": {
        "d_model": 16,
        "num_layers": 2,
        "num_decoder_layers": 1,
        "num_heads": 2,
        "d_ff": 20,
        "d_kv": 8,
        "vocab_size": 50,
    },  # fmt: skip
    "bart": {
        "d_model": 16,
        "encoder_layers": 2,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 20,
        "decoder_ffn_dim": 20,
        "vocab_size": 50,
    },  # fmt: skip
    "gpt2": {"n_embd": 16, "n_layer": 3, "n_head": 2, "vocab_size": 50, "pad_token_id": 0},
    "llama": {**SMALL, "num_key_value_heads": 2, "pad_token_id": 0},
    "qwen2": {**SMALL, "num_key_value_heads": 2, "pad_token_id": 0},
}
# What sits above the blocks, besides the head, and whose parameters make up the head.
POOLER = {"bert": True, "deberta": True, "deberta-v2": True, "distilbert": True, "xlnet": True}


def tiny_model(model_type: str) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.for_model(model_type, num_labels=3, **CONFIGS[model_type])
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config)


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_layer_order_covers_every_parameter_once(model_type):
    model = tiny_model(model_type)
    groups = layer_groups(model)
    names = [group.name for group in groups]
    blocks = 3
    assert names[0] == "embeddings"
    assert names[1 : 1 + blocks] == [f"block {i}" for i in range(blocks)]
    assert names[1 + blocks :] == (["pooler", "head"] if POOLER.get(model_type) else ["head"])
    placed = [name for group in groups for name, _ in group.parameters]
    assert sorted(placed) == sorted(name for name, _ in model.named_parameters())
    # No block holds another block's parameters, and the head is only the new task head.
    head = [name for name, _ in groups[-1].parameters]
    assert all(("classifier" in n or "score" in n or "logits_proj" in n or "classification_head" in n
                or "out_proj" in n) for n in head), head  # fmt: skip


def test_encoder_decoder_blocks_run_encoder_then_decoder():
    groups = {group.name: [n for n, _ in group.parameters] for group in layer_groups(tiny_model("t5"))}
    assert all(".encoder.block.0." in n for n in groups["block 0"])
    assert all(".encoder.block.1." in n or "encoder.final_layer_norm" in n for n in groups["block 1"])
    assert any("encoder.final_layer_norm" in n for n in groups["block 1"])
    assert all(".decoder.block.0." in n or "decoder.final_layer_norm" in n for n in groups["block 2"])
    bart = {group.name: [n for n, _ in group.parameters] for group in layer_groups(tiny_model("bart"))}
    assert "model.decoder.embed_positions.weight" in bart["embeddings"]
    assert all("decoder.layers.0." in n for n in bart["block 2"])


def test_deberta_v2_relative_embeddings_count_as_embeddings():
    groups = {
        group.name: [n for n, _ in group.parameters] for group in layer_groups(tiny_model("deberta-v2"))
    }
    assert "deberta.encoder.rel_embeddings.weight" in groups["embeddings"]


def test_unknown_architecture_names_the_escape_hatch():
    class Custom(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

    with pytest.raises(SftlabError, match=r"model type 'Custom'.*freeze\.patterns"):
        layer_groups(Custom())


def test_frozen_names_bottom_layers_embeddings_and_patterns():
    model = tiny_model("bert")
    bottom = frozen_names(model, bottom_layers=2)
    assert any(n.startswith("bert.embeddings.") for n in bottom)
    assert any(".layer.1." in n for n in bottom)
    assert not any(".layer.2." in n or "pooler" in n or "classifier" in n for n in bottom)
    only_embeddings = frozen_names(model, embeddings=True)
    assert only_embeddings == {n for n, _ in model.named_parameters() if n.startswith("bert.embeddings.")}
    by_pattern = frozen_names(model, patterns=[r"attention\.self\.query"])
    assert by_pattern == {n for n, _ in model.named_parameters() if "attention.self.query" in n}
    with pytest.raises(SftlabError, match="matches no parameter"):
        frozen_names(model, patterns=["no_such_thing"])
    with pytest.raises(SftlabError, match="more than the model's 3 blocks"):
        frozen_names(model, bottom_layers=4)


def test_gradual_unfreezing_stages_top_down():
    model = tiny_model("bert")
    stages = unfreeze_stages(model)
    assert len(stages) == 1 + 3 + 1  # head+pooler, then blocks 2, 1, 0, then embeddings
    assert all("pooler" in n or "classifier" in n for n in stages[0])
    assert {n for n in stages[1] - stages[0]} == {n for n, _ in model.named_parameters() if ".layer.2." in n}
    assert stages[-1] == {n for n, _ in model.named_parameters()}
    assert [unfreeze_stage(step=0, epoch=e, every=2, unit="epoch") for e in range(5)] == [0, 0, 1, 1, 2]
    assert [unfreeze_stage(step=s, epoch=0, every=3, unit="step") for s in range(7)] == [0, 0, 0, 1, 1, 1, 2]


def test_trainable_layers_from_config_freeze_then_unfreeze_the_rest():
    from sftlab.config import load_config
    from sftlab.recipes.components import make_optimizer, metric_value, trainable_layers

    model = tiny_model("bert")
    config = load_config({}, ["freeze.bottom_layers=1", "freeze.gradual_unfreeze=true", "optim.layer_lr_decay=0.5",
                              "train.learning_rate=0.1"])  # fmt: skip
    trainable = trainable_layers(model, config)
    # Stages: pooler+head, +block 2, +block 1; block 0 and the embeddings are frozen for good.
    assert len(trainable.stages) == 3
    assert [name for name, _ in trainable.layers] == ["block 1", "block 2", "pooler", "head"]
    assert trainable.learning_rates == {"block 1": 0.05, "block 2": 0.1, "pooler": 0.1, "head": 0.1}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable.stages[0]
    optimizer = make_optimizer(trainable, config)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[i] for i in in_optimizer} == trainable.stages[-1]
    with pytest.raises(
        SftlabError, match=r"train.metric_for_best: no validation metric 'f2' \(available: accuracy, loss\)"
    ):
        metric_value({"accuracy": 0.5, "loss": 1.0, "per_class": {}}, "f2", "train.metric_for_best")
