"""`OUTPUT_DIR/report.html`: one self-contained page per run (images inline, no network), and a
comparison page for several runs (`sftlab report RUN RUN ...`).

Every number in a report comes from the run's metrics.json (the final metrics, `history` per evaluation,
`log_history` per logged step) and config.yaml; only the sample predictions and the reliability diagram
come from predicting the report split again with the saved model.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sftlab.errors import SftlabError
from sftlab.reporting import figures
from sftlab.reporting.calibration import expected_calibration_error, reliability_bins

REPORT = "report.html"
SAMPLES_SHOWN = 20
CALIBRATION_LIMIT = 5000
"""Classification: at most this many report-split examples are predicted again for the reliability diagram."""
GENERATION_LIMIT = 8
"""seq2seq and causal_lm generate slowly: this many examples are predicted for the samples."""
OTHER_LIMIT = 200
HEADLINE = ("accuracy", "f1_macro", "entity_f1", "exact_match", "f1", "bleu", "chrf")
NOT_METRICS = {"epoch", "step", "train_loss", "loss", "num_examples", "split"}

Predict = Callable[[Any], list[dict[str, Any]]]
"""Table -> one prediction dict per row (a Predictor's `predict_table`, or the finishing run's model)."""


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Run:
        metrics_path, config_path = path / "metrics.json", path / "config.yaml"
        if not metrics_path.is_file() or not config_path.is_file():
            raise SftlabError(
                f"{path}: not a finished sftlab run (expected metrics.json and config.yaml inside)"
            )
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as error:
            raise SftlabError(f"{path}: cannot read metrics.json / config.yaml: {error}") from None
        return cls(path, config, metrics)

    @property
    def task(self) -> str:
        return str(self.config.get("task", "classification"))

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.metrics.get("history") or [])

    @property
    def log_history(self) -> list[dict[str, Any]]:
        return list(self.metrics.get("log_history") or [])

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)


def final_scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The final metrics that are single numbers or words (what the summary table shows)."""
    return {
        key: value
        for key, value in metrics.items()
        if isinstance(value, int | float | str | bool) or value is None
        if key not in ("history", "log_history", "environment")
    }


def write_run_report(run_dir: Path, predict: Predict | None = None, tables: dict[str, Any] | None = None,
                     echo: Callable[[str], None] | None = None, output: Path | None = None) -> Path:  # fmt: skip
    """Write `run_dir/report.html` (or `output`) for a finished run and return its path. `predict` and
    `tables` come from the finishing run; left out, the saved model and the config's data are loaded."""
    run = Run.load(run_dir)
    notes: list[str] = []
    if tables is None:
        tables = _load_tables(run, notes)
    predictions: list[dict[str, Any]] = []
    table = None
    split = str(run.metrics.get("split", "validation"))
    if tables is not None and split in tables:
        table = tables[split].subset(list(range(min(len(tables[split]), _prediction_limit(run)))))
        try:
            if predict is None:
                from sftlab.predictor import load

                predict = load(run_dir).predict_table
            from sftlab.predictor import predict_with_progress

            predictions = predict_with_progress(predict, table, f"report: predicting {split}")
        except SftlabError as error:
            notes.append(f"sample predictions skipped: {error}")
            table = None
    page = render_run(run, table, predictions, tables, notes)
    target = output or run_dir / REPORT
    write_atomic(target, page)
    if echo is not None:
        echo(f"wrote {target}")
    return target


def _prediction_limit(run: Run) -> int:
    if run.task == "classification":
        return CALIBRATION_LIMIT
    return GENERATION_LIMIT if run.task in ("seq2seq", "causal_lm") else OTHER_LIMIT


def _load_tables(run: Run, notes: list[str]) -> dict[str, Any] | None:
    from sftlab.config import load_config
    from sftlab.data.loading import load_tables

    try:
        return load_tables(load_config(run.path / "config.yaml").data)
    except SftlabError as error:
        notes.append(
            f"the run's data could not be read again ({error}): no data summary or sample predictions"
        )
        return None


