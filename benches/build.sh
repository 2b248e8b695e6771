#!/usr/bin/env bash
# Build-speed benchmark: wall time and peak memory of `tfc build` for BERT-base
# with random weights and for Llama-2-7B as a graph only (`--weights none`).
# Uses the release binary and GNU time; prints one line per case and the
# median of several runs. Not part of the test suite.
#
#   bash benches/build.sh [runs]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=${1:-5}
cargo build --release --quiet
tfc=target/release/tfc
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

if ! command -v /usr/bin/time >/dev/null; then
  echo "GNU time is needed for peak memory: apt-get install time" >&2
  exit 1
fi

bench() {
  local label=$1; shift
  local walls=() rss=()
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$out/time" "$tfc" "$@" 2>/dev/null
    read -r wall kib < "$out/time"
    walls+=("$wall"); rss+=("$kib")
  done
  local mid=$(( runs / 2 ))
  local w; w=$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$((mid + 1))p")
  local r; r=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
  printf '%-40s median wall %6.2f s   peak RSS %7.1f MiB   (%s runs)\n' \
    "$label" "$w" "$(echo "$r / 1024" | bc -l)" "$runs"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
bench "bert-base, random weights (fp32)" build specs/bert-base.tfm -m bert_base -o "$out/bert.onnx"
bench "llama-2-7b, --weights none" build specs/llama.tfm -m llama_2_7b --weights none -o "$out/llama.onnx"
bench "llama-3.2-1b, --weights none" build specs/llama.tfm -m llama_3_2_1b --weights none -o "$out/llama1b.onnx"
ls -l "$out"/*.onnx | awk '{printf "  %-12s %s bytes\n", $NF, $5}' | sed "s#$out/##"

# The PyTorch baseline, when the reference environment exists.
if [[ -x .venv-ref/bin/python ]]; then
  /usr/bin/time -f "%e %M" -o "$out/time" .venv-ref/bin/python benches/torch_export.py \
    >/dev/null 2>&1
  read -r wall kib < "$out/time"
  printf '%-40s        wall %6.2f s   peak RSS %7.1f MiB   (whole process, 1 run)\n' \
    "bert-base, torch.onnx.export" "$wall" "$(echo "$kib / 1024" | bc -l)"
else
  echo "(no .venv-ref: run scripts/fixtures-env.sh for the PyTorch baseline)"
fi
