#!/usr/bin/env bash
# Supervised fine-tuning with axolotl, on iteralign's TRL export with the model's chat template.
#
#   train:
#     trainer: command
#     command:
#       command: [bash, examples/train/axolotl.sh]       # extra items are passed on to `axolotl train`
#       env: { HF_BASE_MODEL: Qwen/Qwen2.5-7B-Instruct, LLAMA_CPP_DIR: /opt/llama.cpp }
#
# Needs: pip install axolotl (with its torch/CUDA extras) on a CUDA machine. Settings: examples/train/axolotl.yaml
# (or AXOLOTL_CONFIG=your.yaml, in the same shape). Older axolotl releases without the `axolotl` command:
# AXOLOTL_LAUNCH="accelerate launch -m axolotl.cli.train".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

START="$(start_model)"
TEMPLATE="${AXOLOTL_CONFIG:-$EXAMPLES_DIR/axolotl.yaml}"
CONFIG="$ITERALIGN_OUTPUT_DIR/axolotl.yaml"
LOG="$ITERALIGN_OUTPUT_DIR/axolotl.log"

# The paths go in as argv and are written with yaml.safe_dump: no value is ever pasted into code or YAML text.
"$PYTHON" - "$TEMPLATE" "$CONFIG" "$START" "$ITERALIGN_SFT_TRL" "$HF_OUT" <<'PY'
import sys

import yaml

template, target, base_model, data, output_dir = sys.argv[1:6]
with open(template, encoding="utf-8") as f:
    config = yaml.safe_load(f)
config["base_model"] = base_model
config["datasets"][0]["path"] = data
config["output_dir"] = output_dir
config["dataset_prepared_path"] = output_dir + "-prepared"
with open(target, "w", encoding="utf-8") as f:
    yaml.safe_dump(config, f, sort_keys=False)
PY

LOGGING_STEPS="$("$PYTHON" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1])).get("logging_steps", 1))' "$CONFIG")"
echo "axolotl: $START on $ITERALIGN_EXAMPLES examples (iteration $ITERALIGN_ITERATION) -> $HF_OUT"
# shellcheck disable=SC2086 # AXOLOTL_LAUNCH is a command line of the user's own.
${AXOLOTL_LAUNCH:-axolotl train} "$CONFIG" "$@" 2>&1 | tee "$LOG"

finish "$HF_OUT" "$LOG" "$LOGGING_STEPS"