def write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise SftlabError(f"{path}: cannot write: {error.strerror or error}") from None


# --- one run


def render_run(run: Run, table: Any, predictions: list[dict[str, Any]], tables: dict[str, Any] | None,
               notes: list[str]) -> str:  # fmt: skip
    sections = [
        ("summary", "Final metrics", _summary(run)),
        ("curves", "Training curves", _curves(run)),
    ]
    if run.task == "classification" and "confusion_matrix" in run.metrics:
        sections.append(("confusion", "Confusion matrix and per-class scores", _confusion(run)))
    elif run.task == "classification" and "per_class" in run.metrics:
        sections.append(("per-class", "Per-class scores", _per_class_bars(run.metrics)))
    if run.task == "token_classification" and "per_type" in run.metrics:
        sections.append(("entities", "Entity F1 per type", _per_type(run.metrics)))
    if run.task == "classification" and predictions and "score" in predictions[0]:
        sections.append(("calibration", "Calibration", _calibration(run, table, predictions)))
    if predictions:
        sections.append(("samples", "Sample predictions", _samples(run, table, predictions)))
    if tables is not None:
        sections.append(("data", "Data", _data_summary(run, tables)))
    sections.append(
        ("config", "Config", f"<pre>{html.escape(yaml.safe_dump(run.config, sort_keys=False))}</pre>")
    )
    sections.append(("environment", "Environment", _environment(run)))
    model = run.config.get("model")
    subtitle = f"{run.task} · model {model if isinstance(model, str) else json.dumps(model)} · {run.path}"
    return _page(f"sftlab report: {run.name}", subtitle, sections, notes)


def _summary(run: Run) -> str:
    metrics = run.metrics
    headline = []
    for key in (*HEADLINE, "loss"):
        if isinstance(metrics.get(key), int | float):
            headline.append(f'<div class="tile"><div class="big">{_number(metrics[key])}</div>{key}</div>')
    split = html.escape(str(metrics.get("split", "")))
    body = f'<div class="tiles">{"".join(headline)}</div>'
    body += f"<p>On the <b>{split}</b> split, model from step {metrics.get('best_step', '?')}.</p>"
    return body + _metrics_table(final_scalars(metrics))


def _metrics_table(values: dict[str, Any]) -> str:
    cells = "".join(
        f'<div class="kv"><span>{html.escape(key)}</span><span class="num" data-key="{html.escape(key)}" '
        f"data-value='{html.escape(json.dumps(value))}'>{_number(value)}</span></div>"
        for key, value in values.items()
    )
    return f'<div class="grid">{cells}</div>'


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return html.escape(str(value))
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float) and "step" in r]
    return [p[0] for p in points], [p[1] for p in points]


