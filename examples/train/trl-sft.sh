#!/usr/bin/env bash
# Supervised fine-tuning on iteralign's gated revisions with TRL's `trl sft` CLI (full fine-tuning).
#
#   train:
#     trainer: command
#     command:
#       command: [bash, examples/train/trl-sft.sh]       # extra items are passed on to `trl sft`
#       env: { HF_BASE_MODEL: Qwen/Qwen2.5-7B-Instruct, LLAMA_CPP_DIR: /opt/llama.cpp }
#
# Needs: pip install trl (with torch, transformers, datasets, accelerate) on a CUDA machine, and
# `accelerate config` once for multi-GPU. Tunables (env): EPOCHS, LEARNING_RATE, BATCH_SIZE, GRAD_ACCUM,
# LOGGING_STEPS. Data: the TRL `messages` export (ITERALIGN_SFT_TRL).
# Extra argv items come last, so they override these flags (e.g. `--bf16 false` on GPUs without bfloat16).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

START="$(start_model)"
DATA="$(dataset_dir "$ITERALIGN_SFT_TRL" sft)"
LOG="$ITERALIGN_OUTPUT_DIR/trl-sft.log"
LOGGING_STEPS="${LOGGING_STEPS:-1}"
echo "trl sft: $START on $ITERALIGN_EXAMPLES examples (iteration $ITERALIGN_ITERATION) -> $HF_OUT"

trl sft \
  --model_name_or_path "$START" \
  --dataset_name "$DATA" \
  --output_dir "$HF_OUT" \
  --num_train_epochs "${EPOCHS:-3}" \
  --learning_rate "${LEARNING_RATE:-2e-5}" \
  --lr_scheduler_type cosine \
  --warmup_ratio 0.03 \
  --per_device_train_batch_size "${BATCH_SIZE:-4}" \
  --gradient_accumulation_steps "${GRAD_ACCUM:-4}" \
  --gradient_checkpointing \
  --bf16 \
  --logging_steps "$LOGGING_STEPS" \
  --save_strategy no \
  --report_to none \
  "$@" 2>&1 | tee "$LOG"

finish "$HF_OUT" "$LOG" "$LOGGING_STEPS"
