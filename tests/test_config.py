"""Configuration precedence and errors."""

from __future__ import annotations

import pytest

from sleeptrain_agent.config import CONFIG_DIR, load_settings, model_cache_dir, model_dir, state_dir
from sleeptrain_agent.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_default_profile_is_smollm2_on_cpu():
    s = load_settings()
    assert s.model.name == "SmolLM2-135M-Instruct"
    assert s.model.dtype == "auto" and s.vllm.dtype == "auto"  # bfloat16 where the CPU has it (dtypes.py)


def test_gpu_profile_loads():
    s = load_settings(CONFIG_DIR / "gpu.yaml")
    assert s.model.name == "Qwen2.5-7B-Instruct" and s.model.source.startswith("hf:")


def test_precedence_flag_over_env_over_yaml_over_default(tmp_path, monkeypatch):
    cfg = write(tmp_path, "store:\n  busy_timeout_ms: 111\n  filename: yaml.db\n")
    s = load_settings(cfg)
    assert (s.store.busy_timeout_ms, s.store.filename, s.store.max_text_bytes) == (111, "yaml.db", 1_048_576)
    monkeypatch.setenv("SLEEPTRAIN_STORE__BUSY_TIMEOUT_MS", "222")
    s = load_settings(cfg)
    assert (s.store.busy_timeout_ms, s.store.filename) == (222, "yaml.db")
    s = load_settings(cfg, overrides={"store": {"busy_timeout_ms": 333}})
    assert (s.store.busy_timeout_ms, s.store.filename) == (333, "yaml.db")


def test_config_file_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPTRAIN_CONFIG", str(write(tmp_path, "model:\n  context_length: 4096\n")))
    assert load_settings().model.context_length == 4096


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("store:\n  busy_timeout_ms: soon\n", "store.busy_timeout_ms: Input should be a valid integer.*'soon'"),
        ("store:\n  max_text_bytes: -5\n", "store.max_text_bytes: .*greater than 0.*-5"),
        ("model:\n  dtype: float8\n", "model.dtype: .*'float8'"),
        ("store:\n  filenmae: typo.db\n", "store.filenmae: unknown key.*'typo.db'"),
        ("stroe:\n  filename: x\n", "stroe: unknown key"),
        ("store: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_bad_config_names_field_and_value(tmp_path, yaml_text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_settings(write(tmp_path, yaml_text))


def test_bad_env_value_is_reported(monkeypatch):
    monkeypatch.setenv("SLEEPTRAIN_MODEL__CONTEXT_LENGTH", "lots")
    with pytest.raises(ConfigError, match="model.context_length.*'lots'"):
        load_settings()


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_state_dir_and_model_cache_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPTRAIN_HOME", str(tmp_path / "home"))
    assert state_dir() == tmp_path / "home"
    assert state_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.setenv("SLEEPTRAIN_MODEL_DIR", str(tmp_path / "models"))
    s = load_settings()
    assert model_cache_dir(s) == tmp_path / "models"
    assert model_dir(s) == tmp_path / "models" / "SmolLM2-135M-Instruct"
    s = load_settings(overrides={"model": {"path": str(tmp_path / "mine")}})
    assert model_dir(s) == tmp_path / "mine"


def test_dtype_auto_is_bfloat16_only_with_native_bf16(monkeypatch):
    from sleeptrain_agent import dtypes

    cases = (("cuda", "bfloat16", "bfloat16"), ("avx512_bf16", "bfloat16", "float32"),
             ("amx_bf16", "bfloat16", "float32"), (None, "float32", "float32"))  # fmt: skip
    for feature, training, serving in cases:
        monkeypatch.setattr(dtypes, "native_bf16", lambda f=feature: f)
        assert dtypes.resolve("auto") == training and dtypes.resolve("auto", serving=True) == serving
        for explicit in ("float32", "bfloat16"):
            assert dtypes.resolve(explicit) == explicit == dtypes.resolve(explicit, serving=True)
    monkeypatch.setattr(dtypes, "native_bf16", lambda: "avx512_bf16")
    assert dtypes.describe("auto", serving=True) == "float32 (auto: avx512_bf16, but adapters served on a CPU keep float32)"
    monkeypatch.setattr(dtypes, "native_bf16", lambda: None)
    assert dtypes.describe("auto") == "float32 (auto: no native bf16)"
    with pytest.raises(ValueError, match="dtype must be one of"):
        dtypes.resolve("int8")


def test_native_bf16_reads_the_cpu_features_vllm_reads():
    import torch

    from sleeptrain_agent import dtypes

    caps = torch.cpu.get_capabilities()
    assert (dtypes.native_bf16() is not None) == bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    assert bool(torch.cpu._is_avx512_bf16_supported()) <= (dtypes.native_bf16() is not None)  # vLLM-CPU's own test


def test_config_command_shows_the_resolved_dtype(tmp_path):
    import json

    from click.testing import CliRunner

    from sleeptrain_agent import dtypes
    from sleeptrain_agent.cli import cli

    out = json.loads(CliRunner().invoke(cli, ["config", "--json", "--state-dir", str(tmp_path)]).output)
    assert out["model"]["dtype"] == "auto"
    assert out["resolved"]["model.dtype"] == dtypes.describe("auto") and out["resolved"]["model.dtype"].startswith(
        dtypes.resolve("auto"))
    assert out["resolved"]["vllm.dtype"].startswith(dtypes.resolve("auto", serving=True))
