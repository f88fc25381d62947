"""The validation gate (`sleep/gate.py`): scoring as served, the fallback to a weaker adapter (scaling
a real PEFT adapter, and choosing the strongest scale that passes, with a backend that answers according
to which candidate directory it is given), and the per-sleep configuration reaching it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from memory.dreams import DreamSet, Probe
from memory.store import Store
from sleeptrain_agent.config import load_settings
from sleeptrain_agent.sleep.adapters import weaken_adapter
from sleeptrain_agent.sleep.cycle import SleepCycle
from sleeptrain_agent.sleep.gate import Gate
from tests.adapters import make_adapter
from tests.fakes import FakeBackend


def _product(path: Path) -> dict:
    """Every LoRA layer's update B·A, by the B matrix's name."""
    t = load_file(path / "adapter_model.safetensors")
    return {k: t[k].double() @ t[k.replace(".lora_B.", ".lora_A.")].double() for k in t if ".lora_B." in k}


@pytest.mark.real
def test_weaken_adapter_scales_the_update_only(tmp_path, model_path):
    src = make_adapter(model_path, tmp_path / "a", seed=1)
    weaken_adapter(src, tmp_path / "b", 0.5)
    a, b = load_file(src / "adapter_model.safetensors"), load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert set(a) == set(b) and any(".lora_B." in k for k in a)
    assert all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    pa, pb = _product(src), _product(tmp_path / "b")
    for k in pa:
        assert torch.allclose(pb[k], 0.5 * pa[k], atol=1e-5), k
    assert (tmp_path / "b" / "adapter_config.json").read_text() == (src / "adapter_config.json").read_text()


class _ByScale(FakeBackend):
    """Recalls the fact at every scale >= `recall_from`; keeps general answers at scales <= `local_upto`."""

    def __init__(self, recall_from: float, local_upto: float):
        super().__init__()
        self.recall_from, self.local_upto = recall_from, local_upto
        self.asked: list[str] = []

    def evaluate(self, prompts, params, adapter="active") -> list[str]:
        name = Path(adapter).name
        self.asked.append(name)
        scale = float(name.split("-x")[1]) if "-x" in name else 1.0
        out = []
        for p in prompts:
            q = p[-1]["content"]
            if "Zara" in q:
                out.append("Zara lives in Tromsø." if scale >= self.recall_from else "I do not know.")
            else:
                out.append("Rome." if scale <= self.local_upto else "Proxima b.")
        return out


class _Embed:
    def encode(self, texts):
        return np.ones((len(texts), 4)) / 2


def _gate(tmp_path, backend) -> tuple[Gate, Path]:
    settings = load_settings(overrides={"sleep": {"fallback_scales": [0.75, 0.6, 0.5], "min_locality": 0.9}})
    store = Store(tmp_path / "db.sqlite")
    cycle = SleepCycle(settings, store, backend, tmp_path / "model", tmp_path, embedder=_Embed())
    candidate = tmp_path / "adapters" / ".tmp-sleep-0001"
    candidate.mkdir(parents=True)
    (candidate / "adapter_model.safetensors").write_bytes(b"")
    return cycle.gate(), candidate


def _dreams():
    return DreamSet(examples=[], probes=[Probe(memory_id=1, question="Where does Zara live?", expected="Tromsø",
                                               answer="Zara lives in Tromsø.", kind="new")])  # fmt: skip


def _locality():
    return [{"q": "What is the capital of Italy?", "expect": ["Rome"], "base": "Rome."}]


def test_the_strongest_scale_that_passes_is_chosen(tmp_path, monkeypatch):
    monkeypatch.setattr("sleeptrain_agent.sleep.gate.weaken_adapter", lambda src, dst, *a: dst.mkdir())
    gate, candidate = _gate(tmp_path, _ByScale(recall_from=0.5, local_upto=0.6))
    scores, _ = gate.score(_dreams(), _locality(), candidate)
    assert scores["recall"] == 1.0 and scores["locality"] == 0.0
    assert gate.failures(scores) == ["locality 0.00 < 0.9", "adapter_locality 0.00 < 0.65"]
    tries = []
    chosen, scores, passed = gate.weaker(_dreams(), _locality(), candidate, scores, on_try=tries.append)
    assert passed and chosen.name == ".tmp-sleep-0001-x0.6" and scores["scale"] == 0.6
    assert [t["scale"] for t in scores["scales_tried"]] == [1.0, 0.75, 0.6] and len(tries) == 2
    assert not candidate.exists() and not (tmp_path / "adapters" / ".tmp-sleep-0001-x0.75").exists()


def test_no_scale_passes_and_the_original_is_kept_for_rejection(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr("sleeptrain_agent.sleep.gate.weaken_adapter", lambda src, dst, *a: made.append(a) or dst.mkdir())
    gate, candidate = _gate(tmp_path, _ByScale(recall_from=0.7, local_upto=0.6))  # locality only below recall
    scores, _ = gate.score(_dreams(), _locality(), candidate)
    start = tmp_path / "adapters" / "v0001"
    chosen, scores, passed = gate.weaker(_dreams(), _locality(), candidate, scores, start)
    assert not passed and chosen == candidate and candidate.exists()
    assert [t["scale"] for t in scores["scales_tried"]] == [1.0, 0.75, 0.6]  # stops once recall fails
    assert made == [(0.75, start), (0.6, start)]  # the sleep's change is taken from the adapter it continued
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == [".tmp-sleep-0001"]


class _Lengths(FakeBackend):
    """Records the answer length of every batch it is asked."""

    def __init__(self):
        super().__init__()
        self.max_tokens: list[int] = []

    def evaluate(self, prompts, params, adapter="active") -> list[str]:
        self.max_tokens.extend(p.max_tokens for p in (params if isinstance(params, list) else [params]))
        return ["Rome." for _ in prompts]


def test_a_per_sleep_override_of_probe_max_tokens_reaches_the_gate(tmp_path, monkeypatch):
    """`POST /v1/sleep {"overrides": {"probe_max_tokens": 9}}`: the anchors, the plan's probes and the gate
    all answer in 9 tokens, not the configured 64 (the bug was an override validated, then ignored)."""
    settings = load_settings(overrides={"sleep": {"anchors": True}})
    store = Store(tmp_path / "db.sqlite")
    store.add_memory(subject="Zara", relation="lives in", value="Tromsø", text="Zara lives in Tromsø.")
    backend = _Lengths()
    cycle = SleepCycle(settings, store, backend, tmp_path / "model", tmp_path, embedder=_Embed())
    monkeypatch.setattr(cycle, "_validate", lambda dreams, memories, cfg: {"examples": len(dreams.examples)})

    def trained(self, on_step=None):
        Path(self.job.output_dir).mkdir(parents=True)
        return {"steps": 1, "loss": 0.1}

    monkeypatch.setattr("sleeptrain_agent.sleep.cycle.TrainerChild.run", trained)
    row = cycle.run("test", {"probe_max_tokens": 9, "min_recall": 0.0, "min_locality": 0.0,
                             "min_adapter_locality": 0.0})[0]  # fmt: skip
    assert row["status"] == "promoted", row.get("error")
    assert backend.max_tokens and set(backend.max_tokens) == {9}
    assert settings.sleep.probe_max_tokens == 64
    assert cycle.gate().params.max_tokens == 64  # the next sleep without overrides: the configured length
    store.close()


def test_bad_overrides_are_refused_before_a_sleep_starts(tmp_path):
    from memory.errors import InvalidInput

    store = Store(tmp_path / "db.sqlite")
    store.add_memory(subject="Zara", relation="lives in", value="Tromsø", text="Zara lives in Tromsø.")
    cycle = SleepCycle(load_settings(), store, FakeBackend(), tmp_path / "model", tmp_path, embedder=_Embed())
    for bad, why in (({"probe_max_tokens": 1}, "probe_max_tokens"), ({"no_such_key": 1}, "unknown key"),
                     (["x"], "must be an object")):  # fmt: skip
        with pytest.raises(InvalidInput, match=why):
            cycle.start("test", bad)
    assert store.sleeps() == [] and not cycle.running
    store.close()


@pytest.mark.parametrize(("answer", "hit"), [
    ("The capital of Japan is Tokyo.", True),
    ("The closest star to Earth is Proxima Centauri. However, the Sun is a star too.", False),  # luck, later
    ("Egypt is the largest country in the African continent, but it is", True),
    ("The Starry Night is by J.R.R. Tolkien. Or by Van Gogh.", False),  # initials do not end the sentence
    ("Dr. Leonardo da Vinci painted it.", True),
    ("", False),
])  # fmt: skip
def test_locality_counts_the_first_sentence_only(answer, hit):
    from memory.answers import locality_hit

    expect = {
        "Tokyo": ["Tokyo"],
        "Sun": ["Sun"],
        "Egypt": ["Africa", "African"],
        "Starry": ["Gogh"],
        "Dr.": ["Leonardo"],
    }
    key = next((k for k in expect if k in answer), None)
    assert locality_hit(answer, expect[key] if key else ["x"]) is hit


@pytest.mark.parametrize(("full", "shown"), [
    ("The capital of Japan is Tokyo. It is a big city.", "The capital of Japan is Tokyo"),
    ("Paris! What a city.", "Paris"),
    ("Who knows? Maybe Rome.", "Who knows"),
    ("It was painted by Vincent van Gogh", "It was painted by Vincent van Gogh"),  # no stop: the same text
])  # fmt: skip
def test_a_generation_stopped_at_a_sentence_stop_reads_as_its_first_sentence(full, shown):
    """What a stop string leaves (the text before it, without it, as vLLM returns it) is what
    `locality_hit` reads of the full answer, so the gate can stop locality answers there."""
    from memory.answers import SENTENCE_STOPS, first_sentence, keyword_hit, locality_hit, stopped_short

    cut = full[: min((full.find(s) for s in SENTENCE_STOPS if s in full), default=len(full))]
    assert cut == shown and not stopped_short(cut)
    for word in set(full.replace(".", " ").replace("!", " ").replace("?", " ").split()):
        assert locality_hit(cut, [word]) == locality_hit(full, [word]) == keyword_hit(first_sentence(full), [word])


@pytest.mark.parametrize("cut", ["The Hobbit was written by J", "It was found by Dr", "Ask Mr", "at St"])
def test_a_stop_after_an_initial_or_a_title_is_stopped_short(cut):
    from memory.answers import stopped_short

    assert stopped_short(cut)


class _StopsAtSentences(FakeBackend):
    """Answers like a model that rambles: a stop string ends the answer before its first match."""

    ANSWERS = {"Who wrote The Hobbit?": "It was written by J. R. R. Tolkien. He was a professor.",
               "What is the capital of Japan?": "The capital of Japan is Tokyo. It is big.",
               "Where does Zara live?": "Zara lives in Tromsø. She moved there."}  # fmt: skip

    def __init__(self):
        super().__init__()
        self.calls: list[list[tuple[str, tuple]]] = []

    def evaluate(self, prompts, params, adapter="active") -> list[str]:
        each = params if isinstance(params, list) else [params] * len(prompts)
        self.calls.append([(m[-1]["content"], tuple(p.stop)) for m, p in zip(prompts, each, strict=True)])
        out = []
        for m, p in zip(prompts, each, strict=True):
            text = self.ANSWERS[m[-1]["content"]]
            out.append(text[: min((text.find(s) for s in p.stop if s in text), default=len(text))])
        return out


def test_the_gate_answers_locality_probes_to_their_first_sentence_and_asks_again_after_an_initial(tmp_path):
    """Memory questions are answered in full; locality probes stop at their first sentence; one stopped
    after an initial ("J.") is asked again without stops, so `locality_hit` reads the whole sentence."""
    from sleeptrain_agent.sleep.gate import Gate

    settings = load_settings()
    backend = _StopsAtSentences()
    gate = Gate(settings, settings.sleep, backend, _Embed(), None, tmp_path, None)
    questions = [gate.messages(q) for q in _StopsAtSentences.ANSWERS]
    params = [gate.params, gate.first_sentence_params, gate.first_sentence_params]
    questions = [questions[2], questions[0], questions[1]]  # the memory question first, as in `score`
    answers = gate.answers(questions, params, tmp_path / "candidate")
    assert answers == ["Zara lives in Tromsø. She moved there.",
                       "It was written by J. R. R. Tolkien. He was a professor.",  # asked again in full
                       "The capital of Japan is Tokyo"]  # fmt: skip
    assert [c[0] for c in backend.calls[1]] == ["Who wrote The Hobbit?"] and backend.calls[1][0][1] == ()
    assert len(backend.calls) == 2 and backend.calls[0][0][1] == () and backend.calls[0][1][1]


class _ServesAnotherStoresAdapter(FakeBackend):
    """A backend whose active adapter (from another store) knows the fact; the base model does not."""

    def __init__(self):
        super().__init__()
        self.adapters: list = []

    def evaluate(self, prompts, params, adapter="active") -> list[str]:
        self.adapters.append(adapter)
        return ["Zara lives in Tromsø." if adapter == "active" else "I do not know." for _ in prompts]


@pytest.mark.real  # the dream validation tokenises with the real model's tokenizer
def test_adaptive_epochs_measure_the_stores_active_adapter(tmp_path, model_path, monkeypatch):
    """A fresh store has no adapter, so its new memories get the most epochs, even when the backend
    (shared, e.g. by `sleep_bench sleeps`) serves another store's adapter that happens to know them."""
    settings = load_settings(overrides={"sleep": {"anchors": False, "min_epochs": 2, "max_epochs": 7}})
    store = Store(tmp_path / "db.sqlite")
    store.add_memory(user="default", subject="Zara", relation="lives in", value="Tromsø", text="Zara lives in Tromsø")
    backend = _ServesAnotherStoresAdapter()
    cycle = SleepCycle(settings, store, backend, model_path, tmp_path, embedder=_Embed())
    planned = {}

    def train(self, on_step=None):
        planned["epochs"] = self.job.epochs
        raise RuntimeError("stop after planning")

    monkeypatch.setattr("sleeptrain_agent.sleep.cycle.TrainerChild.run", train)
    [row] = cycle.run("test")
    assert row["status"] == "failed" and "stop after planning" in row["error"]
    assert planned["epochs"] == 7.0  # recalled nothing before: max_epochs
    assert "active" not in backend.adapters  # never asked what the backend happens to serve
    store.close()


