"""The embedded backend: OpenAI's frequency penalty as a logits processor (no model), and a candidate
adapter's evaluation with one generation setting per prompt (the real model)."""

from __future__ import annotations

import pytest
import torch

from memory.answers import SENTENCE_STOPS, first_sentence, locality_hit
from sleeptrain_agent.backends import GenerationParams
from sleeptrain_agent.backends.embedded import EmbeddedBackend, _FrequencyPenalty
from sleeptrain_agent.config import load_settings


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


@pytest.mark.real
def test_a_candidate_answers_each_prompt_with_its_own_params_and_stops_at_the_first_sentence(model_path, tmp_path):
    """The gate's request: memory questions in full, locality probes to their first sentence. The stopped
    answer is the full answer's first sentence (what `locality_hit` reads), without the stop string."""
    from tests.adapters import make_adapter

    backend = EmbeddedBackend(load_settings(), model_path)
    backend.start()
    adapter = make_adapter(model_path, tmp_path / "candidate", seed=0, rank=8, scale=0.1)
    questions = [[{"role": "user", "content": q}] for q in ("What is the capital of France?", "Why is the sky blue?")]
    full = GenerationParams(max_tokens=48, temperature=0.0)
    short = GenerationParams(max_tokens=48, temperature=0.0, stop=list(SENTENCE_STOPS))
    long_answers = backend.evaluate(questions, full, adapter=adapter)
    mixed = backend.evaluate(questions, [full, short], adapter=adapter)
    assert mixed[0] == long_answers[0]
    assert first_sentence(long_answers[1]) != long_answers[1].strip(), "the full answer has one sentence only"
    assert mixed[1] == first_sentence(long_answers[1]).rstrip(".!?")
    assert not any(s in mixed[1] for s in SENTENCE_STOPS)
    words = first_sentence(long_answers[1]).split()
    assert locality_hit(mixed[1], [words[-1]]) and locality_hit(long_answers[1], [words[-1]])
    with pytest.raises(ValueError, match="2 generation params for 1 prompts"):
        backend.evaluate(questions[:1], [full, short], adapter=adapter)


@pytest.mark.real
def test_an_evaluation_in_batches_gives_each_prompt_its_answer_alone(model_path, tmp_path, monkeypatch):
    """Prompts of different lengths, left-padded into one forward pass, a candidate's and the base model's:
    each answer is the one the prompt gets on its own."""
    from sleeptrain_agent.backends import embedded
    from tests.adapters import make_adapter

    backend = EmbeddedBackend(load_settings(), model_path)
    backend.start()
    adapter = make_adapter(model_path, tmp_path / "candidate", seed=0, rank=8, scale=0.1)
    questions = [[{"role": "user", "content": q}] for q in ("Who wrote Hamlet?", "What is the capital of France?",
                 "Why is the sky blue on a clear summer afternoon?", "Name a planet.", "How many legs does a spider have?")]  # fmt: skip
    params = [GenerationParams(max_tokens=16, temperature=0.0)] * 3 + [
        GenerationParams(max_tokens=16, temperature=0.0, stop=list(SENTENCE_STOPS))] * 2  # fmt: skip
    monkeypatch.setattr(embedded, "EVAL_BATCH", 3)  # two batches of the first group
    for which in (adapter, None):
        together = backend.evaluate(questions, params, adapter=which)
        alone = [backend.evaluate([q], p, adapter=which)[0] for q, p in zip(questions, params, strict=True)]
        assert together == alone and len(set(together)) == len(questions), together
    assert backend.evaluate(questions, params, adapter=adapter) != backend.evaluate(questions, params, adapter=None)
