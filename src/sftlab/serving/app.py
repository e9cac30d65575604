"""`sftlab serve RUN`: a finished run behind a REST API (FastAPI + uvicorn) with a small web page.

    POST /predict   {"inputs": [...]} -> {"predictions": [...]}, inputs shaped for the run's task:
                    classification: "text" or {"text": ..., "text_pair": ...}; token_classification and
                    seq2seq: "text"; question_answering: {"question": ..., "context": ...};
                    causal_lm: "prompt" or {"messages": [{"role": "user", "content": ...}, ...]}
    GET  /health    {"status": "ok"}
    GET  /info      task, labels, model, the run's final metrics, limits, backend
    GET  /          the web page;  GET /report: the run's report.html

Requests are micro-batched (sftlab.serving.batching). Too many inputs, too long an input or too large a
body answer 413, malformed JSON or a wrongly shaped input 422, always as {"error": "..."}; nothing a
client sends stops the server.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from sftlab.errors import SftlabError
from sftlab.serving.batching import MicroBatcher


@dataclass
class Limits:
    max_inputs: int = 64
    """Most inputs in one request."""
    max_chars: int = 10_000
    """Most characters in one text field of an input."""
    max_body_bytes: int = 1_000_000
    """Largest request body."""


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def input_rows(task: str, data: Any, inputs: Any, limits: Limits) -> list[dict[str, Any]]:
    """The request's inputs as rows with the run's columns, or a RequestError naming the bad input."""
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(422, "'inputs' must be a non-empty list")
    if len(inputs) > limits.max_inputs:
        raise RequestError(413, f"{len(inputs)} inputs in one request; at most {limits.max_inputs}")
    return [_row(task, data, item, index, limits) for index, item in enumerate(inputs)]


def _text(value: Any, where: str, limits: Limits) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(422, f"{where}: expected a non-empty string")
    if len(value) > limits.max_chars:
        raise RequestError(413, f"{where}: {len(value)} characters; at most {limits.max_chars}")
    return value


def _row(task: str, data: Any, item: Any, index: int, limits: Limits) -> dict[str, Any]:
    where = f"inputs[{index}]"
    if task == "question_answering":
        if not isinstance(item, dict):
            raise RequestError(422, f'{where}: expected {{"question": ..., "context": ...}}')
        return {data.question_column: _text(item.get("question"), f"{where}.question", limits),
                data.context_column: _text(item.get("context"), f"{where}.context", limits)}  # fmt: skip
    if task == "causal_lm":
        if isinstance(item, str):
            return {"prompt": _text(item, where, limits)}
        messages = item.get("messages") if isinstance(item, dict) else None
        if not isinstance(messages, list) or not messages:
            raise RequestError(422, f'{where}: expected a prompt string or {{"messages": [...]}}')
        for number, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
                raise RequestError(
                    422, f"{where}.messages[{number}]: expected {{role: system|user|assistant, content}}"
                )
            _text(message.get("content"), f"{where}.messages[{number}].content", limits)
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    column = data.source_column if task == "seq2seq" else data.text_column
    if isinstance(item, str):
        return {column: _text(item, where, limits)}
    if task == "classification" and isinstance(item, dict) and data.text_pair_column:
        return {column: _text(item.get("text"), f"{where}.text", limits),
                data.text_pair_column: _text(item.get("text_pair"), f"{where}.text_pair", limits)}  # fmt: skip
    shape = '{"text": ..., "text_pair": ...}' if data.text_pair_column else "a string"
    raise RequestError(422, f"{where}: expected {shape}")


def run_info(predictor: Any, backend: str, limits: Limits) -> dict[str, Any]:
    from sftlab.reporting.run_report import final_scalars

    config = predictor.config
    metrics_path = predictor.output_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    model = config.model if isinstance(config.model, str) else config.model.model_dump()
    return {
        "task": config.task,
        "model": model,
        "run": str(predictor.output_dir),
        "labels": list(getattr(predictor.task, "label_names", []) or []),
        "text_pair": bool(config.task == "classification" and config.data.text_pair_column),
        "metrics": final_scalars(metrics),
        "backend": backend,
        "limits": vars(limits),
        "report": (predictor.output_dir / "report.html").is_file(),
    }


def create_app(predictor: Any, backend: str = "torch", limits: Limits | None = None, max_batch_size: int = 32,
               max_wait_s: float = 0.01) -> Any:  # fmt: skip
    """The FastAPI app serving `predictor` (a `sftlab.load(...)` Predictor or the ONNX one)."""
    limits = limits or Limits()
    batcher = MicroBatcher(predictor.predict, max_batch_size, max_wait_s)
    info = run_info(predictor, backend, limits)
    config = predictor.config

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"sftlab: {predictor.output_dir}", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    async def get_info() -> dict[str, Any]:
        return {
            **info,
            "batches": {"calls": len(batcher.batches), "largest": max(batcher.batches, default=0)},
        }

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            return error(413, f"request body of {declared} bytes; at most {limits.max_body_bytes}")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                return error(413, f"request body over {limits.max_body_bytes} bytes")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as problem:
            return error(422, f"the body is not valid JSON: {problem}")
        if not isinstance(payload, dict) or "inputs" not in payload:
            return error(422, 'expected a JSON object {"inputs": [...]}')
        try:
            rows = input_rows(config.task, config.data, payload["inputs"], limits)
            predictions = await batcher.submit(rows)
        except RequestError as problem:
            return error(problem.status, problem.message)
        except SftlabError as problem:
            return error(422, str(problem))
        return {"predictions": predictions}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files("sftlab.serving").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/report", response_model=None)
    async def report() -> Any:
        path = Path(predictor.output_dir) / "report.html"
        if not path.is_file():
            return error(404, f"{path}: no report; run `sftlab report {predictor.output_dir}`")
        return FileResponse(path, media_type="text/html")

    return app


def serve(app: Any, host: str, port: int) -> None:
    """Run `app` on uvicorn in this process (one worker: the model is loaded once; see docs/serving.md
    for scaling out)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")
