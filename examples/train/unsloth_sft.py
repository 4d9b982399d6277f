#!/usr/bin/env python3
"""LoRA supervised fine-tuning with Unsloth for iteralign's command trainer.

    train:
      trainer: command
      command:
        command: [python3, examples/train/unsloth_sft.py, --epochs, "3"]
        env: { HF_BASE_MODEL: unsloth/Qwen2.5-7B-Instruct }

Reads iteralign's TRL `messages` export (ITERALIGN_SFT_TRL), formats it with the model's chat template, trains a
LoRA adapter with the loss on the answers only, merges it, and writes ITERALIGN_RESULT_FILE:
- llama-cpp target: a GGUF made by Unsloth's own llama.cpp export (`--gguf-quant`, default q8_0);
- openai-compatible target: the merged 16-bit checkpoint directory, to serve (e.g. `vllm serve <dir>`).

The next iteration warm-starts from this iteration's merged checkpoint (<outDir>/hf), as in the paper.
Needs: pip install unsloth (it brings torch, transformers, trl, peft, datasets) on a CUDA machine.
"""

import argparse
import dataclasses
import glob
import json
import os
import sys
import time

# Unsloth patches transformers and TRL when imported, so it comes first.
from unsloth import FastLanguageModel
from unsloth.chat_templates import train_on_responses_only
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set: run this script through iteralign's command trainer")
    return value


def parse_args():
    parser = argparse.ArgumentParser(description="Unsloth LoRA SFT for iteralign")
    parser.add_argument("--max-seq-length", type=int, default=2048)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--grad-accum", type=int, default=4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=16)
    parser.add_argument("--load-in-4bit", action="store_true", help="QLoRA: load the base weights in 4 bits")
    parser.add_argument("--gguf-quant", default="q8_0", help="GGUF type for a llama-cpp target (q8_0, f16, q4_k_m...)")
    # Where the answer starts and the prompt turns start, in the formatted text; defaults suit ChatML (Qwen).
    # Llama 3: "<|start_header_id|>user<|end_header_id|>\n\n" and "<|start_header_id|>assistant<|end_header_id|>\n\n".
    parser.add_argument("--instruction-part", default="<|im_start|>user\n")
    parser.add_argument("--response-part", default="<|im_start|>assistant\n")
    parser.add_argument("--seed", type=int, default=3407)
    return parser.parse_args()


def start_model(out_dir):
    """The previous iteration's merged checkpoint when there is one (warm start), else HF_BASE_MODEL."""
    current = env("ITERALIGN_CURRENT_MODEL")
    if os.environ.get("ITERALIGN_CURRENT_PROVIDER") == "llama-cpp":
        # The previous GGUF lies in that iteration's output directory (or a folder in it), next to hf/.
        candidates = []
        folder = os.path.dirname(os.path.abspath(current))
        for _ in range(3):
            candidates.append(os.path.join(folder, "hf"))
            folder = os.path.dirname(folder)
    else:
        candidates = [current]
    for previous in candidates:
        if os.path.isfile(os.path.join(previous, "config.json")) and os.path.abspath(previous) != os.path.join(out_dir, "hf"):
            return previous
    return env("HF_BASE_MODEL")


def config_for(cls, **wanted):
    """Keeps the arguments this TRL version's config knows (max_seq_length became max_length in TRL 0.16+)."""
    names = {f.name for f in dataclasses.fields(cls)}
    if "max_length" in wanted and "max_length" not in names and "max_seq_length" in names:
        wanted["max_seq_length"] = wanted.pop("max_length")
    return cls(**{k: v for k, v in wanted.items() if k in names})


def write_result(model, provider, metrics):
    target = env("ITERALIGN_RESULT_FILE")
    with open(target + ".tmp", "w", encoding="utf-8") as out:
        json.dump({"model": model, "provider": provider, "metrics": metrics}, out, indent=2)
    os.replace(target + ".tmp", target)
    print(f"iteralign result: {model} ({provider})")


def newest_gguf(out_dir):
    """Unsloth's GGUF file names changed across releases; take the newest .gguf it wrote."""
    found = [
        path
        for pattern in ("gguf/*.gguf", "gguf/**/*.gguf", "gguf*.gguf", "gguf_gguf/*.gguf")
        for path in glob.glob(os.path.join(out_dir, pattern), recursive=True)
    ]
    if not found:
        sys.exit(f"Unsloth wrote no .gguf file under {out_dir}")
    return max(found, key=os.path.getmtime)


def main():
    args = parse_args()
    out_dir = env("ITERALIGN_OUTPUT_DIR")
    started = time.time()
    base = start_model(out_dir)
    print(f"unsloth: {base} on {env('ITERALIGN_EXAMPLES')} examples (iteration {env('ITERALIGN_ITERATION')})", flush=True)

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=base,
        max_seq_length=args.max_seq_length,
        dtype=None,
        load_in_4bit=args.load_in_4bit,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=0,
        bias="none",
        target_modules=LORA_TARGETS,
        use_gradient_checkpointing="unsloth",
        random_state=args.seed,
    )

    dataset = load_dataset("json", data_files=env("ITERALIGN_SFT_TRL"), split="train")
    bos = tokenizer.bos_token or ""

    def to_text(example):
        text = tokenizer.apply_chat_template(example["messages"], tokenize=False)
        # The tokenizer adds BOS again when it tokenizes the text; keep one.
        return {"text": text[len(bos):] if bos and text.startswith(bos) else text}

    dataset = dataset.map(to_text, remove_columns=dataset.column_names)

    training_args = config_for(
        SFTConfig,
        output_dir=os.path.join(out_dir, "unsloth-checkpoints"),
        dataset_text_field="text",
        max_length=args.max_seq_length,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        lr_scheduler_type="linear",
        warmup_ratio=0.03,
        optim="adamw_8bit",
        weight_decay=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
    )
    try:
        trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=dataset, args=training_args)
    except TypeError:
        # TRL before 0.12 named the tokenizer argument `tokenizer`.
        trainer = SFTTrainer(model=model, tokenizer=tokenizer, train_dataset=dataset, args=training_args)
    # Loss on the answers only, as in the paper's SFT: prompt tokens get label -100.
    trainer = train_on_responses_only(trainer, instruction_part=args.instruction_part, response_part=args.response_part)
    trainer.train()

    curve = [
        {"step": int(entry["step"]), "loss": float(entry["loss"])}
        for entry in trainer.state.log_history
        if "loss" in entry and "step" in entry
    ]
    metrics = {"seconds": round(time.time() - started, 3)}
    if curve:
        metrics["lossCurve"] = curve
        metrics["finalLoss"] = curve[-1]["loss"]

    # The merged 16-bit checkpoint: what the next iteration trains from, and what a server would load.
    hf_dir = os.path.join(out_dir, "hf")
    model.save_pretrained_merged(hf_dir, tokenizer, save_method="merged_16bit")
    if os.environ.get("ITERALIGN_CURRENT_PROVIDER") == "llama-cpp":
        model.save_pretrained_gguf(os.path.join(out_dir, "gguf"), tokenizer, quantization_method=args.gguf_quant)
        gguf = newest_gguf(out_dir)
        write_result(os.path.relpath(gguf, out_dir), "llama-cpp", metrics)
    else:
        write_result(hf_dir, "openai-compatible", metrics)


if __name__ == "__main__":
    main()
