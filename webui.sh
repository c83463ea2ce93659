#!/usr/bin/env bash
# Set up (first run only) and launch the web UI: ./webui.sh [flags], e.g. ./webui.sh --listen --port 7860
set -euo pipefail
cd "$(dirname "$0")"
bash tools/setup_env.sh
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
exec .venv/bin/python app.py "$@"
