#!/usr/bin/env python3
"""The anchor for `rlfc bench dpo`: TRL's DPOTrainer with a PEFT LoRA on the same model.

It times seconds per DPO step and peak memory for the same batch shape as our trainer:
SmolLM2-135M-Instruct read from the same GGUF file (transformers dequantizes it to f32),
LoRA r=8 / alpha=16 on q, k, v, o, gate, up and down, 4 pairs per step, max_length 128,
on torch's CPU backend. The pairs are the ones `rlfc bench dpo --pairs-out` writes, so
both trainers see the same prompts and answers.

How to run it (not part of the build; it needs a Python venv of its own):

    python3 -m venv ~/.cache/rlfc/trl-venv
    ~/.cache/rlfc/trl-venv/bin/pip install torch transformers peft trl gguf
    cargo run --release -- bench dpo --steps 5 --pairs-out /tmp/dpo_pairs.json
    ~/.cache/rlfc/trl-venv/bin/python scripts/bench_trl_dpo.py \
        --gguf ~/.cache/rlfc/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
        --pairs /tmp/dpo_pairs.json --steps 5

It prints one JSON object: seconds per step (mean and min over the timed steps, after
one warm-up step), peak RSS (ru_maxrss), tokens per step, and the versions used.
"""

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True, help="the GGUF model file")
    ap.add_argument("--pairs", required=True, help="JSON list of {prompt, chosen, rejected}")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after 1 warm-up)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument(
        "--precompute-ref",
        action="store_true",
        help="let TRL compute reference log-probs once up front, as our trainer does",
    )
    ap.add_argument(
        "--no-gradient-checkpointing",
        action="store_true",
        help="turn off TRL's default activation checkpointing (faster, more memory)",
    )
    args = ap.parse_args()

    # Imports after parsing so --help is quick.
    import torch
    import transformers
    import peft
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    gguf = Path(args.gguf).expanduser()
    # transformers reads the GGUF tensors and dequantizes them to f32: the same weights
    # our trainer computes with.
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    # transformers marks a GGUF-loaded model as "quantized" (method GGUF) and refuses to
    # train it, although the weights in memory are plain dequantized f32 tensors. Drop
    # the marker so the trainer sees an ordinary f32 model.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    pairs = json.loads(Path(args.pairs).read_text())
    # Enough rows that every step gets a fresh batch of the same shape; the prompts are
    # already chat-formatted text, so this is TRL's "standard" (not conversational) format.
    n_rows = args.batch * (args.steps + 1)
    rows = [pairs[i % len(pairs)] for i in range(n_rows)]
    data = Dataset.from_list(rows)

    lora = LoraConfig(
        r=args.rank,
        lora_alpha=2 * args.rank,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    cfg = DPOConfig(
        output_dir="/tmp/trl-dpo-bench",
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        max_steps=args.steps + 1,
        max_length=args.seq_len,
        learning_rate=5e-5,
        beta=0.1,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        precompute_ref_log_probs=args.precompute_ref,
        gradient_checkpointing=not args.no_gradient_checkpointing,
        seed=0,
    )

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step (forward, backward, optimizer)."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self.t0 = 0.0

        def on_step_begin(self, *_a, **_k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *_a, **_k):
            self.times.append(time.perf_counter() - self.t0)

    timer = StepTimer()
    trainer = DPOTrainer(
        model=model,
        args=cfg,
        train_dataset=data,
        processing_class=tok,
        peft_config=lora,
        callbacks=[timer],
    )
    # Tokens per step as TRL feeds them: chosen and rejected, prompt included, truncated.
    batch = next(iter(trainer.get_train_dataloader()))
    tokens = None
    for key in ("attention_mask", "chosen_attention_mask"):
        if key in batch:
            tokens = int(batch[key].sum())
            if key == "chosen_attention_mask":
                tokens += int(batch["rejected_attention_mask"].sum())
                tokens += 2 * int(batch["prompt_attention_mask"].sum())
            break

    t_start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t_start
    timed = timer.times[1:]
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    print(
        json.dumps(
            {
                "model": str(gguf),
                "threads": torch.get_num_threads(),
                "settings": {
                    "batch_pairs": args.batch,
                    "max_length": args.seq_len,
                    "lora_rank": args.rank,
                    "lora_alpha": 2 * args.rank,
                    "warmup_steps": 1,
                    "timed_steps": len(timed),
                    "precompute_ref_log_probs": args.precompute_ref,
                    "gradient_checkpointing": cfg.gradient_checkpointing,
                },
                "tokens_per_step": tokens,
                "seconds_per_step": {
                    "mean": sum(timed) / max(len(timed), 1),
                    "min": min(timed) if timed else None,
                    "max": max(timed) if timed else None,
                },
                "train_total_s": total,
                "peak_rss_mb": round(peak_kb * 1024 / 1e6, 1),
                "losses": losses,
                "versions": {
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "peft": peft.__version__,
                    "trl": trl.__version__,
                    "cpus": os.cpu_count(),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
