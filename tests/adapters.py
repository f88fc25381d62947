"""Make small real PEFT LoRA adapters for serving tests (no training: random weights,
so each adapter visibly changes the model's answers)."""

from __future__ import annotations

from pathlib import Path

import torch


def make_adapter(model_path: Path, out: Path, seed: int, rank: int = 8, scale: float = 1.0,
                 target_modules: tuple[str, ...] = ("q_proj", "v_proj")) -> Path:  # fmt: skip
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(target_modules),
                        init_lora_weights=False)  # fmt: skip
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(scale)
    peft_model.save_pretrained(out)
    return out
