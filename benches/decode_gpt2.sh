#!/usr/bin/env bash
# GPT-2 small decoding benchmark: tfc against Hugging Face generate (PyTorch) and Optimum's
# ONNX export run by ONNX Runtime, on the same random weights. Not part of the test suite;
# installs PyTorch, Transformers and Optimum into .venv-ref (several GB) on first use.
#
#   bash benches/decode_gpt2.sh [--runs N] [--json]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh >/dev/null
bash scripts/fixtures-env.sh >/dev/null
.venv-ref/bin/python -m pip install --quiet --disable-pip-version-check \
    "optimum==2.1.*" "optimum-onnx==0.1.*" "onnxruntime==1.31.1"
cargo build --release --quiet
exec .venv-ref/bin/python benches/decode_gpt2.py "$@"
