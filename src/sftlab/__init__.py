"""sftlab: supervised fine-tuning of pretrained language models.

    import sftlab
    result = sftlab.finetune("examples/trec6.yaml")
    predictor = sftlab.load(result.output_dir)
    predictor.predict(["What is the capital of Peru ?"])

Heavy modules (torch, transformers) load on first use, so `import sftlab` and `sftlab --help` are instant.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["finetune", "load", "load_config", "data_check", "search", "SftlabError"]


def __getattr__(name: str) -> Any:
    if name in ("finetune", "load", "data_check", "search"):
        from sftlab import api

        return getattr(api, name)
    if name == "load_config":
        from sftlab.config import load_config

        return load_config
    if name == "SftlabError":
        from sftlab.errors import SftlabError

        return SftlabError
    raise AttributeError(f"module 'sftlab' has no attribute '{name}'")
