"""The speed levers of the encoder tasks keep results right (unpadded blocks under extractive QA's span
head, seq2seq logits at real targets only), and `sftlab bench --task` finds each task's benchmark."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from conftest import run_cli
from sftlab.catalog.datasets import fetch_dataset
from sftlab.catalog.models import resolve_model


def _rows(dataset: str, count: int) -> list[dict]:
    lines = fetch_dataset(dataset)["train"].read_text(encoding="utf-8").splitlines()[:count]
    return [json.loads(line) for line in lines]


def _loss_and_gradients(model, loss_of, context=contextlib.nullcontext):
    model.zero_grad()
    with context():
        loss, compared = loss_of()
    loss.backward()
    return (
        loss.detach(),
        compared.detach(),
        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
    )


def _assert_same(ours, plain, skip=()):
    torch.testing.assert_close(ours[0], plain[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], plain[1], rtol=1e-4, atol=1e-5)
    assert set(ours[2]) == set(plain[2]) and len(plain[2]) > 50
    for name, grad in plain[2].items():
        if not name.endswith(skip):
            torch.testing.assert_close(ours[2][name], grad, rtol=1e-3, atol=2e-6, msg=name)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_unpadded_blocks_under_the_qa_span_head_give_the_plain_loss_and_gradients(attention):
    """Real MiniLM with a QA head on real DisflQA windows of different lengths: sftlab's QA loss (padding
    left out of the start/end softmax) and every gradient are the plain model's with the unpadded blocks."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from sftlab.speed.unpadded import supports_unpadded, unpadded_encoder
    from sftlab.tasks.question_answering import QuestionAnsweringTask

    location = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(location)
    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_pretrained(location, attn_implementation=attention).eval()
    assert supports_unpadded(model)
    task = QuestionAnsweringTask(max_length=128, doc_stride=32)
    rows = _rows("disflqa", 6)
    golds = [list(zip(r["answers"]["text"], r["answers"]["answer_start"], strict=True)) for r in rows]
    features = task.features(tokenizer, [r["question"] for r in rows], [r["context"] for r in rows], golds)
    features = sorted(features, key=lambda f: len(f["input_ids"]))[::3][:8]  # short and long windows
    batch = task.collate(features, tokenizer.pad_token_id)
    mask = batch["attention_mask"].bool()
    assert (~mask).sum() > 50 and batch["start_positions"].gt(0).any()  # padding, and real answers

    def loss_of():
        loss, _ = task.forward_loss(model, batch)
        logits = model(**{k: v for k, v in batch.items() if "positions" not in k}).start_logits
        return loss, logits[mask]

    plain = _loss_and_gradients(model, loss_of)
    ours = _loss_and_gradients(model, loss_of, lambda: unpadded_encoder(model, batch["attention_mask"]))
    _assert_same(ours, plain, skip=("key.bias",))  # softmax cancels a key bias: its gradient is noise
    assert type(model.bert.encoder).__name__ == "BertEncoder"  # restored