def validation_metric_keys(history: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for entry in history:
        for key, value in entry.items():
            if key not in NOT_METRICS and isinstance(value, int | float) and not key.endswith("_s"):
                keys[key] = None
    return list(keys)


def _image(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _curves(run: Run) -> str:
    logs, history = run.log_history, run.history
    parts = []
    loss_curves = []
    xs, ys = _series(logs, "train/loss")
    if xs:
        loss_curves.append(("train (per logged step)", xs, ys))
    else:
        xs, ys = _series(history, "train_loss")
        if xs:
            loss_curves.append(("train (mean since last evaluation)", xs, ys))
    xs, ys = _series(history, "loss")
    if xs:
        loss_curves.append(("validation", xs, ys))
    if loss_curves:
        parts.append(_image(figures.line_chart(loss_curves, "loss", "step", "loss"), "loss curves"))
    keys = validation_metric_keys(history)
    # The headline metrics (the one that picks the best model first); others only when there is none.
    first = [run.metrics.get("metric_for_best"), *HEADLINE]
    headline = sorted((k for k in keys if k in first), key=first.index)
    keys = headline[:5] or keys[:5]
    metric_curves = [(key, *_series(history, key)) for key in keys]
    if metric_curves:
        parts.append(_image(figures.line_chart(metric_curves, "validation metrics", "step", "value"),
                            "validation metric curves"))  # fmt: skip
    xs, ys = _series(logs, "train/learning_rate")
    if xs:
        parts.append(
            _image(figures.line_chart([("", xs, ys)], "learning rate", "step", "rate"), "learning rate")
        )
    xs, ys = _series(logs, "train/grad_norm")
    if xs:
        parts.append(
            _image(figures.line_chart([("", xs, ys)], "gradient norm", "step", "norm"), "gradient norm")
        )
    if not logs:
        parts.append("<p class='note'>No per-step log in metrics.json (log_history): learning rate and "
                     "per-step loss are not shown.</p>")  # fmt: skip
    rows = "".join(
        "<tr>" + "".join(f"<td>{_number(entry.get(key))}</td>" for key in ("epoch", "step", "train_loss", "loss", *keys)) + "</tr>"
        for entry in history
    )  # fmt: skip
    header = "".join(
        f"<th>{html.escape(key)}</th>" for key in ("epoch", "step", "train loss", "validation loss", *keys)
    )
    parts.append(f'<table class="history"><tr>{header}</tr>{rows}</table>')
    return "".join(parts)


def _per_class_bars(metrics: dict[str, Any]) -> str:
    per_class = metrics["per_class"]
    names = list(per_class)
    series = {key: [per_class[name][key] for name in names] for key in ("precision", "recall", "f1")}
    return _image(figures.grouped_bars(names, series, "per-class scores", "score"), "per-class scores")


def _confusion(run: Run) -> str:
    confusion = run.metrics["confusion_matrix"]
    image = figures.heatmap(confusion["matrix"], confusion["labels"], "confusion matrix")
    return _image(image, "confusion matrix") + _per_class_bars(run.metrics)


def _per_type(metrics: dict[str, Any]) -> str:
    per_type = metrics["per_type"]
    names = list(per_type)
    series = {key: [per_type[name][key] for name in names] for key in ("precision", "recall", "f1")}
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_number(per_type[name][k])}</td>" for k in ("precision", "recall", "f1", "support")) + "</tr>"
        for name in names
    )  # fmt: skip
    table = f"<table><tr><th>type</th><th>precision</th><th>recall</th><th>f1</th><th>support</th></tr>{rows}</table>"
    return (
        _image(figures.grouped_bars(names, series, "entity scores per type", "score"), "entity F1 per type")
        + table
    )


def gold_label(run: Run, row: dict[str, Any]) -> Any:
    """The row's reference for the run's task, or None when the row has none."""
    data = run.config.get("data", {})
    if run.task == "classification":
        return row.get(data.get("label_column", "label"))
    if run.task == "token_classification":
        return row.get(data.get("tags_column", "tags"))
    if run.task == "question_answering":
        answers = row.get(data.get("answers_column", "answers"))
        return answers.get("text") if isinstance(answers, dict) else None
    if run.task == "seq2seq":
        return row.get(data.get("target_column", "target"))
    return row.get("response") or row.get("completion") or row.get("output")


def is_correct(run: Run, gold: Any, prediction: dict[str, Any]) -> bool | None:
    if gold is None:
        return None
    if run.task == "classification":
        if "labels" in prediction:
            return sorted(map(str, gold if isinstance(gold, list) else [gold])) == sorted(
                prediction["labels"]
            )
        return str(gold) == str(prediction.get("label"))
    if run.task == "token_classification":
        from sftlab.evaluation.entities import entity_spans

        return entity_spans(list(gold)) == entity_spans(list(prediction.get("tags", [])))
    if run.task == "question_answering":
        from sftlab.evaluation.squad import normalize_answer

        answer = normalize_answer(prediction.get("answer", ""))
        return answer in [normalize_answer(g) for g in gold] if gold else answer == ""
    text = prediction.get("generated_text", prediction.get("answer", ""))
    return str(gold).strip() == str(text).strip()


