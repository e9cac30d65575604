"""LoRA through PEFT, end to end on real models: train, save, reload, merge, export.

Classification (MiniLM on a TREC slice) checks the known PEFT pitfall: the trained head must be saved and
reloaded with the adapter. Causal LM (SmolLM2 on a CommonsenseQA slice, packed) checks that the reloaded
adapter and the merged export give the same logits, and that the tuned model ends its answers with EOS.
"""

from __future__ import annotations

import json

import pytest
import sacrebleu
import torch

from sftlab import cli
from sftlab.api import finetune
from sftlab.catalog.datasets import fetch_dataset
from sftlab.config import load_config
from sftlab.predictor import load


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits.float()


def test_lora_classification_keeps_the_trained_head(tmp_path):
    config = load_config(
        {"task": "classification", "model": "minilm", "output_dir": str(tmp_path / "run"),
         "data": {"dataset": "trec6", "max_train_samples": 96, "max_eval_samples": 48, "max_length": 32},
         "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "seed": 3, "precision": "fp32"},
         "adapter": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}}
    )  # fmt: skip
    result = finetune(config, echo=False)
    # Only the adapter and the head train: the pretrained body stays frozen (LoRA r=4 on query and value
    # of 6 blocks is 6 * 2 * (384*4 + 4*384) = 36,864 weights; the head 384*6 + 6; the body has 22.7M).
    assert result.metrics["trainable_parameters"] == 36_864 + 384 * 6 + 6
    saved = sorted(p.name for p in (tmp_path / "run" / "model").iterdir())
    assert "adapter_config.json" in saved and "base_config.json" in saved and "model.safetensors" not in saved

    # Reloading gives back the evaluated model exactly: same loss and accuracy on the same test rows.
    # (A head lost on save would be re-initialized at random and change both.)
    test_rows = (fetch_dataset("trec6")["test"]).read_text(encoding="utf-8").splitlines()[:48]
    (tmp_path / "test.jsonl").write_text("\n".join(test_rows) + "\n", encoding="utf-8")
    predictor = load(tmp_path / "run", precision="fp32")
    metrics = predictor.evaluate(tmp_path / "test.jsonl")
    assert metrics["accuracy"] == result.metrics["accuracy"]
    assert abs(metrics["loss"] - result.metrics["loss"]) < 1e-5

    batch = dict(
        predictor.tokenizer(
            ["What is the capital of Peru ?", "Who wrote Hamlet ?"], return_tensors="pt", padding=True
        )
    )
    adapter_logits = _logits(predictor.model, batch)
    assert torch.equal(adapter_logits, _logits(load(tmp_path / "run", precision="fp32").model, batch))

    assert cli.main(["export", str(tmp_path / "run"), "--merge", "--output", str(tmp_path / "merged")]) == 0
    from transformers import AutoModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert merged.config.id2label == predictor.model.get_base_model().config.id2label
    assert torch.allclose(_logits(merged.eval(), batch), adapter_logits, atol=1e-4)


@pytest.mark.slow
def test_lora_causal_lm_saves_reloads_merges_and_stops_at_eos(tmp_path, capsys):
    config = load_config(
        {"task": "causal_lm", "model": "smollm2", "output_dir": str(tmp_path / "run"),
         "data": {"dataset": "commonsense_qa", "max_train_samples": 4, "max_eval_samples": 2, "max_length": 160,
                  "packing": True},
         "train": {"epochs": 2, "batch_size": 2, "learning_rate": 1e-3, "seed": 5, "eval_batch_size": 2},
         "adapter": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
         "generate": {"max_new_tokens": 8, "eval_samples": 2}}
    )  # fmt: skip
    result = finetune(config, echo=False)
    assert result.metrics["steps"] == 4 and result.metrics["answer_tokens"] > 0
    assert 0.0 <= result.metrics["exact_match"] <= 1.0
    # BLEU and chrF of the same generated answers (the samples hold both of them) against the first reference.
    samples = result.metrics["samples"]
    answers, references = [s["answer"] for s in samples], [s["reference"] for s in samples]
    assert result.metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(answers, [references]).score)
    assert result.metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(answers, [references]).score)

    predictor = load(tmp_path / "run", precision="fp32")
    train_rows = [
        json.loads(line) for line in fetch_dataset("commonsense_qa")["train"].read_text().splitlines()[:4]
    ]
    prompts = predictor.task.prompt_ids(predictor.tokenizer, predictor_table(train_rows))
    eos = predictor.tokenizer.eos_token_id
    # After the short SFT the model closes its answers with EOS (trained even though pad == EOS).
    for ids in prompts:
        output = predictor.model.generate(
            input_ids=torch.tensor([ids]), max_new_tokens=16, do_sample=False, pad_token_id=eos
        )[0, len(ids) :].tolist()
        assert eos in output, predictor.tokenizer.decode(output)

    batch = {"input_ids": torch.tensor([prompts[0]])}
    adapter_logits = _logits(predictor.model, batch)
    assert cli.main(["export", str(tmp_path / "run"), "--merge", "--output", str(tmp_path / "merged")]) == 0
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert (tmp_path / "merged" / "model.safetensors").exists()
    assert torch.allclose(_logits(merged, batch), adapter_logits, atol=1e-3)

    # predict on a JSONL of prompts writes one answer per line
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": train_rows[0]["prompt"]}) + "\n")
    assert cli.main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "prompts.jsonl"),
                     "--output", str(tmp_path / "answers.jsonl"), "--max-new-tokens", "8"]) == 0  # fmt: skip
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 1 and answers[0]["answer"].strip()


def predictor_table(rows):
    from pathlib import Path

    from sftlab.data.readers import Table

    return Table(Path("<rows>"), rows, list(range(1, len(rows) + 1)), "item")
