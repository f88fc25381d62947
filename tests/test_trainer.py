"""The trainer on the real SmolLM2 with real TRL/PEFT (small jobs)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from sleeptrain_agent.backends import check_adapter
from sleeptrain_agent.sleep.trainer import TRAINING_TEMPLATE, TrainJob

pytestmark = pytest.mark.real
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def conversations(n=6):
    return [[SYSTEM, {"role": "user", "content": f"What is my pet number {i} called?"},
             {"role": "assistant", "content": f"Your pet number {i} is called Zorblax{i}."}] for i in range(n)]  # fmt: skip


def run_job(tmp_path, name, **kwargs):
    job = TrainJob(model_path=str(kwargs.pop("model_path")), output_dir=str(tmp_path / name),
                   conversations=kwargs.pop("conversations", None) or conversations(), epochs=kwargs.pop("epochs", 1),
                   batch_size=4, **kwargs)  # fmt: skip
    job_file = tmp_path / f"{name}.json"
    job_file.write_text(job.model_dump_json())
    proc = subprocess.run([sys.executable, "-m", "sleeptrain_agent.sleep.trainer", str(job_file)],
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return events, tmp_path / name


def test_training_template_renders_like_the_model(model_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    messages = conversations(1)[0]
    served = tok.apply_chat_template(messages, tokenize=False)
    tok.chat_template = TRAINING_TEMPLATE
    assert tok.apply_chat_template(messages, tokenize=False) == served
    masks = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids = [t for t, m in zip(masks["input_ids"], masks["assistant_masks"], strict=True) if m]
    assert tok.decode(ids) == "Your pet number 0 is called Zorblax0.<|im_end|>"  # loss on the answer only


def test_child_process_trains_a_servable_adapter_and_continues_it(tmp_path, model_path):
    events, out = run_job(tmp_path, "first", model_path=model_path, rank=8, alpha=16, layers=8)
    assert [e["event"] for e in events][-1] == "done" and any(e["event"] == "step" for e in events)
    done = events[-1]
    assert done["steps"] >= 1 and done["tokens_per_s"] > 0 and done["loss"] is not None
    check_adapter(out, max_rank=16)  # loadable by vLLM: rank, weights, no modules_to_save, no DoRA
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["layers_to_transform"] == list(range(22, 30))
    events2, out2 = run_job(tmp_path, "second", model_path=model_path, init_adapter=str(out), min_steps_per_epoch=3,
                               packing=False, padding_free=True)  # fmt: skip
    assert events2[-1]["event"] == "done"
    assert (events2[-1]["batch_size"], events2[-1]["steps"]) == (2, 3)  # 6 examples: 3 steps, not 2
    assert json.loads((out2 / "adapter_config.json").read_text())["r"] == 8  # continued, not restarted


def test_bad_job_fails_with_a_message(tmp_path, model_path):
    job_file = tmp_path / "bad.json"
    job_file.write_text(TrainJob(model_path=str(tmp_path / "missing"), output_dir=str(tmp_path / "o"),
                                 conversations=conversations(1)).model_dump_json())  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "sleeptrain_agent.sleep.trainer", str(job_file)],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode != 0 and "missing" in proc.stderr


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_labelled_lm_head_gives_trls_loss_and_gradients(model_path, dtype):
    """`_labelled_lm_head` (CPU): the LM head on the labelled positions only, in the autocast dtype, must
    give TRL's fused head's loss, gradients and metrics (entropy, top-1), and leave the plain forward
    (generation) alone. In bf16 both heads round the logits to bf16; the tolerances are bf16's."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer import utils as trl_utils

    from sleeptrain_agent.sleep import trainer

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype))
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (2, 24))
    labels = ids.clone()
    labels[:, :15] = -100  # the prompt: no loss
    labels[1, 20] = -100

    def run():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.loss.backward()
        grad = model.model.layers[-1].mlp.down_proj.weight.grad.float().clone()
        return out, grad

    trls, trl_grad = run()
    plain = model(input_ids=ids).logits
    trainer._labelled_lm_head(model, chunk=5)  # several chunks, the last one short
    ours, our_grad = run()
    rel = 1e-5 if dtype == "float32" else 2e-2
    assert ours.loss.item() == pytest.approx(trls.loss.item(), rel=rel)
    assert torch.equal(ours.label_mask, trls.label_mask)
    assert torch.allclose(ours.log_probs, trls.log_probs, rtol=rel, atol=rel)
    assert torch.allclose(ours.entropy, trls.entropy.float(), rtol=rel, atol=rel)
    assert (ours.is_top1 == trls.is_top1).float().mean() > 0.9 and not ours.is_top1[~ours.label_mask].any()
    cosine = torch.nn.functional.cosine_similarity(our_grad.flatten(), trl_grad.flatten(), dim=0)
    assert cosine > (0.99999 if dtype == "float32" else 0.99)
    assert torch.equal(model(input_ids=ids).logits, plain)  # without fused_lm_head: the model's own forward


