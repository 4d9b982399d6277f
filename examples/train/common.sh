# Shared by the example training scripts (trl-sft.sh, trl-dpo.sh, axolotl.sh). Sourced, not run.
#
# iteralign's command trainer runs a script with the ITERALIGN_* variables set (see docs/training.md). Settings
# of your own come from `env:` in the trainer's config:
#   HF_BASE_MODEL   Hugging Face id or directory of the target's weights (a GGUF cannot be trained by these
#                   tools); iteration 0 starts from it, later iterations from the previous iteration's checkpoint.
#   LLAMA_CPP_DIR   a llama.cpp checkout, for convert_hf_to_gguf.py (needed when the target is a llama-cpp GGUF).
#   GGUF_OUTTYPE    type of the converted GGUF: f16 (default), bf16, q8_0, f32.
#   PYTHON          the Python with torch/transformers (default: python3).
set -euo pipefail

: "${ITERALIGN_OUTPUT_DIR:?run this script through the iteralign command trainer (ITERALIGN_OUTPUT_DIR is not set)}"
EXAMPLES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
# The Hugging Face checkpoint this iteration writes; the next iteration warm-starts from it.
HF_OUT="$ITERALIGN_OUTPUT_DIR/hf"
STARTED_AT="$(date +%s)"

# Prints the checkpoint to train from: the previous iteration's (warm start, as in the paper), else HF_BASE_MODEL.
start_model() {
  local previous
  if [ "$ITERALIGN_CURRENT_PROVIDER" = "llama-cpp" ]; then
    # Our scripts leave <outDir>/model.gguf next to <outDir>/hf.
    previous="$(dirname "$ITERALIGN_CURRENT_MODEL")/hf"
  else
    previous="$ITERALIGN_CURRENT_MODEL"
  fi
  if [ -f "$previous/config.json" ]; then
    printf '%s\n' "$previous"
  elif [ -n "${HF_BASE_MODEL:-}" ]; then
    printf '%s\n' "$HF_BASE_MODEL"
  else
    echo "set HF_BASE_MODEL (train.command.env) to the Hugging Face id or directory of the target's weights" >&2
    return 1
  fi
}

# Copies one export file into a directory of its own as train.jsonl and prints the directory: `datasets`
# (and so `trl sft --dataset_name DIR`) loads a local directory of JSON files as the `train` split.
dataset_dir() {
  local dir="$ITERALIGN_OUTPUT_DIR/data/$2"
  mkdir -p "$dir"
  cp "$1" "$dir/train.jsonl"
  printf '%s\n' "$dir"
}

# finish CHECKPOINT_DIR TRAINING_LOG LOGGING_STEPS
# Writes ITERALIGN_RESULT_FILE. For a llama-cpp target the checkpoint is converted to <outDir>/model.gguf and
# the result names it (a relative path: iteralign resolves it against the output directory); for a served
# (openai-compatible) target the result names the checkpoint directory, which you then serve (docs/training.md).
finish() {
  local checkpoint="$1" log="$2" logging_steps="$3"
  if [ "$ITERALIGN_CURRENT_PROVIDER" = "llama-cpp" ]; then
    : "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR (train.command.env) to a llama.cpp checkout, for convert_hf_to_gguf.py}"
    "$PYTHON" "$LLAMA_CPP_DIR/convert_hf_to_gguf.py" "$checkpoint" \
      --outfile "$ITERALIGN_OUTPUT_DIR/model.gguf" --outtype "${GGUF_OUTTYPE:-f16}"
    "$PYTHON" "$EXAMPLES_DIR/write_result.py" --model model.gguf --provider llama-cpp \
      --log "$log" --logging-steps "$logging_steps" --started-at "$STARTED_AT"
  else
    "$PYTHON" "$EXAMPLES_DIR/write_result.py" --model "$checkpoint" --provider openai-compatible \
      --log "$log" --logging-steps "$logging_steps" --started-at "$STARTED_AT"
  fi
}