def _input_text(run: Run, row: dict[str, Any], prediction: dict[str, Any]) -> str:
    data = run.config.get("data", {})
    if run.task == "token_classification":
        return _highlight(prediction.get("text", ""), prediction.get("entities", []))
    if run.task == "question_answering":
        context = str(row.get(data.get("context_column", "context"), ""))
        question = html.escape(str(row.get(data.get("question_column", "question"), "")))
        if prediction.get("start") is not None:
            span = [{"start": prediction["start"], "end": prediction["end"], "label": "answer"}]
            return f"<b>{question}</b><br>{_highlight(context, span)}"
        return f"<b>{question}</b><br>{html.escape(context)}"
    column = {"seq2seq": data.get("source_column", "source"), "causal_lm": "prompt"}.get(
        run.task, data.get("text_column", "text")
    )
    value = row.get(column, row.get("messages", ""))
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    pair = data.get("text_pair_column")
    if run.task == "classification" and pair and pair in row:
        text = f"{text} ‖ {row[pair]}"
    return html.escape(text)


def _highlight(text: str, spans: list[dict[str, Any]]) -> str:
    """`text` with each span (start, end, label) wrapped in <mark>, escaped."""
    parts, position = [], 0
    for span in sorted(spans, key=lambda s: s["start"]):
        if span["start"] < position:
            continue
        parts.append(html.escape(text[position : span["start"]]))
        parts.append(f'<mark title="{html.escape(str(span["label"]))}">{html.escape(text[span["start"] : span["end"]])}'
                     f'<sup>{html.escape(str(span["label"]))}</sup></mark>')  # fmt: skip
        position = span["end"]
    parts.append(html.escape(text[position:]))
    return "".join(parts)


def _shown_prediction(prediction: dict[str, Any]) -> str:
    if "label" in prediction:
        return f"{html.escape(str(prediction['label']))} ({prediction['score']:.3f})"
    if "labels" in prediction:
        return html.escape(", ".join(prediction["labels"]) or "(none)")
    if "entities" in prediction:
        return html.escape(
            ", ".join(f"{e['text']} ({e['label']})" for e in prediction["entities"]) or "(none)"
        )
    if "generated_text" in prediction:
        return html.escape(prediction["generated_text"])
    return html.escape(str(prediction.get("answer", "")))


def _shown_gold(run: Run, gold: Any, row: dict[str, Any]) -> str:
    if gold is None:
        return ""
    if run.task == "token_classification":
        from sftlab.evaluation.entities import entity_spans

        words = row.get(run.config.get("data", {}).get("tokens_column", "tokens"), [])
        return html.escape(
            ", ".join(f"{' '.join(words[a : b + 1])} ({kind})" for kind, a, b in entity_spans(list(gold)))
            or "(none)"
        )
    if isinstance(gold, list):
        return html.escape(" | ".join(map(str, gold)) or "(no answer)")
    return html.escape(str(gold))


def _samples(run: Run, table: Any, predictions: list[dict[str, Any]]) -> str:
    rows = []
    for row, prediction in zip(table.rows, predictions, strict=True):
        gold = gold_label(run, row)
        rows.append((is_correct(run, gold, prediction), row, gold, prediction))
    errors = sum(1 for right, *_ in rows if right is False)
    rows.sort(key=lambda item: item[0] is not False)  # errors first, otherwise in order
    body = "".join(
        f'<tr class="{"error" if right is False else "ok"}"><td>{_input_text(run, row, prediction)}</td>'
        f"<td>{_shown_gold(run, gold, row)}</td><td>{_shown_prediction(prediction)}</td>"
        f"<td>{'' if right is None else ('yes' if right else 'no')}</td></tr>"
        for right, row, gold, prediction in rows[:SAMPLES_SHOWN]
    )
    split = html.escape(str(run.metrics.get("split", "")))
    intro = (
        f"<p>{errors} errors among the first {len(rows)} {split} examples predicted again; errors first.</p>"
    )
    return (
        intro
        + f'<table class="samples"><tr><th>input</th><th>reference</th><th>prediction</th><th>correct</th></tr>{body}</table>'
    )


