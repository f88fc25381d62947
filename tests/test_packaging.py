"""The wheel: built from the tracked files of this checkout (a clean clone's view), installed into a
fresh venv outside the repository, it runs `sleeptrain config` and dreams a memory with the data files
it ships (no `configs/` beside it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.real  # builds a wheel and a venv: ~20 s


def _checkout_copy(dest: Path) -> Path:
    """The files git would put in a clone (tracked, plus new ones not ignored), as in the working tree."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()  # fmt: skip
    for name in files:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_the_wheel_runs_config_and_dreams_outside_the_repository(tmp_path):
    source = _checkout_copy(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)  # fmt: skip
    wheel = next((tmp_path / "dist").glob("sleeptrain-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True)  # fmt: skip
    # the third-party dependencies come from this environment's site-packages (after the venv's own,
    # so the installed wheel, not this checkout, provides sleeptrain_agent and memory)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "SLEEPTRAIN_HOME": str(work / "state")}

    config = subprocess.run([str(venv / "bin" / "sleeptrain"), "config", "--json"], cwd=work, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert config.returncode == 0, config.stderr
    resolved = json.loads(config.stdout)
    assert resolved["model"]["name"] == "SmolLM2-135M-Instruct" and not resolved["config_file"]

    script = textwrap.dedent("""
        import memory, sleeptrain_agent
        from memory.dreams import dream
        from sleeptrain_agent.config import data, data_file
        assert "site-packages" in memory.__file__ and "site-packages" in sleeptrain_agent.__file__, memory.__file__
        m = {"id": 1, "user": "default", "subject": "user's dog", "relation": "name", "value": "Pilsner",
             "text": "The user's dog is called Pilsner."}
        anchors = [(q, "An answer.") for q in data("anchors.yaml")["train"][:2]]
        d = dream([m], [], data("qa_templates.yaml"), anchors, system_prompt="You are a helpful assistant.")
        qa = [e for e in d.examples if e.kind == "qa"]
        assert qa and all("Pilsner" in e.messages[-1]["content"] for e in qa) and d.probes
        print(data_file("qa_templates.yaml"))
    """)
    dreamt = subprocess.run([str(py), "-c", script], cwd=work, env=env, capture_output=True, text=True)
    assert dreamt.returncode == 0, dreamt.stderr
    assert "site-packages" in dreamt.stdout and str(ROOT) not in dreamt.stdout
