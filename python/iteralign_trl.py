#!/usr/bin/env python3
"""iteralign's TRL trainer (run by `train.trainer: trl`; written for iteralign, not copied from TRL's examples).

Commands:
  check                 JSON on stdout: python, torch, transformers, trl, peft, accelerate, datasets versions,
                        the device (cuda / mps / cpu) and whether bf16 / fp16 work on it.
  train JOB.json        SFT and/or DPO with LoRA, QLoRA or full fine-tuning, as the job says. Resumes from the
                        last checkpoint under the job's output directory; a finished phase is never repeated.
  gguf-to-hf GGUF OUT [DTYPE]
                        Dequantizes a GGUF model (architectures transformers reads) into a Hugging Face folder, in
                        float32 (default), bfloat16 or float16.

Progress is written to stdout as lines `@iteralign {json}` (events: start, step, save, phase, done, error);
everything else on stdout/stderr is log text. Only the main process of a distributed launch writes events and
the final files.
"""

import hashlib
import json
import os
import resource
import shutil
import sys
import time
import traceback

EVENT_PREFIX = "@iteralign "
FINAL_ADAPTER = "adapter"
FINAL_MODEL = "model"
RESULT_FILE = "trl-result.json"


def is_main_process():
    return int(os.environ.get("RANK", "0")) == 0


