"""The LLM judges: Gemini through the real google-genai client against a local replay of
recorded API responses (no network), and the llm judge through a real vLLM server."""

from __future__ import annotations

import json
import os

import pytest

from memory.extractor import ExtractorJudge
from memory.judges import GeminiJudge, JudgeError, LLMJudge, parse
from memory.verdicts import Context, TurnAnalysis
from tests.gemini_replay import Replay

DOG = {"verdicts": [{"decision": "STORE", "importance": 0.8, "kind": "personal", "reasons": ["the dog's name"],
                     "fact": {"subject": "user's dog", "relation": "name", "value": "Pilsner",
                              "text": "The user's dog is called Pilsner."}}]}  # fmt: skip
KEY = "AIza-test-key-never-stored"


@pytest.fixture
def replay():
    servers = []

    def make(answers, fail_first=0):
        servers.append(Replay(answers, fail_first))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_gemini_recorded_response_and_cache(store, replay):
    server = replay([DOG])
    judge = GeminiJudge(store, KEY, base_url=server.url, attempts=1)
    [verdict] = judge.judge("My dog is called Pilsner.", Context())
    assert (verdict.decision, verdict.fact.value) == ("STORE", "Pilsner") and judge.last_name == "gemini"
    request = server.requests[0]
    assert request["path"].endswith("/models/gemini-2.0-flash:generateContent")
    assert request["key"] == KEY
    assert request["body"]["generationConfig"]["responseMimeType"] == "application/json"
    assert "My dog is called Pilsner." in json.dumps(request["body"]["contents"])
    # a repeat is answered from the persistent cache, also by a new judge instance
    again = GeminiJudge(store, KEY, base_url=server.url, attempts=1)
    assert again.judge("My dog is called Pilsner.", Context())[0].fact.value == "Pilsner"
    assert len(server.requests) == 1 and again.cache_hits == 1
    assert KEY.encode() not in store.path.read_bytes()  # the key is never written to the store


def test_gemini_retries_with_backoff(store, replay):
    server = replay([DOG], fail_first=2)
    judge = GeminiJudge(store, KEY, base_url=server.url, attempts=3)
    assert judge.judge("My dog is called Pilsner.", Context())[0].decision == "STORE"
    assert len(server.requests) == 3 and judge.last_name == "gemini"


def test_gemini_unreachable_falls_back_to_the_extractor(store, caplog):
    judge = GeminiJudge(store, KEY, base_url="http://127.0.0.1:9", attempts=1, timeout_s=2, fallback=ExtractorJudge())
    [verdict] = judge.judge("My dog is called Pilsner.", Context())
    assert verdict.fact.value == "Pilsner" and judge.last_name == "extractor (gemini fallback)"
    assert "falling back to the offline extractor" in caplog.text and KEY not in caplog.text


def test_gemini_nonsense_answer_falls_back(store, replay):
    server = replay([{"verdicts": [{"decision": "MAYBE"}]}])
    judge = GeminiJudge(store, KEY, base_url=server.url, attempts=1, fallback=ExtractorJudge())
    assert judge.judge("I live in Oslo.", Context())[0].fact.value == "Oslo"
    assert judge.last_name.startswith("extractor")
    assert store.cached("anything") is None


@pytest.mark.skipif(not os.environ.get("GEMINI_API_KEY"), reason="live Gemini test needs GEMINI_API_KEY")
def test_gemini_live(store):
    judge = GeminiJudge(store, os.environ["GEMINI_API_KEY"])
    verdicts = judge.judge("My dog is called Pilsner.", Context())
    assert judge.last_name == "gemini"
    assert any(v.fact and "Pilsner" in v.fact.value for v in verdicts)


def test_llm_judge_parses_schema_answers():
    prompts = []

    def generate_json(prompt, schema):
        prompts.append((prompt, schema))
        return json.dumps(DOG)

    judge = LLMJudge(generate_json)
    related = [{"id": 7, "subject": "user's cat", "relation": "name", "value": "Miso", "text": "The cat is Miso."}]
    assert judge.judge("My dog is called Pilsner.", Context(related=related))[0].fact.value == "Pilsner"
    prompt, schema = prompts[0]
    assert '"id": 7' in prompt and "My dog is called Pilsner." in prompt
    assert schema == TurnAnalysis.model_json_schema()
    with pytest.raises(JudgeError):
        LLMJudge(lambda p, s: "{not json").judge("hi", Context())
    with pytest.raises(JudgeError):
        parse('{"verdicts": []}')
