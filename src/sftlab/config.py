"""The typed config: the single source of truth for a run.

A run is described by a YAML file validated by these pydantic models, with `a.b=value` overrides from
the command line. Every field has a default, a one-line doc (the docstring under it) and a check.
Unknown keys are errors with the nearest valid key suggested, and every problem is reported at once.
This module turns YAML into a `Config`; it never builds components (see `sftlab.recipes`).
"""

from __future__ import annotations

import contextlib
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sftlab.errors import ConfigError, SftlabError

NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class DataConfig(_Section):
    dataset: str | None = None
    """A built-in dataset name (`sftlab datasets list`); fetched and cached on first use."""
    train: Path | None = None
    """Training file (CSV, TSV, JSON, JSONL or Parquet); used when `dataset` is not set."""
    validation: Path | None = None
    """Validation file; when absent, `validation_fraction` of train is held out (stratified, seeded)."""
    test: Path | None = None
    """Test file; the final report is on test when there is one, else on validation."""
    text_column: str = "text"
    """Column holding the input text."""
    label_column: str = "label"
    """Column holding the label (a string or an integer)."""
    source_column: str = "source"
    """seq2seq: column holding the input text (e.g. the sentence to translate)."""
    target_column: str = "target"
    """seq2seq: column holding the output text the model learns to generate."""
    source_prefix: str = ""
    """seq2seq: text put before every source (T5 style, e.g. `translate English to Spanish: `)."""
    max_target_length: int | None = Field(default=None, ge=4, le=8192)
    """seq2seq: truncate targets to this many tokens; null uses max_length."""
    max_train_samples: int | None = Field(default=None, gt=0)
    """Use only the first N training examples (after the deterministic split); null for all."""
    max_eval_samples: int | None = Field(default=None, gt=0)
    """Use only the first N validation and test examples; null for all."""
    max_validation_samples: int | None = Field(default=None, gt=0)
    """Use only the first N validation examples (applied after max_eval_samples): cheaper evaluations during
    training while the final report still covers the whole test split; null for max_eval_samples."""
    max_length: int = Field(default=128, ge=8, le=8192)
    """Truncate inputs to this many tokens."""
    cache_tokenized: bool = True
    """Keep tokenized splits that took over a second to make in sftlab's cache (keyed by rows, tokenizer
    and settings), so the next run on the same data skips tokenization."""
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    """Share of train held out as validation when no validation file is given."""
    # --- task-specific columns and options (each used only by the task it names)
    text_pair_column: str | None = None
    """classification: column holding the second text of a pair (NLI, BoolQ); null for single texts."""
    multi_label_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    """classification with a list of labels per row: a label is predicted when its sigmoid exceeds this."""
    tokens_column: str = "tokens"
    """token_classification: column holding the list of words (JSON/JSONL input)."""
    tags_column: str = "tags"
    """token_classification: column holding one IOB1/IOB2 tag per word (JSON/JSONL input)."""
    conll_tag_field: int = -1
    """token_classification: which whitespace-separated CoNLL column holds the tag (0-based, -1 = last)."""
    entity_eval_mode: Literal["default", "strict"] = "default"
    """token_classification: seqeval's default (conlleval) entity matching, or strict IOB2 matching."""
    question_column: str = "question"
    """question_answering: column holding the question."""
    context_column: str = "context"
    """question_answering: column holding the passage the answer is taken from."""
    answers_column: str = "answers"
    """question_answering: column holding {"text": [...], "answer_start": [...]}; empty lists = unanswerable."""
    doc_stride: int = Field(default=128, ge=1)
    """question_answering: tokens shared by consecutive windows of a context longer than max_length."""
    max_answer_length: int = Field(default=30, ge=1)
    """question_answering: longest answer span considered, in tokens."""
    n_best: int = Field(default=20, ge=1)
    """question_answering: start and end candidates considered per window."""
    completion_only_loss: bool = True
    """causal_lm: train only on the answers (assistant turns); false also trains on prompt and system tokens."""
    packing: bool = False
    """causal_lm: pack each micro-batch's examples into rows of max_length tokens (attention stays per example)."""

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.dataset is None and self.train is None:
            raise ValueError("set either data.dataset (a built-in dataset) or data.train (a file)")
        if self.dataset is not None and any(p is not None for p in (self.train, self.validation, self.test)):
            raise ValueError("set data.dataset or data.train/validation/test, not both")
        if self.dataset is None and self.train is None and self.validation is not None:
            raise ValueError("data.validation needs data.train")
        return self


