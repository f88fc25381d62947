"""The trainer's GPU path, checked in one short run on a CUDA machine (not in CI).

    python benchmarks/gpu_check.py --prepare            # here: .gpu/model and .gpu/conversations.json
    python benchmarks/gpu_check.py [--model DIR] [--conversations FILE] [--repeat 2]   # there

1. Versions: torch, CUDA device, transformers, peft, trl, and whether Unsloth imports.
2. `benchmarks.sleep_bench trainer` on this machine: plain TRL + PEFT, the sleep trainer
   (PEFT, bf16), and the sleep trainer through Unsloth; medians, ratios, and whether the
   Unsloth adapter has the PEFT path's format (what vLLM loads).
3. Continuing an adapter (`init_adapter`, as every sleep after the first does) through
   each path, and loading both results with PEFT on the base model.

`--model DIR` may hold only a model's config and tokenizer (the weights of SmolLM2 do not
fit a short transfer): the weights are then initialised at random from the config and
saved to a temporary directory. Throughput and adapter format do not depend on them.

`--prepare` (on a machine with the project installed) writes the default model's config
and tokenizer to `.gpu/model` and the dream conversations of `--memories` synthetic
memories to `.gpu/conversations.json`; the GPU machine then needs the trainer's packages
only (torch, transformers, peft, trl, datasets, pydantic, pydantic-settings, and for the
Unsloth path unsloth, unsloth_zoo and bitsandbytes), not spaCy or the store's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def versions() -> None:
    import torch

    print(f"torch {torch.__version__}, cuda {torch.version.cuda}, "
          f"device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}")  # fmt: skip
    for name in ("unsloth", "transformers", "peft", "trl", "datasets", "bitsandbytes"):  # unsloth first: it patches the rest
        try:
            mod = importlib.import_module(name)
            print(f"{name} {getattr(mod, '__version__', '?')}")
        except Exception as e:  # noqa: BLE001 - report whatever stops the import
            print(f"{name}: import failed: {type(e).__name__}: {str(e)[:500]}")


def with_weights(model: Path, tmp: Path) -> Path:
    if any(model.glob("*.safetensors")):
        return model
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out = tmp / "model"
    shutil.copytree(model, out)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model), dtype=torch.float32).save_pretrained(out)
    print(f"random weights from {model}/config.json -> {out}")
    return out


def continue_adapter(model: Path, tmp: Path) -> None:
    """Train a first adapter, then continue it, through each path; load each result with PEFT."""
    from sleeptrain_agent.sleep.trainer import TrainJob

    system = {"role": "system", "content": "You are a helpful assistant."}
    conversations = [[system, {"role": "user", "content": f"What is pet {i} called?"},
                      {"role": "assistant", "content": f"Pet {i} is called Zorblax{i}."}] for i in range(16)]  # fmt: skip
    for unsloth in ("0", "1"):
        first = None
        for step in ("first", "continued"):
            out = tmp / f"cont-{unsloth}-{step}"
            job = TrainJob(model_path=str(model), output_dir=str(out), conversations=conversations, epochs=1,
                           batch_size=8, init_adapter=str(first) if first else None, layers=8)  # fmt: skip
            path = tmp / f"cont-{unsloth}-{step}.json"
            path.write_text(job.model_dump_json())
            proc = subprocess.run([sys.executable, "-m", "sleeptrain_agent.sleep.trainer", str(path)], text=True,
                                  capture_output=True, env={**os.environ, "SLEEPTRAIN_UNSLOTH": unsloth})  # fmt: skip
            if proc.returncode != 0:
                print(f"unsloth={unsloth} {step}: FAILED\n{proc.stderr[-3000:]}")
                break
            done = json.loads(proc.stdout.strip().splitlines()[-1])
            config = json.loads((out / "adapter_config.json").read_text())
            print(f"unsloth={unsloth} {step}: ok, {done['steps']} steps, loss {done['loss']:.3f}, "
                  f"unsloth used={done.get('unsloth')}, r={config['r']}, layers={config.get('layers_to_transform')}")  # fmt: skip
            first = out
        else:
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), str(first))
            print(f"unsloth={unsloth}: continued adapter loads with PEFT")


def prepare(model: Path, conversations: Path, memories: int) -> None:
    """Write the default model's config and tokenizer (no weights) and the bench's conversations."""
    from sleeptrain_agent.config import load_settings, model_dir

    source = model_dir(load_settings())
    model.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.is_file() and not file.name.endswith((".safetensors", ".bin", ".pt")):
            shutil.copy2(file, model / file.name)
    print(f"{source} (config and tokenizer) -> {model}")
    subprocess.run([sys.executable, "-m", "benchmarks.sleep_bench", "trainer", "--memories", str(memories),
                    "--save-conversations", str(conversations)], cwd=ROOT, check=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / ".gpu" / "model")
    ap.add_argument("--conversations", type=Path, default=ROOT / ".gpu" / "conversations.json",
                    help="the training data (from --prepare); dreamt from --memories here when the file is absent")  # fmt: skip
    ap.add_argument("--memories", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--prepare", action="store_true", help="write --model and --conversations for a GPU machine, and stop")
    args = ap.parse_args()
    if args.prepare:
        prepare(args.model, args.conversations, args.memories)
        return
    versions()
    data = ["--conversations", str(args.conversations)] if args.conversations.exists() else ["--memories", str(args.memories)]
    with tempfile.TemporaryDirectory() as tmp:
        model = with_weights(args.model, Path(tmp))
        env = {**os.environ, "SLEEPTRAIN_MODEL__PATH": str(model), "SLEEPTRAIN_MODEL__DTYPE": "bfloat16"}
        # bfloat16 only (float32 is not the GPU path); attention as configured (SDPA on CUDA)
        subprocess.run([sys.executable, "-m", "benchmarks.sleep_bench", "trainer", *data, "--repeat", str(args.repeat),
                        "--dtypes", "bfloat16", "--attention", "varlen"], env=env, cwd=ROOT, check=False)  # fmt: skip
        continue_adapter(model, Path(tmp))


if __name__ == "__main__":
    main()
