#!/usr/bin/env bash
# Runs the test suite. Tests call `python` for the ONNX checker and reference numbers and
# load ONNX Runtime, so the repository's .venv (made by scripts/setup.sh) goes first on PATH.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PATH="$PWD/.venv/bin:$PATH"
cargo test --all-targets "$@"
cargo test --doc
