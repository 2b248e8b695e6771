#!/usr/bin/env bash
# Builds `llama_2_7b` of specs/llama.tfm with random weights (about 27 GB of
# fp32, written as external data) and prints wall time, peak RSS and the
# sizes of the files written; then checks the model proto without its data
# with the ONNX checker, and deletes the output. Then builds `llama_3_2_1b`
# (4.9 GB of fp32, over protobuf's 2 GiB limit, so also external data) and
# runs it in ONNX Runtime through `tfc run`, which the 7B model is too large
# for on a 24 GiB machine. Needs about 30 GB of free disk in OUT_DIR. Not
# part of the test suite; the README records a run.
#
#   bash benches/build_7b.sh [OUT_DIR]     (default: a fresh folder in /tmp)
#
# TFC=path/to/tfc uses that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${TFC:-}" ]; then
  cargo build --release --quiet
fi
tfc=${TFC:-target/release/tfc}
out_dir=${1:-$(mktemp -d /tmp/tfc-7b.XXXXXX)}
mkdir -p "$out_dir"
model="$out_dir/model.onnx"
log="$out_dir/time.log"
small="$out_dir/llama-1b.onnx"
trap 'rm -f "$model" "$model.data" "$small" "$small.data" "$log"; rmdir "$out_dir" 2> /dev/null || true' EXIT

command -v /usr/bin/time > /dev/null || {
  echo "needs GNU time (/usr/bin/time; apt-get install time)" >&2
  exit 1
}
/usr/bin/time -v "$tfc" build specs/llama.tfm -m llama_2_7b -o "$model" 2> "$log"

wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
user=$(sed -n 's/.*User time (seconds): //p' "$log")
sys=$(sed -n 's/.*System time (seconds): //p' "$log")
echo "wall:     $wall (user ${user} s, system ${sys} s)"
awk -v kb="$rss_kb" 'BEGIN { printf "peak RSS: %d kB (%.2f GiB)\n", kb, kb / 1048576 }'
for f in "$out_dir"/*; do
  [ "$f" = "$log" ] && continue
  printf 'file:     %s  %d bytes\n' "$(basename "$f")" "$(stat -c %s "$f")"
done

python=.venv/bin/python
[ -x "$python" ] || python=python3
"$python" - "$model" <<'PY'
import os
import sys

import onnx

path = sys.argv[1]
model = onnx.load(path, load_external_data=False)
# External data locations are resolved against the working directory when
# the checker is given a proto rather than a path.
os.chdir(os.path.dirname(os.path.abspath(path)))
onnx.checker.check_model(model)

# Every external tensor must lie inside its data file, end to end.
sizes, params, external, covered = {}, 0, 0, 0
width = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.INT64: 8}
for t in model.graph.initializer:
    n = 1
    for d in t.dims:
        n *= d
    params += n
    if t.data_location != onnx.TensorProto.EXTERNAL:
        continue
    info = {e.key: e.value for e in t.external_data}
    location = info["location"]
    if location not in sizes:
        sizes[location] = os.path.getsize(location)
    offset, length = int(info.get("offset", 0)), int(info["length"])
    assert length == n * width[t.data_type], f"{t.name}: length {length} for {n} elements"
    assert offset + length <= sizes[location], f"{t.name} runs past the end of {location}"
    external += 1
    covered += length
print(
    f"onnx:     checker passed on the proto without data; {len(model.graph.node)} nodes, "
    f"{len(model.graph.initializer)} initializers ({external} external, {covered} bytes), "
    f"{params} parameters"
)
PY

rm -f "$model" "$model.data"

# A model over 2 GiB that fits in memory: build it, then load and run it.
echo
echo "llama_3_2_1b:"
/usr/bin/time -v "$tfc" build specs/llama.tfm -m llama_3_2_1b -o "$small" 2> "$log"
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
echo "build:    $wall wall"
awk -v kb="$rss_kb" 'BEGIN { printf "peak RSS: %d kB (%.2f GiB)\n", kb, kb / 1048576 }'
for f in "$small" "$small.data"; do
  printf 'file:     %s  %d bytes\n' "$(basename "$f")" "$(stat -c %s "$f")"
done
PATH="$PWD/.venv/bin:$PATH" "$tfc" run "$small" --ids "1 15043 29892 3186" --ids "1 450 4996 17354"
