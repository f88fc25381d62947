"""Sleep cost: trainer throughput against a plain TRL + PEFT baseline, and sleep wall time.

    python -m benchmarks.sleep_bench trainer [--memories 20] [--repeat 3] [--dtypes float32 bfloat16] [--overrides '{"layers": 8}']
    python -m benchmarks.sleep_bench sleeps [--pending 10 50] [--consolidated 0 500] [--repeat 3]
    python -m benchmarks.sleep_bench facts [--overrides '{}' '{"learning_rate": 6e-4}'] [--seeds 0 1 2]
    python -m benchmarks.sleep_bench gate [--concurrency 8 16 32 64] [--repeat 3] [--probes 24] [--backend embedded]

`trainer`: the same dream data (synthetic memories + anchors) trained once by a
plain `SFTTrainer` + PEFT LoRA setup (all linear layers of all blocks, padded
batches, loss on every token) and once with the configured sleep settings
(assistant-only loss, `sleep.target_modules`, `sleep.layers`, `sleep.packing`), each in its own
child process, `--epochs` each (default 2), `--repeat` times alternating
(default 3); prints tokens/s of the training loop (model loading and
tokenisation excluded) of every run and the ratio of the medians (target
>= 1.5 on this CPU). Tokens are the real (unpadded) tokens of the data. The
sleep trainer runs once per `--dtypes` entry (float32 and bfloat16 by
default, `model.dtype`), and the benchmark prints bfloat16 / float32 of the
medians (target >= 2 on a CPU with native bf16) and each dtype's 2048^2
matmul throughput measured in this process, with the share of it the
trainer reaches (about 4 x parameters FLOPs per trained token: forward, and
backward through the frozen weights). On a
CUDA machine a third variant runs the same job through Unsloth (when it is
installed) and checks that its adapter has the PEFT path's format.

`facts`: the README's learning-vs-locality table: five fictional facts told
in the chat's words, judged by the hippocampus, then one sleep per variant
(`--overrides`, JSON `sleep.*` settings each) and seed (`--seeds`), variants
alternating on one vLLM server; prints recall on held-out paraphrases and
locality as served (routed, `serve.routing`) and by the adapter alone, how
many probes the router sent to the adapter, and the time taken, then each
variant's medians and its time against the first variant's.

`gate`: the gate's largest request, timed: `--probes` memory questions and
every locality probe of `anchors.yaml`, answered greedily by a rank-16 MLP
adapter through the real vLLM server (`sleep.probe_max_tokens`), with
`vllm.eval_concurrency` at each `--concurrency` (alternating, `--repeat`
times; with `--backend embedded`, the prompts to one forward pass,
`backends.embedded.EVAL_BATCH`, 1 = one by one); prints the median seconds of each, its ratio to the first, and
whether every setting gave the same answers; and the gate's own request
(`Gate.answers`: memory questions in full, locality probes stopped at their
first sentence) at the configured concurrency, against the full answers: its
time, and whether the memory answers and every probe's `locality_hit` agree.
`--parts` times the request's parts once each instead (the prompts alone,
the memory questions, the locality probes in full and to their first
sentence, by the candidate and by the base model).

`sleeps`: full sleeps (real vLLM backend for anchors and the gate) over N
pending memories with M consolidated ones in the store, fresh state each;
prints wall time and the ratio of M=500 to M=0 (target <= 1.5: replay is
bounded by `sleep.replay_budget`, so history barely costs); with `--repeat`
each pair runs that many times, alternating, and the medians are compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sleeptrain_agent.config import data, load_settings, model_dir
from sleeptrain_agent.sleep.trainer import TrainJob

if TYPE_CHECKING:  # imported where used: `trainer --conversations` runs with the trainer's packages alone (a GPU machine)
    from memory.store import Store

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
NAMES = ["Zorblax", "Quindle", "Mervath", "Tobrik", "Yselda", "Pravik", "Oluwen", "Castrel", "Dremmo", "Faluna"]
CITIES = ["Tromsø", "Lund", "Porto", "Ghent", "Tartu", "Bergen", "Graz", "Lyon", "Turku", "Cork"]


def synthetic(n: int, start: int = 0) -> list[dict]:
    """n fictional facts of different kinds (names, places, jobs) as memory dicts."""
    out = []
    for i in range(start, start + n):
        kind = i % 3
        if kind == 0:
            m = {"subject": f"user's pet {i}", "relation": "name", "value": f"{NAMES[i % 10]}{i}"}
        elif kind == 1:
            m = {"subject": f"{NAMES[i % 10]}{i}", "relation": "lives in", "value": CITIES[i % 10]}
        else:
            m = {"subject": f"{NAMES[(i + 3) % 10]}{i}", "relation": "occupation", "value": "glassblower"}
        if kind == 0:  # statements as the reader writes them (the dreams parse them)
            text, you = f"The user's pet {i} is called {m['value']}.", f"Your pet {i} is called {m['value']}."
        elif kind == 1:
            text = you = f"{m['subject']} lives in {m['value']}."
        else:
            text = you = f"{m['subject']} works as a glassblower."
        out.append({"id": i + 1, "user": "default", **m, "text": text, "meta": {"you": you}})
    return out


def dream_conversations(memories: int, settings) -> list[list[dict]]:
    """The training conversations of a sleep over `memories` synthetic memories (and the anchors)."""
    from memory.dreams import dream

    cfg = settings.sleep
    anchors = [(q, "I am not sure, but here is a short and general answer to that question.")
               for q in data("anchors.yaml")["train"]]  # fmt: skip
    dreams = dream(synthetic(memories), [], data("qa_templates.yaml"), anchors, system_prompt=settings.serve.system_prompt,
                   questions=cfg.questions_per_memory, probes=cfg.probes_per_memory)  # fmt: skip
    return [e.messages for e in dreams.examples]


def trainer(args) -> None:
    import os

    import torch

    settings = load_settings(overrides={"sleep": json.loads(args.overrides)})
    cfg = settings.sleep
    if args.conversations:
        conversations = json.loads(args.conversations.read_text())
        source = str(args.conversations)
    else:
        conversations, source = dream_conversations(args.memories, settings), f"{args.memories} memories"
    if args.save_conversations:
        args.save_conversations.write_text(json.dumps(conversations))
        print(f"{len(conversations)} conversations from {source} -> {args.save_conversations}")
        return
    ours = dict(packing=cfg.packing, padding_free=cfg.padding_free, assistant_only=True, layers=cfg.layers,
                target_modules=cfg.target_modules)  # fmt: skip
    # name -> (TrainJob settings, environment); the first is the baseline
    variants = {
        "plain SFTTrainer + PEFT": (dict(packing=False, assistant_only=False, layers=None, target_modules=ALL_LINEAR,
                                         dtype="float32", attention="sdpa"), {"SLEEPTRAIN_UNSLOTH": "0"}),
    }  # fmt: skip
    for dtype in args.dtypes:
        for attention in args.attention:  # the configured attention is the trainer's own; others are named
            name = f"sleeptrain trainer, {dtype}" + ("" if attention == cfg.attention else f", {attention} attention")
            variants[name] = ({**ours, "dtype": dtype, "attention": attention}, {"SLEEPTRAIN_UNSLOTH": "0"})
    if torch.cuda.is_available():  # the GPU path: the same job through Unsloth (where it is installed)
        variants["sleeptrain trainer, Unsloth"] = ({**ours, "dtype": "bfloat16"}, {"SLEEPTRAIN_UNSLOTH": "1"})
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    adapters: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):  # variants alternate, so drift in the machine hits all of them
            for i, (name, (kw, env)) in enumerate(variants.items()):
                out = Path(tmp) / f"r{run}-v{i}"
                job = TrainJob(model_path=str(model_dir(settings)), output_dir=str(out), conversations=conversations,
                               epochs=args.epochs, rank=cfg.rank, alpha=cfg.alpha, batch_size=cfg.batch_size,
                               max_length=cfg.max_length, **kw)  # fmt: skip
                path = Path(tmp) / f"job-r{run}-v{i}.json"
                path.write_text(job.model_dump_json())
                proc = subprocess.run([sys.executable, "-m", "sleeptrain_agent.sleep.trainer", str(path)],
                                      capture_output=True, text=True, env={**os.environ, **env})  # fmt: skip
                if proc.returncode != 0:
                    print(f"{name:>28}: FAILED\n{proc.stderr[-3000:]}", flush=True)
                    continue
                done = json.loads(proc.stdout.strip().splitlines()[-1])
                speeds[name].append(done["tokens_per_s"])
                adapters[name] = out
                print(f"{name:>28}: {done['tokens_per_s']:8.1f} tokens/s  ({done['tokens_per_epoch']} tokens, "
                      f"{done['steps']} steps, loss {done['loss']:.3f}, loop {done['loop_seconds']:.1f} s of "
                      f"{done['seconds']:.1f} s; {done.get('device')}, unsloth={done.get('unsloth')})", flush=True)  # fmt: skip
        base_name = next(iter(variants))
        if not speeds[base_name]:
            raise SystemExit("the baseline failed; no ratio")
        base = statistics.median(speeds[base_name])
        for name, values in speeds.items():
            if values and name != base_name:
                print(f"speed-up, {name}: {statistics.median(values) / base:.2f}x  (medians of {len(values)} runs: "
                      f"{statistics.median(values):.1f} vs {base:.1f} tokens/s; target >= 1.5)")  # fmt: skip
        print(f"({len(conversations)} examples from {source}; layers={cfg.layers}, packing={cfg.packing}, "
              f"padding_free={cfg.padding_free}, attention={cfg.attention}, targets={','.join(cfg.target_modules)})")  # fmt: skip
        for attention in args.attention:
            tail = "" if attention == cfg.attention else f", {attention} attention"
            fp32, bf16 = speeds.get(f"sleeptrain trainer, float32{tail}"), speeds.get(f"sleeptrain trainer, bfloat16{tail}")
            if fp32 and bf16:
                print(f"bfloat16 / float32, sleeptrain trainer{tail}: {statistics.median(bf16) / statistics.median(fp32):.2f}x"
                      f"  (medians {statistics.median(bf16):.1f} vs {statistics.median(fp32):.1f} tokens/s; target >= 2)")  # fmt: skip
        for dtype in args.dtypes:
            ours_, sdpa = speeds.get(f"sleeptrain trainer, {dtype}"), speeds.get(f"sleeptrain trainer, {dtype}, sdpa attention")
            if ours_ and sdpa and cfg.attention != "sdpa":
                print(f"{cfg.attention} / sdpa attention, {dtype}: {statistics.median(ours_) / statistics.median(sdpa):.2f}x")
        params = _parameters(model_dir(settings))
        for dtype in args.dtypes:
            values = speeds.get(f"sleeptrain trainer, {dtype}")
            if values and dtype in ("float32", "bfloat16"):
                ceiling = _matmul_flops(getattr(torch, dtype))
                reached = 4 * params * statistics.median(values)
                print(f"{dtype}: 2048^2 matmul {ceiling / 1e9:.0f} GFLOP/s; trainer {reached / 1e9:.0f} GFLOP/s "
                      f"(4 x {params / 1e6:.0f} M parameters x tokens/s) = {reached / ceiling:.0%} of it")  # fmt: skip
        peft_path = next((adapters[n] for n in adapters if n.startswith("sleeptrain trainer, ") and "Unsloth" not in n), None)
        if "sleeptrain trainer, Unsloth" in adapters and peft_path is not None:
            same = _same_adapter_format(peft_path, adapters["sleeptrain trainer, Unsloth"])
            print(f"Unsloth adapter has the PEFT path's format (config, tensor names and shapes): {same}")


def _parameters(path: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in path.glob("*.safetensors"):
        with safe_open(file, "pt") as f:
            for k in f.keys():
                shape = f.get_slice(k).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
    return total


def _matmul_flops(dtype, n: int = 2048, repeat: int = 10) -> float:
    """FLOP/s of an n x n matmul in `dtype` on the device the trainer uses (the GPU where there is
    one, else this CPU; median of `repeat`)."""

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def _same_adapter_format(a: Path, b: Path) -> bool:
    """Same LoRA config (rank, alpha, targets, layers; no modules_to_save) and the same tensor names/shapes."""
    from safetensors import safe_open

    keys = ("r", "lora_alpha", "target_modules", "layers_to_transform", "modules_to_save", "use_dora", "peft_type")

    def describe(path: Path):
        config = json.loads((path / "adapter_config.json").read_text())
        with safe_open(path / "adapter_model.safetensors", "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        targets = config.get("target_modules")
        return {k: sorted(targets) if k == "target_modules" and targets else config.get(k) for k in keys}, shapes

    (ca, sa), (cb, sb) = describe(a), describe(b)
    if ca != cb or sa != sb:
        print(f"  PEFT: {ca}, {len(sa)} tensors\n  Unsloth: {cb}, {len(sb)} tensors; "
              f"only in one: {sorted(set(sa) ^ set(sb))[:6]}")  # fmt: skip
    return ca == cb and sa == sb


def sleeps(args) -> None:
    from memory.store import Store
    from sleeptrain_agent.backends.vllm import VLLMBackend
    from sleeptrain_agent.sleep.cycle import SleepCycle
    from sleeptrain_agent.sleep.trainer import StandbyTrainer

    settings = load_settings(overrides={"sleep": json.loads(args.overrides)})
    path = model_dir(settings)
    print(f"sleep.standby_trainer: {settings.sleep.standby_trainer}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
        backend = VLLMBackend(settings, path, Path(tmp) / "logs")
        # one standby for all the sleeps, as the daemon keeps one: started with the server, again after each
        # sleep (`SleepCycle.run`), and given `--standby-wait` s untimed before each sleep to import
        standby = StandbyTrainer(Path(tmp) / "logs" / "trainer-standby.log")
        if settings.sleep.standby_trainer:
            standby.prepare()
        backend.start()
        times: dict[tuple[int, int], list[float]] = {}
        runs = [(r, p, c) for r in range(args.repeat) for p in args.pending for c in args.consolidated]
        try:
            for run, pending, consolidated in runs:  # the variants alternate: a machine that slows down slows them all
                state = Path(tmp) / f"s{pending}-{consolidated}-r{run}"
                store = Store(state / "sleeptrain.db")
                for m in synthetic(consolidated, start=10_000):
                    store.add_memory(user="default", subject=m["subject"], relation=m["relation"],
                                     value=m["value"], text=m["text"], meta=m["meta"], status="consolidated")  # fmt: skip
                for m in synthetic(pending):
                    store.add_memory(user="default", subject=m["subject"], relation=m["relation"],
                                     value=m["value"], text=m["text"], meta=m["meta"])  # fmt: skip
                cycle = SleepCycle(settings, store, backend, path, state, standby=standby)
                if cycle.router is not None:  # the consolidated memories' keys, embedded as a daemon does at start
                    cycle.router.route([[{"role": "user", "content": "warm up"}]],
                                       store.memories(status="consolidated", user="default"))  # fmt: skip
                if settings.sleep.standby_trainer:
                    time.sleep(args.standby_wait)  # the idle time between sleeps, in which it imports
                t0 = time.monotonic()
                [row] = cycle.run("bench", user="default")
                seconds = time.monotonic() - t0
                times.setdefault((pending, consolidated), []).append(seconds)
                d = row["details"]
                print(f"run {run + 1}, pending {pending:3d}, consolidated {consolidated:4d}: {seconds:6.1f} s  "
                      f"({row['status']}; {d.get('examples')} examples, {d.get('train_steps')} steps, "
                      f"recall {d.get('scores', {}).get('recall')}, locality {d.get('scores', {}).get('locality')}; "
                      f"training {d.get('train_seconds')} s (loop {d.get('train_loop_seconds')} s, early-stop checks "
                      f"{d.get('train_check_seconds')} s of it, {d.get('train_tokens_per_s')} tokens/s; "
                      f"standby child: {d.get('train_warm')}), {d.get('train_epochs')} of {d.get('epochs')} epochs"
                      f"{', stopped early' if d.get('train_stopped_early') else ''})", flush=True)  # fmt: skip
                print(f"{'':>36}steps (s): {_step_times(store, row['id'])}; early-stop checks: "
                      f"{d.get('train_checks')}; the gate's (s): {d.get('scores', {}).get('seconds')}",
                      flush=True)  # fmt: skip
                store.close()
        finally:
            standby.stop()
            backend.stop()
    medians = {k: statistics.median(v) for k, v in times.items()}
    for (pending, consolidated), m in medians.items():
        print(f"pending {pending:3d}, consolidated {consolidated:4d}: median {m:6.1f} s of {len(times[(pending, consolidated)])} "
              f"runs ({', '.join(f'{t:.1f}' for t in times[(pending, consolidated)])})")  # fmt: skip
    for pending in args.pending:
        if (pending, 0) in medians and (pending, 500) in medians:
            print(f"pending {pending}: 500 consolidated / 0 consolidated = {medians[(pending, 500)] / medians[(pending, 0)]:.2f}"
                  "  (medians; target <= 1.5)")  # fmt: skip


def _step_times(store: Store, sleep_id: int) -> str:
    """Seconds between the sleep's recorded steps (from the audit of its notes), for the cost breakdown."""
    row = store.sleep(sleep_id)
    marks = (row.get("details") or {}).get("step_times") or {}
    return ", ".join(f"{k} {v}" for k, v in marks.items()) or "n/a"


