"""Baseline for benches/build.sh: export BERT-base from PyTorch to ONNX.

Builds `BertModel` from a default `BertConfig` (random weights, seeded) and
exports it with `torch.onnx.export`, reporting wall time and peak RSS. Needs
the reference environment (`bash scripts/fixtures-env.sh`); not run in CI.
"""

import resource
import sys
import tempfile
import time

import torch
from transformers import BertConfig, BertModel

start = time.perf_counter()
torch.manual_seed(0)
model = BertModel(BertConfig()).eval()
ids = torch.ones(1, 16, dtype=torch.long)
with tempfile.TemporaryDirectory() as tmp:
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids)),
        f"{tmp}/bert.onnx",
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state", "pooler_output"],
        dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                      "attention_mask": {0: "batch", 1: "sequence"}},
        opset_version=17,
        dynamo=False,
    )
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{'bert-base, torch.onnx.export':<40} wall {wall:6.2f} s   peak RSS {peak:7.1f} MiB")
sys.exit(0)
