#!/usr/bin/env bash
# One prepared script for a GPU machine (under 8 minutes on one H100/H200): the `gpu` tests, then the
# GPU bench table (bench/gpu_bench.py). Where the machine reaches no package registry, run
# tools/gpu_wheels.sh beforehand on a machine that does: the wheels it leaves in .whl/ are installed
# here with --no-deps into a private folder, and edgewise runs from backend/ on the machine's own torch.
#     bash bench/gpu.sh            # tests + table
#     bash bench/gpu.sh --smoke    # a tiny shape on whatever device there is (checks the script)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if ! "$PY" -c "import transformer_lens, fastapi" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    site=${TMPDIR:-/tmp}/edgewise-site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
        || { echo "gpu.sh: installing .whl/ failed" >&2; exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/backend${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
"$PY" - <<'PY' || exit 1
import torch, transformer_lens, edgewise
dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"python ok: torch {torch.__version__}, transformer-lens {transformer_lens.__version__ if hasattr(transformer_lens, '__version__') else '3.9'}, "
      f"edgewise {edgewise.__version__}, {dev}")
PY
status=0
if [ "${1:-}" != "--smoke" ]; then
    timeout 240 "$PY" -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider -rs || status=$?
fi
timeout 300 "$PY" bench/gpu_bench.py "$@" || status=$?
exit $status