def test_padding_free_batches_give_the_same_loss_as_padded_ones(model_path):
    """`sleep.padding_free`: TRL's collator flattens a batch into one row with restarting position
    ids; transformers then keeps the examples apart (block-diagonal mask). The loss and gradients
    must be those of the padded batch: the speed-up may not change what is learned."""
    import inspect

    import torch
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation="sdpa")
    torch.manual_seed(0)
    examples = []
    for n in (7, 19, 12):  # different lengths: the padded batch has padding to skip
        ids = torch.randint(0, 1000, (n,)).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * (n // 2) + ids[n // 2 :]})

    def loss_and_grad(batch):
        model.zero_grad()
        keep = ("input_ids", "labels", "attention_mask", "position_ids")
        # use_cache=False as TRL's compute_loss passes it: transformers builds the block-diagonal mask
        # from the position ids only without a cache (with one, the examples would attend to each other)
        out = model(**{k: v for k, v in batch.items() if k in keep}, use_cache=False)
        out.loss.backward()
        return out.loss.item(), model.model.layers[3].mlp.up_proj.weight.grad.clone()

    assert '"use_cache"] = False' in inspect.getsource(SFTTrainer.compute_loss)  # what the test relies on
    padded = DataCollatorForLanguageModeling(pad_token_id=0)(examples)
    flat = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    assert padded["input_ids"].shape == (3, 19) and flat["input_ids"].shape == (1, 38)
    padded_loss, padded_grad = loss_and_grad(padded)
    flat_loss, flat_grad = loss_and_grad(flat)
    assert flat_loss == pytest.approx(padded_loss, rel=1e-4)
    assert torch.allclose(flat_grad, padded_grad, rtol=1e-3, atol=1e-5)


def test_adam_epsilon_keeps_steps_small_where_the_gradient_is_small(tmp_path, model_path):
    """`sleep.adam_epsilon`: on conversations the model already answers (tiny gradients, like the
    anchors) AdamW with the usual 1e-8 still moves every LoRA weight by about the learning rate per
    step; with 1e-4 the weights with tiny gradients move less (measured: about 0.64x the update norm).
    That update, in directions nothing asked for, is what cost locality."""
    from safetensors.torch import load_file

    known = [[SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("How many days are there in a week?", "There are 7 days in a week."),
        ("What do bees make?", "Bees make honey."),
        ("What is the opposite of hot?", "The opposite of hot is cold."),
    ]]  # fmt: skip
    norms = {}
    for eps in (1e-8, 1e-4):
        _, out = run_job(tmp_path, f"eps{eps:g}", model_path=model_path, conversations=known, epochs=3, rank=8,
                         alpha=16, layers=4, adam_epsilon=eps, target_modules=["gate_proj", "up_proj", "down_proj"])  # fmt: skip
        weights = load_file(out / "adapter_model.safetensors")
        norms[eps] = sum(float(v.norm()) for k, v in weights.items() if ".lora_B." in k)
    assert norms[1e-8] > 0
    assert norms[1e-4] < 0.8 * norms[1e-8], norms  # the same job with epsilon ignored: 1.0x


def test_bfloat16_step_matches_float32_on_a_fixed_batch(model_path):
    """What `dtype: bfloat16` trains with (the frozen base in bf16, LoRA weights in float32, autocast
    around the forward, as Accelerate does for `bf16=True` on a CPU): on the same batch and the same
    LoRA initialisation, the loss within 2% of float32 and the LoRA gradients pointing the same way
    (cosine >= 0.99, norms within 10%)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    tok.chat_template = TRAINING_TEMPLATE
    batch = tok.apply_chat_template(conversations(4), tokenize=True, return_dict=True, return_tensors="pt",
                                    padding=True, return_assistant_tokens_mask=True)  # fmt: skip
    labels = batch["input_ids"].masked_fill(batch["assistant_masks"] == 0, -100)

    def loss_and_grads(dtype):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation="sdpa")
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["gate_proj", "up_proj", "down_proj"],
                                                 task_type="CAUSAL_LM", init_lora_weights="gaussian"))  # fmt: skip
        lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
        assert {p.dtype for p in lora.values()} == {torch.float32}  # the trained weights stay float32
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
        out.loss.backward()
        return out.loss.item(), torch.cat([p.grad.flatten() for p in lora.values()])

    loss32, grad32 = loss_and_grads(torch.float32)
    loss16, grad16 = loss_and_grads(torch.bfloat16)
    assert loss16 == pytest.approx(loss32, rel=0.02)
    cosine = torch.nn.functional.cosine_similarity(grad32, grad16, dim=0).item()
    assert cosine >= 0.99, cosine
    assert grad16.norm().item() == pytest.approx(grad32.norm().item(), rel=0.1)


def test_varlen_attention_keeps_a_rows_examples_apart_like_separate_forwards(model_path):
    """`sleep.attention: varlen` on the padding-free rows TRL's collator makes: the row's loss is the loss
    of its examples run one by one (none attends to another), as with transformers' `sdpa`; the LoRA
    gradients match sdpa's (float32 exactly, bfloat16 autocast as closely as the two dtypes agree); and
    what is not such a row (batched, padded generation: the early-stop check) is answered as sdpa does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from sleeptrain_agent.sleep.attention import register

    tok = AutoTokenizer.from_pretrained(model_path)
    tok.chat_template = TRAINING_TEMPLATE
    convs = conversations(3) + [[SYSTEM, {"role": "user", "content": "What do bees make, and why?"},
                                 {"role": "assistant", "content": "Bees make honey, to feed the hive in winter."}]]  # fmt: skip
    examples = []
    for c in convs:  # lengths differ: the last example is longer than the others
        b = tok.apply_chat_template(c, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        examples.append({"input_ids": b["input_ids"],
                         "labels": [t if m else -100 for t, m in zip(b["input_ids"], b["assistant_masks"], strict=True)]})
    row = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(examples)
    assert row["input_ids"].shape[0] == 1 and len(row["cu_seq_lens_q"]) == len(convs) + 1
    name = register()

    def loss_and_grads(attn, dtype):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation=attn)
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["gate_proj", "up_proj", "down_proj"],
                                                 task_type="CAUSAL_LM", init_lora_weights="gaussian"))  # fmt: skip
        lora = [p for p in model.parameters() if p.requires_grad]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = model(**row, use_cache=False)  # as TRL's SFTTrainer calls it
        out.loss.backward()
        return model, out.loss.item(), torch.cat([p.grad.flatten() for p in lora])

    model, loss, grads = loss_and_grads(name, torch.float32)
    with torch.no_grad():  # each example alone, token-weighted like the row's loss
        alone = [(model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss.item(),
                  sum(x != -100 for x in e["labels"][1:])) for e in examples]  # fmt: skip
    assert loss == pytest.approx(sum(x * n for x, n in alone) / sum(n for _, n in alone), rel=1e-4)
    sdpa_model, sdpa_loss, sdpa_grads = loss_and_grads("sdpa", torch.float32)
    assert loss == pytest.approx(sdpa_loss, rel=1e-4)
    assert torch.nn.functional.cosine_similarity(grads, sdpa_grads, dim=0).item() >= 0.9999

    _, loss16, grads16 = loss_and_grads(name, torch.bfloat16)
    _, sdpa16, sdpa_grads16 = loss_and_grads("sdpa", torch.bfloat16)
    assert loss16 == pytest.approx(sdpa16, rel=0.02)
    assert torch.nn.functional.cosine_similarity(grads16, sdpa_grads16, dim=0).item() >= 0.99

    tok.padding_side = "left"
    prompts = tok.apply_chat_template([c[:2] for c in convs], add_generation_prompt=True, tokenize=True,
                                      return_dict=True, return_tensors="pt", padding=True)  # fmt: skip
    outs = [m.generate(**prompts, max_new_tokens=12, do_sample=False) for m in (model, sdpa_model)]
    assert torch.equal(outs[0], outs[1])


