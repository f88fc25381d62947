"""`sleeptrain report`: one self-contained HTML file from one or more `results.json` files.

Plots are drawn with matplotlib (Agg) and embedded as base64 PNGs, so the
file can be mailed or attached to an issue: overall scores against the
targets, per-person and per-category heatmaps, retention across sleeps, the
ablation comparison, score distributions, recall along the extended
conversation, and the worst errors with the model's actual answers.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from jinja2 import Environment, select_autoescape

from sleeptrain_agent.errors import NotFound
from sleeptrain_agent.evaluation.runner import SUMMARY_KEYS, TARGETS

TESTS = ("single", "paraphrase", "multiturn", "extended", "correction", "retention")


def load_results(paths: list[Path]) -> list[dict]:
    """Each path: a results.json or the run directory holding it."""
    runs = []
    for path in paths:
        path = Path(path)
        file = path / "results.json" if path.is_dir() else path
        try:
            runs.append(json.loads(file.read_text()))
        except FileNotFoundError:
            raise NotFound(f"no results at {file} (run `sleeptrain eval` first)") from None
        except ValueError as e:
            raise NotFound(f"{file} is not a results file: {e}") from None
        if "variants" not in runs[-1]:
            raise NotFound(f"{file} has no variants: not a `sleeptrain eval` results file")
    return runs


def latest_run(experiments: Path) -> Path:
    runs = sorted((p for p in experiments.glob("*/results.json")), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise NotFound(f"no runs under {experiments} (run `sleeptrain eval` first)")
    return runs[-1].parent


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _score(item: dict, scorer: str) -> float | None:
    value = item.get(scorer)
    return None if value is None else float(value)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _labelled(runs: list[dict]) -> list[tuple[str, dict]]:
    many = len(runs) > 1
    return [(f"{r['run']}/{v['variant']}" if many else v["variant"], v) for r in runs for v in r["variants"]]


def _bars(variants: list[tuple[str, dict]], title: str):
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(SUMMARY_KEYS)
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(1, len(variants))
    for k, (label, v) in enumerate(variants):
        values = [v["summary"].get(key) for key in keys]
        x = np.arange(len(keys)) + k * width
        ax.bar(x, [0 if val is None else val for val in values], width, label=label)
    for j, key in enumerate(keys):
        if key in TARGETS:
            ax.hlines(TARGETS[key][1], j - width / 2, j - width / 2 + 0.8, colors="black", linestyles="dashed", linewidth=1)
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_title(title + " (dashed: targets; correction_old and near_miss: lower is better)")
    if len(variants) > 1:
        ax.legend(fontsize=8)
    return _png(fig)


def _heatmap(items: list[dict], row_key: str, scorer: str, title: str):
    import matplotlib.pyplot as plt
    import numpy as np

    rows = sorted({i[row_key] for i in items if i.get(row_key) and i["test"] in TESTS})
    if not rows:
        return None
    grid = np.full((len(rows), len(TESTS)), np.nan)
    for r, row in enumerate(rows):
        for c, test in enumerate(TESTS):
            m = _mean([_score(i, scorer) for i in items if i.get(row_key) == row and i["test"] == test])
            if m is not None:
                grid[r, c] = m
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(TESTS)), TESTS, rotation=20)
    ax.set_yticks(range(len(rows)), rows)
    for r in range(len(rows)):
        for c in range(len(TESTS)):
            if not np.isnan(grid[r, c]):
                ax.text(c, r, f"{grid[r, c]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    return _png(fig)


def _retention(variants: list[tuple[str, dict]]):
    import matplotlib.pyplot as plt

    if not any(len(v.get("retention_curve") or []) > 1 for _, v in variants):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, v in variants:
        curve = v.get("retention_curve") or []
        ax.plot([c["sleep"] for c in curve], [c["efficacy_first_wave"] for c in curve], marker="o", label=label)
    ax.set_xlabel("sleeps so far")
    ax.set_ylabel("first-wave recall (direct questions)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Retention across sleeps")
    return _png(fig)


def _distributions(items: list[dict]):
    import matplotlib.pyplot as plt

    tests = [t for t in (*TESTS, "locality") if any(i["test"] == t for i in items)]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for t in tests:
        ax.hist([i["similarity"] for i in items if i["test"] == t and i.get("similarity") is not None], bins=20,
                range=(-0.1, 1), alpha=0.5, label=t)  # fmt: skip
    ax.set_xlabel("semantic similarity of the answer to the reference")
    ax.legend(fontsize=8)
    ax.set_title("Score distributions")
    return _png(fig)


def _extended(items: list[dict], scorer: str):
    import matplotlib.pyplot as plt

    ext = [i for i in items if i["test"] in ("multiturn", "extended") and i.get("turn")]
    if not ext:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for test in ("multiturn", "extended"):
        turns = sorted({i["turn"] for i in ext if i["test"] == test})
        ax.plot(turns, [_mean([_score(i, scorer) for i in ext if i["test"] == test and i["turn"] == t]) for t in turns],
                marker="o", label=test)  # fmt: skip
    ax.set_xlabel("turn of the conversation")
    ax.set_ylabel("recall")
    ax.set_ylim(-0.05, 1.05)
    ax.legend()
    ax.set_title("Recall along the conversation")
    return _png(fig)


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SleepTrain report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.miss { background: #fde2e1; } .hit { background: #e3f6e3; }
img { max-width: 100%; display: block; margin: 1em 0; }
.small { color: #666; font-size: 13px; }
</style></head><body>
<h1>SleepTrain report</h1>
{% for r in runs %}
<p class="small">run <b>{{ r.run }}</b>, profile {{ r.profile }}, scorer {{ r.scorer }}, {{ r.created_at }};
machine: {{ r.machine.platform }}, {{ r.machine.cpus }} CPUs{% if r.machine.cuda %}, {{ r.machine.cuda }}{% endif %};
{% for k, v in r.versions.items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}<br>
command: <code>{{ r.command }}</code></p>
{% endfor %}
<h2>Summary</h2>
<table><tr><th>variant</th>{% for k in keys %}<th>{{ k }}</th>{% endfor %}</tr>
{% for label, v in variants %}<tr><td>{{ label }}</td>{% for k in keys %}
<td class="num {{ marks[label][k] }}">{{ fmt(v.summary.get(k)) }}</td>{% endfor %}</tr>{% endfor %}
<tr><td class="small">target</td>{% for k in keys %}<td class="num small">{{ target(k) }}</td>{% endfor %}</tr>
</table>
<h2>Sleeps</h2>
<table><tr><th>variant</th><th>sleep</th><th>status</th><th>new</th><th>replay</th><th>examples</th><th>steps</th>
<th>loss</th><th>gate recall</th><th>gate locality</th><th>seconds</th></tr>
{% for label, v in variants %}{% for s in v.sleeps %}<tr><td>{{ label }}</td><td>{{ s.sleep }}</td><td>{{ s.status }}</td>
<td class="num">{{ s.new }}</td><td class="num">{{ s.replay }}</td><td class="num">{{ s.examples }}</td>
<td class="num">{{ s.steps }}</td><td class="num">{{ fmt(s.loss) }}</td><td class="num">{{ fmt(s.recall) }}</td>
<td class="num">{{ fmt(s.locality) }}</td><td class="num">{{ s.duration_s }}</td></tr>{% endfor %}{% endfor %}
</table>
{% for title, img in images %}{% if img %}<h2>{{ title }}</h2><img alt="{{ title }}" src="data:image/png;base64,{{ img }}">{% endif %}{% endfor %}
<h2>Worst errors</h2>
<p class="small">Missed items of the {{ base_label }} run, least similar to the reference first.</p>
<table><tr><th>test</th><th>person</th><th>question</th><th>expected</th><th>answer</th><th>similarity</th></tr>
{% for i in errors %}<tr><td>{{ i.test }}</td><td>{{ i.person or "" }}</td><td>{{ i.question }}</td>
<td>{{ i.expected | join(" / ") }}{% if i.forbidden %} (not: {{ i.forbidden | join(" / ") }}){% endif %}</td>
<td>{{ i.answer }}</td><td class="num">{{ fmt(i.similarity) }}</td></tr>{% endfor %}
</table>
</body></html>
"""


