#!/usr/bin/env bash
# bash benchmarks/gpu_check.sh          (on a machine with one CUDA GPU; about 5-8 minutes)
#
# What a maintainer with a GPU runs as is. Prints ONE JSON line:
#   minilm_bf16   bf16 fine-tuning of MiniLM on trec6 (accuracy, samples/s, precision)
#   lora_smollm2  LoRA SFT of SmolLM2 on CommonsenseQA (SDPA attention; packing), answer-token loss
#   resume        the MiniLM run killed (SIGKILL) after its step-20 checkpoint and resumed: the largest weight
#                 difference against the uninterrupted run (0.0 is bitwise; GPU kernels may differ by ~1e-6)
#   bench         `sftlab bench --quick --cases a` (sftlab vs transformers.Trainer on the same work, on GPU)
#   fsdp2         a one-GPU FSDP2 smoke run through accelerate launch (examples/accelerate/fsdp2.yaml's plugin)
# Every part runs even when an earlier one fails; a failed part reports {"ok": false, "error": "..."}.
set -u
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
MINILM=(data.dataset=trec6 data.max_train_samples=1280 data.max_eval_samples=200 data.max_length=48
        train.epochs=2 train.batch_size=32 train.precision=bf16 train.device=cuda train.seed=7
        train.eval_every=20 train.save_every=20 train.keep_last=2)

part() {  # part NAME COMMAND...: run it, keep its log, report ok
  local name=$1; shift
  if "$@" >"$WORK/$name.log" 2>&1; then echo "ok" >"$WORK/$name.status"; else echo "fail" >"$WORK/$name.status"; fi
}

part minilm_bf16 $PY -m sftlab train examples/trec6.yaml "${MINILM[@]}" output_dir="$WORK/minilm" --quiet
part lora_smollm2 $PY -m sftlab train examples/smollm2_commonsense_lora.yaml train.device=cuda \
  train.precision=bf16 output_dir="$WORK/lora" --quiet

# Resume: start the same MiniLM run, SIGKILL it once its step-20 checkpoint exists, resume, compare.
$PY -m sftlab train examples/trec6.yaml "${MINILM[@]}" output_dir="$WORK/killed" --quiet >"$WORK/resume.log" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do
  [ -f "$WORK/killed/checkpoints/step-20/state.json" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
part resume $PY -m sftlab train examples/trec6.yaml "${MINILM[@]}" output_dir="$WORK/killed" --resume --quiet

part bench $PY -m sftlab bench --quick --cases a
part fsdp2 accelerate launch --num_processes 1 --use_fsdp --fsdp_version 2 --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP \
  --fsdp_state_dict_type FULL_STATE_DICT --mixed_precision bf16 -m sftlab train examples/trec6.yaml \
  data.dataset=trec6 data.max_train_samples=256 data.max_eval_samples=64 data.max_length=48 train.epochs=1 \
  train.device=cuda output_dir="$WORK/fsdp2" --quiet

WORK="$WORK" $PY - <<'EOF'
import json, os
from pathlib import Path

work = Path(os.environ["WORK"])


def status(name):
    ok = (work / f"{name}.status").read_text().strip() == "ok"
    return {"ok": ok} if ok else {"ok": False, "error": (work / f"{name}.log").read_text()[-400:]}


def metrics(folder, *keys):
    data = json.loads((work / folder / "metrics.json").read_text())
    return {key: data.get(key) for key in keys}


out = {"gpu": None}
try:
    import torch

    out["gpu"] = torch.cuda.get_device_name(0)
except Exception as error:  # no GPU: every part below fails and says why
    out["gpu"] = f"none ({error})"
for name, folder, keys in [
    ("minilm_bf16", "minilm", ("accuracy", "train_samples_per_s", "precision", "speed_levers")),
    ("lora_smollm2", "lora", ("loss", "exact_match", "train_tokens_per_s", "precision")),
    ("fsdp2", "fsdp2", ("accuracy", "train_samples_per_s")),
]:
    out[name] = status(name)
    if out[name]["ok"]:
        out[name].update(metrics(folder, *keys))
out["resume"] = status("resume")
if out["resume"]["ok"]:
    from safetensors.torch import load_file

    ours = load_file(str(work / "killed" / "model" / "model.safetensors"))
    theirs = load_file(str(work / "minilm" / "model" / "model.safetensors"))
    out["resume"]["max_weight_difference"] = max(float((ours[k].float() - theirs[k].float()).abs().max()) for k in theirs)
out["bench"] = status("bench")
if out["bench"]["ok"]:
    out["bench"]["summary"] = json.loads((work / "bench.log").read_text().strip().splitlines()[-1])
print(json.dumps(out))
EOF