def emit(event, **fields):
    if not is_main_process():
        return
    sys.stdout.write(EVENT_PREFIX + json.dumps({"event": event, **fields}, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()


def fail(kind, message):
    emit("error", kind=kind, message=message)
    sys.stderr.write(f"iteralign_trl: {kind}: {message}\n")
    sys.exit(3 if kind == "input" else 1)


# --------------------------------------------------------------------------------------------------- check


def check():
    import importlib
    import platform

    report = {"python": platform.python_version(), "executable": sys.executable, "packages": {}, "missing": []}
    for name in ["torch", "transformers", "trl", "peft", "accelerate", "datasets", "safetensors", "gguf"]:
        try:
            module = importlib.import_module(name)
            version = getattr(module, "__version__", None)
            if version is None:
                import importlib.metadata

                version = importlib.metadata.version(name)
            report["packages"][name] = version
        except Exception as err:  # an import error of any kind means the package is not usable
            report["missing"].append({"package": name, "error": f"{type(err).__name__}: {err}"})
    try:
        import bitsandbytes  # noqa: F401  (QLoRA only)

        report["packages"]["bitsandbytes"] = bitsandbytes.__version__
    except Exception:
        pass
    device = {"type": "cpu", "bf16": False, "fp16": False}
    if "torch" in report["packages"]:
        import torch

        if torch.cuda.is_available():
            device = {
                "type": "cuda",
                "name": torch.cuda.get_device_name(0),
                "count": torch.cuda.device_count(),
                "memoryBytes": torch.cuda.get_device_properties(0).total_memory,
                "bf16": bool(torch.cuda.is_bf16_supported()),
                "fp16": True,
            }
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = {"type": "mps", "bf16": False, "fp16": True}
        device["threads"] = torch.get_num_threads()
    report["device"] = device
    print(json.dumps(report))


# --------------------------------------------------------------------------------------------------- gguf-to-hf


def gguf_to_hf(gguf_file, out_dir, dtype="float32"):
    """Reads a GGUF with transformers' GGUF loader (dequantized to F32) and saves a plain HF folder in `dtype`
    (float32, or bfloat16 / float16 for a trainer that computes in it: half the file, and half the memory mapped
    while the trainer loads it)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(gguf_file))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output embeddings are the only weights a GGUF may lack.
    missing = [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        fail("input", f"{gguf_file}: weights do not match the architecture (missing {missing}, unexpected {unexpected})")
    if dtype != "float32":
        model = model.to(getattr(torch, dtype))
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    emit("done", out=out_dir, architecture=type(model).__name__, parameters=sum(p.numel() for p in model.parameters()))


# --------------------------------------------------------------------------------------------------- train


def read_jsonl(file, what):
    rows = []
    with open(file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                fail("input", f"{file} line {number}: not JSON ({err.msg})")
    if not rows:
        fail("input", f"{file}: no {what} examples")
    return rows


def sft_rows(file):
    """TRL `messages` rows as prompt-completion conversations: the loss falls on the completion only."""
    rows = []
    for number, row in enumerate(read_jsonl(file, "SFT"), 1):
        messages = row.get("messages")
        if not isinstance(messages, list) or len(messages) < 2 or messages[-1].get("role") != "assistant":
            fail("input", f"{file} line {number}: `messages` must end with an assistant message")
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return rows


def preference_rows(file):
    rows = []
    for number, row in enumerate(read_jsonl(file, "preference"), 1):
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(row.get(key), list):
                fail("input", f"{file} line {number}: `{key}` must be a list of messages")
        rows.append({"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]})
    return rows


def last_checkpoint(directory):
    if not os.path.isdir(directory):
        return None
    steps = []
    for name in os.listdir(directory):
        if name.startswith("checkpoint-") and name[len("checkpoint-") :].isdigit():
            path = os.path.join(directory, name)
            # A checkpoint counts only once the trainer state is written (it is written last).
            if os.path.exists(os.path.join(path, "trainer_state.json")):
                steps.append((int(name[len("checkpoint-") :]), path))
    return max(steps)[1] if steps else None


def precision_flags(job, torch):
    wanted = job.get("precision", "auto")
    cuda = torch.cuda.is_available() and job.get("device") != "cpu"
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if wanted == "bf16" and not cuda:
        # torch computes bf16 on the CPU too (slower than fp32 without AMX/AVX512-BF16, half the weight memory).
        return "bf16"
    if wanted == "bf16" and not bf16_ok:
        fail("input", "train.trl.precision is bf16, but this device does not support bf16")
    if wanted == "fp16" and not cuda:
        fail("input", "train.trl.precision is fp16, which needs a CUDA device")
    if wanted == "auto":
        wanted = "bf16" if bf16_ok else ("fp16" if cuda else "fp32")
    return wanted


def size_loss_chunks(job, cuda):
    """The chunk of TRL's chunked SFT loss (`loss_type` chunked_nll, TRL's default since 1.x): `lossChunk`, else 32
    on the CPU and TRL's own size on CUDA. TRL keeps the size in a module constant that SFTTrainer reads when it is
    made. Returns the size in force, or None where this TRL has no chunked loss."""
    import trl
    import trl.trainer.sft_trainer as sft_module

    wanted = job.get("lossChunk")
    if not hasattr(sft_module, "_CHUNKED_LM_HEAD_CHUNK_SIZE"):
        if wanted:
            fail("environment", f"train.trl.lossChunk is {wanted}, but TRL {trl.__version__} has no chunked SFT loss to size (TRL 1.x has it); remove the setting or upgrade trl")
        return None
    if wanted or not cuda:
        sft_module._CHUNKED_LM_HEAD_CHUNK_SIZE = int(wanted or 32)
    return sft_module._CHUNKED_LM_HEAD_CHUNK_SIZE


def load_model(job, torch):
    from transformers import AutoModelForCausalLM

    kwargs = {}
    precision = job["_precision"]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    if job["mode"] == "qlora":
        try:
            from transformers import BitsAndBytesConfig
            import bitsandbytes  # noqa: F401
        except Exception as err:
            fail("environment", f"QLoRA needs bitsandbytes and a CUDA device ({type(err).__name__}: {err})")
        if not torch.cuda.is_available():
            fail("environment", "QLoRA needs a CUDA device (bitsandbytes 4-bit); use mode lora on this machine")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype if precision != "fp32" else torch.float32,
        )
    model = AutoModelForCausalLM.from_pretrained(job["baseModel"], dtype=dtype, **kwargs)
    return model


def attach_adapter(model, job, start_from):
    """LoRA/QLoRA: a new adapter, or the adapter `start_from` (warm start, trainable). Full: the model itself."""
    if job["mode"] == "full":
        return model
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if job["mode"] == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if start_from:
        return PeftModel.from_pretrained(model, start_from, is_trainable=True)
    lora = job["lora"]
    config = LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["targetModules"] if lora["targetModules"] != "all-linear" else "all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def warmup_args(ratio):
    """transformers 5 takes a ratio as a float `warmup_steps`; 4.x has `warmup_ratio`."""
    import dataclasses
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {"warmup_ratio": ratio} if "warmup_ratio" in names else {"warmup_steps": float(ratio)}


def common_args(job, phase_dir, precision):
    return dict(
        output_dir=os.path.join(phase_dir, "checkpoints"),
        learning_rate=job["learningRate"],
        num_train_epochs=job["epochs"],
        lr_scheduler_type=job["schedule"],
        **warmup_args(job["warmupRatio"]),
        per_device_train_batch_size=job["batchSize"],
        gradient_accumulation_steps=job["gradientAccumulation"],
        seed=job["seed"],
        data_seed=job["seed"],
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=job.get("device") == "cpu",
        logging_steps=1,
        save_strategy="steps",
        save_steps=job["checkpointSteps"],
        save_total_limit=2,
        report_to="none",
        disable_tqdm=True,
        max_length=job["maxLength"],
        gradient_checkpointing=bool(job.get("gradientCheckpointing")),
        # Non-reentrant checkpointing works with frozen inputs (a LoRA base) and keeps the RNG of dropout.
        gradient_checkpointing_kwargs={"use_reentrant": False} if job.get("gradientCheckpointing") else None,
        include_num_input_tokens_seen=True,
        dataloader_num_workers=0,
        remove_unused_columns=True,
    )


def make_callback(phase):
    from transformers import TrainerCallback

    class Events(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            # What the model is doing now that the trainer set it up, not what the job asked for.
            checkpointing = bool(getattr(kwargs.get("model"), "is_gradient_checkpointing", False))
            emit("phase", phase=phase, totalSteps=state.max_steps, resumedAtStep=state.global_step, gradientCheckpointing=checkpointing)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            emit(
                "step",
                phase=phase,
                step=state.global_step,
                totalSteps=state.max_steps,
                epoch=state.epoch,
                loss=logs.get("loss"),
                learningRate=logs.get("learning_rate"),
                tokensSeen=state.num_input_tokens_seen,
            )

        def on_save(self, args, state, control, **kwargs):
            emit("save", phase=phase, step=state.global_step)

    return Events()


def run_phase(job, phase, model, tokenizer, torch):
    from datasets import Dataset

    phase_dir = os.path.join(job["outDir"], phase)
    done_file = os.path.join(phase_dir, "done.json")
    args = common_args(job, phase_dir, job["_precision"])
    if phase == "sft":
        from trl import SFTConfig, SFTTrainer

        dataset = Dataset.from_list(sft_rows(job["sftFile"]))
        config = SFTConfig(**args, completion_only_loss=True, packing=False, shuffle_dataset=True)
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[make_callback(phase)])
    else:
        from trl import DPOConfig, DPOTrainer

        dataset = Dataset.from_list(preference_rows(job["preferenceFile"]))
        config = DPOConfig(**args, beta=job["dpoBeta"])
        trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[make_callback(phase)])
    resume = last_checkpoint(args["output_dir"])
    if resume:
        emit("resume", phase=phase, checkpoint=resume)
    started = time.time()
    output = trainer.train(resume_from_checkpoint=resume)
    seconds = time.time() - started
    history = [
        {"step": r["step"], "loss": r["loss"], "epoch": r.get("epoch"), "learningRate": r.get("learning_rate")}
        for r in trainer.state.log_history
        if "loss" in r
    ]
    summary = {
        "phase": phase,
        "steps": trainer.state.global_step,
        "examples": len(dataset),
        "trainLoss": output.training_loss,
        "lossCurve": history,
        "tokensSeen": trainer.state.num_input_tokens_seen,
        "seconds": seconds,
        "resumedFrom": resume,
        "trainableParameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "totalParameters": sum(p.numel() for p in trainer.model.parameters()),
    }
    return trainer, summary, done_file


def save_final(job, model, tokenizer, out):
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if job["mode"] == "full":
        tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def hash_folder(folder):
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and (name.endswith(".safetensors") or name.endswith(".json")):
            with open(path, "rb") as handle:
                data = handle.read()
            if name.endswith(".json"):
                # Key order and set order (target modules) do not change the adapter.
                parsed = json.loads(data)
                if isinstance(parsed.get("target_modules"), list):
                    parsed["target_modules"] = sorted(parsed["target_modules"])
                data = json.dumps(parsed, sort_keys=True).encode()
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()


def train(job_file):
    with open(job_file, encoding="utf-8") as handle:
        job = json.load(handle)
    import torch
    import transformers
    from transformers import AutoTokenizer

    transformers.set_seed(job["seed"])
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    job["_precision"] = precision_flags(job, torch)
    tokenizer = AutoTokenizer.from_pretrained(job["baseModel"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        fail("input", f"{job['baseModel']}: the tokenizer has no chat template (set one in tokenizer_config.json)")
    phases = {"sft": ["sft"], "dpo": ["dpo"], "sft+dpo": ["sft", "dpo"]}[job["method"]]
    cuda = torch.cuda.is_available() and job.get("device") != "cpu"
    loss_chunk = size_loss_chunks(job, cuda) if "sft" in phases else None
    summaries = []
    start_from = job.get("startAdapter")
    emit(
        "start",
        phases=phases,
        mode=job["mode"],
        precision=job["_precision"],
        device="cuda" if cuda else "cpu",
        worldSize=int(os.environ.get("WORLD_SIZE", "1")),
        gradientCheckpointing=bool(job.get("gradientCheckpointing")),
        lossChunk=loss_chunk,
    )
    started = time.time()
    model = None
    for phase in phases:
        phase_dir = os.path.join(job["outDir"], phase)
        done_file = os.path.join(phase_dir, "done.json")
        final = os.path.join(phase_dir, "final")
        if os.path.exists(done_file):
            with open(done_file, encoding="utf-8") as handle:
                summaries.append(json.load(handle))
            emit("phase-done", phase=phase, reused=True)
            start_from = final if job["mode"] != "full" else start_from
            if job["mode"] == "full":
                job["baseModel"] = final
            continue
        model = attach_adapter(load_model(job, torch), job, start_from)
        trainer, summary, done_file = run_phase(job, phase, model, tokenizer, torch)
        if trainer.is_world_process_zero():
            save_final(job, trainer.model, tokenizer, final)
            with open(done_file + ".tmp", "w", encoding="utf-8") as handle:
                json.dump(summary, handle)
            os.replace(done_file + ".tmp", done_file)
        if trainer.args.world_size > 1:
            trainer.accelerator.wait_for_everyone()
        summaries.append(summary)
        emit("phase-done", phase=phase, reused=False, loss=summary["trainLoss"], steps=summary["steps"])
        if job["mode"] == "full":
            job["baseModel"] = final
        else:
            start_from = final
        del trainer
    if not is_main_process():
        return
    last_final = os.path.join(job["outDir"], phases[-1], "final")
    out = os.path.join(job["outDir"], FINAL_MODEL if job["mode"] == "full" else FINAL_ADAPTER)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(last_final, tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {
        "output": out,
        "outputHash": hash_folder(out),
        "mode": job["mode"],
        "method": job["method"],
        "precision": job["_precision"],
        "gradientCheckpointing": bool(job.get("gradientCheckpointing")),
        "lossChunk": loss_chunk,
        "phases": summaries,
        "seconds": time.time() - started,
        "tokensSeen": sum(s.get("tokensSeen") or 0 for s in summaries),
        "peakRssBytes": peak_rss,
        "peakCudaBytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": __import__("trl").__version__, "peft": __import__("peft").__version__},
    }
    with open(os.path.join(job["outDir"], RESULT_FILE), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
    emit("done", **{k: result[k] for k in ("output", "outputHash", "seconds", "tokensSeen", "peakRssBytes")})


def watch_parent():
    """Ends this process when the iteralign process that started it is gone (killed with SIGKILL, say): training
    runs in its own process group, so nothing else would stop it, and a resumed run starts its own."""
    import threading

    parent = int(os.environ.get("ITERALIGN_PARENT_PID", "0") or "0")
    if parent <= 1:
        return

    def loop():
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                sys.stderr.write(f"iteralign_trl: iteralign (pid {parent}) is gone; stopping\n")
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=loop, daemon=True).start()


def main(argv):
    if len(argv) >= 1 and argv[0] == "check":
        return check()
    if len(argv) == 2 and argv[0] == "train":
        watch_parent()
        try:
            return train(argv[1])
        except SystemExit:
            raise
        except MemoryError as err:
            fail("memory", f"out of memory: {err}")
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            if "out of memory" in str(err).lower():
                fail("memory", message)
            traceback.print_exc()
            fail("training", message)
    if len(argv) in (3, 4) and argv[0] == "gguf-to-hf":
        if len(argv) == 4 and argv[3] not in ("float32", "bfloat16", "float16"):
            fail("input", f"gguf-to-hf: dtype must be float32, bfloat16 or float16, not {argv[3]}")
        return gguf_to_hf(argv[1], argv[2], *argv[3:])
    sys.stderr.write(__doc__)
    sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
