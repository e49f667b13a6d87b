#!/usr/bin/env bash
# Regenerate requirements.lock: every Python package synthrec runs with, pinned with hashes,
# for linux x86_64 and Python 3.11 (the image's and the cluster nodes' Python).
#
# torch is the exception: its CPU wheel lives on the PyTorch index, not PyPI, so it is
# installed on its own, pinned by version (TORCH_VERSION below, the Dockerfile and
# cluster.yaml say the same), with --no-deps; its dependencies are in the lock. GPU nodes
# install the PyPI (CUDA) wheel of the same version.
#
# Needs uv (any recent release), e.g. in a throwaway venv:
#   python3 -m venv /tmp/uv && /tmp/uv/bin/pip install uv && PATH=/tmp/uv/bin:$PATH scripts/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/requirements.in" <<'PY'
import sys
import tomllib

deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
# torch's own Requires-Dist (torch 2.13.0, no extras): locked here, torch itself is not.
torch_deps = [
    "filelock",
    "typing-extensions>=4.10.0",
    "setuptools>=77.0.3",
    "sympy>=1.13.3",
    "networkx>=2.5.1",
    "jinja2",
    "fsspec>=0.8.5",
]
lines = [d for d in deps if not d.replace(" ", "").startswith("torch")] + torch_deps
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
# torch reached through a dependency (opacus) is left out too: an override with a marker that
# never holds drops it from the resolution, so its CUDA wheels' dependencies stay out as well
echo "torch; sys_platform == 'never'" > "$tmp/overrides.txt"
uv pip compile "$tmp/requirements.in" --override "$tmp/overrides.txt" \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --generate-hashes --no-header --quiet -o "$tmp/requirements.lock"
{
  echo "# synthrec's pinned dependencies for linux x86_64, Python 3.11 (scripts/lock.sh wrote it)."
  echo "# Install: pip install --no-deps torch==${TORCH_VERSION} --index-url <the PyTorch CPU index>"
  echo "#          pip install --require-hashes -r requirements.lock && pip install --no-deps -e ."
  echo "# torch==${TORCH_VERSION} is installed on its own (its CPU wheel is not on PyPI)."
  cat "$tmp/requirements.lock"
} > requirements.lock
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) pins)"