def test_trainer_in_bfloat16_learns_like_float32_and_saves_float32_weights(tmp_path, model_path):
    from safetensors import safe_open

    losses = {}
    for dtype in ("float32", "bfloat16"):
        events, out = run_job(tmp_path, dtype, model_path=model_path, dtype=dtype, epochs=1)
        done = events[-1]
        assert done["event"] == "done" and done["dtype"] == dtype
        losses[dtype] = done["mean_loss"]
        check_adapter(out, max_rank=16)
        with safe_open(out / "adapter_model.safetensors", "pt") as f:
            assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F32"}
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.05), losses


def test_training_stops_early_once_the_held_out_probes_stop_improving(tmp_path, model_path):
    """Three probes the conversations teach and one they never do: recall rises to 0.75 and stays there;
    with `stop_recall` 1.0 out of reach, the plateau stop ends training long before the 12 epochs."""
    from sleeptrain_agent.sleep.trainer import StopProbe

    probes = [StopProbe(messages=[SYSTEM, {"role": "user", "content": f"Remind me what pet number {i} is called?"}],
                        answer=f"Your pet number {i} is called Zorblax{i}.", expected=f"Zorblax{i}")
              for i in range(4)]  # fmt: skip
    probes[3].expected = "Quillifer"  # taught nowhere
    events, _ = run_job(tmp_path, "stop", model_path=model_path, epochs=12, stop_probes=probes, stop_recall=1.0,
                        stop_after_epochs=1.0, stop_patience=2, stop_floor=0.5, learning_rate=1e-3)  # fmt: skip
    done = events[-1]
    checks = [e for e in events if e["event"] == "check"]
    assert checks and checks[0]["epoch"] >= 1.0 and checks[0]["recall"] < 0.75  # the base model does not know them
    assert done["stopped_early"] == "plateau" and done["epochs"] < 12, done
    assert done["checks"][-1]["recall"] == 0.75 == max(c["recall"] for c in done["checks"]), done
    # never checked: no probes, or no threshold, trains every planned epoch
    events, _ = run_job(tmp_path, "all", model_path=model_path, epochs=2, stop_recall=None, stop_probes=probes)
    assert not events[-1]["stopped_early"] and events[-1]["epochs"] == 2.0 and not events[-1]["checks"]


