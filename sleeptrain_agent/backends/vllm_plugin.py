"""A vLLM general plugin for the CPU's LoRA ops: a request with no LoRA must not get another
request's LoRA, and the LoRA products are matrix products per adapter, not per token.

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

The same ops are slow: `weights[indices]` copies an adapter's matrix for
every token of the batch (a 64-token batch through a rank-16 MLP adapter
copies 64 x 1536 x 16 floats per module and layer) before a batched
product. Here the tokens are grouped by adapter (at most `--max-loras` of
them) and each group is one matrix product; tokens of index -1 get zero.

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

    layouts: dict[tuple[int, ...], list[tuple[int, torch.Tensor | None]]] = {}

    def layout(indices: torch.Tensor) -> list[tuple[int, torch.Tensor | None]]:
        """(adapter slot, its tokens' rows, or None for every row) for each adapter in the batch. Every
        layer and module of a step asks with the same indices, so the layout is kept by their values
        (one read of the indices per call, not a search per adapter: a decode step makes hundreds of
        these calls for a handful of tokens)."""
        key = tuple(indices.tolist())
        found = layouts.get(key)
        if found is None:
            slots = sorted({i for i in key if i >= 0})
            if len(slots) == 1 and min(key) >= 0:
                found = [(slots[0], None)]
            else:
                found = [(i, torch.tensor([t for t, j in enumerate(key) if j == i])) for i in slots]
            if len(layouts) >= 256:  # the batches of a few recent steps; prefill layouts are one-offs
                layouts.clear()
            layouts[key] = found
        return found

    def lora_products(inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor,
                      dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
        """Each token's input times its adapter's matrix (`weights[indices[t]]`, out x in): one matrix
        product per adapter in the batch, zero for index -1. vLLM's ops gather a copy of the matrix
        for every token instead (tokens x out x in floats per layer and module): the gate's 81
        prompts alone took 18.5 s through a candidate that way on this CPU, 4.9 s this way."""
        w = weights.squeeze(1) if weights.dim() == 4 else weights
        x = inputs.to(dtype=dtype)
        groups = layout(indices)
        if len(groups) == 1 and groups[0][1] is None:
            return x @ w[groups[0][0]].to(dtype=dtype).T
        out = x.new_zeros(x.shape[0], w.shape[1])
        for i, rows in groups:
            out.index_copy_(0, rows, x.index_select(0, rows) @ w[i].to(dtype=dtype).T)
        return out

    def bgmv_shrink(inputs, lora_b_weights, output_tensor, lora_indices_tensor, scaling: float = 1.0):
        outputs = lora_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
        output_tensor[:, : outputs.shape[1]] = scaling * outputs[:]

    def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs: bool = True):
        outputs = lora_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
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
        outputs = lora_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
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