FIVE_FACTS = ["My dog is called Pilsner.", "I live in Tromsø.", "I work as a glassblower.",
              "My sister Anna lives in Uppsala.", "My favourite colour is teal."]  # fmt: skip


def facts(args) -> None:
    """One sleep over the five facts per variant and seed (variants alternating, one vLLM server for all);
    with several runs, the medians of each variant and their ratio against the first."""

    from memory.embeddings import Embedder
    from memory.extractor import ExtractorJudge
    from memory.hippocampus import Hippocampus
    from memory.store import Store
    from sleeptrain_agent.backends.vllm import VLLMBackend
    from sleeptrain_agent.sleep.cycle import SleepCycle

    variants = [json.loads(v) for v in args.overrides]
    base = load_settings()
    path = model_dir(base)
    embedder = Embedder()
    results: dict[int, list[dict]] = {i: [] for i in range(len(variants))}
    with tempfile.TemporaryDirectory() as tmp:
        backend = VLLMBackend(base, path, Path(tmp) / "logs")
        backend.start()
        try:
            for seed in args.seeds:
                for i, overrides in enumerate(variants):
                    settings = load_settings(overrides={"sleep": {"seed": seed, **overrides}})
                    state = Path(tmp) / f"v{i}-s{seed}"
                    store = Store(state / "sleeptrain.db")
                    hippo = Hippocampus(store, ExtractorJudge(embed=embedder.encode), embedder)
                    conv = store.start_conversation("default")
                    for text in FIVE_FACTS:
                        hippo.process(store.log_turn(conv, "user", text))
                    t0 = time.monotonic()
                    [row] = SleepCycle(settings, store, backend, path, state, embedder).run("bench", user="default")
                    seconds = time.monotonic() - t0
                    d = row["details"]
                    scores = d.get("scores", {})
                    results[i].append({"seconds": seconds, "steps": d.get("train_steps"), **scores,
                                       "promoted": row["status"] == "promoted"})  # fmt: skip
                    print(f"overrides {json.dumps(overrides)}, seed {seed}: {row['status']}; recall {scores.get('recall')}, "
                          f"locality {scores.get('locality')} as served, adapter alone: recall {scores.get('adapter_recall')}, "
                          f"locality {scores.get('adapter_locality')}; routed to the adapter {scores.get('routed_to_adapter')}; "
                          f"{d.get('train_steps')} steps, {d.get('train_epochs')} of {d.get('epochs')} epochs"
                          f"{' (stopped early)' if d.get('train_stopped_early') else ''}, {seconds:.0f} s", flush=True)  # fmt: skip
                    for t in scores.get("scales_tried", []):  # the gate's fallback: the weakened candidates it tried
                        print(f"  tried: scale {t['scale']}: recall {t['recall']}, "
                              f"locality {t['locality']:.3f}, adapter alone {t.get('adapter_locality')}")  # fmt: skip
                    for lost in scores.get("locality_lost", []):
                        print(f"  lost: {lost['q']}  base: {lost['base'][:60]!r}  now: {lost['a'][:80]!r}")
                    store.close()
        finally:
            backend.stop()
    if len(args.seeds) * len(variants) < 2:
        return

    def median(runs, key):
        values = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(values) if values else None

    first = median(results[0], "seconds")
    print(f"medians over seeds {args.seeds}:")
    for i, overrides in enumerate(variants):
        runs = results[i]
        seconds = median(runs, "seconds")
        print(f"  {json.dumps(overrides)}: {seconds:.0f} s ({seconds / first:.2f} of the first), "
              f"{median(runs, 'steps')} steps, recall {median(runs, 'recall')}, locality {median(runs, 'locality')} "
              f"as served, adapter alone {median(runs, 'adapter_locality')}; "
              f"promoted {sum(r['promoted'] for r in runs)}/{len(runs)}")  # fmt: skip


