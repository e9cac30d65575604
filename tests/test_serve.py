"""`sftlab serve`: a real uvicorn on 127.0.0.1 answering a real HTTP client, and the web page in a real
headless Debian chromium (driven by Playwright, pointed at the system binary)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import REPO, run_cli, trec_texts
from sftlab.serving.batching import MicroBatcher

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_run: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sftlab", "serve", str(trained_run), "--port", str(port), "--precision", "fp32",
         "--max-inputs", "16", "--max-chars", "300", "--max-body-bytes", "20000", "--max-wait-ms", "20"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).json() == {"status": "ok"}:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start: {process.stderr.read() if process.stderr else ''}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_predictions_equal_sftlab_predict(server: str, trained_run: Path, tmp_path: Path) -> None:
    texts = trec_texts("test", 12)
    source = tmp_path / "questions.txt"
    source.write_text("\n".join(texts) + "\n")
    result = run_cli("predict", str(trained_run), "--input", str(source), "--output", str(tmp_path / "out.jsonl"),
                     "--precision", "fp32")  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    answer = httpx.post(f"{server}/predict", json={"inputs": texts}, timeout=60)
    assert answer.status_code == 200
    got = answer.json()["predictions"]
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], abs=1e-5)


def test_info_names_the_task_labels_and_metrics(server: str, trained_run: Path) -> None:
    info = httpx.get(f"{server}/info", timeout=10).json()
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert info["task"] == "classification" and info["model"] == "minilm"
    assert info["labels"] == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert info["metrics"]["accuracy"] == metrics["accuracy"] and info["report"] is True
    assert info["limits"] == {"max_inputs": 16, "max_chars": 300, "max_body_bytes": 20000}
    report = httpx.get(f"{server}/report", timeout=10)
    assert report.status_code == 200 and '<section id="summary">' in report.text


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (json.dumps({"inputs": ["a question ?"] * 17}), 413, "17 inputs in one request; at most 16"),
        (json.dumps({"inputs": ["x" * 301]}), 413, "inputs[0]: 301 characters; at most 300"),
        (json.dumps({"inputs": ["y" * 250] * 15}) + " " * 20000, 413, "at most 20000"),
        ('{"inputs": ["unterminated', 422, "not valid JSON"),
        (json.dumps({"texts": ["a"]}), 422, 'expected a JSON object {"inputs": [...]}'),
        (json.dumps({"inputs": []}), 422, "'inputs' must be a non-empty list"),
        (json.dumps({"inputs": ["fine", 7]}), 422, "inputs[1]: expected a string"),
        (json.dumps({"inputs": ["  "]}), 422, "inputs[0]: expected a non-empty string"),
    ],
)
def test_bad_requests_get_a_json_4xx_and_the_server_keeps_serving(server: str, body: str, status: int,
                                                                   message: str) -> None:  # fmt: skip
    answer = httpx.post(
        f"{server}/predict", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert httpx.post(f"{server}/predict", json={"inputs": ["Who is it ?"]}, timeout=30).status_code == 200


def test_concurrent_requests_are_all_answered_with_their_own_predictions(server: str) -> None:
    texts = trec_texts("validation", 24)
    alone = httpx.post(f"{server}/predict", json={"inputs": texts[:12]}, timeout=60).json()["predictions"]
    alone += httpx.post(f"{server}/predict", json={"inputs": texts[12:]}, timeout=60).json()["predictions"]

    def ask(index: int) -> dict:
        answer = httpx.post(f"{server}/predict", json={"inputs": [texts[index]]}, timeout=120)
        assert answer.status_code == 200
        return answer.json()["predictions"][0]

    with ThreadPoolExecutor(max_workers=12) as pool:
        together = list(pool.map(ask, range(len(texts))))
    assert [p["label"] for p in together] == [p["label"] for p in alone]
    assert [p["score"] for p in together] == pytest.approx([p["score"] for p in alone], abs=1e-5)


def test_micro_batcher_answers_waiting_requests_in_one_model_call() -> None:
    calls: list[list[str]] = []

    def predict(rows: list[dict]) -> list[dict]:
        calls.append([row["text"] for row in rows])
        return [{"upper": row["text"].upper()} for row in rows]

    async def scenario() -> list[list[dict]]:
        batcher = MicroBatcher(predict, max_batch_size=5, max_wait_s=0.5)
        await batcher.start()
        requests = [[{"text": f"t{i}"}] for i in range(6)] + [[{"text": "u"}, {"text": "v"}]]
        answers = await asyncio.gather(*(batcher.submit(rows) for rows in requests))
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert answers == [[{"upper": f"T{i}"}] for i in range(6)] + [[{"upper": "U"}, {"upper": "V"}]]
    # Five inputs fill a batch; a request is never split, so the rest (one single, one pair) go together.
    assert calls == [["t0", "t1", "t2", "t3", "t4"], ["t5", "u", "v"]]


def test_web_page_in_headless_chromium(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} missing: `make setup` installs Debian's chromium"
    expected = httpx.post(f"{server}/predict", json={"inputs": ["How far is it from Denver to Aspen ?"]},
                          timeout=30).json()["predictions"][0]  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 560})
        page.goto(f"{server}/")
        page.wait_for_selector("#submit")
        assert "classification" in page.inner_text("#title")
        page.fill("#text", "How far is it from Denver to Aspen ?")
        page.click("#submit")
        page.wait_for_selector("#label")
        assert page.inner_text("#label") == expected["label"]
        assert f"{expected['score']:.3f}" in page.inner_text("#result")
        page.screenshot(path=str(tmp_path / "page.png"))
        page.click("#report-link")
        page.wait_for_selector("#summary")
        browser.close()
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
