#!/usr/bin/env bash
# Times `tfc check` on hostile specs (absurd sizes, deep nesting, cycles) and
# prints wall time and peak RSS for each; every one must fail fast with a
# diagnostic (see docs/LIMITS.md). Not part of the test suite.
#
#   bash benches/limits.sh [path to tfc]     (default: the debug build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tfc=${1:-target/debug/tfc}
[ -x "$tfc" ] || cargo build --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

decoder() { # hidden, decoder body
  printf 'model m {\n vocab_size = 1000\n hidden_size = %s\n decoder {\n  position = alibi\n  %s\n  norm = layer_norm { position = pre }\n }\n}\n' "$1" "$2"
}
decoder 1048576 'layers = 1000, attention { heads = 8192 }, feed_forward { intermediate_size = 1048576, activation = gelu }' > "$dir/params_1e15.tfm"
decoder 64 'layers = 1_000_000_000, attention { heads = 4 }, feed_forward { intermediate_size = 128, activation = gelu }' > "$dir/layers_1e9.tfm"
decoder 8 'layers = 100_000, attention { heads = 2 }, feed_forward { intermediate_size = 16, activation = gelu }' > "$dir/layers_1e5.tfm"
decoder 8 'layers = 1024, attention { heads = 2 }, feed_forward { intermediate_size = 16, activation = gelu }' > "$dir/layers_1024_valid.tfm"
python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
open(f"{d}/nested_blocks.tfm", "w").write("model m { " + "a { " * 100000 + "} " * 100000 + "}")
open(f"{d}/nested_parens.tfm", "w").write("model m { vocab_size = " + "(" * 100000 + "1" + ")" * 100000 + " }")
open(f"{d}/long_chain.tfm", "w").write("model m { vocab_size = 1" + " + 1" * 100000 + " }")
lets = "let c0 = 1\n" + "".join(f"let c{i} = c{i-1} + 0\n" for i in range(1, 10000))
open(f"{d}/let_chain.tfm", "w").write(lets + "model m { vocab_size = c9999 }\n")
dbl = "let c0 = 1\n" + "".join(f"let c{i} = c{i-1} + c{i-1} - c{i-1}\n" for i in range(1, 61))
open(f"{d}/let_doubling.tfm", "w").write(dbl + "model m { vocab_size = c60 }\n")
der = "model m0 { vocab_size = 1 }\n" + "".join(f"model m{i} = m{i-1} {{ }}\n" for i in range(1, 10000))
open(f"{d}/derivation_chain.tfm", "w").write(der)
open(f"{d}/self_derivation.tfm", "w").write("model a = a { }\n")
open(f"{d}/include_cycle.tfm", "w").write('include "include_cycle.tfm"\n')
open(f"{d}/garbage_1mb.tfm", "w").write("model m { vocab_size = ]" * 50000)
PY

printf '%-28s %8s %10s  %s\n' spec wall "peak RSS" "first diagnostic"
for spec in "$dir"/*.tfm; do
  /usr/bin/time -f "%e %M" -o "$dir/time" "$tfc" check "$spec" > "$dir/out" 2>&1 || true
  read -r wall kib < "$dir/time"
  first=$(grep -m1 -oE 'error\[E[0-9]+\][^`]*|is valid.*' "$dir/out" || head -c 60 "$dir/out")
  printf '%-28s %7.2fs %7.1f MiB  %s\n' "$(basename "$spec")" "$wall" "$(echo "$kib / 1024" | bc -l)" "$first"
done