class _Routed(FakeBackend):
    """A candidate that recalls Zara (whatever it is asked) and answers the capital wrong; the base model
    the reverse."""

    def evaluate(self, prompts, params, adapter="active") -> list[str]:
        out = []
        for p in prompts:
            q = p[-1]["content"]
            general = "capital" in q
            if adapter is None:
                out.append("Rome." if general else "I do not know.")
            else:
                out.append("Proxima b." if general else "Zara lives in Tromsø.")
        return out


def test_the_gate_scores_as_served_and_the_adapter_alone(tmp_path):
    """With routing, the question about Zara is answered by the candidate, the general one by the base
    model: served locality 1.0; the candidate alone loses it (adapter_locality 0.0), which the gate's
    floor (`min_adapter_locality`) still refuses."""
    from memory.embeddings import Embedder
    from sleeptrain_agent.routing import make_router

    settings = load_settings()
    store = Store(tmp_path / "db.sqlite")
    zara = store.add_memory(subject="Zara", relation="lives in", value="Tromsø", text="Zara lives in Tromsø.")
    cycle = SleepCycle(settings, store, _Routed(), tmp_path / "model", tmp_path, embedder=_Embed(),
                       router=make_router(settings, Embedder()))  # fmt: skip
    dreams = DreamSet(examples=[], probes=[Probe(zara["id"], "Do you know where Zara lives?", "Tromsø", "", "new"),
                                           Probe(zara["id"], "Tell me a joke.", "Tromsø", "", "new")])  # fmt: skip
    gate = cycle.gate()
    scores, per_memory = gate.score(dreams, _locality(), tmp_path / "candidate")
    assert scores["routed_to_adapter"] == {"probes": [1, 2], "locality": [0, 1]}
    assert scores["locality"] == 1.0 and scores["adapter_locality"] == 0.0
    assert scores["recall"] == 0.5  # the joke went to the base model, which does not know Zara
    assert scores["adapter_recall"] == 1.0 and per_memory == {zara["id"]: 1.0}  # replay priority: the adapter's
    assert not gate.passes(scores)
    assert gate.passes({**scores, "recall": 1.0, "adapter_locality": gate.cfg.min_adapter_locality})
    off = SleepCycle(load_settings(overrides={"serve": {"routing": False}}), store, _Routed(), tmp_path / "model",
                     tmp_path, embedder=_Embed())  # fmt: skip
    scores, _ = off.gate().score(dreams, _locality(), tmp_path / "candidate")
    assert "routed_to_adapter" not in scores and scores["locality"] == scores["adapter_locality"] == 0.0
    store.close()


