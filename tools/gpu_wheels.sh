#!/usr/bin/env bash
# Download, into .whl/, the Python 3.12 wheels a GPU machine without registry access lacks for edgewise:
# transformer-lens 3.9 and what it imports that such an image does not ship, plus the web stack for the
# server test. Versions are those of this project's .venv, so the GPU run tests what CI tests.
# bench/gpu.sh installs them with `pip install --no-index --no-deps --target`. About 15 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
pins() {  # NAME==VERSION for each name, read from the project's venv
    .venv/bin/python -m pip freeze 2>/dev/null | grep -i -E "^($(echo "$@" | tr ' ' '|'))==" || true
}
names="transformer-lens better-abc datasets dill multiprocess fastapi starlette pydantic pydantic_core
       annotated-types annotated-doc typing-inspection python-multipart opentelemetry-api"
mapfile -t wanted < <(pins $names)
[ "${#wanted[@]}" -ge 14 ] || { echo "gpu_wheels: run 'make setup' first (found: ${wanted[*]})" >&2; exit 1; }
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${wanted[@]}"
ls -1 .whl && du -sh .whl
