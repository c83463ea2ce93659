#!/usr/bin/env bash
# Create .venv (once) and install the project's dependencies into it. Sourced by webui.sh and test.sh.
# TORCH_SPEC picks the torch build: the default pin is a CPU wheel on machines that carry one locally
# and PyPI's CUDA build elsewhere; set e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${1:-}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed${EXTRAS:+-$EXTRAS}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q $TORCH_SPEC
  # constraints.txt pins every other package to the version the test suite passed with: the engine
  # overrides diffusers internals (prepare_latents, prepare_mask_latents) whose signatures move between
  # releases. To upgrade, see the README ("Upgrading dependencies").
  .venv/bin/python -m pip install -q -c constraints.txt -e ".${EXTRAS:+[$EXTRAS]}"
  # spandrel (model upscalers) declares torchvision, which PyPI cannot pair with every torch build and
  # which it only needs for architectures we do not use: install it without its declared dependencies.
  .venv/bin/python -m pip install -q -c constraints.txt --no-deps "spandrel>=0.4.2"
  touch "$stamp"
fi
