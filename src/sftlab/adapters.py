"""PEFT adapters (LoRA): wrap a model, save it with its trained head, reload it, merge it into a full model.

A LoRA run saves only the adapter weights plus every module trained in full (`modules_to_save`: the
classification head), and the base model's config (`base_config.json`, which keeps the label names), so
the run folder stays small and reloads onto the same pretrained base.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ADAPTER_FILE = "adapter_config.json"
BASE_CONFIG_FILE = "base_config.json"


def apply_lora(model: Any, task_type: str, r: int, alpha: float, dropout: float,
               target_modules: list[str] | str) -> Any:  # fmt: skip
    """`model` wrapped with LoRA adapters; only the adapters and the task head stay trainable.

    task_type SEQ_CLS makes PEFT train and save the classification head (`classifier` / `score`) in full:
    without it the fresh head would stay random and be lost on save (the PEFT pitfall, peft #310 #876).
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type=task_type, r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules
    )
    return get_peft_model(model, config)


def apply_adapter(model: Any, adapter: Any, task_type: str) -> Any:
    """The model as the config's `adapter` section says (unchanged when there is none)."""
    if adapter is None:
        return model
    return apply_lora(model, task_type, adapter.r, adapter.alpha, adapter.dropout, adapter.target_modules)


def is_adapter_dir(model_dir: Path) -> bool:
    return (Path(model_dir) / ADAPTER_FILE).exists()


def save_model(model: Any, folder: Path, state_dict: dict[str, Any] | None = None) -> None:
    """Save a full model, or an adapter plus its trained modules and the base model's config. `state_dict`:
    the whole model's weights when the model's own are sharded across processes."""
    model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
    if hasattr(model, "peft_config"):
        model.get_base_model().config.to_json_file(Path(folder) / BASE_CONFIG_FILE)


def base_config(model_dir: Path) -> dict[str, Any]:
    """The base model's config saved with an adapter (label maps for classification)."""
    return json.loads((Path(model_dir) / BASE_CONFIG_FILE).read_text(encoding="utf-8"))


def load_adapter(base_model: Any, model_dir: Path) -> Any:
    """The pretrained base with the saved adapter (and trained head) loaded, ready for inference."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(model_dir))


def merged(model: Any) -> Any:
    """A plain transformers model: adapters folded into the weights, trained head in place."""
    return model.merge_and_unload() if hasattr(model, "peft_config") else model
