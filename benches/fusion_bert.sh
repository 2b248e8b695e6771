#!/usr/bin/env bash
# BERT-base fusion benchmark: tfc's ONNX (per --target) against Optimum's export, plain and
# after ONNX Runtime's transformer optimizer, on the same random weights: compile time,
# session creation, latency at batch 1 and 8 (sequence 128) against a GEMM floor. Not part
# of the test suite; installs PyTorch, Transformers and Optimum into .venv-ref (several GB)
# on first use. Set TFC to use another tfc binary (then nothing is built).
#
#   bash benches/fusion_bert.sh [--targets portable,onnx23,ort] [--runs N] [--threads N] [--keep DIR] [--json]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh >/dev/null
bash scripts/fixtures-env.sh >/dev/null
.venv-ref/bin/python -m pip install --quiet --disable-pip-version-check \
    "optimum==2.1.*" "optimum-onnx==0.1.*" "onnxruntime==1.31.1"
if [[ -z "${TFC:-}" ]]; then
    cargo build --release --quiet
fi
exec .venv-ref/bin/python benches/fusion_bert.py "$@"
