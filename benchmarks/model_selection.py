"""Does `sftlab select` pick the model that fine-tunes best, and how much sooner than fine-tuning them all?

    .venv/bin/python benchmarks/model_selection.py OUT_DIR CONFIG [KEY=VALUE ...] [--models a,b,c]

Runs `select` (estimates, then the default confirm stage), then fine-tunes every candidate with the same
settings as the confirm runs (a confirm run that finished is reused), and writes OUT_DIR/measure.json:
each candidate's estimates and true validation metric, Kendall's tau of each estimate against the truth,
whether the estimate's and select's picks are the best (or within 1 point of it), and the time of select
against fine-tuning every candidate.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from scipy.stats import kendalltau

from sftlab.config import load_config
from sftlab.recipes.finetune import finetune
from sftlab.recipes.select import default_candidates, select, slug


def main(argv: list[str]) -> None:
    models = None
    if "--models" in argv:
        at = argv.index("--models")
        models = argv[at + 1].split(",")
        argv = argv[:at] + argv[at + 2 :]
    out, path, *overrides = argv
    config = load_config(path, [*overrides, f"output_dir={out}/select"])
    names = models or config.select.models or default_candidates(config.task)
    started = time.perf_counter()
    selection = select(config, models=names, overwrite=True)
    select_seconds = time.perf_counter() - started
    # the metric select ranked the fine-tunes by (train.metric_for_best, else the task's main metric)
    metric = json.loads((selection.output_dir / "selection.json").read_text(encoding="utf-8"))["metric"]

    truth: dict[str, dict] = {}
    for candidate in selection.candidates:
        if candidate.status == "failed":
            continue
        confirm = candidate.confirm
        if confirm is not None and confirm["status"] == "finished":
            truth[candidate.model] = {
                "value": confirm["value"],
                "seconds": confirm["seconds"],
                "reused": True,
            }
            continue
        run = config.model_copy(
            deep=True,
            update={"model": candidate.model, "output_dir": Path(out) / "full" / slug(candidate.model)},
        )
        run.train.keep_last = 0  # as in select's confirm runs
        began = time.perf_counter()
        result = finetune(run, overwrite=True, echo=False)
        truth[candidate.model] = {
            "value": float(result.metrics["best_metric"]),
            "seconds": time.perf_counter() - began,
            "reused": False,
        }
        print(
            f"full fine-tune {candidate.model}: validation {metric} {truth[candidate.model]['value']:.4f}",
            flush=True,
        )

    estimated = [c for c in selection.candidates if c.status == "estimated"]
    true_values = [truth[c.model]["value"] for c in estimated]
    best_true = max(true_values)
    taus = {}
    for key in ("logme", "hscore", "probe_accuracy", "probe_f1_macro"):
        tau = kendalltau([getattr(c, key) for c in estimated], true_values).statistic
        taus[key] = None if tau != tau else round(float(tau), 3)
    picks = {}
    for key in ("logme", "hscore", "probe_accuracy", "probe_f1_macro"):
        chosen = max(estimated, key=lambda c, key=key: getattr(c, key)).model
        picks[key] = {"model": chosen, "best": truth[chosen]["value"] == best_true,
                      "within_1_point": best_true - truth[chosen]["value"] <= 0.01}  # fmt: skip
    picks["select"] = {"model": selection.pick, "best": truth[selection.pick]["value"] == best_true,
                       "within_1_point": best_true - truth[selection.pick]["value"] <= 0.01}  # fmt: skip
    estimate_seconds = sum(c.seconds or 0 for c in selection.candidates)
    record = {
        "config": path, "overrides": overrides, "metric": metric, "select_seconds": round(select_seconds, 1),
        "estimate_seconds": round(estimate_seconds, 1),
        "fine_tune_all_seconds": round(sum(t["seconds"] for t in truth.values()), 1),
        "kendall_tau": taus, "picks": picks,
        "candidates": [
            {"model": c.model, "logme": c.logme, "hscore": c.hscore, "probe_accuracy": c.probe_accuracy,
             "probe_f1_macro": c.probe_f1_macro, "estimate_seconds": c.seconds, "tokens_per_s": c.tokens_per_s,
             "peak_memory_mb": c.peak_memory_mb, "parameters": c.parameters,
             "confirm": c.confirm and {k: c.confirm[k] for k in ("status", "value", "evaluations", "seconds") if k in c.confirm},
             "true": truth.get(c.model)}
            for c in selection.candidates
        ],
    }  # fmt: skip
    Path(out, "measure.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(
        json.dumps(
            {k: record[k] for k in ("select_seconds", "fine_tune_all_seconds", "kendall_tau", "picks")},
            indent=2,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
