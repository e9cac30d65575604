"""Load a pretrained model and its tokenizer by name, with one clear error when the name leads nowhere."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sftlab.catalog.models import BUILTIN_MODELS, resolve_model
from sftlab.errors import SftlabError


def quiet_transformers() -> None:
    # "Some weights were newly initialized" is the point of adding a head; the warning only alarms users.
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.ERROR)


def locate_model(name: str) -> str:
    """A loadable path or Hub name for `name`; a path-looking name that does not exist fails at once."""
    if name in BUILTIN_MODELS:
        return resolve_model(name)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise SftlabError(
                f"model '{name}': folder has no config.json, expected a Hugging Face model folder"
            )
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise SftlabError(f"model '{name}': no such folder")
    return name


def _hub_error(name: str, error: Exception) -> SftlabError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    builtin = ", ".join(BUILTIN_MODELS)
    return SftlabError(
        f"model '{name}': not a built-in name ({builtin}), a local folder, or a loadable Hugging Face model: {reason}"
    )


def load_tokenizer(location: str, name: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise _hub_error(name, error) from None


def load_sequence_classifier(
    location: str, name: str, label_names: list[str], trust_remote_code: bool = False
) -> Any:
    """The pretrained body with a fresh classification head sized for `label_names`."""
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(
            location,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={label: index for index, label in enumerate(label_names)},
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as error:
        raise _hub_error(name, error) from None


def load_pretrained_with_head(
    auto_class: str, location: str, name: str, trust_remote_code: bool = False, **head: Any
) -> Any:
    """The pretrained body with a fresh head from `transformers.<auto_class>` (e.g. AutoModelForTokenClassification)."""
    import transformers

    try:
        return getattr(transformers, auto_class).from_pretrained(
            location, trust_remote_code=trust_remote_code, **head
        )
    except (OSError, ValueError) as error:
        raise _hub_error(name, error) from None
