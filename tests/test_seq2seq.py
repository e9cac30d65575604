"""seq2seq on a real BERT2BERT warm-started from MiniLM and real Bible verses: encoding, the loss with
label padding, training, generation after save/reload, agreement with plain transformers, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO, run_cli
from sftlab.catalog.datasets import fetch_dataset
from sftlab.config import EncoderDecoderSpec, load_config
from sftlab.data.readers import Table, read_table
from sftlab.errors import ConfigError

EXAMPLE = REPO / "examples" / "bible_es_en.yaml"
# A tiny but real job (the machine is shared, so it is kept very small): 32 verses, 2 epochs of 4 steps,
# short lengths, 4 validation/test verses.
QUICK = [
    "data.max_train_samples=32",
    "data.max_eval_samples=4",
    "data.max_length=24",
    "generation.max_new_tokens=8",
    "train.epochs=2",
    "train.batch_size=8",
    "train.learning_rate=3e-4",
    "train.seed=3",
]


@pytest.fixture(scope="module")
def bert2bert():
    """(task, model, tokenizer) for a fresh MiniLM->MiniLM encoder-decoder, as the training loop builds it."""
    from sftlab.models import load_tokenizer, locate_model
    from sftlab.tasks.seq2seq import Seq2SeqTask

    config = load_config(EXAMPLE)
    task = Seq2SeqTask.from_settings(config)
    tokenizer = load_tokenizer(locate_model(config.model), config.model)
    torch.manual_seed(0)
    model = task.load_model(locate_model(config.model), config)
    return task, model.eval(), tokenizer


def verses(count: int) -> Table:
    return read_table(fetch_dataset("bible_en_es")["train"]).subset(list(range(count)))


def test_config_accepts_an_encoder_decoder_pair_and_plain_names():
    config = load_config(EXAMPLE)
    assert config.task == "seq2seq"
    assert config.model == EncoderDecoderSpec(encoder="minilm", decoder="minilm")
    assert str(config.model) == "minilm->minilm"
    assert load_config(EXAMPLE, ["model=minilm"]).model == "minilm"
    assert load_config(None).model == "minilm"
    with pytest.raises(ConfigError, match="needs task: seq2seq"):
        load_config({"task": "classification", "model": {"encoder": "minilm"}})
    with pytest.raises(ConfigError, match="generation.num_beams"):
        load_config(EXAMPLE, ["generation.num_beams=0"])
    # Problems inside the {encoder, decoder} mapping name their key, not pydantic's union member tags.
    with pytest.raises(ConfigError, match=r"model\.encoder: is required$"):
        load_config({"task": "seq2seq", "model": {"decoder": "minilm"}})
    with pytest.raises(ConfigError, match=r"model\.decodr: unknown key \(did you mean 'model\.decoder'\?\)"):
        load_config(EXAMPLE, ["model.decodr=minilm"])


def test_warm_started_model_has_the_special_tokens_generate_needs(bert2bert):
    _, model, tokenizer = bert2bert
    for settings in (model.config, model.generation_config):
        assert settings.decoder_start_token_id == tokenizer.cls_token_id == 101
        assert settings.eos_token_id == tokenizer.sep_token_id == 102
        assert settings.pad_token_id == tokenizer.pad_token_id == 0
    assert model.config.decoder.is_decoder and model.config.decoder.add_cross_attention


def test_targets_drop_the_start_token_and_keep_the_end_token(bert2bert):
    task, _, tokenizer = bert2bert
    table = Table(Path("x.jsonl"), [{"es": "Y dijo Dios", "en": "And God said"}], [1])
    [example] = task.encode(tokenizer, table)
    assert example["input_ids"] == tokenizer("Y dijo Dios")["input_ids"]
    assert example["labels"] == tokenizer("And God said")["input_ids"][1:]  # [CLS] is the decoder's start
    assert example["labels"][-1] == tokenizer.sep_token_id
    assert task.target_count(example) == 4  # and god said [SEP]


def test_loss_ignores_label_padding(bert2bert):
    """The padded batch's summed loss equals the sum of each example's loss computed alone, without padding."""
    task, model, tokenizer = bert2bert
    examples = task.encode(tokenizer, verses(3))
    assert len({len(e["labels"]) for e in examples}) > 1, "targets of different lengths, so some get padded"
    batch = task.collate(examples, tokenizer.pad_token_id)
    assert (batch["labels"] == -100).any()
    with torch.no_grad():
        loss, count = task.forward_loss(model, batch)
        expected = 0.0
        for example in examples:
            labels = torch.tensor([example["labels"]])
            decoder_input = torch.tensor([[tokenizer.cls_token_id, *example["labels"][:-1]]])
            logits = model(
                input_ids=torch.tensor([example["input_ids"]]), decoder_input_ids=decoder_input
            ).logits
            expected += float(F.cross_entropy(logits[0], labels[0], reduction="sum"))
    assert count == sum(len(e["labels"]) for e in examples)
    assert float(loss) == pytest.approx(expected, rel=1e-4)


@pytest.fixture(scope="module")
def seq2seq_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("s2s") / "bible"
    result = run_cli("train", str(EXAMPLE), *QUICK, f"output_dir={output}", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    return output


@pytest.mark.slow
def test_training_lowers_the_loss_and_reports_generation_metrics(seq2seq_run):
    metrics = json.loads((seq2seq_run / "metrics.json").read_text())
    history = metrics["history"]
    assert len(history) == 2 and metrics["steps"] == 8 and metrics["split"] == "test"
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 1.0
    assert history[-1]["loss"] < history[0]["loss"]
    for key in ("bleu", "bleu_uncased", "chrf", "rouge1", "rouge2", "rougeL"):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert metrics["num_examples"] == 4 and metrics["metric_for_best"] == "bleu"


@pytest.mark.slow
def test_saved_model_generates_the_same_as_sftlab_predict(seq2seq_run, tmp_path):
    """transformers 5.24 has no text2text-generation pipeline, so the check is plain from_pretrained + generate."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, EncoderDecoderModel

    import sftlab

    sources = ["Y dijo Dios: Sea la luz.", "Porque de tal manera amó Dios al mundo."]
    predicted = [p["generated_text"] for p in sftlab.load(seq2seq_run).predict(sources)]
    assert all(isinstance(text, str) and text for text in predicted)

    model_dir = seq2seq_run / "model"
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    assert isinstance(model, EncoderDecoderModel)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    plain = []
    for source in sources:
        inputs = tokenizer(source, return_tensors="pt", truncation=True, max_length=24)
        output = model.generate(**inputs, max_new_tokens=8, num_beams=1, do_sample=False)
        plain.append(
            tokenizer.decode(output[0], skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()
        )
    assert plain == predicted

    inputs = tmp_path / "verses.txt"
    inputs.write_text("\n".join(sources) + "\n", encoding="utf-8")
    result = run_cli(
        "predict", str(seq2seq_run), "--input", str(inputs), "--output", str(tmp_path / "out.jsonl")
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["es"] for line in lines] == sources
    assert [line["generated_text"] for line in lines] == predicted


@pytest.mark.slow
def test_eval_on_a_labeled_file_matches_the_run(seq2seq_run, tmp_path):
    import sftlab

    rows = read_table(fetch_dataset("bible_en_es")["test"]).rows[:4]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    metrics = sftlab.load(seq2seq_run).evaluate(path)
    saved = json.loads((seq2seq_run / "metrics.json").read_text())
    assert metrics["bleu"] == pytest.approx(saved["bleu"], abs=1e-6)
    assert metrics["loss"] == pytest.approx(saved["loss"], rel=1e-4)


def bad_data(tmp_path: Path, rows: list[dict]) -> list[str]:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return [f"data.train={path}", "data.dataset=null", f"output_dir={tmp_path / 'out'}"]


def test_missing_target_column_is_one_line_naming_the_row(tmp_path):
    rows = [{"es": f"frase {i}", "en": f"sentence {i}"} for i in range(9)] + [{"es": "sin traducción"}]
    result = run_cli("train", str(EXAMPLE), *bad_data(tmp_path, rows))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "pairs.jsonl line 10: missing column 'en'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_empty_target_is_one_line_naming_the_row(tmp_path):
    rows = [{"es": f"frase {i}", "en": f"sentence {i}"} for i in range(9)]
    rows.insert(3, {"es": "vacía", "en": "  "})
    result = run_cli("train", str(EXAMPLE), *bad_data(tmp_path, rows))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "pairs.jsonl line 4: empty 'en'" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_saved_encoder_decoder_loads_as_a_plain_model_name(seq2seq_run):
    """`model: FOLDER` takes the AutoModelForSeq2SeqLM path; the start token comes from the model's config."""
    from sftlab.tasks.seq2seq import Seq2SeqTask

    folder = str(seq2seq_run / "model")
    config = load_config(EXAMPLE, [f"model={folder}"])
    task = Seq2SeqTask.from_config(config, {"train": verses(2)})
    assert task.decoder_start_token_id == 101
    model = task.load_model(folder, config)
    assert type(model).__name__ == "EncoderDecoderModel"
    assert model.generation_config.eos_token_id == 102