def render(runs: list[dict], max_errors: int = 25) -> str:
    """The report's HTML for these runs (the first run's baseline drives the detailed plots)."""
    import matplotlib

    matplotlib.use("Agg")
    variants = _labelled(runs)
    base_label, base = variants[0]
    scorer = runs[0].get("scorer") or "keyword"
    items = base["items"]
    images = [
        ("Overall scores", _bars(variants[:1], f"Overall ({base_label})")),
        ("Per person", _heatmap(items, "person", scorer, f"Per person ({scorer})")),
        ("Per category", _heatmap(items, "category", scorer, f"Per category ({scorer})")),
        ("Retention across sleeps", _retention(variants)),
        ("Ablation comparison", _bars(variants, "Variants compared") if len(variants) > 1 else None),
        ("Score distributions", _distributions(items)),
        ("Recall along the conversation", _extended(items, scorer)),
    ]
    scored = [i for i in items if i["test"] in (*TESTS, "locality")]
    errors = sorted((i for i in scored if _score(i, scorer) == 0 or i.get("old_value") == 1),
                    key=lambda i: i.get("similarity") or 0)[:max_errors]  # fmt: skip

    def mark(key: str, value) -> str:
        if value is None or key not in TARGETS:
            return ""
        op, limit = TARGETS[key]
        return "hit" if (value >= limit if op == ">=" else value <= limit) else "miss"

    marks = {label: {k: mark(k, v["summary"].get(k)) for k in SUMMARY_KEYS} for label, v in variants}
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(TEMPLATE).render(
        runs=runs, variants=variants, keys=SUMMARY_KEYS, marks=marks, images=images, errors=errors,
        base_label=base_label, fmt=lambda v: "" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v)),
        target=lambda k: f"{TARGETS[k][0]} {TARGETS[k][1]}" if k in TARGETS else "",
    )  # fmt: skip


def write_report(paths: list[Path], out: Path) -> Path:
    html = render(load_results(paths))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
