#!/usr/bin/env bash
# Virtual env for smartnoise-synth (OpenDP's DP synthesizers: MST, AIM, DP-CTGAN), the peers of
# bench/dp.py. Its own env: it pins opacus < 0.15 and mbi < 2, which our env (opacus 1.x for
# the accountant) cannot hold; its runner runs as a subprocess (bench/peers/smartnoise_runner.py),
# so nothing of it is imported by synthrec. `packaging` is installed beside it: DP-CTGAN imports
# it without declaring it.
#
#     bash bench/peers/setup_smartnoise.sh    # idempotent: does nothing if the env works
#
# env: SMARTNOISE_VENV (default bench/.venv/smartnoise), SMARTNOISE_VERSION (default 1.0.8),
#      SMARTNOISE_PYTHON (default python3)
#
# torch is installed first as the CPU wheel and held there by a constraint (DP-CTGAN needs
# torch; the default resolution would pull a multi-GB CUDA build).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${SMARTNOISE_VENV:-$(dirname "$here")/.venv/smartnoise}"
version="${SMARTNOISE_VERSION:-1.0.8}"
torch_version="2.13.0"
python="${SMARTNOISE_PYTHON:-python3}"
py="$venv/bin/python"

fail() {
    echo "setup_smartnoise: FAILED: $*" >&2
    exit 1
}

check() {  # the env works: MST, AIM and DP-CTGAN import, at the wanted version
    "$py" - "$version" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
from snsynth import Synthesizer
for name in ("mst", "aim", "dpctgan"):
    Synthesizer.create(name, epsilon=1.0)
assert version("smartnoise-synth") == sys.argv[1], version("smartnoise-synth")
print(f"smartnoise-synth {version('smartnoise-synth')}")
PY
}

if [ -x "$py" ] && ready="$(check)"; then
    echo "setup_smartnoise: $venv is ready ($ready); nothing to do"
    exit 0
fi

start=$(date +%s)
if [ ! -x "$py" ]; then
    echo "setup_smartnoise: creating $venv with $("$python" -V 2>&1)"
    "$python" -m venv "$venv" || fail "could not create a venv with $python (set SMARTNOISE_PYTHON)"
fi
pip=("$py" -m pip install --disable-pip-version-check)
echo "setup_smartnoise: installing torch==$torch_version (CPU wheel)"
"${pip[@]}" "torch==$torch_version" || fail "pip could not install torch==$torch_version"

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==$torch_version" >"$constraints"
echo "setup_smartnoise: installing smartnoise-synth==$version (torch held at $torch_version)"
PIP_CONSTRAINT="$constraints" "${pip[@]}" "smartnoise-synth==$version" pyarrow packaging \
    || fail "pip could not install smartnoise-synth==$version (see pip's output above)"

ready="$(check)" || fail "snsynth does not work in $venv: run $py -c 'from snsynth import Synthesizer'"
echo "setup_smartnoise: ready in $(( $(date +%s) - start )) s: $ready, $(du -sh "$venv" | cut -f1) in $venv"
