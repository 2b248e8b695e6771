"""GPT-2 small greedy decoding on CPU, side by side: tfc, Hugging Face `generate` in
PyTorch, and Optimum's ONNX export with a KV cache run by ONNX Runtime
(`ORTModelForCausalLM`), all on the same seeded random-initialised weights.

For each system: time to first token (the prefill of a 32-token prompt and the first
greedy token), decode tokens per second over the remaining 127 of 128 new tokens, and the
median time of one decode step. The memory-bandwidth floor of one decode step is the
model's weight bytes divided by this machine's measured copy bandwidth (bytes read plus
bytes written per second by a large `numpy.copyto`): a step must read every weight once.

Not part of the test suite. Needs PyTorch, Transformers and Optimum (ONNX), which
`scripts/fixtures-env.sh` plus `pip install optimum optimum-onnx` put in `.venv-ref`:

    bash benches/decode_gpt2.sh          # builds tfc (release) and runs this script
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PROMPT_TOKENS = 32
NEW_TOKENS = 128


def copy_bandwidth(mib=512, runs=7):
    """Bytes moved per second (read + write) by the best of several large copies."""
    src = np.ones(mib * 1024 * 1024 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best


def timed_generate(generate, runs):
    """Median time to first token and median full time for NEW_TOKENS, in seconds."""
    firsts, totals, tokens = [], [], None
    for _ in range(runs):
        t = time.perf_counter()
        generate(1)
        firsts.append(time.perf_counter() - t)
        t = time.perf_counter()
        tokens = generate(NEW_TOKENS)
        totals.append(time.perf_counter() - t)
    return statistics.median(firsts), statistics.median(totals), tokens


def summary(name, first, total, step_ms=None):
    decode = max(total - first, 1e-9)
    per_step = step_ms if step_ms is not None else decode / (NEW_TOKENS - 1) * 1e3
    return {
        "system": name,
        "first_token_ms": first * 1e3,
        "tokens_per_s": (NEW_TOKENS - 1) / decode,
        "step_ms": per_step,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tfc", default=str(ROOT / "target/release/tfc"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    config = GPT2Config()  # GPT-2 small: 12 layers, 768 wide, 50257 tokens
    model = GPT2LMHeadModel(config).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, config.vocab_size, PROMPT_TOKENS).tolist()

    work = Path(tempfile.mkdtemp(prefix="tfc-decode-bench-"))
    checkpoint = work / "gpt2-random"
    model.save_pretrained(checkpoint, safe_serialization=True)

    # Everyone generates exactly NEW_TOKENS greedy tokens (no early end of sequence).
    settings = dict(do_sample=False, num_beams=1, pad_token_id=config.eos_token_id)

    results = []
    sequences = {}

    # (a) Hugging Face generate in PyTorch.
    ids = torch.tensor([prompt])
    mask = torch.ones_like(ids)

    def torch_generate(n):
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, **settings
            )
        return out[0, PROMPT_TOKENS:].tolist()

    torch_generate(4)  # warm-up
    first, total, tokens = timed_generate(torch_generate, args.runs)
    results.append(summary("transformers (PyTorch)", first, total))
    sequences["transformers (PyTorch)"] = tokens

    # (b) Optimum's ONNX export with KV cache, run by ONNX Runtime.
    from optimum.onnxruntime import ORTModelForCausalLM
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    t = time.perf_counter()
    ort_model = ORTModelForCausalLM.from_pretrained(
        checkpoint, export=True, use_cache=True, session_options=options
    )
    export_s = time.perf_counter() - t

    def ort_generate(n):
        out = ort_model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, **settings
        )
        return out[0, PROMPT_TOKENS:].tolist()

    ort_generate(4)
    first, total, tokens = timed_generate(ort_generate, args.runs)
    results.append(summary("optimum + onnxruntime", first, total))
    sequences["optimum + onnxruntime"] = tokens

    # (c) tfc: compile the spec with the checkpoint, generate with its Rust decoding loop.
    runs = []
    for _ in range(args.runs):
        cmd = [
            args.tfc, "generate", str(ROOT / "specs/gpt2.tfm"),
            "--weights", str(checkpoint),
            "--ids", " ".join(map(str, prompt)),
            "--max-new-tokens", str(NEW_TOKENS),
            "--min-new-tokens", str(NEW_TOKENS),
            "--threads", str(args.threads),
            "--json",
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        runs.append(json.loads(out.stdout))
    firsts = [r["timing_ms"]["first_token"] / 1e3 for r in runs]
    totals = [r["timing_ms"]["total"] / 1e3 for r in runs]
    steps = [statistics.median(r["timing_ms"]["steps"][1:]) for r in runs]
    tfc_total = statistics.median(totals)
    tfc_first = statistics.median(firsts)
    results.append(summary("tfc", tfc_first, tfc_total, statistics.median(steps)))
    sequences["tfc"] = runs[0]["generated"][0]
    tfc_compile_ms = statistics.median(r["timing_ms"]["compile"] for r in runs)

    bandwidth = copy_bandwidth()
    floor_ms = weight_bytes / bandwidth * 1e3
    same = len({tuple(s) for s in sequences.values()}) == 1
    by = {r["system"]: r for r in results}
    ratios = {
        "tfc / optimum tokens/s": by["tfc"]["tokens_per_s"] / by["optimum + onnxruntime"]["tokens_per_s"],
        "tfc / transformers tokens/s": by["tfc"]["tokens_per_s"] / by["transformers (PyTorch)"]["tokens_per_s"],
        "tfc step / bandwidth floor": by["tfc"]["step_ms"] / floor_ms,
    }
    report = {
        "machine": {"cores": os.cpu_count(), "threads": args.threads},
        "prompt_tokens": PROMPT_TOKENS,
        "new_tokens": NEW_TOKENS,
        "weight_bytes": weight_bytes,
        "copy_bandwidth_gb_s": bandwidth / 1e9,
        "bandwidth_floor_step_ms": floor_ms,
        "optimum_export_s": export_s,
        "tfc_compile_ms": tfc_compile_ms,
        "results": results,
        "ratios": ratios,
        "identical_tokens": same,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"GPT-2 small, greedy, batch 1, {PROMPT_TOKENS}-token prompt, {NEW_TOKENS} new tokens, "
          f"{args.threads} threads, median of {args.runs} runs")
    print(f"{'system':<26}{'first token':>14}{'tokens/s':>11}{'step (median)':>16}")
    for r in results:
        print(f"{r['system']:<26}{r['first_token_ms']:>11.1f} ms{r['tokens_per_s']:>11.1f}"
              f"{r['step_ms']:>13.2f} ms")
    print(f"bandwidth floor: {weight_bytes / 1e6:.0f} MB of weights / {bandwidth / 1e9:.1f} GB/s "
          f"copy bandwidth = {floor_ms:.2f} ms per step")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    print(f"all three produced the same tokens: {same}")
    print(f"export time: optimum {export_s:.1f} s, tfc compile + weights {tfc_compile_ms / 1e3:.2f} s")
    if not same:
        for k, v in sequences.items():
            print(f"  {k}: {v[:16]} ...", file=sys.stderr)


if __name__ == "__main__":
    main()