def calibration_summary(
    run: Run, table: Any, predictions: list[dict[str, Any]]
) -> tuple[list[dict[str, float]], float]:
    confidences, correct = [], []
    for row, prediction in zip(table.rows, predictions, strict=True):
        right = is_correct(run, gold_label(run, row), prediction)
        if right is not None:
            confidences.append(float(prediction["score"]))
            correct.append(right)
    bins = reliability_bins(confidences, correct)
    return bins, expected_calibration_error(bins)


def _calibration(run: Run, table: Any, predictions: list[dict[str, Any]]) -> str:
    bins, ece = calibration_summary(run, table, predictions)
    count = sum(int(b["count"]) for b in bins)
    text = (f"<p>Expected calibration error <b data-key='ece' data-value='{ece!r}'>{ece:.4f}</b> over {count} "
            f"{html.escape(str(run.metrics.get('split', '')))} examples (10 equal-width bins of the top label's "
            "softmax probability).</p>")  # fmt: skip
    return text + _image(figures.reliability_diagram(bins, ece), "reliability diagram")


def _data_summary(run: Run, tables: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(split)}</td><td>{len(table):,}</td></tr>" for split, table in tables.items()
    )
    body = f"<table><tr><th>split</th><th>rows</th></tr>{rows}</table>"
    label_column = run.config.get("data", {}).get("label_column", "label")
    if run.task == "classification":
        counts = {split: _label_counts(table, label_column) for split, table in tables.items()}
        labels = sorted({label for split_counts in counts.values() for label in split_counts})
        if 0 < len(labels) <= 50:
            header = "".join(f"<th>{html.escape(split)}</th>" for split in counts)
            lines = "".join(
                f"<tr><td>{html.escape(label)}</td>" + "".join(f"<td>{counts[s].get(label, 0)}</td>" for s in counts) + "</tr>"
                for label in labels
            )  # fmt: skip
            body += f"<h3>Examples per label</h3><table><tr><th>label</th>{header}</tr>{lines}</table>"
    return body


def _label_counts(table: Any, column: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in table.rows:
        values = row.get(column)
        for value in values if isinstance(values, list) else [values]:
            if value is not None:
                counts[str(value)] = counts.get(str(value), 0) + 1
    return counts


def _environment(run: Run) -> str:
    environment = dict(run.metrics.get("environment") or {})
    environment.setdefault("precision", run.metrics.get("precision"))
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in environment.items()
    )
    return f"<table>{rows}</table>"


def environment(device: Any, precision: str, num_processes: int = 1) -> dict[str, Any]:
    """Versions, device and precision of the process that trained: saved in metrics.json."""
    import platform

    import accelerate
    import torch
    import transformers

    from sftlab import __version__

    device_name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # Linux names the CPU model here; platform.processor() often does not
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        device_name = names[0] if names else device_name
    if getattr(device, "type", str(device)) == "cuda":
        device_name = torch.cuda.get_device_name(device)
    return {
        "sftlab": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "accelerate": accelerate.__version__,
        "platform": platform.platform(), "device": str(device), "device_name": device_name,
        "cpu_count": os.cpu_count(), "processes": num_processes, "precision": precision,
    }  # fmt: skip


# --- several runs


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differing_settings(runs: list[Run]) -> dict[str, list[Any]]:
    """Config keys (flattened, `train.learning_rate`) whose values are not the same in every run."""
    flats = [flatten(run.config) for run in runs]
    keys = dict.fromkeys(key for flat in flats for key in flat if key != "output_dir")
    return {
        key: [flat.get(key) for flat in flats]
        for key in keys
        if len({json.dumps(f.get(key)) for f in flats}) > 1
    }