class TrainConfig(_Section):
    epochs: int = Field(default=3, ge=1, le=1000)
    """Passes over the training data."""
    batch_size: int | Literal["full"] = 32
    """Examples per forward pass: 1 is stochastic gradient descent, `full` is batch gradient descent
    (one update per epoch over the whole training set, accumulated in micro_batch_size pieces)."""
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    """Forward passes per optimizer update; the update equals one over a batch this many times larger."""
    micro_batch_size: int = Field(default=32, ge=1)
    """Examples per forward pass when batch_size is `full`."""
    eval_batch_size: int = Field(default=128, ge=1)
    """Examples per forward pass during evaluation and prediction."""
    learning_rate: float = Field(default=5e-5, gt=0.0, le=10.0)
    """Peak learning rate."""
    seed: int = Field(default=42, ge=0)
    """Seed for weight initialisation, data order and dropout; the same seed gives the same run."""
    max_grad_norm: float | None = Field(default=1.0, gt=0.0)
    """Clip the global gradient norm to this value; null turns clipping off."""
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Numeric precision: auto picks bf16 autocast where the hardware has fast bf16, else fp32."""
    group_by_length: bool = True
    """Batch examples of similar length together (less padding), keeping the order random across chunks."""
    group_chunk_batches: int = Field(default=8, ge=1)
    """How many batches' worth of examples are sorted by length together when grouping: fewer keeps batches
    more random (more padding), more cuts padding (less random)."""
    batch_tokens: int | None = Field(default=None, ge=1)
    """Token-budget batches: instead of `batch_size` examples, each batch takes as many length-sorted
    examples as fit in this many padded tokens (short texts make big batches, long ones small), still
    random across chunks. The loss stays an exact mean over the step's real targets."""
    cache_frozen_prefix: bool = True
    """When the embeddings and bottom blocks are frozen, compute their output once and train only the top
    (frozen blocks then run in eval mode, without dropout); off, or inapplicable, runs the whole model."""
    first_token_top: bool = True
    """Classification heads that read only the first token ([CLS]) of BERT-style encoders: in training the
    top block computes that position only (exact; ~14% fewer matrix products on MiniLM)."""
    unpad: bool = True
    """BERT-style encoders for sequence or token classification: in training, every block's matrix
    products run over the batch's real tokens only, not over padding (exact)."""
    used_embedding_rows: bool = True
    """With Adam/AdamW, the optimizer holds only the word-embedding rows the training data uses (the others
    would get no update but AdamW's weight decay, which is applied as one factor): same result, less work."""
    fast_dropout: bool = True
    """On a CPU, dropout masks from 16-bit slices of 64-bit random draws (drop rate p to within 1/65536,
    exact expectation): a quarter of torch's generator calls."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto uses a CUDA GPU when one is visible (or the devices `accelerate launch` gives)."""
    eval_every: int | Literal["epoch"] = "epoch"
    """Evaluate on validation at the end of every epoch, or every N optimizer steps."""
    log_every: int = Field(default=10, ge=1)
    """Record training loss, learning rate, gradient norm and throughput every N optimizer steps (metrics.json's
    log_history, and the trackers)."""
    metric_for_best: str | None = None
    """Validation metric that picks the saved model (null: the task's main metric, e.g. accuracy)."""
    patience: int | None = Field(default=None, ge=1)
    """Stop after this many evaluations without improvement; null never stops early."""
    save_every: int | None = Field(default=None, ge=1)
    """Also write a checkpoint every N optimizer steps (one is always written at each evaluation); null: only at evaluations."""
    keep_last: int = Field(default=2, ge=0)
    """Checkpoints kept in output_dir/checkpoints for --resume (removed when the run finishes); 0 writes none."""
    skip_nonfinite_batches: int = Field(default=0, ge=0)
    """Skip up to this many optimizer steps whose loss or gradient is NaN/inf, then stop; 0 stops at the first."""

    @model_validator(mode="after")
    def _checkpoints_kept(self) -> TrainConfig:
        if self.save_every is not None and self.keep_last == 0:
            raise ValueError("train.save_every needs train.keep_last of at least 1")
        return self

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1, or 'full'")
        return value

    @field_validator("eval_every")
    @classmethod
    def _positive_interval(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1, or 'epoch'")
        return value


class OptimConfig(_Section):
    name: Literal["sgd", "adam", "adamw", "adagrad", "rmsprop", "adafactor"] = "adamw"
    """Optimizer: sgd (momentum, nesterov), adam, adamw, adagrad, rmsprop or adafactor."""
    weight_decay: float = Field(default=0.01, ge=0.0, lt=1.0)
    """Weight decay, applied to matrices only (tensors of rank >= 2), never to biases or norms."""
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    """Adam's first-moment decay (adam, adamw)."""
    beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    """Adam's second-moment decay (adam, adamw)."""
    eps: float = Field(default=1e-8, gt=0.0)
    """Epsilon added to the denominator (adam, adamw, adagrad, rmsprop)."""
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Momentum (sgd, rmsprop)."""
    nesterov: bool = False
    """Nesterov momentum (sgd; needs momentum > 0)."""
    layer_lr_decay: float = Field(default=1.0, gt=0.0, le=1.0)
    """Layer-wise learning-rate decay: each lower block gets the block above's rate times this (1 = off)."""
    head_learning_rate: float | None = Field(default=None, gt=0.0, le=10.0)
    """Peak learning rate of the task head; null uses train.learning_rate."""

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimConfig:
        if self.nesterov and (self.name != "sgd" or self.momentum == 0.0):
            raise ValueError("optim.nesterov needs optim.name sgd and optim.momentum > 0")
        return self


class ScheduleConfig(_Section):
    name: Literal[
        "constant", "linear", "cosine", "step", "exponential", "polynomial", "inverse_sqrt",
        "slanted_triangular", "reduce_on_plateau",
    ] = "linear"  # fmt: skip
    """Learning-rate schedule (after warmup); `sftlab plan` shows its values for a config."""
    warmup_ratio: float = Field(default=0.06, ge=0.0, lt=1.0)
    """Share of all optimizer steps spent warming up linearly from 0 (not used by slanted_triangular)."""
    warmup_steps: int | None = Field(default=None, ge=0)
    """Warmup length in optimizer steps; overrides warmup_ratio when set."""
    step_size: int | None = Field(default=None, ge=1)
    """step / exponential: optimizer steps per decay by gamma; null means one epoch."""
    gamma: float = Field(default=0.5, gt=0.0, le=1.0)
    """step / exponential / reduce_on_plateau: factor applied at each decay."""
    power: float = Field(default=1.0, gt=0.0)
    """polynomial: exponent of the decay (1 is linear)."""
    end_factor: float = Field(default=0.0, ge=0.0, le=1.0)
    """polynomial: share of the peak rate reached at the last step."""
    cut_frac: float = Field(default=0.1, gt=0.0, lt=1.0)
    """slanted_triangular: share of the steps spent rising (ULMFiT: 0.1)."""
    ratio: float = Field(default=32.0, ge=1.0)
    """slanted_triangular: how much smaller the lowest rate is than the peak (ULMFiT: 32)."""
    plateau_metric: str | None = None
    """reduce_on_plateau: validation metric watched (null: train.metric_for_best); lower is better for loss."""
    patience: int = Field(default=1, ge=1)
    """reduce_on_plateau: evaluations without improvement before the rate is multiplied by gamma."""
    min_factor: float = Field(default=0.0, ge=0.0, le=1.0)
    """reduce_on_plateau: the rate never drops below peak times this."""


class FreezeConfig(_Section):
    embeddings: bool = False
    """Freeze the embeddings for the whole run."""
    bottom_layers: int = Field(default=0, ge=0)
    """Freeze the embeddings and the bottom N transformer blocks (encoder first for encoder-decoders)."""
    patterns: list[str] = Field(default_factory=list)
    """Freeze every parameter whose name a regular expression matches (re.search); works for any model."""
    gradual_unfreeze: bool = False
    """ULMFiT: train only the head first, then unfreeze one block more from the top every unfreeze_every."""
    unfreeze_every: int = Field(default=1, ge=1)
    """Gradual unfreezing: epochs or optimizer steps between unfreezing two blocks."""
    unfreeze_unit: Literal["epoch", "step"] = "epoch"
    """Gradual unfreezing counts `unfreeze_every` in epochs or in optimizer steps."""

    @field_validator("patterns")
    @classmethod
    def _valid_regexes(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"'{pattern}' is not a regular expression: {error}") from None
        return patterns


class LossConfig(_Section):
    name: Literal["cross_entropy", "focal"] = "cross_entropy"
    """Training loss: cross_entropy, or focal (down-weights easy examples; for imbalanced data)."""
    class_weights: Literal["auto"] | list[float] | None = None
    """Per-class weights: auto (n / (classes * n_class) from train counts), a list in label order, or null."""
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Cross-entropy label smoothing: this share of the target mass is spread over all classes."""
    focal_gamma: float = Field(default=2.0, ge=0.0)
    """Focal loss exponent gamma: the loss of an example is scaled by (1 - p_true)^gamma."""

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(cls, value: Any) -> Any:
        if isinstance(value, list) and (not value or any(weight < 0 for weight in value)):
            raise ValueError("must be 'auto' or a non-empty list of weights >= 0, one per label")
        return value

    @model_validator(mode="after")
    def _smoothing_is_for_cross_entropy(self) -> LossConfig:
        if self.name == "focal" and self.label_smoothing > 0:
            raise ValueError("loss.label_smoothing applies to cross_entropy, not to focal")
        return self


class EncoderDecoderSpec(_Section):
    encoder: str
    """The encoder checkpoint: a built-in name, a local folder, or a Hub name (e.g. minilm)."""
    decoder: str | None = None
    """The decoder checkpoint, warm-started from an encoder (BERT2BERT); null uses the encoder's."""

    @field_validator("encoder", "decoder")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must name a model")
        return value

    def __str__(self) -> str:
        return f"{self.encoder}->{self.decoder or self.encoder}"


class GenerationConfig(_Section):
    num_beams: int = Field(default=1, ge=1, le=64)
    """seq2seq: beams for generation in evaluation and predict; 1 is greedy decoding."""
    max_new_tokens: int = Field(default=64, ge=1, le=4096)
    """seq2seq: the most tokens generated per output."""
    no_repeat_ngram_size: int = Field(default=0, ge=0)
    """seq2seq: never repeat an n-gram of this size in an output; 0 allows repeats."""
    length_penalty: float = 1.0
    """seq2seq: beam search scores are divided by length**length_penalty; > 1 favours longer outputs."""


class AdapterConfig(_Section):
    type: Literal["lora"] = "lora"
    """Adapter kind: lora (PEFT low-rank adapters; the task head is trained in full and saved with it)."""
    r: int = Field(default=8, ge=1, le=1024)
    """LoRA rank."""
    alpha: float = Field(default=16.0, gt=0.0)
    """LoRA scaling numerator: updates are scaled by alpha / r."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA input."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module names (or name suffixes) that get adapters, e.g. [q_proj, v_proj]; all-linear: every linear layer."""

    @field_validator("target_modules")
    @classmethod
    def _some_modules(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and (not value or any(not name.strip() for name in value)):
            raise ValueError("must name at least one module (e.g. [q_proj, v_proj]) or be 'all-linear'")
        return value


class GenerateConfig(_Section):
    max_new_tokens: int = Field(default=64, ge=1, le=8192)
    """Most tokens generated per answer; generation also stops at the EOS token."""
    temperature: float = Field(default=0.0, ge=0.0, le=10.0)
    """Sampling temperature; 0 is greedy decoding (deterministic)."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling: sample from the smallest token set holding this much probability (with temperature > 0)."""
    eval_samples: int = Field(default=100, ge=0)
    """Validation/test examples answered by generation for exact match and token F1 at each evaluation; 0 skips."""


class Config(_Section):
    task: Literal["classification", "token_classification", "question_answering", "seq2seq", "causal_lm"] = (
        "classification"
    )
    """What to fine-tune for: classification (texts, text pairs, multi-label), token_classification (NER,
    POS), question_answering (extractive), seq2seq (translation, summarization), causal_lm (instruction SFT
    of a decoder language model)."""
    model: str | EncoderDecoderSpec = "minilm"
    """A built-in model name (`sftlab models list`), a local folder, or a Hugging Face Hub name; for
    seq2seq also `{encoder: minilm, decoder: minilm}` to warm-start an encoder-decoder from encoders."""
    output_dir: Path = Path("runs/sftlab")
    """Where the model, the resolved config and metrics.json are written."""
    data: DataConfig = Field(default_factory=lambda: DataConfig(dataset="trec6"))
    """Training, validation and test data."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """The training loop."""
    optim: OptimConfig = Field(default_factory=OptimConfig)
    """The optimizer."""
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    """The learning-rate schedule."""
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    """Which parameters train: frozen layers, regex patterns, gradual unfreezing."""
    loss: LossConfig = Field(default_factory=LossConfig)
    """The training loss."""
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    """seq2seq: how outputs are generated for evaluation and predict."""
    trust_remote_code: bool = False
    """Allow a Hub model to run its own Python code; off unless you trust the model's author."""
    adapter: AdapterConfig | None = None
    """Train a PEFT adapter (e.g. {type: lora, r: 8}) instead of every weight; null trains the full model."""
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    """causal_lm: how answers are generated for evaluation, predict and chat."""

    @field_validator("model")
    @classmethod
    def _model_not_empty(cls, value: str | EncoderDecoderSpec) -> str | EncoderDecoderSpec:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must name a model")
        return value

    @model_validator(mode="after")
    def _encoder_decoder_needs_seq2seq(self) -> Config:
        if isinstance(self.model, EncoderDecoderSpec) and self.task != "seq2seq":
            raise ValueError("model: {encoder, decoder} builds an encoder-decoder; it needs task: seq2seq")
        return self

    def to_yaml_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-able values."""
        return self.model_dump(mode="json")


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.epochs=3` -> (["train", "epochs"], 3); the value is read as YAML (numbers, lists, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SftlabError(f"override '{text}': expected key=value, e.g. train.epochs=3")
    parts = key.strip().split(".")
    if any(not part for part in parts):
        raise SftlabError(f"override '{text}': empty key part in '{key}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        # YAML 1.1 reads `2e-5` (no dot) as text; on the command line it is clearly a number.
        with contextlib.suppress(ValueError):
            value = float(value) if NUMBER.fullmatch(value) else value
    return parts, value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `values` with each `a.b=value` override set; unknown keys are left for validation."""
    result = _deep_copy(values)
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return result


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file and line."""
    if not path.exists():
        raise SftlabError(f"{path}: config file not found")
    if path.is_dir():
        raise SftlabError(f"{path}: is a directory, expected a YAML config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SftlabError(f"{path}: not UTF-8 text (byte {error.start})") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SftlabError(f"{path}{where}: invalid YAML: {problem}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise SftlabError(
            f"{path}: expected a mapping of config keys at the top level, got {type(values).__name__}"
        )
    return values


def load_config(
    source: Path | str | dict[str, Any] | Config | None = None, overrides: list[str] | None = None
) -> Config:
    """Build a validated Config from a YAML path, a dict or a Config, plus `a.b=value` overrides."""
    if isinstance(source, Config):
        values = source.to_yaml_dict()
        name = "config"
    elif isinstance(source, dict):
        values, name = source, "config"
    elif source is None:
        values, name = {}, "config"
    else:
        path = Path(source)
        values, name = read_yaml(path), str(path)
    values = apply_overrides(values, overrides or [])
    return validate_config(values, name)


def validate_config(values: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(values)
    except ValidationError as error:
        # A value checked against a union (`int | "full"`) fails once per member: merge those into one line.
        merged: dict[tuple[str, ...], list[str]] = {}
        for item in error.errors():
            parts = [str(part) for part in item["loc"]]
            if parts[-1:] == ["str"] and isinstance(_lookup(values, parts[:-1]), dict):
                continue  # `model: {encoder: ...}` is clearly not meant as a name; report the mapping's problems
            location, message = _describe(item)
            messages = merged.setdefault(location, [])
            if message not in messages:
                messages.append(message)
        problems = [
            _format_problem(location, messages, values) for location, messages in sorted(merged.items())
        ]
        raise ConfigError(source, problems) from None


SHORT_MESSAGES = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "dict_type": "must be a mapping of keys",
    "list_type": "must be a list",
    "missing": "is required",
}


def _describe(item: Any) -> tuple[tuple[str, ...], str]:
    """(location of the config key, what is wrong); union-member tags are dropped from the location."""
    location = _field_location([str(part) for part in item["loc"]])
    kind = item["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(list(location[:-1]))
        near = difflib.get_close_matches(location[-1], allowed, n=1, cutoff=0.6)
        suggestion = ".".join([*location[:-1], near[0]]) if near else ""
        hint = f"did you mean '{suggestion}'?" if near else f"allowed: {', '.join(allowed)}"
        return location, f"unknown key ({hint})"
    if kind == "literal_error":
        return location, f"must be one of {item.get('ctx', {}).get('expected', '')}"
    message = SHORT_MESSAGES.get(kind, item["msg"])
    return location, message.removeprefix("Value error, ")


def _format_problem(location: tuple[str, ...], messages: list[str], values: dict[str, Any]) -> str:
    key = ".".join(location) or "(top level)"
    text = " or ".join(messages)
    if text.startswith("unknown key"):
        return f"{key}: {text}"
    given = _lookup(values, list(location))
    return f"{key}: {text}" + ("" if given is _MISSING else f" (got {given!r})")


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The config section a field holds: the model itself, or the model inside `str | Section`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    members = [m for m in typing.get_args(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    return members[0] if len(members) == 1 else None


def _field_location(parts: list[str]) -> tuple[str, ...]:
    """Keep the path through real config sections and fields; drop pydantic's union tags."""
    model: type[BaseModel] | None = Config
    kept: list[str] = []
    union_tag_next = False
    for part in parts:
        if union_tag_next:  # pydantic names the union member it tried (model: str | EncoderDecoderSpec)
            union_tag_next = False
            if model is not None and part == model.__name__:
                continue
            break
        if model is None:
            break
        kept.append(part)
        field = model.model_fields.get(part)
        if field is None:
            break
        model = _section_model(field.annotation)
        union_tag_next = typing.get_origin(field.annotation) in (typing.Union, types.UnionType)
    return tuple(kept)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The config section a field holds: `Section` or an optional `Section | None`; None for plain values."""
    import typing

    candidates = typing.get_args(annotation) if typing.get_origin(annotation) is not None else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


_MISSING = object()


def _lookup(values: Any, location: list[str]) -> Any:
    node = values
    for part in location:
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def _allowed_keys(location: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in location:
        field = model.model_fields.get(part)
        section = _section_model(getattr(field, "annotation", None))
        if section is None:
            return []
        model = section
    return list(model.model_fields)


def _deep_copy(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _deep_copy(value) if isinstance(value, dict) else value for key, value in values.items()}


def field_docs(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, doc) for every field, nested sections flattened; used for `sftlab config` docs."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        section = _section_model(field.annotation)
        key = f"{prefix}{name}"
        if section is not None:
            rows.extend(field_docs(section, prefix=f"{key}."))
        else:
            default = field.get_default(call_default_factory=True)
            rows.append((key, "null" if default is None else str(default), field.description or ""))
    return rows


def save_config(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False), encoding="utf-8")
