#!/usr/bin/env python3
"""Writes iteralign's result file (ITERALIGN_RESULT_FILE) for the example training scripts.

The result is JSON: {"model": "<path or id>", "provider": "llama-cpp" | "openai-compatible", "metrics": {...}}.
Losses come from the training log: Hugging Face's Trainer (under TRL and axolotl) prints each logging step as a
Python dict, e.g. {'loss': 1.2345, 'grad_norm': 3.1, 'learning_rate': 2e-05, 'epoch': 0.5}.
"""

import argparse
import ast
import json
import os
import time


def losses(log_path, logging_steps):
    """The loss of every logged step, in order, as [{"step", "loss"}]."""
    curve = []
    if not log_path or not os.path.exists(log_path):
        return curve
    with open(log_path, encoding="utf-8", errors="replace") as log:
        for raw in log:
            # Progress bars overwrite themselves with carriage returns; a dict may follow one on the same line.
            for line in raw.replace("\r", "\n").split("\n"):
                line = line.strip()
                start = line.find("{'")
                if start < 0 or not line.endswith("}"):
                    continue
                try:
                    # literal_eval parses literals only: nothing in the log is ever executed.
                    entry = ast.literal_eval(line[start:])
                except (ValueError, SyntaxError):
                    continue
                if isinstance(entry, dict) and "loss" in entry:
                    try:
                        loss = float(entry["loss"])
                    except (TypeError, ValueError):
                        continue
                    step = entry.get("step", (len(curve) + 1) * logging_steps)
                    curve.append({"step": int(step), "loss": loss})
    return curve


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="GGUF path (relative: to ITERALIGN_OUTPUT_DIR) or model id")
    parser.add_argument("--provider", choices=["llama-cpp", "openai-compatible"], required=True)
    parser.add_argument("--log", help="training log to read losses from")
    parser.add_argument("--logging-steps", type=int, default=1, help="optimizer steps between two logged losses")
    parser.add_argument("--started-at", type=float, help="unix time training started")
    args = parser.parse_args()

    metrics = {}
    curve = losses(args.log, args.logging_steps)
    if curve:
        metrics["lossCurve"] = curve
        metrics["finalLoss"] = curve[-1]["loss"]
    if args.started_at is not None:
        metrics["seconds"] = round(time.time() - args.started_at, 3)

    result = {"model": args.model, "provider": args.provider, "metrics": metrics}
    target = os.environ["ITERALIGN_RESULT_FILE"]
    # Written whole, then renamed: iteralign never reads half a result.
    with open(target + ".tmp", "w", encoding="utf-8") as out:
        json.dump(result, out, indent=2)
    os.replace(target + ".tmp", target)
    print(f"iteralign result: {args.model} ({args.provider})")


if __name__ == "__main__":
    main()