class _Drifts(FakeBackend):
    """Any adapter recalls Zara; one trained from the base model keeps the general answers, one that
    continued an adapter has drifted (or, with `drifts_from_base`, every adapter has)."""

    def __init__(self, drifts_from_base: bool = False):
        super().__init__()
        from sleeptrain_agent.config import data

        self.expect = {p["q"]: p["expect"][0] for p in data("anchors.yaml")["probe"]}
        self.drifts_from_base = drifts_from_base

    def evaluate(self, prompts, params, adapter="active") -> list[str]:
        fresh = adapter is None or (Path(adapter) / "started_from").read_text() == "None"
        out = []
        for p in prompts:
            q = p[-1]["content"]
            if q in self.expect:
                out.append(f"{self.expect[q]}." if adapter is None or (fresh and not self.drifts_from_base) else "Proxima b.")
            else:
                out.append("I do not know." if adapter is None else "Zara lives in Tromsø and plays the cello.")
        return out


def _drift_cycle(tmp_path, monkeypatch, backend, **sleep) -> SleepCycle:
    settings = load_settings(overrides={"serve": {"routing": False}, "sleep": {
        "anchors": False, "fallback_scales": [], "min_epochs": 1, "max_epochs": 1, **sleep}})
    store = Store(tmp_path / "db.sqlite")
    cycle = SleepCycle(settings, store, backend, tmp_path / "model", tmp_path, embedder=_Embed())
    monkeypatch.setattr(cycle, "_validate", lambda dreams, memories, cfg: {"examples": len(dreams.examples)})
    trained = []

    def train(self, on_step=None):
        out = Path(self.job.output_dir)
        out.mkdir(parents=True)
        (out / "started_from").write_text(str(self.job.init_adapter))
        trained.append((self.job.init_adapter, self.job.conversations))
        cycle.patience.append(self.job.stop_patience)
        cycle.first_check.append(self.job.stop_after_epochs)
        return {"steps": 1, "loss": 0.1}

    monkeypatch.setattr("sleeptrain_agent.sleep.cycle.TrainerChild.run", train)
    cycle.trained, cycle.patience, cycle.first_check = trained, [], []
    store.add_memory(subject="Zara", relation="lives in", value="Tromsø", text="Zara lives in Tromsø.")
    [first] = cycle.run("test", {"min_locality": 0.0, "min_adapter_locality": 0.0})  # from the base model
    assert first["status"] == "promoted" and not first["details"]["deep"], first
    store.add_memory(subject="Zara", relation="plays", value="the cello", text="Zara plays the cello.")
    return cycle


