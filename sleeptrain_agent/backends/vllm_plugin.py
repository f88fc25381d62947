"""A vLLM general plugin: on the CPU, a request with no LoRA must not get another request's LoRA.

vLLM marks the tokens of a request without an adapter with LoRA index -1. Its
Triton kernels (GPU) skip them; the plain-PyTorch ops its CPU platform uses
(`vllm/lora/ops/torch_ops/lora_ops.py`, vLLM 0.32) gather the adapter weights
with that index as is, and `weights[-1]` is the *last* adapter slot. So in a
batch that mixes requests with and without an adapter, every base-model
request gets the delta of whichever adapter sits in the last of the
`--max-loras` slots: with an adapter per user, a user with no adapter of
their own (or any question routed to the base model) is answered with
another user's weights. Measured here: after a few swaps, 12 of 12 base
requests batched beside two users' requests came back with one user's
answer (`tests/test_serving.py` checks it). Open upstream as
vllm-project/vllm#48421, whose fix this mirrors: gather with the index
clamped to 0 and zero the delta of -1 tokens; for every other token the
result is unchanged.

Registered as the `vllm.general_plugins` entry point `sleeptrain_lora_mask`
(pyproject.toml), which vLLM loads in each of its processes (API server,
engine core, workers) before the model, so it needs nothing on the command
line. Idempotent: vLLM may load it more than once per process.
"""

from __future__ import annotations

import sys


def register() -> None:
    try:
        import torch
        from vllm.lora.ops.torch_ops import lora_ops
    except ImportError:  # a vLLM without the torch ops: nothing to mend
        return
    if getattr(lora_ops, "_sleeptrain_masked", False):
        return

    def gather(weights: torch.Tensor, indices: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        skip = indices < 0
        selected = weights[indices.clamp(min=0)].to(dtype=dtype)
        if len(selected.shape) == 4:
            selected = selected.squeeze(dim=1)
        return selected, skip

    def bgmv_shrink(inputs, lora_b_weights, output_tensor, lora_indices_tensor, scaling: float = 1.0):
        selected, skip = gather(lora_b_weights, lora_indices_tensor, output_tensor.dtype)
        outputs = torch.einsum("bi, boi -> bo", inputs.to(dtype=output_tensor.dtype), selected)
        outputs = outputs.masked_fill(skip.unsqueeze(1), 0.0)
        output_tensor[:, : outputs.shape[1]] = scaling * outputs[:]

    def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs: bool = True):
        selected, skip = gather(lora_b_weights, lora_indices_tensor, output_tensor.dtype)
        outputs = torch.einsum("bi, boi -> bo", inputs.to(dtype=output_tensor.dtype), selected)
        outputs = outputs.masked_fill(skip.unsqueeze(1), 0.0)
        limit = output_tensor.shape[0]
        if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
            limit = 1
        common = min(outputs.shape[1], output_tensor.shape[1])
        if add_inputs:
            output_tensor[:, :common] += outputs[:limit, :common]
        else:
            output_tensor[:, :common] = outputs[:limit, :common]

    def bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset: int,
                          slice_size: int, add_inputs: bool = True):  # fmt: skip
        selected, skip = gather(lora_b_weights, lora_indices_tensor, output_tensor.dtype)
        outputs = torch.einsum("bi, boi -> bo", inputs.to(dtype=output_tensor.dtype), selected)
        outputs = outputs.masked_fill(skip.unsqueeze(1), 0.0)
        if add_inputs:
            output_tensor[:, slice_offset : slice_offset + slice_size] += outputs[:]
        else:
            output_tensor[:, slice_offset : slice_offset + slice_size] = outputs[:]

    fixed = {"bgmv_shrink": bgmv_shrink, "bgmv_expand": bgmv_expand, "bgmv_expand_slice": bgmv_expand_slice}
    # the sgmv_* prefill ops call these through the module's globals; the package and the CPU punica
    # wrapper bound them by name at import
    targets = [lora_ops, sys.modules.get("vllm.lora.ops.torch_ops"), sys.modules.get("vllm.lora.punica_wrapper.punica_cpu")]
    for module in targets:
        for name, fn in fixed.items():
            if module is not None and hasattr(module, name):
                setattr(module, name, fn)
    lora_ops._sleeptrain_masked = True
