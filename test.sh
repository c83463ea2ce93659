#!/usr/bin/env bash
# Set up (first run only) and run the test suite: ./test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")"
bash tools/setup_env.sh test
# The browser tests drive Debian's Chromium (never a browser downloaded by Playwright).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "could not install chromium"
fi
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The `gpu` tests (the dtype matrix, offloading and memory on CUDA) join the run wherever CUDA is available.
markers=()
if .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "CUDA available: the gpu tests run too"
  markers=(-m "not slow")
else
  echo "no CUDA device: the gpu tests are skipped (they run on a machine with one: ./test.sh -m gpu)"
fi
exec .venv/bin/python -m pytest -q "${markers[@]}" "$@"
