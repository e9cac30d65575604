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


def locate_model(name: Any) -> str:
    """A loadable path or Hub name for `name`; a path-looking name that does not exist fails at once.

    An encoder-decoder spec (`{encoder, decoder}`) locates its encoder, whose tokenizer the pair shares.
    """
    if not isinstance(name, str):
        return locate_model(name.encoder)
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


def load_tokenizer(location: str, name: Any, trust_remote_code: bool = False) -> Any:
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


def load_seq2seq(location: str, name: Any, trust_remote_code: bool = False) -> Any:
    """A pretrained encoder-decoder (T5, BART, Marian, ...) with its language-model head."""
    from transformers import AutoModelForSeq2SeqLM

    try:
        return AutoModelForSeq2SeqLM.from_pretrained(location, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise _hub_error(name, error) from None


def decoder_start_token_id(location: str, name: Any, trust_remote_code: bool = False) -> int | None:
    """The token a pretrained encoder-decoder's decoder starts from, read from its config.json."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise _hub_error(name, error) from None
    return getattr(config, "decoder_start_token_id", None)


def load_encoder_decoder(encoder: str, decoder: str) -> Any:
    """An encoder-decoder warm-started from two encoder checkpoints (BERT2BERT, Rothe et al. 2020).

    The decoder copy gets causal self-attention and fresh cross-attention layers. Special tokens are set on
    the config and the generation config so `generate()` and a reload with `from_pretrained` both work:
    the decoder starts from [CLS], stops at [SEP], pads with [PAD] (the encoder's tokenizer serves both).
    """
    from transformers import EncoderDecoderModel

    encoder_location, decoder_location = locate_model(encoder), locate_model(decoder)
    tokenizer = load_tokenizer(encoder_location, encoder)
    try:
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(encoder_location, decoder_location)
    except (OSError, ValueError) as error:
        raise _hub_error(f"{encoder}->{decoder}", error) from None
    if model.config.decoder.vocab_size != len(tokenizer):
        raise SftlabError(
            f"model: decoder '{decoder}' has a vocabulary of {model.config.decoder.vocab_size} tokens but the "
            f"encoder's tokenizer has {len(tokenizer)}; warm-starting needs one shared vocabulary"
        )
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if start is None or end is None or tokenizer.pad_token_id is None:
        raise SftlabError(
            f"model: encoder '{encoder}' tokenizer lacks a start ([CLS]/bos), end ([SEP]/eos) or pad token"
        )
    for settings in (model.config, model.generation_config):
        settings.decoder_start_token_id = start
        settings.bos_token_id = start
        settings.eos_token_id = end
        settings.pad_token_id = tokenizer.pad_token_id
    model.config.vocab_size = model.config.decoder.vocab_size
    return model