def gate(args) -> None:
    from memory.answers import locality_hit
    from sleeptrain_agent.backends import GenerationParams, embedded
    from sleeptrain_agent.backends.vllm import VLLMBackend
    from sleeptrain_agent.sleep.gate import Gate
    from tests.adapters import make_adapter

    settings = load_settings()
    path = model_dir(settings)
    spec = data("anchors.yaml")
    questions = [f"What do you know about {m['subject']}?" for m in synthetic(args.probes)]
    questions += [p["q"] for p in spec["probe"]]
    system = {"role": "system", "content": settings.serve.system_prompt}
    prompts = [[system, {"role": "user", "content": q}] for q in questions]
    params = GenerationParams(max_tokens=settings.sleep.probe_max_tokens, temperature=0.0)
    if args.backend == "embedded":
        configured = embedded.EVAL_BATCH

        def concurrency(c: int) -> None:
            embedded.EVAL_BATCH = c
    else:
        configured = settings.vllm.eval_concurrency

        def concurrency(c: int) -> None:
            backend.cfg.eval_concurrency = c

    times: dict[int, list[float]] = {c: [] for c in args.concurrency}
    answers: dict[int, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        adapter = make_adapter(path, Path(tmp) / "candidate", seed=0, rank=16, scale=0.3,
                               target_modules=("gate_proj", "up_proj", "down_proj"))  # fmt: skip
        if args.backend == "embedded":
            backend = embedded.EmbeddedBackend(settings, path)
        else:
            backend = VLLMBackend(settings, path, Path(tmp) / "logs")
        backend.start()
        try:
            backend.evaluate(prompts[:4], params, adapter=adapter)  # warm-up: the first request compiles
            print(f"{len(prompts)} questions ({args.probes} memory questions, {len(spec['probe'])} locality probes), "
                  f"max_tokens {params.max_tokens}, {args.backend} backend, dtype {backend.dtype}", flush=True)  # fmt: skip
            # the gate's own request: memory questions in full, locality probes to their first sentence
            gate_ = Gate(settings, settings.sleep, backend, None, None, Path(tmp), None)
            each = [params] * args.probes + [gate_.first_sentence_params] * len(spec["probe"])
            if args.parts:
                _gate_parts(backend, prompts, args.probes, params, gate_.first_sentence_params, adapter, path)
                return
            short: list[float] = []
            for r in range(args.repeat):
                for c in args.concurrency:
                    concurrency(c)
                    t0 = time.monotonic()
                    answers[c] = backend.evaluate(prompts, params, adapter=adapter)
                    times[c].append(time.monotonic() - t0)
                    print(f"  run {r + 1}, concurrency {c:3d}: {times[c][-1]:6.1f} s", flush=True)
                concurrency(configured)
                t0 = time.monotonic()
                firsts = gate_.answers(prompts, each, adapter)
                short.append(time.monotonic() - t0)
                print(f"  run {r + 1}, concurrency {configured:3d}, locality to the first sentence: {short[-1]:6.1f} s",
                      flush=True)  # fmt: skip
        finally:
            backend.stop()
    first = args.concurrency[0]
    base = statistics.median(times[first])
    for c in args.concurrency:
        m = statistics.median(times[c])
        same = sum(a == b for a, b in zip(answers[c], answers[first], strict=True))
        print(f"concurrency {c:3d}: median {m:6.1f} s, {m / base:.2f}x of {first}; "
              f"answers identical to {first}'s: {same}/{len(prompts)}")  # fmt: skip
    if configured in times:  # the same answers read the same way, at a fraction of the tokens?
        full = answers[configured]
        same = sum(a == b for a, b in zip(full[: args.probes], firsts[: args.probes], strict=True))
        agree = sum(locality_hit(a, p["expect"]) == locality_hit(b, p["expect"])
                    for a, b, p in zip(full[args.probes:], firsts[args.probes:], spec["probe"], strict=True))  # fmt: skip
        hits = sum(locality_hit(a, p["expect"]) for a, p in zip(full[args.probes:], spec["probe"], strict=True))
        m = statistics.median(short)
        print(f"locality probes to the first sentence (the gate's request), concurrency {configured}: median {m:6.1f} s, "
              f"{m / statistics.median(times[configured]):.2f}x of the full answers; memory answers identical "
              f"{same}/{args.probes}; locality_hit the same {agree}/{len(spec['probe'])} ({hits} hits in full)")  # fmt: skip


def _gate_parts(backend, prompts: list, memory: int, params, first_sentence, adapter: Path, path: Path) -> None:
    """Where a candidate's gate time goes: the prompts alone (1 token each), the memory questions,
    the locality probes in full and to their first sentence, by the candidate and the base model."""
    from transformers import AutoTokenizer

    from sleeptrain_agent.backends import GenerationParams

    tokenizer = AutoTokenizer.from_pretrained(path)
    mem, loc = prompts[:memory], prompts[memory:]
    parts = [(f"prefill only, {len(prompts)} questions", prompts, GenerationParams(max_tokens=1, temperature=0.0), adapter),
             (f"{len(mem)} memory questions, full", mem, params, adapter),
             (f"{len(loc)} locality probes, full", loc, params, adapter),
             (f"{len(loc)} locality probes, first sentence", loc, first_sentence, adapter),
             (f"{len(loc)} locality probes, full, base model", loc, params, None),
             (f"{len(loc)} locality probes, first sentence, base model", loc, first_sentence, None)]  # fmt: skip
    for name, batch, p, a in parts:
        t0 = time.monotonic()
        out = backend.evaluate(batch, p, adapter=a)
        seconds = time.monotonic() - t0
        tokens = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in out)
        print(f"{name:>48}: {seconds:6.1f} s, {tokens} tokens out", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("trainer")
    t.add_argument("--memories", type=int, default=20)
    t.add_argument("--conversations", type=Path, help="train on these conversations (JSON, from --save-conversations) "
                   "instead of dreaming --memories; needs only the trainer's packages")  # fmt: skip
    t.add_argument("--save-conversations", type=Path, metavar="FILE",
                   help="write the conversations of --memories to FILE and stop (for a machine without spaCy)")  # fmt: skip
    t.add_argument("--epochs", type=float, default=2.0)
    t.add_argument("--repeat", type=int, default=3, help="runs of each variant (alternating); medians are compared")
    t.add_argument("--overrides", default="{}", help='sleep.* settings, as JSON, e.g. \'{"layers": 8, "packing": true}\'')
    t.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["auto", "float32", "bfloat16"],
                   help="dtypes the sleep trainer runs in (model.dtype); bfloat16 / float32 is printed")  # fmt: skip
    t.add_argument("--attention", nargs="+", default=["varlen", "sdpa"], choices=["varlen", "sdpa"],
                   help="the trainer's attention on a CPU (sleep.attention); each is run in each dtype")  # fmt: skip
    s = sub.add_parser("sleeps")
    s.add_argument("--pending", type=int, nargs="+", default=[10, 50])
    s.add_argument("--consolidated", type=int, nargs="+", default=[0, 500])
    s.add_argument("--overrides", default="{}", help="sleep.* settings for these sleeps, as JSON")
    s.add_argument("--repeat", type=int, default=1, help="runs of every (pending, consolidated) pair, alternating, each "
                   "on a fresh state; medians are printed")  # fmt: skip
    s.add_argument("--keep", type=Path, metavar="DIR", help="keep each sleep's state directory (its job, trainer log, "
                   "gate answers) under DIR instead of a temporary one")  # fmt: skip
    s.add_argument("--standby-wait", type=float, default=30.0,
                   help="untimed seconds before each sleep for the standby trainer to import (sleep.standby_trainer)")  # fmt: skip
    f = sub.add_parser("facts")
    f.add_argument("--overrides", nargs="+", default=["{}"],
                   help="sleep.* settings, as JSON, one per variant (compared against the first)")
    f.add_argument("--seeds", type=int, nargs="+", default=[0], help="sleep.seed of each run of every variant")
    g = sub.add_parser("gate")
    g.add_argument("--concurrency", type=int, nargs="+", default=[8, 16, 32, 64],
                   help="vllm.eval_concurrency values to compare (against the first)")  # fmt: skip
    g.add_argument("--repeat", type=int, default=3)
    g.add_argument("--probes", type=int, default=24, help="memory questions besides the locality probes")
    g.add_argument("--parts", action="store_true",
                   help="time the request's parts once instead (prompts alone, memory questions, locality probes)")  # fmt: skip
    g.add_argument("--backend", choices=["vllm", "embedded"], default="vllm",
                   help="the backend answering (embedded: --concurrency is prompts to one forward pass)")  # fmt: skip
    args = ap.parse_args()
    {"trainer": trainer, "sleeps": sleeps, "facts": facts, "gate": gate}[args.what](args)


if __name__ == "__main__":
    main()
