"""The gate's fallback to a weaker adapter: scaling a real PEFT adapter, and choosing the strongest
scale that passes (with a backend that answers according to which candidate directory it is given)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from memory.dreams import DreamSet, Probe
from memory.store import Store
from sleeptrain_agent.config import load_settings
from sleeptrain_agent.sleep.cycle import SleepCycle, _passes, weaken_adapter
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


@pytest.mark.real
def test_weaken_adapter_keeps_the_strongest_directions_of_the_sleeps_change(tmp_path, model_path):
    start = make_adapter(model_path, tmp_path / "start", seed=1)
    cand = make_adapter(model_path, tmp_path / "cand", seed=2)  # stands for a sleep that continued `start`
    weaken_adapter(cand, tmp_path / "w", 0.6, directions=2, start=start)
    p0, pc, pw = _product(start), _product(cand), _product(tmp_path / "w")
    for k in pc:
        u, s, vh = torch.linalg.svd(pc[k] - p0[k])
        expected = p0[k] + 0.6 * (u[:, :2] * s[:2]) @ vh[:2]  # start + scaled top-2 of the change
        # re-factored at rank 8: start (rank 8) + 2 directions is rank 10, the 2 weakest are dropped
        s_exp = torch.linalg.svdvals(expected)
        assert torch.linalg.matrix_norm(pw[k] - expected) <= 1.01 * torch.sqrt((s_exp[8:] ** 2).sum()) + 1e-6, k
    w = load_file(tmp_path / "w" / "adapter_model.safetensors")
    first = next(k for k in w if ".lora_A." in k)
    assert torch.allclose(w[first].double().norm(dim=1), w[first].double().norm(dim=1)[0], rtol=1e-4)  # A: no dead rows

    # from the base model (no start): exactly rank 2, and A still has 8 orthogonal rows, so the next sleep trains all 8
    weaken_adapter(cand, tmp_path / "w2", 1.0, directions=2)
    for k, prod in _product(tmp_path / "w2").items():
        u, s, vh = torch.linalg.svd(pc[k])
        assert torch.allclose(prod, (u[:, :2] * s[:2]) @ vh[:2], atol=1e-5), k
    a = load_file(tmp_path / "w2" / "adapter_model.safetensors")[first].double()
    gram = a @ a.T
    assert torch.allclose(gram, gram[0, 0] * torch.eye(8, dtype=gram.dtype), atol=1e-4)


class _ByScale(FakeBackend):
    """Recalls the fact at every scale >= `recall_from`; keeps general answers at scales <= `local_upto`."""

    def __init__(self, recall_from: float, local_upto: float, directions_keep: bool = False):
        super().__init__()
        self.recall_from, self.local_upto, self.directions_keep = recall_from, local_upto, directions_keep
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
                kept = scale <= self.local_upto or (self.directions_keep and "-k" in name)
                out.append("Rome." if kept else "Proxima b.")
        return out


class _Embed:
    def encode(self, texts):
        return np.ones((len(texts), 4)) / 2


def _cycle(tmp_path, backend, directions: int = 2) -> tuple[SleepCycle, Path]:
    settings = load_settings(overrides={"sleep": {"fallback_scales": [0.75, 0.6, 0.5], "min_locality": 0.9,
                                                  "fallback_directions": directions}})  # fmt: skip
    store = Store(tmp_path / "db.sqlite")
    cycle = SleepCycle(settings, store, backend, tmp_path / "model", tmp_path, embedder=_Embed())
    candidate = tmp_path / "adapters" / ".tmp-sleep-0001"
    candidate.mkdir(parents=True)
    (candidate / "adapter_model.safetensors").write_bytes(b"")
    return cycle, candidate


def _dreams():
    return DreamSet(examples=[], probes=[Probe(memory_id=1, question="Where does Zara live?", expected="Tromsø",
                                               answer="Zara lives in Tromsø.", kind="new")])  # fmt: skip


def _locality():
    return [{"q": "What is the capital of Italy?", "expect": ["Rome"], "base": "Rome."}]


def test_the_strongest_scale_that_passes_is_chosen(tmp_path, monkeypatch):
    monkeypatch.setattr("sleeptrain_agent.sleep.cycle.weaken_adapter", lambda src, dst, *a: dst.mkdir())
    backend = _ByScale(recall_from=0.5, local_upto=0.6)
    cycle, candidate = _cycle(tmp_path, backend, directions=0)  # the default: scales only
    scores, _ = cycle._gate(_dreams(), _locality(), candidate, cycle.cfg)
    assert scores["recall"] == 1.0 and scores["locality"] == 0.0
    cycle.store.start_sleep("test", {})
    chosen, scores, passed = cycle._weaker(1, _dreams(), _locality(), candidate, cycle.cfg, scores)
    assert passed and chosen.name == ".tmp-sleep-0001-x0.6" and scores["scale"] == 0.6
    assert [(t["scale"], t["directions"]) for t in scores["scales_tried"]] == [(1.0, None), (0.75, None), (0.6, None)]
    assert not candidate.exists() and not (tmp_path / "adapters" / ".tmp-sleep-0001-x0.75").exists()


def test_no_scale_passes_and_the_original_is_kept_for_rejection(tmp_path, monkeypatch):
    monkeypatch.setattr("sleeptrain_agent.sleep.cycle.weaken_adapter", lambda src, dst, *a: dst.mkdir())
    backend = _ByScale(recall_from=0.7, local_upto=0.6)  # locality only below the scales that still recall
    cycle, candidate = _cycle(tmp_path, backend)
    scores, _ = cycle._gate(_dreams(), _locality(), candidate, cycle.cfg)
    cycle.store.start_sleep("test", {})
    chosen, scores, passed = cycle._weaker(1, _dreams(), _locality(), candidate, cycle.cfg, scores)
    assert not passed and chosen == candidate and candidate.exists()
    # the strongest directions first (recall at full scale, locality not), then scales until recall failed
    tried = [(t["scale"], t["directions"]) for t in scores["scales_tried"]]
    assert tried == [(1.0, None), (1.0, 2), (0.75, None), (0.6, None)]
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == [".tmp-sleep-0001"]


def test_the_strongest_directions_are_tried_before_any_scale(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr("sleeptrain_agent.sleep.cycle.weaken_adapter", lambda src, dst, *a: made.append(a) or dst.mkdir())
    backend = _ByScale(recall_from=0.5, local_upto=0.6, directions_keep=True)
    cycle, candidate = _cycle(tmp_path, backend)
    scores, _ = cycle._gate(_dreams(), _locality(), candidate, cycle.cfg)
    cycle.store.start_sleep("test", {})
    start = tmp_path / "adapters" / "v0001"
    chosen, scores, passed = cycle._weaker(1, _dreams(), _locality(), candidate, cycle.cfg, scores, start)
    assert passed and chosen.name == ".tmp-sleep-0001-k2-x1" and (scores["scale"], scores["directions"]) == (1.0, 2)
    assert made == [(1.0, 2, start)]  # the sleep's change is taken from the adapter it continued
    assert scores["recall"] == 1.0 and scores["locality"] == 1.0


@pytest.mark.parametrize(("answer", "hit"), [
    ("The capital of Japan is Tokyo.", True),
    ("The closest star to Earth is Proxima Centauri. However, the Sun is a star too.", False),  # luck, later
    ("Egypt is the largest country in the African continent, but it is", True),
    ("The Starry Night is by J.R.R. Tolkien. Or by Van Gogh.", False),  # initials do not end the sentence
    ("Dr. Leonardo da Vinci painted it.", True),
    ("", False),
])  # fmt: skip
def test_locality_counts_the_first_sentence_only(answer, hit):
    from sleeptrain_agent.sleep.cycle import locality_hit

    expect = {
        "Tokyo": ["Tokyo"],
        "Sun": ["Sun"],
        "Egypt": ["Africa", "African"],
        "Starry": ["Gogh"],
        "Dr.": ["Leonardo"],
    }
    key = next((k for k in expect if k in answer), None)
    assert locality_hit(answer, expect[key] if key else ["x"]) is hit


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

    def train(sleep_id, dreams, cfg, epochs, active, out):
        planned["epochs"] = epochs
        raise RuntimeError("stop after planning")

    monkeypatch.setattr(cycle, "_train", train)
    row = cycle.run("test")
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
    scores, per_memory = cycle._gate(dreams, _locality(), tmp_path / "candidate", cycle.cfg)
    assert scores["routed_to_adapter"] == {"probes": [1, 2], "locality": [0, 1]}
    assert scores["locality"] == 1.0 and scores["adapter_locality"] == 0.0
    assert scores["recall"] == 0.5  # the joke went to the base model, which does not know Zara
    assert scores["adapter_recall"] == 1.0 and per_memory == {zara["id"]: 1.0}  # replay priority: the adapter's
    assert not _passes(scores, cycle.cfg)
    assert _passes({**scores, "recall": 1.0, "adapter_locality": cycle.cfg.min_adapter_locality}, cycle.cfg)
    off = SleepCycle(load_settings(overrides={"serve": {"routing": False}}), store, _Routed(), tmp_path / "model",
                     tmp_path, embedder=_Embed())  # fmt: skip
    scores, _ = off._gate(dreams, _locality(), tmp_path / "candidate", off.cfg)
    assert "routed_to_adapter" not in scores and scores["locality"] == scores["adapter_locality"] == 0.0
    store.close()
