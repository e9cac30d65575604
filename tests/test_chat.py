"""`sftlab chat` and `predict` on an untrained SmolLM2 run folder (the pretrained model saved as a run)."""

from __future__ import annotations

import io
import json

from sftlab import cli
from sftlab.config import load_config, save_config
from sftlab.models import locate_model


def _run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model").symlink_to(locate_model("smollm2"), target_is_directory=True)
    save_config(
        load_config({"task": "causal_lm", "model": "smollm2", "data": {"dataset": "commonsense_qa"}}),
        run / "config.yaml",
    )
    return run


def test_chat_answers_each_line_and_keeps_the_conversation(tmp_path, monkeypatch, capsys):
    run = _run_folder(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("What is the capital of France?\nAnd of Italy?\n\n"))
    assert cli.main(["chat", str(run), "--max-new-tokens", "12"]) == 0
    replies = capsys.readouterr().out.strip().splitlines()
    assert len(replies) == 2
    assert "Paris" in replies[0] and "Rome" in replies[1]  # the second answer needed the first turn


def test_predict_writes_one_answer_per_prompt_and_rejects_bad_options(tmp_path, capsys):
    run = _run_folder(tmp_path)
    (tmp_path / "prompts.txt").write_text("What is the capital of France?\n", encoding="utf-8")
    args = [
        "predict",
        str(run),
        "--input",
        str(tmp_path / "prompts.txt"),
        "--output",
        str(tmp_path / "out.jsonl"),
    ]
    assert cli.main([*args, "--max-new-tokens", "12"]) == 0
    (line,) = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert (
        json.loads(line)["prompt"] == "What is the capital of France?"
        and "Paris" in json.loads(line)["answer"]
    )
    assert cli.main([*args, "--top-p", "0"]) == 2
    assert "--top-p: must be in (0, 1]" in capsys.readouterr().err
