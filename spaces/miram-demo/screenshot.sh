#!/usr/bin/env bash
# The demo in headless Chromium, with a phantom mammogram's results shown as the page opens: writes screenshot.png
# next to this script. Needs Debian's chromium (apt-get install chromium) and the demo extra (pip install -e ".[demo]").
# MIRAM_MODEL picks the model (default: outputs/pretrain, `make demo`'s output).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
python="${PYTHON:-$root/.venv/bin/python}"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; cp "$work/server.log" /tmp/space_server.log; rm -rf "$work"' EXIT

"$python" - "$work/mammogram.dcm" <<'PY'
import sys
from pathlib import Path

sys.path.insert(0, "tests")
from dicom_factory import cbis_ddsm_dicom
from miram_hf.data.synthetic import generate_phantom

cbis_ddsm_dicom(Path(sys.argv[1]), generate_phantom(7, 1024, 768, film_scan=True).image)  # a film scan, labels and all
PY

port=7861
cd "$root"
MIRAM_EXAMPLE="$work/mammogram.dcm" GRADIO_ANALYTICS_ENABLED=False GRADIO_SERVER_PORT=$port \
    "$python" "$here/app.py" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 1; done
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,760 \
    --virtual-time-budget=20000 --screenshot="$here/screenshot.png" "http://127.0.0.1:$port/" 2>/dev/null
echo "wrote $here/screenshot.png"
