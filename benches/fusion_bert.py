"""BERT-base encoder inference on CPU with ONNX Runtime, side by side: Optimum's ONNX
export (plain, and after ONNX Runtime's transformer optimizer `optimize_model`, which fuses
Attention, SkipLayerNormalization, EmbedLayerNormalization and BiasGelu) against tfc's
`build` for each `--target`, all on the same seeded random-initialised weights of a Hugging
Face `BertModel` with the bert-base-uncased configuration.

For each model: the time to produce it (Optimum export to opset 17 without its validation
step, plus `optimize_model` for the optimized one; the whole `tfc build` process for tfc),
the fused-operator histogram of the file, the median ONNX Runtime session creation time
(graph optimizations at ORT's default ORT_ENABLE_ALL), and the median and p90 latency at
batch 1 and batch 8 of sequence 128 (random ids, all-ones mask, segment 0 then 1), the
models taking turns run by run so that other load on the machine falls on all alike. Every model's
`last_hidden_state` must agree with PyTorch's on the same inputs within 1e-3 (max abs):
a fast wrong model does not count.

The floor of one forward pass is its matmul FLOPs divided by this machine's fp32 GEMM rate.
FLOPs per forward at (batch b, sequence s), with t = b·s tokens, hidden h, intermediate i,
heads n, head_dim d = h/n and L layers:

    L · [ 2·t·(4·h² + 2·h·i)      Q, K, V, output projections and the two feed-forward
        + 2·2·b·n·s²·d ]          attention scores Q·Kᵀ and the weighted sum P·V

(embeddings, norms, softmax, GELU and the pooler are left out; 22.3 GFLOP at b = 1). The
GEMM rate is the best of several 2048×2048×2048 fp32 MatMuls run by an ONNX Runtime session
with the same thread count (measured before and after the models, the better one kept), since
ONNX Runtime's MatMul is what every model here runs. "b1/floor" is latency over floor.

Not part of the test suite. Needs PyTorch, Transformers and Optimum (ONNX), which
`scripts/fixtures-env.sh` plus `pip install optimum optimum-onnx` put in `.venv-ref`:

    bash benches/fusion_bert.sh          # builds tfc (release) and runs this script
    TFC=target/debug/tfc .venv-ref/bin/python benches/fusion_bert.py --targets portable --runs 3
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the weights are random
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEQUENCE = 128
BATCHES = (1, 8)
WARMUP = 2
SESSION_CREATIONS = 3
TOLERANCE = 1e-3
GEMM_N = 2048
# Operators whose count shows what was fused (ONNX Runtime contrib ops and the ONNX ones
# they replace); every other operator is only in the JSON histogram.
FUSED_OPS = [
    "EmbedLayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization", "LayerNormalization", "BiasGelu", "FastGelu", "Gelu",
    "GemmFastGelu", "BiasSoftmax", "FusedMatMul", "MatMul", "Gemm", "Softmax",
]
# Goals: (name, numerator model, denominator model, what, limit).
LATENCY_GOALS = [
    ("tfc ort / optimum optimized, batch 1", "tfc ort", "optimum optimized", 1, 0.85),
    ("tfc ort / optimum optimized, batch 8", "tfc ort", "optimum optimized", 8, 0.95),
    ("tfc portable / optimum plain, batch 1", "tfc portable", "optimum plain", 1, 1.0),
    ("tfc portable / optimum plain, batch 8", "tfc portable", "optimum plain", 8, 1.0),
]
COMPILE_GOAL = 1 / 20


def log(message):
    print(message, file=sys.stderr, flush=True)


def forward_flops(config, batch, seq):
    """Matmul FLOPs of one encoder forward pass (the formula in the module docstring)."""
    h, i, n = config.hidden_size, config.intermediate_size, config.num_attention_heads
    tokens = batch * seq
    projections = 2 * tokens * (4 * h * h + 2 * h * i)
    attention = 2 * 2 * batch * n * seq * seq * (h // n)
    return config.num_hidden_layers * (projections + attention)


def gemm_rate(threads, n=GEMM_N, runs=7):
    """FLOP/s of the best of several n×n×n fp32 MatMuls in an ONNX Runtime session."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal((n, n), dtype=np.float32) for k in ("a", "b")}
    session.run(None, feeds)
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def op_histogram(path):
    """Operator type -> node count of the main graph (weights are not loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(Counter(node.op_type for node in model.graph.node).most_common())


def make_inputs(config, batch, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, config.vocab_size, (batch, SEQUENCE), dtype=np.int64)
    types = np.zeros((batch, SEQUENCE), dtype=np.int64)
    types[:, SEQUENCE // 2:] = 1  # a sentence pair: segment 0 then segment 1
    return {
        "input_ids": ids,
        "attention_mask": np.ones((batch, SEQUENCE), dtype=np.int64),
        "token_type_ids": types,
    }


def feeds_for(session, inputs):
    """Only the inputs the model declares, in the integer type it declares."""
    feeds = {}
    for arg in session.get_inputs():
        if arg.name not in inputs:
            raise ValueError(f"model input `{arg.name}` ({arg.type}) is not one this bench feeds")
        dtype = np.int32 if arg.type == "tensor(int32)" else np.int64
        feeds[arg.name] = inputs[arg.name].astype(dtype)
    return feeds


def session_options(threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    return options


def create_session(path, threads):
    """The median session creation time in ms over SESSION_CREATIONS, and the last session."""
    import onnxruntime as ort

    creations = []
    session = None
    for _ in range(SESSION_CREATIONS):
        session = None
        t = time.perf_counter()
        session = ort.InferenceSession(
            str(path), session_options(threads), providers=["CPUExecutionProvider"])
        creations.append(time.perf_counter() - t)
    return statistics.median(creations) * 1e3, session


def max_diff(session, outputs, expected):
    names = [o.name for o in session.get_outputs()]
    if "last_hidden_state" not in names:
        return float("inf")
    got = outputs[names.index("last_hidden_state")]
    if got.shape != expected.shape:
        return float("inf")
    return float(np.max(np.abs(got.astype(np.float32) - expected)))


def measure(models, runs, inputs, reference):
    """Latency per batch and agreement with PyTorch of every model with a session.

    The models take turns (one run each per round, the order rotating every round), so
    that other load on the machine falls on all of them alike."""
    live = [m for m in models if "session" in m]
    for m in live:
        m["latency"], m["diffs"] = {}, []
    for batch in BATCHES:
        feeds = {}
        for m in list(live):
            feeds[m["model"]] = feeds_for(m["session"], inputs[batch])
            try:
                for _ in range(WARMUP):
                    outputs = m["session"].run(None, feeds[m["model"]])
            except Exception as e:  # a model ONNX Runtime loads but cannot run
                m["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                log(f"{m['model']}: {m['error']}")
                for key in ("session", "latency", "diffs"):
                    m.pop(key, None)
                live.remove(m)
                continue
            m["diffs"].append(max_diff(m["session"], outputs, reference[batch]))
        times = {m["model"]: [] for m in live}
        for r in range(runs):
            for k in range(len(live)):
                m = live[(r + k) % len(live)]
                t = time.perf_counter()
                m["session"].run(None, feeds[m["model"]])
                times[m["model"]].append(time.perf_counter() - t)
        for m in live:
            times_ms = np.array(times[m["model"]]) * 1e3
            m["latency"][batch] = {
                "median_ms": float(np.median(times_ms)),
                "p90_ms": float(np.percentile(times_ms, 90)),
            }
        log(f"batch {batch}: " + ", ".join(
            f"{m['model']} {m['latency'][batch]['median_ms']:.1f} ms" for m in live))
    for m in live:
        m["max_abs_diff"] = max(m.pop("diffs"))
        m["correct"] = m["max_abs_diff"] <= TOLERANCE
        del m["session"]


def tfc_build(tfc, checkpoint, target, out, build_runs):
    """Wall-clock seconds of whole `tfc build` processes (median), or the error's first line."""
    cmd = [tfc, "build", str(ROOT / "specs/bert-base.tfm"), "-m", "bert_base",
           "--weights", str(checkpoint), "-o", str(out)]
    if target != "portable":
        cmd += ["--target", target]
    walls = []
    for _ in range(build_runs):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        walls.append(time.perf_counter() - t)
        if proc.returncode != 0:
            lines = [l for l in proc.stderr.splitlines() if l.strip()] or [f"exit {proc.returncode}"]
            return None, lines[0].strip()
    return statistics.median(walls), None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tfc", default=os.environ.get("TFC", str(ROOT / "target/release/tfc")),
                        help="tfc binary (default: $TFC, else target/release/tfc)")
    parser.add_argument("--targets", default="portable,onnx23,ort",
                        help="comma-separated tfc targets (`--target` is passed unless portable)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per model and batch")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--build-runs", type=int, default=1, help="tfc builds per target (median)")
    parser.add_argument("--keep", metavar="DIR", help="keep the checkpoint and models in DIR")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    tfc = str(Path(args.tfc).resolve()) if os.sep in args.tfc else args.tfc

    import torch
    from transformers import BertConfig, BertModel

    if args.keep:
        work = Path(args.keep).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="tfc-fusion-bench-"))
    try:
        report = run(args, targets, tfc, work, torch, BertConfig, BertModel)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


