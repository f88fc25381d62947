"""The vLLM plugin that keeps a no-LoRA request's tokens free of any adapter's delta on the CPU
(`sleeptrain_agent/backends/vllm_plugin.py`): the patched torch ops against the formula, and the entry
point vLLM loads it by. The served effect (a user with no adapter batched beside two users with
theirs) is `tests/test_serving.py::test_each_user_is_answered_by_their_own_adapter_only`."""

from __future__ import annotations

import pytest
import torch

from sleeptrain_agent.backends import vllm_available

pytestmark = pytest.mark.skipif(not vllm_available(), reason="vllm not installed")


@pytest.fixture(scope="module")
def ops():
    from vllm.lora.ops.torch_ops import lora_ops

    from sleeptrain_agent.backends.vllm_plugin import register

    register()
    register()  # vLLM may load a plugin more than once in a process
    return lora_ops


def test_tokens_without_an_adapter_get_no_delta_and_the_others_theirs(ops):
    torch.manual_seed(0)
    slots, rank, hidden = 3, 4, 8
    a = torch.randn(slots, 1, rank, hidden)  # the last slot holds a real adapter: what index -1 used to select
    b = torch.randn(slots, 1, hidden, rank)
    x = torch.randn(4, hidden)
    indices = torch.tensor([-1, 0, 2, -1])
    shrunk = torch.zeros(4, rank)
    ops.bgmv_shrink(x, a, shrunk, indices, 0.5)
    out = torch.ones(4, hidden)
    ops.bgmv_expand(shrunk, b, out, indices, add_inputs=True)
    for row, i in enumerate(indices.tolist()):
        if i < 0:
            assert torch.equal(shrunk[row], torch.zeros(rank)) and torch.equal(out[row], torch.ones(hidden))
        else:
            expect = 0.5 * a[i, 0] @ x[row]
            assert torch.allclose(shrunk[row], expect, atol=1e-5)
            assert torch.allclose(out[row], 1 + b[i, 0] @ expect, atol=1e-5)
    sliced = torch.zeros(4, 2 * hidden)
    ops.bgmv_expand_slice(shrunk, b, sliced, indices, hidden, hidden, add_inputs=True)
    assert torch.equal(sliced[0], torch.zeros(2 * hidden)) and torch.allclose(sliced[1, hidden:], b[0, 0] @ shrunk[1])
    prefill = torch.zeros(4, rank)  # the prefill op expands per-sequence indices, then calls the patched gather
    ops.sgmv_shrink(x, a, prefill, None, torch.tensor([2, 2]), torch.tensor([-1, 2]), 2, 2, 4, 0.5)
    assert torch.equal(prefill[:2], torch.zeros(2, rank)) and prefill[2:].abs().sum() > 0


def test_vllm_finds_the_plugin():
    from importlib.metadata import entry_points

    found = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert found.get("sleeptrain_lora_mask") == "sleeptrain_agent.backends.vllm_plugin:register"


@pytest.mark.parametrize("indices", [[1, 1, 1, 1, 1], [0, 2, 0, 2, 1], [-1, -1, -1, -1, -1], [2, -1, 2, 2, 0]])
def test_the_grouped_products_equal_vllms_per_token_formula(ops, indices):
    """One matrix product per adapter gives what vLLM's per-token gather gives (`-1`: no delta)."""
    torch.manual_seed(1)
    slots, rank, hidden, out_dim = 3, 4, 6, 10
    for _ in range(2):  # the second time, the layout of these indices is the one kept from the first
        _check_against_vllm(ops, indices, torch.randn(slots, 1, rank, hidden), torch.randn(slots, 1, out_dim, rank))


def _check_against_vllm(ops, indices, a, b):
    rank, hidden, out_dim = a.shape[2], a.shape[3], b.shape[2]
    x = torch.randn(len(indices), hidden)
    idx = torch.tensor(indices)
    shrunk = torch.full((len(indices), rank), 7.0)  # overwritten
    ops.bgmv_shrink(x, a, shrunk, idx, 0.25)
    out = torch.ones(len(indices), out_dim)
    ops.bgmv_expand(shrunk, b, out, idx, add_inputs=True)
    keep = (idx >= 0).float().unsqueeze(1)
    want_shrunk = 0.25 * torch.einsum("bi, boi -> bo", x, a[idx.clamp(min=0), 0]) * keep
    assert torch.allclose(shrunk, want_shrunk, atol=1e-5)
    assert torch.allclose(out, 1 + torch.einsum("bi, boi -> bo", want_shrunk, b[idx.clamp(min=0), 0]) * keep, atol=1e-5)