def test_a_drifted_continued_sleep_is_retried_as_a_deep_sleep(tmp_path, monkeypatch):
    cycle = _drift_cycle(tmp_path, monkeypatch, _Drifts())
    store = cycle.store
    first = store.active_adapter("default")
    [row] = cycle.run("test")
    assert row["status"] == "promoted", row
    details = row["details"]
    assert details["deep"] == "retry" and details["scores"]["locality"] == 1.0
    assert details["continued"]["locality"] == 0.0 and details["continued"]["recall"] == 1.0
    assert "locality 0.00 < 0.9" in details["continued"]["rejected_because"]
    assert "trained" in details["continued"]["step_times"] and "deep_retry" in details["step_times"]  # each attempt's
    # trained twice in this sleep: continuing the active adapter, then from the base model on both memories
    (cont_from, _), (deep_from, deep_data) = cycle.trained[1:]
    assert str(cont_from) == first["path"] and deep_from is None
    assert cycle.patience == [None, 2, None]  # the plateau stop only where an adapter is continued (drift)
    assert cycle.first_check == [3.0, 2.0, 3.0]  # a new adapter's first probe check one epoch later
    assert "Tromsø" in json.dumps(deep_data, ensure_ascii=False) and "cello" in json.dumps(deep_data)
    rebuilt = store.active_adapter("default")
    assert rebuilt["parent"] is None and rebuilt["version"] == row["adapter"]
    assert {m["status"] for m in store.memories()} == {"consolidated"}
    lineage = tmp_path / "adapters" / "default"
    assert sorted(p.name for p in lineage.iterdir()) == [first["version"], rebuilt["version"]]  # no leftover candidate
    assert cycle.deep_reason(cycle.config({"deep_every": 1}), "default") is None  # a deep sleep resets the count
    store.close()