def render_comparison(runs: list[Run]) -> str:
    names = [run.name for run in runs]
    if len(set(names)) < len(names):
        names = [str(run.path) for run in runs]
    sections = []
    charts = []
    for title, source, key in (("validation loss", "history", "loss"), ("train loss", "log", "train/loss")):
        curves = [(name, *_series(run.history if source == "history" else run.log_history, key))
                  for name, run in zip(names, runs, strict=True)]  # fmt: skip
        if source == "log" and not any(c[1] for c in curves):
            curves = [
                (name, *_series(run.history, "train_loss")) for name, run in zip(names, runs, strict=True)
            ]
        curves = [c for c in curves if c[1]]
        if curves:
            charts.append(_image(figures.line_chart(curves, title, "step", "loss"), title))
    main = runs[0].metrics.get("metric_for_best")
    if isinstance(main, str) and main != "loss":
        curves = [(name, *_series(run.history, main)) for name, run in zip(names, runs, strict=True)]
        curves = [c for c in curves if c[1]]
        if curves:
            charts.append(
                _image(figures.line_chart(curves, f"validation {main}", "step", main), f"validation {main}")
            )
    sections.append(("curves", "Curves", "".join(charts)))
    finals = [final_scalars(run.metrics) for run in runs]
    keys = list(dict.fromkeys(key for final in finals for key in final))
    header = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td>" + "".join(
            f"<td class='num' data-run='{i}' data-key='{html.escape(key)}' data-value='{html.escape(json.dumps(final.get(key)))}'>"
            f"{_number(final.get(key))}</td>" for i, final in enumerate(finals)) + "</tr>"
        for key in keys
    )  # fmt: skip
    sections.append(
        ("metrics", "Final metrics", f"<table class='metrics'><tr><th>metric</th>{header}</tr>{rows}</table>")
    )
    differing = differing_settings(runs)
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td>" + "".join(f"<td>{html.escape(json.dumps(v))}</td>" for v in values) + "</tr>"
        for key, values in differing.items()
    )  # fmt: skip
    body = (
        f"<table class='settings'><tr><th>setting</th>{header}</tr>{rows}</table>"
        if differing
        else "<p>None: the configs are the same.</p>"
    )
    sections.append(("settings", "Settings that differ", body))
    return _page(
        f"sftlab comparison of {len(runs)} runs", " · ".join(str(run.path) for run in runs), sections, []
    )


def write_comparison(run_dirs: list[Path], output: Path) -> Path:
    runs = [Run.load(path) for path in run_dirs]
    write_atomic(output, render_comparison(runs))
    return output


# --- the page

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1f3b5a;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}nav{padding:8px 32px;background:#e8ecf2;font-size:13px}
nav a{margin-right:14px;color:#1f3b5a}main{padding:8px 32px 40px}section{background:#fff;border-radius:8px;
padding:12px 20px;margin:16px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}h2{font-size:18px;margin:6px 0 12px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border-bottom:1px solid #e3e6eb;padding:4px 10px;
text-align:left;vertical-align:top}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;
margin:6px 12px 6px 0;vertical-align:top}.tiles{display:flex;gap:12px;flex-wrap:wrap}.tile{background:#eef3f9;
border-radius:6px;padding:8px 16px;font-size:12px;color:#445}.big{font-size:22px;font-weight:600;color:#1f3b5a}
tr.error td{background:#fff4f2}mark{background:#ffe28a;border-radius:3px;padding:0 2px}mark sup{font-size:9px;
color:#6b5400;margin-left:2px}pre{background:#f3f4f6;padding:10px;font-size:12px;overflow:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:0 24px;font-size:13px;
margin:8px 0}.kv{display:flex;justify-content:space-between;border-bottom:1px solid #e3e6eb;padding:3px 2px}
.kv .num{font-variant-numeric:tabular-nums}.note{color:#7a5b00;background:#fff8e1;padding:6px 10px;border-radius:4px}
"""


def _page(title: str, subtitle: str, sections: list[tuple[str, str, str]], notes: list[str]) -> str:
    nav = "".join(f'<a href="#{anchor}">{html.escape(heading)}</a>' for anchor, heading, _ in sections)
    body = "".join(f'<section id="{anchor}"><h2>{html.escape(heading)}</h2>{content}</section>'
                   for anchor, heading, content in sections)  # fmt: skip
    shown_notes = "".join(f'<p class="note">{html.escape(note)}</p>' for note in notes)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head><body>'
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{shown_notes}{body}</main></body></html>\n"
    )
