#!/usr/bin/env bash
# Preference tuning (DPO) with TRL's `trl dpo` CLI: chosen = the gated revision, rejected = the original answer.
#
#   train:
#     trainer: command
#     command:
#       command: [bash, examples/train/trl-dpo.sh]       # extra items are passed on to `trl dpo`
#       env: { HF_BASE_MODEL: Qwen/Qwen2.5-7B-Instruct, LLAMA_CPP_DIR: /opt/llama.cpp, BETA: "0.1" }
#
# Needs the same as trl-sft.sh. The reference model is the starting checkpoint (TRL's default). Tunables (env):
# BETA, EPOCHS, LEARNING_RATE, BATCH_SIZE, GRAD_ACCUM, LOGGING_STEPS. Data: the TRL preference export
# (ITERALIGN_PREF_TRL: conversational prompt / chosen / rejected).
# Extra argv items come last, so they override these flags (e.g. `--bf16 false` on GPUs without bfloat16).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

START="$(start_model)"
DATA="$(dataset_dir "$ITERALIGN_PREF_TRL" preference)"
LOG="$ITERALIGN_OUTPUT_DIR/trl-dpo.log"
LOGGING_STEPS="${LOGGING_STEPS:-1}"
echo "trl dpo: $START on $ITERALIGN_EXAMPLES pairs (iteration $ITERALIGN_ITERATION) -> $HF_OUT"

trl dpo \
  --model_name_or_path "$START" \
  --dataset_name "$DATA" \
  --output_dir "$HF_OUT" \
  --beta "${BETA:-0.1}" \
  --num_train_epochs "${EPOCHS:-1}" \
  --learning_rate "${LEARNING_RATE:-5e-7}" \
  --lr_scheduler_type cosine \
  --warmup_ratio 0.1 \
  --per_device_train_batch_size "${BATCH_SIZE:-2}" \
  --gradient_accumulation_steps "${GRAD_ACCUM:-8}" \
  --gradient_checkpointing \
  --bf16 \
  --logging_steps "$LOGGING_STEPS" \
  --save_strategy no \
  --report_to none \
  "$@" 2>&1 | tee "$LOG"

finish "$HF_OUT" "$LOG" "$LOGGING_STEPS"