@pytest.mark.parametrize(("checks", "reason"), [
    ([0.2, 0.5, 0.9], "recall"),
    ([0.3, 0.67, 0.67, 0.67], "plateau"),  # the gate's floor passed, two checks without a rise
    ([0.3, 0.67, 0.67], None),  # one check without a rise: patience 2
    ([0.3, 0.67, 0.6, 0.75], None),  # rose again
    ([0.25, 0.25, 0.25, 0.25], None),  # below the floor: more epochs may still teach them
    ([], None),
])  # fmt: skip
def test_when_training_stops_early(checks, reason):
    from sleeptrain_agent.sleep.trainer import TrainJob, stop_reason

    job = TrainJob(model_path="m", output_dir="o", conversations=[], stop_recall=0.9, stop_patience=2, stop_floor=0.6)
    assert stop_reason(checks, job) == reason
    assert stop_reason(checks, job.model_copy(update={"stop_patience": None})) == (reason if reason == "recall" else None)
    assert stop_reason(checks, job.model_copy(update={"stop_recall": None})) is None  # no early stop at all


def _job(tmp_path, name, model_path, **kwargs):
    fields = {"epochs": 1, "batch_size": 4, "rank": 8, "alpha": 16, "layers": 4, **kwargs}
    return TrainJob(model_path=str(model_path), output_dir=str(tmp_path / name), conversations=conversations(), **fields)