def test_qa_loss_does_not_depend_on_the_other_windows_padding():
    """A window's loss is the same alone and in a batch padded to a longer window."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from sftlab.tasks.question_answering import QuestionAnsweringTask

    location = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(location)
    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_pretrained(location).eval()
    task = QuestionAnsweringTask(max_length=128, doc_stride=32)
    rows = _rows("disflqa", 4)
    golds = [list(zip(r["answers"]["text"], r["answers"]["answer_start"], strict=True)) for r in rows]
    features = task.features(tokenizer, [r["question"] for r in rows], [r["context"] for r in rows], golds)
    short, long = (
        min(features, key=lambda f: len(f["input_ids"])),
        max(features, key=lambda f: len(f["input_ids"])),
    )
    assert len(long["input_ids"]) - len(short["input_ids"]) > 20
    with torch.no_grad():
        alone, _ = task.forward_loss(model, task.collate([short], tokenizer.pad_token_id))
        both, _ = task.forward_loss(model, task.collate([short, long], tokenizer.pad_token_id))
        other, _ = task.forward_loss(model, task.collate([long], tokenizer.pad_token_id))
    torch.testing.assert_close(both, alone + other, rtol=1e-5, atol=1e-5)


def _bible_batch(tokenizer, task, count=12):
    from sftlab.data.readers import Table

    rows = _rows("bible_en_es", count)
    examples = task.encode(tokenizer, Table("bible", rows, list(range(len(rows))), "line"))
    return task.collate(examples, tokenizer.pad_token_id)


def test_target_logits_only_gives_the_plain_bert2bert_loss_and_gradients():
    """The real BERT2BERT (MiniLM halves) on real Bible verses: logits at the real targets (plus spare
    padding rows, so the row count is one of a few sizes), and the chunked loss over the real targets'
    hidden rows (output-layer bias included): the summed loss and every gradient (tied output layer
    included) equal the plain full-grid computation."""
    from transformers import AutoTokenizer

    from sftlab.models import load_encoder_decoder
    from sftlab.speed.target_logits import supports_target_logits, with_spare_rows
    from sftlab.speed.unpadded import padded_rows
    from sftlab.tasks.seq2seq import IGNORE_INDEX, Seq2SeqTask

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    torch.manual_seed(0)
    model = load_encoder_decoder("minilm", "minilm").eval()
    assert supports_target_logits(model)
    compact = Seq2SeqTask(source_column="es", target_column="en", max_length=64, max_target_length=64)
    plain_task = Seq2SeqTask(source_column="es", target_column="en", max_length=64, max_target_length=64,
                             target_logits_only=False)  # fmt: skip
    compact.decoder_start_token_id = plain_task.decoder_start_token_id = model.config.decoder_start_token_id
    batch = _bible_batch(tokenizer, compact)
    targets = batch["labels"] != IGNORE_INDEX
    assert (~targets).sum() > 40  # real padding in the targets
    assert batch["labels"].shape[1] % 8 == 0 and batch["input_ids"].shape[1] % 8 == 0  # padded to 8
    spare = with_spare_rows(targets)
    assert bool(spare[targets].all()) and int(spare.sum()) == padded_rows(int(targets.sum())) > targets.sum()

    def chunked_run(task):  # the chunked loss (training's default): logits 64 target rows at a time
        from sftlab.speed.chunked_loss import chunked, supports_chunked_loss

        assert supports_chunked_loss(model)
        with chunked(64):
            return run(task)

    def run(task):
        model.zero_grad()
        loss, count = task.forward_loss(model, batch)
        loss.backward()
        return (
            loss.detach(),
            count,
            {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
        )

    plain = run(plain_task)
    for ours, chunks in ((run(compact), False), (chunked_run(compact), True)):
        assert ours[1] == plain[1] == int(targets.sum())
        torch.testing.assert_close(ours[0], plain[0], rtol=1e-5, atol=1e-4)
        assert set(ours[2]) == set(plain[2]) and len(plain[2]) > 100
        for name, grad in plain[2].items():
            if not chunks:
                torch.testing.assert_close(ours[2][name], grad, rtol=1e-3, atol=2e-6, msg=name)
            elif not name.endswith("key.bias"):  # softmax cancels a key bias: its gradient is noise
                # summed in another order: within 1e-5 of the tensor's largest entry (measured: <= 3e-7)
                assert (ours[2][name] - grad).abs().max() <= 1e-5 * grad.abs().max() + 1e-8, name
        assert type(model.get_output_embeddings()) is torch.nn.Linear  # restored


@pytest.mark.parametrize("architecture", ["Bart", "T5"])
def test_target_logits_only_on_ready_encoder_decoders(architecture):
    """Small random BART and T5 (only the output-layer swap is under test): the same logits at real targets."""
    import transformers

    from sftlab.speed.target_logits import supports_target_logits, target_logits_only

    if architecture == "Bart":
        config = transformers.BartConfig(vocab_size=64, d_model=32, encoder_layers=1, decoder_layers=1,
                                         encoder_attention_heads=4, decoder_attention_heads=4,
                                         encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32)  # fmt: skip
    else:
        config = transformers.T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                                       decoder_start_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    model = getattr(transformers, f"{architecture}ForConditionalGeneration")(config).eval()
    assert supports_target_logits(model)
    ids = torch.randint(4, 64, (3, 7))
    labels = torch.randint(4, 64, (3, 5))
    labels[0, 3:] = labels[2, 1:] = -100
    decoder_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
    with torch.no_grad():
        plain = model(input_ids=ids, decoder_input_ids=decoder_ids).logits
        with target_logits_only(model, labels != -100):
            ours = model(input_ids=ids, decoder_input_ids=decoder_ids).logits
    torch.testing.assert_close(ours, plain[labels != -100], rtol=1e-5, atol=1e-6)


def test_bench_task_dispatch_names_what_is_missing_or_wrong(tmp_path):
    """`sftlab bench --task causal_lm` runs benchmarks/bench_causal_lm.py; an unknown task is one clear line."""
    from sftlab.bench import TASK_BENCHMARKS, _task_of

    assert _task_of(["--quick", "--task", "seq2seq"]) == ("seq2seq", ["--quick"])
    assert _task_of(["--task=causal_lm"]) == ("causal_lm", [])
    assert _task_of(["--cases", "ad"]) == ("classification", ["--cases", "ad"])
    assert set(TASK_BENCHMARKS) == {"token_classification", "question_answering", "seq2seq", "causal_lm"}
    result = run_cli("bench", "--task", "ner")
    assert (
        result.returncode == 2
        and "--task 'ner' is not one of classification, token_classification" in result.stderr
    )
    assert "Traceback" not in result.stderr
    result = run_cli("bench", "--task", "token_classification", "--help")
    assert result.returncode == 0 and "DataCollatorForTokenClassification" in result.stdout