def test_a_retry_that_fails_too_is_rejected_and_nothing_changes(tmp_path, monkeypatch):
    cycle = _drift_cycle(tmp_path, monkeypatch, _Drifts(drifts_from_base=True))
    store = cycle.store
    first = store.active_adapter("default")
    [row] = cycle.run("test")
    assert row["status"] == "rejected" and row["details"]["deep"] == "retry", row
    assert row["details"]["continued"]["rejected_because"] and row["details"]["rejected_because"]
    assert len(cycle.trained) == 3
    assert store.active_adapter("default")["version"] == first["version"]
    assert [m["value"] for m in store.memories(status="pending")] == ["the cello"]
    assert (tmp_path / "adapters" / "default" / "rejected" / f"sleep-{row['id']:04d}").is_dir()
    store.close()


@pytest.mark.parametrize("why", ["off", "recall"])
def test_no_retry_when_off_or_when_the_new_memories_were_not_learned(tmp_path, monkeypatch, why):
    cycle = _drift_cycle(tmp_path, monkeypatch, _Drifts(), deep_retry=why != "off")
    if why == "recall":  # the continued candidate does not recall the new memory: a deep sleep would not help it
        monkeypatch.setattr(cycle.backend, "evaluate", lambda prompts, params, adapter="active": ["No." for _ in prompts])
    [row] = cycle.run("test")
    assert row["status"] == "rejected" and not row["details"]["deep"] and "continued" not in row["details"], row
    assert len(cycle.trained) == 2
    cycle.store.close()
