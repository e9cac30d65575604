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
    """A built-in dataset name (`sftlab datasets list`; fetched and cached on first use), a folder written
    by Hugging Face `datasets`' save_to_disk, or a Hugging Face Hub dataset name (datasets.load_dataset)."""
    dataset_config: str | None = None
    """Hugging Face datasets: the configuration name passed to load_dataset (e.g. `wnut_17`); null for none."""
    train_split: str | None = None
    """Hugging Face datasets: the split used for training; null is `train`."""
    validation_split: str | None = None
    """Hugging Face datasets: the validation split; null uses `validation` when the dataset has one, else
    holds out validation_fraction of train."""
    test_split: str | None = None
    """Hugging Face datasets: the test split; null uses `test` when the dataset has one."""
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
    extra_train: list[str] = Field(default_factory=list)
    """More training rows appended to train (after max_train_samples): built-in dataset names (their train
    split, e.g. quac for question_answering) or data files with train's columns; validation and test stay."""
    max_extra_train_samples: int | None = Field(default=None, gt=0)
    """Use only the first N rows of each extra_train source; null for all."""
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
    """token_classification: column holding one tag per word (JSON/JSONL input)."""
    tag_scheme: Literal["iob2", "iob1", "plain"] | None = None
    """token_classification: iob2 / iob1 entity tags (O, B-TYPE, I-TYPE; entity metrics) or plain tags such as
    part-of-speech (token accuracy, per-tag P/R/F1); null detects it from the training tags and says which."""
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
    """question_answering: tokens shared by consecutive windows of a context longer than max_length (less
    than half of max_length)."""
    max_answer_length: int = Field(default=30, ge=1)
    """question_answering: longest answer span considered, in tokens."""
    n_best: int = Field(default=20, ge=1)
    """question_answering: start and end candidates considered per window."""
    null_threshold: float | Literal["auto"] = "auto"
    """question_answering: no answer when the null ([CLS]) score beats the best span's by more than this;
    auto tunes it for the best F1 on validation (the official SQuAD 2.0 best_f1_thresh) before the test."""
    completion_only_loss: bool = True
    """causal_lm: train only on the answers (assistant turns); false also trains on prompt and system tokens."""
    packing: bool | Literal["auto"] = "auto"
    """causal_lm: pack each micro-batch's examples into rows of max_length tokens, positions restarting per
    example (padding-free; attention stays per example); auto: on where that is exact (models whose masks come
    from transformers' create_causal_mask: Llama, SmolLM2, Qwen2, Mistral, ...), false: padded rows."""
    check: Literal["warn", "error", "off"] = "warn"
    """Before training, the cheap data checks (duplicates, leakage, conflicts, truncation): warn prints one
    line per problem, error also stops on leakage or conflicting labels (exit 2, nothing written), off skips."""
    samples_per_class: int | None = Field(default=None, ge=1)
    """classification: train on a seeded, stratified few-shot draw of N training examples per label (all of
    a label's examples when it has fewer); null trains on all. Validation and test are untouched."""
    sample_seed: int = Field(default=0, ge=0)
    """Seed of the samples_per_class draw: each seed is another few-shot training set."""

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.dataset is None and self.train is None:
            raise ValueError("set either data.dataset (a built-in dataset) or data.train (a file)")
        if self.dataset is not None and any(p is not None for p in (self.train, self.validation, self.test)):
            raise ValueError("set data.dataset or data.train/validation/test, not both")
        if self.dataset is None and self.train is None and self.validation is not None:
            raise ValueError("data.validation needs data.train")
        return self

    @field_validator("check", mode="before")
    @classmethod
    def _off_is_not_false(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` (in a file or as data.check=off) as the boolean false.
        return "off" if value is False else value


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
    """BERT-style encoders for sequence classification, token classification or extractive QA: in
    training, every block's matrix products run over the batch's real tokens only, not over padding (exact)."""
    labelled_tokens_top: bool = False
    """Token classification with unpadded blocks: the top block computes (from its output projection on)
    only the sub-tokens that carry a label, each word's first (exact; off: measured no faster on MiniLM)."""
    target_logits_only: bool = True
    """seq2seq: the output layer (hidden x vocabulary) computes the logits of real target tokens only, not
    of the padding after shorter targets (exact: the same loss and gradients)."""
    used_embedding_rows: bool = True
    """With Adam/AdamW, the optimizer holds only the word-embedding rows the training data uses (the others
    would get no update but AdamW's weight decay, which is applied as one factor): same result, less work."""
    chunked_loss: bool = True
    """Causal LMs and seq2seq (with target_logits_only): the output layer and cross-entropy run
    loss_chunk_tokens tokens at a time, gradients included, so the full tokens x vocabulary logits never
    exist (exact; SmolLM2's vocabulary is 49,152, BERT's 30,522)."""
    loss_chunk_tokens: int = Field(default=256, ge=1)
    """Tokens per chunk of the chunked loss (its memory: chunk x vocabulary fp32 logits, twice)."""
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


class DataCheckConfig(_Section):
    near_duplicates: bool = True
    """Look for near-copies (MinHash LSH over character 3-grams, confirmed by edit similarity)."""
    near_duplicate_similarity: float = Field(default=0.8, gt=0.5, le=1.0)
    """Edit similarity (2 x matching characters / both lengths, after normalisation) that makes a near-copy."""
    label_issues: bool = True
    """`sftlab data check`: find likely wrong labels (tags) with K-fold out-of-fold predictions (classification, NER)."""
    folds: int = Field(default=5, ge=2, le=20)
    """Folds of the out-of-fold predictions: each fold's model trains on the other folds."""
    epochs: int = Field(default=2, ge=1, le=100)
    """Training epochs of each fold's model."""
    freeze_bottom_layers: int | None = Field(default=None, ge=0)
    """Bottom blocks frozen in the fold models (fast, with the frozen-prefix cache); null: the bottom half."""
    learning_rate: float | None = Field(default=None, gt=0.0, le=10.0)
    """Peak learning rate of the fold models; null: train.learning_rate."""
    method: Literal["loss", "cleanlab"] = "loss"
    """How rows are flagged: the highest out-of-fold losses, as many as cleanlab's num_label_issues estimates
    (Chong et al. 2022; more precise on planted noise), or cleanlab's find_label_issues; docs/data-quality.md."""
    keep_per_class: float = Field(default=0.5, ge=0.0, le=1.0)
    """Classification: at least this share of each class's training rows stays unflagged (and so in
    --write-clean's copy); the class's least suspicious flags are dropped first. 0: no floor."""
    report_dir: Path | None = None
    """Where data_report.json and data_report.html go; null: `<output_dir>-data-check`."""


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


class SelectConfig(_Section):
    models: list[str] = Field(default_factory=list)
    """`sftlab select`: candidate models (built-in names, local folders, Hub names); empty: every built-in encoder."""
    samples: int = Field(default=1000, ge=20, le=100_000)
    """`sftlab select`: training examples (token classification: sentences) embedded per candidate, stratified by label."""
    rank_by: Literal["logme", "hscore", "probe"] = "logme"
    """`sftlab select`: the estimate that ranks the candidates: logme, hscore (shrinkage), or probe (linear-probe accuracy)."""
    probe_folds: int = Field(default=5, ge=2, le=20)
    """`sftlab select`: cross-validation folds of the linear probe."""
    confirm: int = Field(default=2, ge=0)
    """`sftlab select`: fine-tune the top K estimates through the training loop (as train: says) to confirm the pick; 0 skips."""
    halving_rate: int = Field(default=2, ge=2, le=10)
    """`sftlab select`: successive halving of the confirm runs: at evaluations 1, r, r^2, ... a run continues only in the top 1/r of the runs that reached it."""

    @field_validator("models")
    @classmethod
    def _distinct_names(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("each candidate must name a model")
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"names a candidate twice: {', '.join(repeated)}")
        return value


class FewShotConfig(_Section):
    method: Literal["contrastive"] = "contrastive"
    """contrastive (SetFit-style): the encoder learns from same-label / different-label pairs (cosine
    similarity loss on the pooled embedding), then the classification head trains on top."""
    pooling: Literal["auto", "mean", "cls"] = "auto"
    """The sentence embedding the pairs shape and the head reads: mean (of the last hidden states, as
    sentence-transformers models are trained; a fixed pooling layer keeps the saved model a plain HF
    classifier), cls (the classifier's own [CLS] pooler) or auto (mean for sentence-transformers models
    trained with mean pooling, e.g. minilm; else cls)."""
    pairs_per_example: int = Field(default=40, ge=1)
    """Contrastive pairs per training example and epoch, half same-label, half different-label (SetFit's
    num_iterations=20 is 40); pairs are drawn on the fly, never listed."""
    max_pairs: int | None = Field(default=4000, ge=2)
    """Cap on the contrastive pairs per epoch (more examples need fewer pairs each); null: no cap."""
    pair_batch_size: int = Field(default=16, ge=2)
    """Pairs per contrastive optimizer step (even: half same-label, half different-label)."""
    contrastive_epochs: int = Field(default=1, ge=1, le=100)
    """Passes of the contrastive stage (each over max(pairs) freshly drawn pairs)."""
    contrastive_learning_rate: float = Field(default=2e-5, gt=0.0, le=1.0)
    """Peak learning rate of the encoder in the contrastive stage."""
    head_epochs: int = Field(default=300, ge=1, le=10000)
    """Epochs of the head stage (encoder frozen: its output is computed once, so epochs are cheap); with
    head_l2_c each epoch is one full-batch step."""
    head_learning_rate: float = Field(default=3e-2, gt=0.0, le=10.0)
    """Peak learning rate of the head stage."""
    head_l2_c: float | None = Field(default=1.0, gt=0.0)
    """The head as scikit-learn's LogisticRegression(C=...), SetFit's head: full-batch Adam on the frozen
    features, no dropout, L2 penalty |W|^2 / (2 n C) on the head's weights (n training examples; 2/(n C)
    for two labels, as sklearn's one-vector binary model). null: mini-batches, optim's AdamW and dropout."""
    end_to_end_epochs: int = Field(default=0, ge=0, le=1000)
    """Optional last stage: epochs of training the whole model (encoder and head); 0 skips it."""
    end_to_end_learning_rate: float = Field(default=1e-5, gt=0.0, le=1.0)
    """Peak learning rate of the end-to-end stage."""

    @field_validator("pair_batch_size")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even (half same-label, half different-label pairs per batch)")
        return value


class TaskSection(_Section):
    name: str
    """The task's name: its metrics are reported as NAME/metric and its model saved in output_dir/NAME/."""
    task: Literal["classification", "token_classification"] = "classification"
    """What this task fine-tunes for (its own head on the shared encoder)."""
    data: DataConfig
    """This task's training, validation and test data."""
    loss: LossConfig = Field(default_factory=LossConfig)
    """This task's training loss."""
    weight: float = Field(default=1.0, gt=0.0)
    """Multiplies this task's loss (per-task loss weight)."""
    metric_for_best: str | None = None
    """Validation metric that picks this task's saved model (null: the task's main metric, e.g. accuracy)."""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value) or value in ("checkpoints", "model"):
            raise ValueError(
                "must be a plain folder name (letters, digits, _ . -), not 'model' or 'checkpoints'"
            )
        return value


class MultiTaskConfig(_Section):
    sampler: Literal["proportional", "temperature", "annealed"] = "temperature"
    """Which task each step trains: p_i ∝ n_i^(1/T) with T = 1 (proportional), T = multitask.temperature
    (temperature), or 1/T falling from 1 to 0.2 over the epochs (annealed, PALs)."""
    temperature: float = Field(default=2.0, gt=0.0, le=100.0)
    """T of the temperature sampler: 1 is proportional to the task sizes, larger flattens towards uniform."""


class MetaConfig(_Section):
    algorithm: Literal["reptile", "fomaml"] = "reptile"
    """reptile: move the encoder towards the adapted weights (epsilon); fomaml: first-order MAML, the query
    loss's gradient at the adapted weights, applied by Adam at outer_learning_rate."""
    outer_learning_rate: float = Field(default=1e-4, gt=0.0, le=1.0)
    """fomaml: Adam's learning rate for the meta-update (reptile uses epsilon instead)."""
    n_way: int = Field(default=5, ge=2)
    """Labels per episode (N-way)."""
    k_shot: int = Field(default=8, ge=1)
    """Training (support) examples per label in an episode (K-shot)."""
    query: int = Field(default=8, ge=1)
    """Evaluation (query) examples per label in an episode."""
    meta_steps: int = Field(default=50, ge=1)
    """Reptile meta-updates."""
    meta_batch: int = Field(default=2, ge=1)
    """Episodes adapted to per meta-update (their adapted weights are averaged)."""
    inner_steps: int = Field(default=5, ge=1)
    """Optimizer steps of the inner loop on each episode's support set."""
    inner_learning_rate: float = Field(default=5e-5, gt=0.0, le=1.0)
    """Learning rate of the inner loop (AdamW, constant)."""
    epsilon: float = Field(default=1.0, gt=0.0, le=1.0)
    """Reptile step size at the first meta-update: θ <- θ + ε (θ' - θ)."""
    final_epsilon: float = Field(default=0.0, ge=0.0, le=1.0)
    """Reptile step size at the last meta-update (annealed linearly)."""
    held_out_labels: int = Field(default=10, ge=0)
    """Labels kept out of meta-training (seeded); the final comparison adapts to episodes of these."""
    eval_episodes: int = Field(default=10, ge=0)
    """Held-out episodes adapted to at the end, from the meta-learned and from the pretrained weights."""
    eval_shots: list[int] = Field(default_factory=lambda: [4, 8, 16])
    """K-shot settings of the final comparison."""


class SearchConfig(_Section):
    space: dict[str, dict[str, Any] | list[Any]] = Field(default_factory=dict)
    """`sftlab search`: config keys to search, each `{low, high, log}` (floats), `{low, high, step}` (integers)
    or a list of choices, e.g. {train.learning_rate: {low: 1e-5, high: 3e-4, log: true}}."""
    sampler: Literal["tpe", "random", "grid", "gp", "qmc"] = "tpe"
    """How trials pick values: tpe (Bayesian), random, grid (every combination once), gp (Gaussian process),
    qmc (quasi-random Sobol points)."""
    trials: int = Field(default=20, ge=1, le=100000)
    """Trials to finish (completed or pruned); a grid stops at its number of combinations."""
    timeout: float | None = Field(default=None, gt=0)
    """Seconds after which no new trial starts (running ones finish); null: no limit."""
    metric: str | None = None
    """Validation metric to optimize, also the one that picks each trial's kept checkpoint (null:
    train.metric_for_best, else the task's main metric)."""
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    """auto: minimize for loss, maximize for every other metric."""
    pruner: Literal["none", "median", "successive_halving", "hyperband"] = "none"
    """Stop unpromising trials at an evaluation: median (below the median of earlier trials at the same
    evaluation), successive_halving or hyperband (Optuna's asynchronous versions); none runs every trial out."""
    pruner_startup_trials: int = Field(default=5, ge=0)
    """median: trials that finish before any trial is pruned."""
    pruner_warmup: int = Field(default=1, ge=0)
    """median: evaluations every trial runs before it can be pruned (the first ones are noisy)."""
    seeds: list[int] | None = None
    """Train every trial once per seed (train.seed) and score it by the mean; null: train.seed only."""
    seed: int = Field(default=0, ge=0)
    """Seed of the sampler: the same seed proposes the same trials (with one worker)."""
    keep_models: Literal["best", "all"] = "best"
    """Which trials keep their trained model/ folder: the best trial only, or all (disk: one model each)."""
    study_name: str | None = None
    """Study name in the storage (several searches can share one database); null: output_dir's folder name."""

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or len(set(value)) != len(value) or min(value) < 0):
            raise ValueError("must be a non-empty list of distinct seeds >= 0, or null")
        return value


# Defaults that differ by task, applied to every key a config leaves unset (its explicit values always win).
# Measured on this project's small encoders (MiniLM, 22.7M parameters): token and span heads start from
# random weights and need a higher rate and more passes than a sentence head; QA windows need room for a
# question and a passage (SQuAD's 384 / 128).
TASK_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "classification": {},
    "token_classification": {"train": {"learning_rate": 1e-4, "epochs": 8, "batch_size": 16}},
    "question_answering": {
        "data": {"max_length": 384, "doc_stride": 128},
        "train": {"learning_rate": 1e-4, "epochs": 4, "batch_size": 16},
    },
    "seq2seq": {"train": {"learning_rate": 1e-4}},
    "causal_lm": {"data": {"max_length": 512}, "train": {"batch_size": 8}},
}

# Built-in datasets whose columns are not the task's default names: used when the config does not name them.
DATASET_COLUMNS: dict[str, dict[str, str]] = {
    "bible_en_es": {"source_column": "es", "target_column": "en"},
    "xsum_1k": {"source_column": "document", "target_column": "summary"},
}


def with_task_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with the task's defaults (TASK_DEFAULTS) and the built-in dataset's column names filled in
    for every key it leaves unset."""
    task = values.get("task", "classification")
    defaults = TASK_DEFAULTS.get(task, {}) if isinstance(task, str) else {}
    data = values.get("data")
    dataset = data.get("dataset") if isinstance(data, dict) else None
    if isinstance(dataset, str) and dataset in DATASET_COLUMNS:
        defaults = {**defaults, "data": {**DATASET_COLUMNS[dataset], **defaults.get("data", {})}}
    result = dict(values)
    for section, keys in defaults.items():
        given = values.get(section)
        if given is None and section == "data":
            continue  # no data section: validation asks for one
        if given is None or isinstance(given, dict):
            result[section] = {**keys, **(given or {})}
    return result


class Config(_Section):
    task: Literal[
        "classification", "token_classification", "question_answering", "seq2seq", "causal_lm", "multitask"
    ] = "classification"
    """What to fine-tune for: classification (texts, text pairs, multi-label), token_classification (NER,
    POS), question_answering (extractive), seq2seq (translation, summarization), causal_lm (instruction SFT
    of a decoder language model), multitask (the `tasks:` list sharing one encoder)."""
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
    select: SelectConfig = Field(default_factory=SelectConfig)
    """`sftlab select`: which candidate models to rank, and how."""
    data_check: DataCheckConfig = Field(default_factory=DataCheckConfig)
    """`sftlab data check`: near-copy similarity, the K-fold label check, where the report goes."""
    report: bool = True
    """Write OUTPUT_DIR/report.html at the end of the run (curves, confusion matrix, calibration, samples)."""
    track: Literal["auto"] | list[str] = "auto"
    """Experiment trackers (accelerate's: tensorboard, mlflow, wandb, trackio, ...) fed the training log
    and the config; local ones write under OUTPUT_DIR/logs. auto = tensorboard when installed; [] = none."""
    few_shot: FewShotConfig | None = None
    """classification: few-shot training (e.g. {method: contrastive}): contrastive pairs, then the head;
    null is plain fine-tuning."""
    tasks: list[TaskSection] = Field(default_factory=list)
    """task multitask: the tasks sharing one encoder, each {name, task, data, loss, weight}."""
    multitask: MultiTaskConfig = Field(default_factory=MultiTaskConfig)
    """task multitask: how steps are shared between the tasks."""
    meta: MetaConfig = Field(default_factory=MetaConfig)
    """`sftlab meta`: Reptile meta-learning over N-way K-shot episodes of the data's labels."""
    search: SearchConfig | None = None
    """`sftlab search`: the hyperparameter search (space, sampler, trials, pruner); `sftlab train` ignores it."""

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, values: Any) -> Any:
        return with_task_defaults(values) if isinstance(values, dict) else values

    @field_validator("model")
    @classmethod
    def _model_not_empty(cls, value: str | EncoderDecoderSpec) -> str | EncoderDecoderSpec:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must name a model")
        return value

    @field_validator("track")
    @classmethod
    def _known_trackers(cls, value: str | list[str]) -> str | list[str]:
        from sftlab.tracking import KNOWN_TRACKERS

        for name in value if isinstance(value, list) else []:
            if name not in KNOWN_TRACKERS:
                close = difflib.get_close_matches(name, KNOWN_TRACKERS, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(f"unknown tracker '{name}'{hint}; choose from {', '.join(KNOWN_TRACKERS)}")
        return value

    @model_validator(mode="after")
    def _encoder_decoder_needs_seq2seq(self) -> Config:
        if isinstance(self.model, EncoderDecoderSpec) and self.task != "seq2seq":
            raise ValueError("model: {encoder, decoder} builds an encoder-decoder; it needs task: seq2seq")
        return self

    @model_validator(mode="after")
    def _multitask_needs_tasks(self) -> Config:
        if self.task == "multitask":
            if len(self.tasks) < 2:
                raise ValueError("task: multitask needs at least 2 entries in `tasks:`")
            names = [section.name for section in self.tasks]
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"tasks: each name must be unique ({', '.join(repeated)} repeated)")
        elif self.tasks:
            raise ValueError("`tasks:` is for task: multitask")
        if self.few_shot is not None and self.task != "classification":
            raise ValueError("few_shot applies to task: classification")
        if self.few_shot is not None and self.adapter is not None:
            raise ValueError("few_shot trains the full encoder; it does not combine with adapter")
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
        node: Any = result
        for part in parts[:-1]:
            if isinstance(node, list):  # a list of sections (`tasks:`): by position or by name
                node = _list_item(node, part, text)
                continue
            child = node.get(part)
            if not isinstance(child, dict | list):
                child = {}
                node[part] = child
            node = child
        if isinstance(node, list):
            raise SftlabError(f"override '{text}': '{parts[-1]}' names a list entry; set one of its keys")
        node[parts[-1]] = value
    return result


def _list_item(items: list[Any], part: str, text: str) -> dict[str, Any]:
    """`tasks.0.data.x=1` or `tasks.trec6.data.x=1`: the entry at that position, or with that name."""
    if part.isdigit() and int(part) < len(items) and isinstance(items[int(part)], dict):
        return items[int(part)]
    for item in items:
        if isinstance(item, dict) and item.get("name") == part:
            return item
    names = [str(item.get("name")) for item in items if isinstance(item, dict)]
    raise SftlabError(
        f"override '{text}': no entry '{part}' (give a position 0-{len(items) - 1} or a name: {', '.join(names)})"
    )


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
    union_tag_next = index_next = False
    for part in parts:
        if index_next:  # a list of sections (tasks:): the entry's position, then that section's fields
            index_next = False
            if part.isdigit():
                kept.append(part)
                continue
        if union_tag_next:  # pydantic names the union member it tried (model: str | EncoderDecoderSpec)
            union_tag_next = False
            if model is not None and part == model.__name__:
                continue
            # A nullable section (few_shot: FewShotConfig | None) gets no tag: `part` is one of its fields.
        if model is None:
            break
        kept.append(part)
        field = model.model_fields.get(part)
        if field is None:
            break
        model = _section_model(field.annotation)
        # pydantic tags the member it tried in a real union (`str | Section`), not in an optional `Section | None`.
        members = [m for m in typing.get_args(field.annotation) if m is not type(None)]
        union_tag_next = (
            typing.get_origin(field.annotation) in (typing.Union, types.UnionType) and len(members) > 1
        )
        index_next = typing.get_origin(field.annotation) is list
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
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _allowed_keys(location: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in location:
        if part.isdigit():  # a position in a list of sections
            continue
        field = model.model_fields.get(part)
        section = _section_model(getattr(field, "annotation", None))
        if section is None:
            return []
        model = section
    return list(model.model_fields)


def _deep_copy(values: Any) -> Any:
    if isinstance(values, dict):
        return {key: _deep_copy(value) for key, value in values.items()}
    if isinstance(values, list):
        return [_deep_copy(value) for value in values]
    return values


def field_docs(
    model: type[BaseModel] = Config, prefix: str = "", task: str | None = None
) -> list[tuple[str, str, str]]:
    """(key, default, doc) for every field, nested sections flattened; used for `sftlab config` docs. With
    `task`, defaults are that task's (TASK_DEFAULTS); without, each doc names the tasks that differ."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        section = _section_model(field.annotation)
        key = f"{prefix}{name}"
        if section is not None:
            rows.extend(field_docs(section, prefix=f"{key}.", task=task))
            continue
        default = "(required)" if field.is_required() else field.get_default(call_default_factory=True)
        doc = field.description or ""
        section_name = prefix.rstrip(".")
        by_task = {
            task_name: sections[section_name][name]
            for task_name, sections in TASK_DEFAULTS.items()
            if name in sections.get(section_name, {})
        }
        if task is not None:
            default = task if key == "task" else by_task.get(task, default)
        elif by_task:
            doc += (
                " Task defaults: " + ", ".join(f"{name_} {value}" for name_, value in by_task.items()) + "."
            )
        rows.append((key, "null" if default is None else str(default), doc))
    return rows


def save_config(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False), encoding="utf-8")
