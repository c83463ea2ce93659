#!/usr/bin/env bash
# Set up (first run only) and launch the web UI: ./webui.sh [flags], e.g. ./webui.sh --listen --port 7860
set -euo pipefail
cd "$(dirname "$0")"
bash tools/setup_env.sh
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
# POST /sdapi/v1/server-restart (with --api-server-stop) leaves tmp/restart and exits: start again, as A1111's
# webui.sh does; any other exit ends the loop with the server's exit status.
export SD_WEBUI_RESTART=tmp/restart
while true; do
  rm -f tmp/restart
  status=0
  .venv/bin/python app.py "$@" || status=$?
  [ -f tmp/restart ] || exit "$status"
done