def run(args, targets, tfc, work, torch, BertConfig, BertModel):
    rate = gemm_rate(args.threads)
    log(f"fp32 GEMM rate: {rate / 1e9:.1f} GFLOP/s")

    # (1) The checkpoint: bert-base-uncased's configuration, seeded random weights.
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    config = BertConfig(
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
    )
    model = BertModel(config).eval()
    checkpoint = work / "bert-base-random"
    model.save_pretrained(checkpoint, safe_serialization=True)
    inputs = {b: make_inputs(config, b, seed=b) for b in BATCHES}
    reference = {}
    with torch.inference_mode():
        for b in BATCHES:
            out = model(**{k: torch.from_numpy(v) for k, v in inputs[b].items()})
            reference[b] = out.last_hidden_state.numpy()
    del model
    log(f"checkpoint: {checkpoint}")

    # (2) Optimum: export to ONNX, then ONNX Runtime's transformer optimizer.
    from optimum.exporters.onnx import main_export
    from onnxruntime.transformers.optimizer import optimize_model

    exported = work / "optimum"
    t = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        main_export(str(checkpoint), output=str(exported), task="feature-extraction",
                    opset=17, device="cpu", do_validation=False)
    export_s = time.perf_counter() - t
    plain = exported / "model.onnx"
    log(f"optimum export: {export_s:.1f} s")

    optimized = work / "optimum-optimized.onnx"
    t = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        optimizer = optimize_model(str(plain), model_type="bert", num_heads=12, hidden_size=768,
                                   opt_level=None, use_gpu=False)
        optimizer.save_model_to_file(str(optimized))
    optimize_s = time.perf_counter() - t
    fused_stats = optimizer.get_fused_operator_statistics()
    del optimizer
    log(f"optimize_model: {optimize_s:.1f} s")

    models = [
        {"model": "optimum plain", "path": plain, "produce_s": export_s},
        {"model": "optimum optimized", "path": optimized, "produce_s": export_s + optimize_s},
    ]

    # (3) tfc: one build per target, the whole process timed.
    for target in targets:
        out = work / f"tfc-{target}.onnx"
        wall, error = tfc_build(tfc, checkpoint, target, out, args.build_runs)
        name = f"tfc {target}"
        if error:
            log(f"{name}: build failed: {error}")
            models.append({"model": name, "target": target, "error": error})
        else:
            log(f"{name}: build {wall:.2f} s")
            models.append({"model": name, "target": target, "path": out, "produce_s": wall})

    # (4) Session creation per model, then latency and agreement, the models taking turns.
    for m in models:
        if "error" in m:
            continue
        m["ops"] = op_histogram(m["path"])
        m["fused_ops"] = {op: m["ops"][op] for op in FUSED_OPS if m["ops"].get(op)}
        m["nodes"] = sum(m["ops"].values())
        try:
            m["session_ms"], m["session"] = create_session(m["path"], args.threads)
            m["inputs"] = [i.name for i in m["session"].get_inputs()]
            m["outputs"] = [o.name for o in m["session"].get_outputs()]
            feeds_for(m["session"], inputs[BATCHES[0]])  # every input is one this bench feeds
            log(f"{m['model']}: session {m['session_ms']:.0f} ms")
        except Exception as e:  # a model ONNX Runtime cannot load, or with unknown inputs
            m.pop("session", None)
            m["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log(f"{m['model']}: {m['error']}")
    measure(models, args.runs, inputs, reference)

    # (5) The floor: matmul FLOPs over the GEMM rate, the better of the start's and the end's
    # (other load on the machine only ever lowers it).
    rate_end = gemm_rate(args.threads)
    log(f"fp32 GEMM rate again: {rate_end / 1e9:.1f} GFLOP/s")
    rates = [rate, rate_end]
    rate = max(rates)
    flops = {b: forward_flops(config, b, SEQUENCE) for b in BATCHES}
    floor_ms = {b: flops[b] / rate * 1e3 for b in BATCHES}
    for m in models:
        for b, lat in m.get("latency", {}).items():
            lat["over_floor"] = lat["median_ms"] / floor_ms[b]

    # (6) Goals.
    by = {m["model"]: m for m in models}

    def usable(name):
        m = by.get(name)
        return m is not None and "error" not in m and m.get("correct")

    goals = []
    for name, num, den, batch, limit in LATENCY_GOALS:
        if num not in by:
            continue
        if usable(num) and usable(den):
            ratio = by[num]["latency"][batch]["median_ms"] / by[den]["latency"][batch]["median_ms"]
            status = "met" if ratio <= limit else "missed"
        else:
            ratio = None
            status = "missed (" + ", ".join(
                f"{n} {'failed' if n not in by or 'error' in by[n] else 'wrong output'}"
                for n in (num, den) if not usable(n)) + ")"
        goals.append({"goal": name, "ratio": ratio, "limit": limit, "status": status})
    baseline_s = export_s + optimize_s
    for target in targets:
        m = by[f"tfc {target}"]
        name = f"tfc {target} build / (export + optimize)"
        if "produce_s" in m:
            ratio = m["produce_s"] / baseline_s
            status = "met" if ratio <= COMPILE_GOAL else "missed"
        else:
            ratio, status = None, "missed (build failed)"
        goals.append({"goal": name, "ratio": ratio, "limit": COMPILE_GOAL, "status": status})

    for m in models:
        if "path" in m:
            m["path"] = str(m["path"]) if args.keep else Path(m["path"]).name
        if "latency" in m:
            m["latency"] = {str(b): v for b, v in m["latency"].items()}
    import onnxruntime as ort
    return {
        "machine": {"cores": os.cpu_count(), "threads": args.threads},
        "versions": {"onnxruntime": ort.__version__, "torch": torch.__version__},
        "sequence": SEQUENCE,
        "batches": list(BATCHES),
        "runs": args.runs,
        "tfc": tfc,
        "optimum_export_s": export_s,
        "optimum_optimize_s": optimize_s,
        "optimizer_fused_operators": fused_stats,
        "gemm": {"n": GEMM_N, "how": "onnxruntime MatMul, best of 7 at start and end",
                 "gflop_s": rate / 1e9, "gflop_s_start_end": [x / 1e9 for x in rates]},
        "flops": {str(b): flops[b] for b in BATCHES},
        "floor_ms": {str(b): floor_ms[b] for b in BATCHES},
        "tolerance": TOLERANCE,
        "models": models,
        "goals": goals,
        "kept": str(work) if args.keep else None,
    }


def print_table(r):
    t = r["machine"]["threads"]
    print(f"BERT-base (random weights), CPU, ONNX Runtime {r['versions']['onnxruntime']}, "
          f"{t} threads, sequence {r['sequence']}, median of {r['runs']} runs")
    print(f"{'model':<20}{'made in':>9}{'session':>10}{'b1 med':>10}{'b1 p90':>10}{'b8 med':>10}"
          f"{'b8 p90':>10}{'b1/floor':>10}{'b8/floor':>10}{'max diff':>11}")
    for m in r["models"]:
        if "latency" not in m:
            made = f"{m['produce_s']:>7.2f} s" if "produce_s" in m else f"{'-':>9}"
            print(f"{m['model']:<20}{made}  FAILED: {m['error']}")
            continue
        l1, l8 = m["latency"]["1"], m["latency"]["8"]
        flag = "" if m["correct"] else "  WRONG"
        print(f"{m['model']:<20}{m['produce_s']:>7.2f} s{m['session_ms']:>7.0f} ms"
              f"{l1['median_ms']:>7.1f} ms{l1['p90_ms']:>7.1f} ms"
              f"{l8['median_ms']:>7.1f} ms{l8['p90_ms']:>7.1f} ms"
              f"{l1['over_floor']:>9.2f}x{l8['over_floor']:>9.2f}x{m['max_abs_diff']:>11.1e}{flag}")
    print("'made in': Optimum export (plain), export + optimize_model (optimized), "
          "whole `tfc build` process (tfc)")
    print("operators:")
    for m in r["models"]:
        if "fused_ops" in m:
            ops = ", ".join(f"{k} {v}" for k, v in m["fused_ops"].items())
            print(f"  {m['model']:<18} {m['nodes']:>5} nodes: {ops}")
    fused = ", ".join(f"{k} {v}" for k, v in r["optimizer_fused_operators"].items() if v)
    print(f"optimize_model's fused operators: {fused}")
    g = r["gemm"]
    floors = ", ".join(f"batch {b}: {r['flops'][str(b)] / 1e9:.1f} GFLOP / {g['gflop_s']:.1f} "
                       f"GFLOP/s = {r['floor_ms'][str(b)]:.1f} ms" for b in r["batches"])
    print(f"floor ({g['n']}x{g['n']} fp32 GEMM rate, {g['how']}): {floors}")
    print(f"agreement with PyTorch: max abs diff of last_hidden_state <= {r['tolerance']:g} "
          f"required")
    print(f"optimum: export {r['optimum_export_s']:.1f} s + optimize_model "
          f"{r['optimum_optimize_s']:.1f} s")
    print("goals:")
    for g in r["goals"]:
        ratio = f"{g['ratio']:.3f}" if g["ratio"] is not None else "-"
        print(f"  {g['goal']:<44} {ratio:>7}  (<= {g['limit']:.2f})  {g['status']}")
    print("session creation: " + ", ".join(
        f"{m['model']} {m['session_ms']:.0f} ms" for m in r["models"] if "session_ms" in m))
    if r["kept"]:
        print(f"models kept in {r['kept']}")


if __name__ == "__main__":
    main()
