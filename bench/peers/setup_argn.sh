#!/usr/bin/env bash
# Virtual env for MOSTLY AI's TabularARGN (`mostlyai-engine` on PyPI), the open peer in
# bench/gan_vs_ctgan.py and bench/sequences.py. Its own env: it pins torch, transformers,
# datasets, opacus, peft ... that our env does not need, and its runner runs as a subprocess
# (bench/peers/argn_runner.py), so nothing of it is imported by synthrec.
#
#     bash bench/peers/setup_argn.sh          # idempotent: does nothing if the env works
#
# env: ARGN_VENV (default bench/.venv/argn: inside a `.venv` folder, which git, ruff and the
#      Ray working_dir of synthrec's jobs all leave out), ARGN_ENGINE_VERSION (default 2.7.3),
#      ARGN_PYTHON (default python3; the engine needs Python >= 3.11, < 3.14)
#
# torch is installed first as the CPU wheel (torch==2.13.0 resolves to 2.13.0+cpu here) and
# held there by a constraint, so the engine's `torch>=2.13,<2.14` is met without pulling a
# multi-GB CUDA build. The engine also requires torchvision, whose PyPI wheel is built against
# CUDA torch and fails to import on a CPU torch; TabularARGN does not use it, but transformers
# imports it when it is present, so it is uninstalled after the install. So is triton (~1 GB,
# GPU kernels only, pulled by xgrammar for the engine's language models).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${ARGN_VENV:-$(dirname "$here")/.venv/argn}"
engine_version="${ARGN_ENGINE_VERSION:-2.7.3}"
torch_version="2.13.0"
python="${ARGN_PYTHON:-python3}"
py="$venv/bin/python"

fail() {
    echo "setup_argn: FAILED: $*" >&2
    exit 1
}

check() {  # the env works: the engine imports with a CPU torch, at the wanted version
    "$py" - "$engine_version" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import torch
from mostlyai import engine  # noqa: F401
assert version("mostlyai-engine") == sys.argv[1], version("mostlyai-engine")
print(f"mostlyai-engine {version('mostlyai-engine')}, torch {torch.__version__}")
PY
}

if [ -x "$py" ] && ready="$(check)"; then
    echo "setup_argn: $venv is ready ($ready); nothing to do"
    exit 0
fi

start=$(date +%s)
if [ ! -x "$py" ]; then
    echo "setup_argn: creating $venv with $("$python" -V 2>&1)"
    "$python" -m venv "$venv" || fail "could not create a venv with $python (set ARGN_PYTHON)"
fi
pip=("$py" -m pip install --disable-pip-version-check)
echo "setup_argn: installing torch==$torch_version (CPU wheel)"
"${pip[@]}" "torch==$torch_version" || fail "pip could not install torch==$torch_version"
"$py" -c 'import torch, sys; sys.exit("+cpu" not in torch.__version__ and torch.version.cuda is not None)' \
    || echo "setup_argn: warning: torch $("$py" -c 'import torch; print(torch.__version__)') is not a CPU build"

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==$torch_version" >"$constraints"
echo "setup_argn: installing mostlyai-engine==$engine_version (torch held at $torch_version)"
PIP_CONSTRAINT="$constraints" "${pip[@]}" "mostlyai-engine==$engine_version" \
    || fail "pip could not install mostlyai-engine==$engine_version (see pip's output above)"

for pkg in torchvision triton; do  # unused by TabularARGN on a CPU (see the top of this file)
    if "$py" -m pip show -q "$pkg" >/dev/null 2>&1; then
        echo "setup_argn: uninstalling $pkg (GPU-only, unused by TabularARGN on a CPU)"
        "$py" -m pip uninstall -y -q "$pkg" || fail "could not uninstall $pkg"
    fi
done

ready="$(check)" || fail "mostlyai-engine does not import in $venv: run $py -c 'from mostlyai import engine'"
echo "setup_argn: ready in $(( $(date +%s) - start )) s: $ready, $(du -sh "$venv" | cut -f1) in $venv"