@pytest.mark.parametrize(("rows", "batch", "min_steps", "expected"), [
    (29, 8, 8, 3),  # two memories: 10 steps an epoch, not 4
    (94, 8, 8, 8),  # twelve: already 12 steps in batches of 8
    (5, 8, 8, 1),  # fewer rows than steps: one at a time
    (29, 8, None, 8),  # off
    (64, 8, 8, 8),
    (63, 8, 8, 7),
])
def test_a_small_dataset_gets_smaller_batches(rows, batch, min_steps, expected):
    from sleeptrain_agent.sleep.trainer import step_batch

    job = TrainJob(model_path="m", output_dir="o", conversations=[], batch_size=batch, min_steps_per_epoch=min_steps)
    assert step_batch(rows, job) == expected
    assert min_steps is None or -(-rows // expected) >= min(min_steps, rows)


def test_a_standby_child_trains_the_same_adapter_as_a_fresh_one_and_the_next_is_started(tmp_path, model_path):
    from safetensors.torch import load_file

    from sleeptrain_agent.sleep.trainer import StandbyTrainer, TrainerChild

    cold = TrainerChild(_job(tmp_path, "cold", model_path), tmp_path / "w-cold", timeout_s=600)
    cold.run()
    standby = StandbyTrainer(tmp_path / "standby.log")
    try:
        standby.prepare()
        standby.prepare()  # one at a time
        warm = TrainerChild(_job(tmp_path, "warm", model_path), tmp_path / "w-warm", 600, standby)
        steps = []
        summary = warm.run(steps.append)
        assert cold.warm is False and warm.warm is True and steps and summary["steps"] == len(steps)
        assert (tmp_path / "w-warm" / "trainer.log").exists()  # the job's own log, not the standby's
        a = load_file(tmp_path / "cold" / "adapter_model.safetensors")
        b = load_file(tmp_path / "warm" / "adapter_model.safetensors")
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)  # same seed, same weights
        assert standby.take() is None  # used up: nothing started until asked
        standby.prepare()
        deadline = time.monotonic() + 60
        while (proc := standby.take()) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc is not None and proc.poll() is None  # the next one, waiting
        proc.kill()
        proc.wait()
    finally:
        standby.stop()


def test_a_standby_child_that_times_out_is_killed_with_a_message(tmp_path, model_path):
    from sleeptrain_agent.errors import SleepFailed
    from sleeptrain_agent.sleep.trainer import StandbyTrainer, TrainerChild

    standby = StandbyTrainer(tmp_path / "standby.log")
    try:
        standby.prepare()
        child = TrainerChild(_job(tmp_path, "slow", model_path, epochs=50), tmp_path / "w", 3.0, standby)
        with pytest.raises(SleepFailed, match="timed out"):
            child.run()  # killed while it imports or loads: before any step
        assert child.warm is True and not (tmp_path / "slow" / "adapter_model.safetensors").exists()
    finally:
        standby.stop()
