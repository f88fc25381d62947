"""The embedded backend's own pieces that need no model: OpenAI's frequency penalty as a logits processor."""

from __future__ import annotations

import torch

from sleeptrain_agent.backends.embedded import _FrequencyPenalty


def test_frequency_penalty_counts_generated_tokens_only():
    prompt = [5, 5, 5, 9]  # the prompt's repeats (the chat template's end-of-turn tokens) are not penalised
    generated = [7, 7, 3]
    ids = torch.tensor([prompt + generated])
    scores = torch.zeros(1, 12)
    out = _FrequencyPenalty(0.5, prompt_length=len(prompt))(ids, scores.clone())
    assert out[0, 7] == -1.0 and out[0, 3] == -0.5
    assert out[0, 5] == 0 and out[0, 9] == 0 and out[0, 0] == 0
    untouched = _FrequencyPenalty(0.5, prompt_length=ids.shape[1])(ids, scores.clone())  # nothing generated yet
    assert torch.equal(untouched, scores)
