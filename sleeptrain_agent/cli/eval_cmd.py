"""`sleeptrain eval` and `sleeptrain report`: the Sleep Benchmark and its HTML report."""

from __future__ import annotations

import datetime as dt
import shlex
import sys
import time
from pathlib import Path

import click

from sleeptrain_agent.cli.common import App, console, emit_json, json_option, state_options, table
from sleeptrain_agent.errors import ConfigError


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


@click.command("eval")
@state_options
@click.option(
    "--profile",
    default="quick",
    show_default=True,
    help="Profile of the people file: smoke (the harness: a fact of 2 personas per wave, 2 sleeps; the "
    "test suite's), quick (2 personas, 2 sleeps), ablation (5 personas, 2 sleeps), "
    "full (7 personas, 4 sleeps) or natural (one life told in free-form sentences and taught world facts, "
    "4 sleeps, a correction; about 25 minutes).",
)
@click.option(
    "--sleeps",
    type=click.IntRange(min=0),
    default=None,
    help="Further sleeps after the first, teaching more facts each time (retention). Default: the profile's.",
)
@click.option(
    "--ablation",
    "ablations",
    multiple=True,
    type=click.Choice(["interleaving", "replay", "anchors", "hippocampus", "routing", "all"]),
    help="Also run the benchmark with this part switched off (repeatable; `all`: every one).",
)
@click.option(
    "--rescore",
    type=click.Choice(["gemini"]),
    default=None,
    help="Also grade every answer with Gemini (needs GEMINI_API_KEY; cached).",
)
@click.option(
    "--scorer",
    type=click.Choice(["keyword", "semantic", "hybrid", "gemini"]),
    default="keyword",
    show_default=True,
    help="The score the summary is computed from (every score is saved).",
)
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="People file. Default: the one shipped in sleeptrain_agent/data/ (configs/people_data.yaml overrides it).",
)
@click.option(
    "--backend",
    type=click.Choice(["vllm", "embedded"]),
    default=None,
    help="Serving backend for the run. Default: serve.backend of the config.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (results.json, per-variant state). Default: STATE_DIR/experiments/<time>-<profile>.",
)
@json_option
def eval_command(app: App, profile, sleeps, ablations, rescore, scorer, people_file, backend, out_dir, as_json) -> None:
    """Run the Sleep Benchmark on a fresh state: teach facts through the chat, sleep, test.

    Tests: single question (efficacy), paraphrases, a 6-turn conversation, an
    extended conversation, corrections (new value in, old value out),
    retention over further sleeps, and locality (general answers kept).
    Results go to RUN/results.json; `sleeptrain report RUN` draws them.
    The quick profile takes about 4 minutes on a 2-core AMX CPU (9.5 on an
    AVX2 one), smoke about 6.5 on the AVX2 one; full about 30;
    each ablation runs the whole benchmark again.

    Example: sleeptrain eval --profile full --ablation all
    """
    from sleeptrain_agent.evaluation.runner import ABLATIONS, TARGETS, EvalOptions, default_settings_for, run

    chosen = list(ABLATIONS) if "all" in ablations else list(dict.fromkeys(ablations))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (out_dir or app.state_dir / "experiments" / f"{stamp}-{profile}").resolve()
    if (out / "results.json").exists():
        raise ConfigError(f"{out} already holds results; choose another --out")
    options = EvalOptions(profile=profile, sleeps=sleeps, ablations=chosen, rescore=rescore, scorer=scorer,
                          people_file=people_file, backend=backend)  # fmt: skip
    out_console = console() if not as_json else None
    t0 = time.monotonic()

    def progress(message: str) -> None:
        if out_console is not None:
            out_console.print(f"[dim]{time.monotonic() - t0:6.0f}s[/dim] {message}", highlight=False)
        else:
            click.echo(message, err=True)

    command = "sleeptrain " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results = run(default_settings_for(app.config_file), out, options, progress, command=command)
    if as_json:
        emit_json({k: results[k] for k in ("run", "profile", "summary", "ablation_table")} | {"path": str(out)})
        return
    rows = [{"variant": r["variant"], **{k: _fmt(v) for k, v in r.items() if k != "variant"}}
            for r in results["ablation_table"]]  # fmt: skip
    rows.append({"variant": "target", **{k: f"{op}{limit}" for k, (op, limit) in TARGETS.items()}})
    table(rows, ["variant", "efficacy", "paraphrase", "multiturn", "extended", "correction_new", "correction_old",
                 "retention", "locality"], title=f"Sleep Benchmark ({profile}, {scorer})")  # fmt: skip
    console().print(f"results: {out / 'results.json'}\nreport:  sleeptrain report {out}")


@click.command("report")
@state_options
@click.argument("runs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file to write. Default: report.html in the (first) run directory.",
)
def report_command(app: App, runs, out_file) -> None:
    """Draw one or more eval runs as a self-contained HTML report.

    RUNS: run directories or results.json files; default: the latest run under
    STATE_DIR/experiments. Several runs are compared side by side.

    Example: sleeptrain report state/experiments/20261126-170000-full --out report.html
    """
    from sleeptrain_agent.evaluation.report import latest_run, write_report

    paths = list(runs) or [latest_run(app.state_dir / "experiments")]
    first = paths[0] if paths[0].is_dir() else paths[0].parent
    out = write_report(paths, out_file or first / "report.html")
    console().print(f"report: {out}")


COMMANDS = [eval_command, report_command]
