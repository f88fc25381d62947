"""Attention for the sleep trainer's padding-free rows on a CPU: each example attends to itself only.

A padding-free batch is one row of several examples; TRL's collator marks where each begins
(`cu_seq_lens_q`). With `sdpa`, transformers keeps the examples apart with a block-diagonal mask over
the whole row, and SDPA's CPU flash kernel then computes (and differentiates) attention over the row's
full length squared, most of it masked; in bfloat16 it is no faster than in float32 and was about a
third of a bfloat16 training step (BENCHMARKS.md, "bfloat16 on the CPU"). Here the row's examples are
gathered into a padded batch (examples x heads x longest x longest) and attended with two batched
matmuls and a float32 softmax: the matmuls run in the model's dtype (the CPU's bf16 units), the work
is the examples' own squares, and autograd differentiates plain ops.

Anything else (a cache, padding masks, a batch of several rows: generation, evaluation) goes to
transformers' `sdpa` unchanged, whose mask this implementation shares.
"""

from __future__ import annotations

import torch

NAME = "sleeptrain_varlen"


def register() -> str:
    """Register the implementation with transformers (idempotent); returns the name to load models with."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, varlen_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME


_layout: dict = {}  # the last row's layout: every layer of one forward shares it


def _gather_layout(cu: torch.Tensor, device: torch.device) -> tuple[int, int, torch.Tensor, torch.Tensor]:
    """For cumulative lengths `cu` (0, l1, l1+l2, ..., L): the number of examples, the longest, the
    positions of the row's tokens in the padded (examples x longest) batch, and the allowed (causal,
    not padding) keys of each query, examples x 1 x longest x longest."""
    key = (tuple(cu.tolist()), device)  # the lengths, not the tensor: a next batch may reuse its freed memory
    if _layout.get("key") == key:
        return _layout["value"]
    cu = cu.to(device=device, dtype=torch.long)
    lens = cu.diff()
    examples, longest = len(lens), int(lens.max())
    ar = torch.arange(longest, device=device)
    valid = ar[None, :] < lens[:, None]
    slots = valid.reshape(-1).nonzero().squeeze(1)
    allowed = (ar[:, None] >= ar[None, :])[None, None] & valid[:, None, None, :]
    value = (examples, longest, slots, allowed)
    _layout.update(key=key, value=value)
    return value


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                     cu_seq_lens_q: torch.Tensor | None = None, **kwargs):  # fmt: skip
    """transformers' attention signature: query (1, heads, L, dim), key/value (1, kv heads, L, dim);
    returns (1, L, heads, dim) and no weights."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    one_row = query.shape[0] == 1 and query.shape[2] == key.shape[2] and dropout == 0.0
    if cu_seq_lens_q is None or not one_row or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      cu_seq_lens_q=cu_seq_lens_q, **kwargs)  # fmt: skip
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    examples, longest, slots, allowed = _gather_layout(cu_seq_lens_q, query.device)
    heads, _, dim = query.shape[1:]

    # scattered into (and gathered back from) their slots with index_copy / index_select: their gradients
    # are the same gathers and scatters, where advanced indexing's would be an accumulating index_put
    def padded(x: torch.Tensor) -> torch.Tensor:  # (1, heads, L, dim) -> (examples, heads, longest, dim)
        out = x.new_zeros(heads, examples * longest, dim).index_copy(1, slots, x[0])
        return out.view(heads, examples, longest, dim).transpose(0, 1)

    q, k, v = padded(query), padded(key), padded(value)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (scaling if scaling is not None else dim**-0.5)
    scores = scores.float().masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1).to(v.dtype)
    out = torch.matmul(weights, v)  # examples, heads, longest, dim
    out = out.transpose(1, 2).reshape(examples * longest, heads, dim).index_select(0, slots)  # L, heads, dim
    return out[None], None
