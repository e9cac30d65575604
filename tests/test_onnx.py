"""`sftlab export --format onnx`: the export is parity-checked, the check fails loudly on a broken graph,
and `--backend onnx` predicts what PyTorch predicts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import run_cli, trec_texts
from sftlab.errors import SftlabError


@pytest.fixture(scope="module")
def exported(trained_run: Path) -> Path:
    result = run_cli("export", str(trained_run), "--format", "onnx", "--quantize", "int8")
    assert result.returncode == 0, result.stderr
    assert "parity fp32: largest |logit difference|" in result.stdout
    return trained_run / "onnx"


def test_export_writes_both_models_and_its_parity_figures(exported: Path) -> None:
    assert (exported / "model.onnx").stat().st_size > 50e6  # MiniLM's 22.7M fp32 weights are inside
    # int8 matrix weights, fp32 embeddings (47 of MiniLM's 91 MB)
    assert (exported / "model.int8.onnx").stat().st_size < (exported / "model.onnx").stat().st_size * 0.7
    record = json.loads((exported / "export.json").read_text())
    assert record["fp32"]["max_abs_difference"] <= record["fp32_tolerance"] == 1e-3
    assert record["fp32"]["argmax_agreement"] == 1.0 and record["fp32"]["decisions"] == 32
    assert record["int8"]["argmax_agreement"] >= 0.9
    assert record["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]


def test_onnx_backend_predicts_what_pytorch_predicts(
    exported: Path, trained_run: Path, tmp_path: Path
) -> None:
    source = tmp_path / "questions.txt"
    source.write_text("\n".join(trec_texts("test", 40)) + "\n")
    outputs = {}
    for backend in ("torch", "onnx", "onnx-int8"):
        target = tmp_path / f"{backend}.jsonl"
        result = run_cli("predict", str(trained_run), "--input", str(source), "--output", str(target),
                         "--backend", backend, "--precision", "fp32")  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs[backend] = [json.loads(line) for line in target.read_text().splitlines()]
    torch_labels = [p["label"] for p in outputs["torch"]]
    assert [p["label"] for p in outputs["onnx"]] == torch_labels
    assert [p["score"] for p in outputs["onnx"]] == pytest.approx(
        [p["score"] for p in outputs["torch"]], abs=1e-5
    )
    same = sum(a == b for a, b in zip(torch_labels, [p["label"] for p in outputs["onnx-int8"]], strict=True))
    assert same >= 36  # int8 keeps at least 90% of the decisions on these 40 questions


def test_parity_check_fails_loudly_on_altered_weights(
    exported: Path, trained_run: Path, tmp_path: Path
) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from sftlab.adapters import merged
    from sftlab.onnx_export import check_parity, sample_batch, torch_logits
    from sftlab.predictor import load

    graph = onnx.load(str(exported / "model.onnx"))
    head = next(
        init for init in graph.graph.initializer if "classifier" in init.name and init.name.endswith("weight")
    )
    weights = numpy_helper.to_array(head).copy()
    weights[0] += 0.05  # one label's weights nudged: the logits move, a few decisions may not
    head.CopyFrom(numpy_helper.from_array(weights.astype(np.float32), head.name))
    altered = tmp_path / "altered.onnx"
    onnx.save(graph, str(altered))

    predictor = load(trained_run, precision="fp32", device="cpu")
    batch = sample_batch(predictor)
    reference = torch_logits(merged(predictor.model), ("logits",), batch)
    assert check_parity(reference, exported / "model.onnx", batch, 1e-3)["max_abs_difference"] < 1e-3
    with pytest.raises(
        SftlabError,
        match=r"ONNX parity check failed: largest \|logit difference\| [0-9.e-]+ \(allowed 0.001\)",
    ):
        check_parity(reference, altered, batch, 1e-3)


def test_generating_tasks_are_refused_with_a_clear_message(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "lm"
    run.mkdir()
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    config["task"] = "causal_lm"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copytree(trained_run / "model", run / "model")
    result = run_cli("export", str(run), "--format", "onnx")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "ONNX export covers classification, token_classification, question_answering runs" in result.stderr
    assert not (run / "onnx").exists()


def test_onnx_backend_without_an_export_says_what_to_run(tmp_path: Path, trained_run: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("onnx"))
    result = run_cli("predict", str(run), "--input", str(tmp_path / "x.txt"), "--output", str(tmp_path / "o.jsonl"),
                     "--backend", "onnx")  # fmt: skip
    assert result.returncode == 2
    assert f"no ONNX export; run `sftlab export {run} --format onnx` first" in result.stderr


def test_serve_with_the_onnx_backend(exported: Path, trained_run: Path) -> None:
    from fastapi.testclient import TestClient

    from sftlab.onnx_export import load_onnx
    from sftlab.predictor import load
    from sftlab.serving.app import create_app

    texts = trec_texts("validation", 8)
    expected = load(trained_run, precision="fp32", device="cpu").predict(texts)
    with TestClient(create_app(load_onnx(trained_run), "onnx")) as client:
        assert client.get("/info").json()["backend"] == "onnx"
        got = client.post("/predict", json={"inputs": texts}).json()["predictions"]
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], abs=1e-5)
