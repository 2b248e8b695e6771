#!/usr/bin/env python3
"""Writes the seed inputs of the `checkpoint` fuzz target into seeds/checkpoint/.

The valid seeds hold every tensor of the tiny models in fuzz/src/lib.rs
(`gpt2_tiny`, `bloom_tiny`, `llama_tiny`) under their Hugging Face names;
the others damage one thing each: the header length, the JSON, offsets,
shapes, dtypes or values. Only the standard library is used, and the values
come from a fixed linear congruential sequence, so the files are the same on
every run.

    python3 fuzz/seeds/make_checkpoint_seeds.py
"""

import json
import math
import struct
from pathlib import Path

OUT = Path(__file__).resolve().parent / "checkpoint"

# Sizes of the tiny models: vocabulary 8, hidden 4, 4 positions, one layer,
# two heads (LLaMA: one key/value head), feed-forward 8.
V, H, P, F, KV = 8, 4, 4, 8, 2

GPT2 = [
    ("transformer.wte.weight", [V, H]),
    ("transformer.wpe.weight", [P, H]),
    ("transformer.h.0.ln_1.weight", [H]),
    ("transformer.h.0.ln_1.bias", [H]),
    ("transformer.h.0.attn.c_attn.weight", [H, 3 * H]),
    ("transformer.h.0.attn.c_attn.bias", [3 * H]),
    ("transformer.h.0.attn.c_proj.weight", [H, H]),
    ("transformer.h.0.attn.c_proj.bias", [H]),
    ("transformer.h.0.ln_2.weight", [H]),
    ("transformer.h.0.ln_2.bias", [H]),
    ("transformer.h.0.mlp.c_fc.weight", [H, F]),
    ("transformer.h.0.mlp.c_fc.bias", [F]),
    ("transformer.h.0.mlp.c_proj.weight", [F, H]),
    ("transformer.h.0.mlp.c_proj.bias", [H]),
    ("transformer.ln_f.weight", [H]),
    ("transformer.ln_f.bias", [H]),
]

BLOOM = [
    ("transformer.word_embeddings.weight", [V, H]),
    ("transformer.word_embeddings_layernorm.weight", [H]),
    ("transformer.word_embeddings_layernorm.bias", [H]),
    ("transformer.h.0.input_layernorm.weight", [H]),
    ("transformer.h.0.input_layernorm.bias", [H]),
    ("transformer.h.0.self_attention.query_key_value.weight", [3 * H, H]),
    ("transformer.h.0.self_attention.query_key_value.bias", [3 * H]),
    ("transformer.h.0.self_attention.dense.weight", [H, H]),
    ("transformer.h.0.self_attention.dense.bias", [H]),
    ("transformer.h.0.post_attention_layernorm.weight", [H]),
    ("transformer.h.0.post_attention_layernorm.bias", [H]),
    ("transformer.h.0.mlp.dense_h_to_4h.weight", [F, H]),
    ("transformer.h.0.mlp.dense_h_to_4h.bias", [F]),
    ("transformer.h.0.mlp.dense_4h_to_h.weight", [H, F]),
    ("transformer.h.0.mlp.dense_4h_to_h.bias", [H]),
    ("transformer.ln_f.weight", [H]),
    ("transformer.ln_f.bias", [H]),
]

LLAMA = [
    ("model.embed_tokens.weight", [V, H]),
    ("model.layers.0.input_layernorm.weight", [H]),
    ("model.layers.0.self_attn.q_proj.weight", [H, H]),
    ("model.layers.0.self_attn.k_proj.weight", [KV, H]),
    ("model.layers.0.self_attn.v_proj.weight", [KV, H]),
    ("model.layers.0.self_attn.o_proj.weight", [H, H]),
    ("model.layers.0.post_attention_layernorm.weight", [H]),
    ("model.layers.0.mlp.gate_proj.weight", [F, H]),
    ("model.layers.0.mlp.up_proj.weight", [F, H]),
    ("model.layers.0.mlp.down_proj.weight", [H, F]),
    ("model.norm.weight", [H]),
    ("lm_head.weight", [V, H]),
]


class Values:
    """A fixed sequence of floats in (-0.5, 0.5)."""

    def __init__(self, seed=12345):
        self.state = seed

    def next(self):
        self.state = (self.state * 1103515245 + 12345) % (1 << 31)
        return self.state / (1 << 31) - 0.5


def numel(shape):
    return math.prod(shape)


def encode(values, dtype):
    if dtype == "F32":
        return struct.pack(f"<{len(values)}f", *values)
    if dtype == "F16":
        return struct.pack(f"<{len(values)}e", *values)
    if dtype == "F64":
        return struct.pack(f"<{len(values)}d", *values)
    if dtype == "BF16":
        words = struct.unpack(f"<{len(values)}I", struct.pack(f"<{len(values)}f", *values))
        return struct.pack(f"<{len(values)}H", *(w >> 16 for w in words))
    raise ValueError(dtype)


WIDTH = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "BOOL": 1, "U8": 1, "F8_E4M3": 1}


def tensors(spec, dtype="F32", seed=12345):
    """(name, dtype, shape, bytes) for every tensor of `spec`."""
    values = Values(seed)
    out = []
    for name, shape in spec:
        data = [values.next() for _ in range(numel(shape))]
        if name.endswith("norm.weight") or "ln_" in name and name.endswith(".weight"):
            data = [1.0 + v / 10 for v in data]
        out.append((name, dtype, shape, encode(data, dtype)))
    return out


def serialize(items, metadata=None, header_override=None):
    """The bytes of a safetensors file: u64 header length, JSON, data."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, data in items:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = header_override if header_override is not None else json.dumps(header, separators=(",", ":"))
    raw = text.encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(d for *_, d in items)


def replace(items, name, **changes):
    out = []
    for n, dtype, shape, data in items:
        if n == name:
            dtype = changes.get("dtype", dtype)
            shape = changes.get("shape", shape)
            data = changes.get("data", data)
            n = changes.get("rename", n)
        out.append((n, dtype, shape, data))
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    gpt2 = tensors(GPT2)
    seeds = {}

    # Valid checkpoints, one per family, and GPT-2 in the other float dtypes.
    seeds["valid_gpt2.safetensors"] = serialize(gpt2, {"format": "pt"})
    seeds["valid_bloom.safetensors"] = serialize(tensors(BLOOM), {"format": "pt"})
    seeds["valid_llama.safetensors"] = serialize(tensors(LLAMA), {"format": "pt"})
    for dtype in ["F16", "BF16", "F64"]:
        seeds[f"valid_gpt2_{dtype.lower()}.safetensors"] = serialize(tensors(GPT2, dtype))

    # Valid variations: no prefix, a tied LM head, ignored mask buffers, an
    # ignored rotary buffer.
    bare = [(n.removeprefix("transformer."), d, s, b) for n, d, s, b in gpt2]
    seeds["valid_gpt2_no_prefix.safetensors"] = serialize(bare)
    wte = gpt2[0]
    seeds["valid_gpt2_tied_head.safetensors"] = serialize(gpt2 + [("lm_head.weight",) + wte[1:]])
    mask = encode([1.0] * (P * P), "F32")
    seeds["valid_gpt2_mask_buffer.safetensors"] = serialize(
        gpt2 + [("transformer.h.0.attn.bias", "F32", [1, 1, P, P], mask)]
    )
    inv_freq = encode([1.0], "F32")
    seeds["valid_llama_inv_freq.safetensors"] = serialize(
        tensors(LLAMA) + [("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", [1], inv_freq)]
    )

    # Mismatches the loader must report: shapes, dtypes, values, names.
    c_attn = "transformer.h.0.attn.c_attn.weight"
    seeds["shape_transposed.safetensors"] = serialize(replace(gpt2, "transformer.wte.weight", shape=[H, V]))
    seeds["shape_not_divisible.safetensors"] = serialize(
        replace(gpt2, c_attn, shape=[H + 1, 3 * H - 1], data=encode([0.0] * ((H + 1) * (3 * H - 1)), "F32"))
    )
    seeds["shape_rank1_matrix.safetensors"] = serialize(replace(gpt2, c_attn, shape=[H * 3 * H]))
    seeds["shape_zero.safetensors"] = serialize(replace(gpt2, "transformer.ln_f.bias", shape=[0], data=b""))
    seeds["dtype_i64.safetensors"] = serialize(replace(gpt2, "transformer.wpe.weight", dtype="I64", shape=[P, H // 2]))
    seeds["dtype_bool.safetensors"] = serialize(replace(gpt2, "transformer.ln_f.bias", dtype="BOOL", shape=[16]))
    seeds["dtype_f8.safetensors"] = serialize(replace(gpt2, "transformer.ln_f.bias", dtype="F8_E4M3", shape=[16]))
    seeds["dtype_unknown.safetensors"] = serialize(replace(gpt2, "transformer.ln_f.bias", dtype="F12"))
    nan = struct.pack("<4f", float("nan"), float("inf"), float("-inf"), 0.0)
    seeds["values_nonfinite.safetensors"] = serialize(replace(gpt2, "transformer.h.0.ln_1.bias", data=nan))
    huge = struct.pack("<4f", 1e38, -1e38, 7e4, 1.0)
    seeds["values_beyond_f16.safetensors"] = serialize(replace(gpt2, "transformer.h.0.ln_2.bias", data=huge))
    other = tensors([("lm_head.weight", [V, H])], seed=99)
    seeds["untied_head.safetensors"] = serialize(gpt2 + other)
    seeds["missing_tensor.safetensors"] = serialize(gpt2[:-1])
    seeds["unexpected_tensor.safetensors"] = serialize(gpt2 + [("transformer.h.7.extra", "F32", [1], inv_freq)])
    seeds["mixed_families.safetensors"] = serialize(gpt2 + tensors(LLAMA)[:2])

    # Damaged files: header length, JSON, offsets.
    good = seeds["valid_gpt2.safetensors"]
    n = struct.unpack("<Q", good[:8])[0]
    seeds["empty.safetensors"] = b""
    seeds["truncated_length.safetensors"] = good[:5]
    seeds["truncated_header.safetensors"] = good[: 8 + n // 2]
    seeds["truncated_data.safetensors"] = good[: len(good) - 10]
    seeds["header_length_huge.safetensors"] = struct.pack("<Q", (1 << 63) + 5) + good[8:]
    seeds["header_length_past_end.safetensors"] = struct.pack("<Q", len(good)) + good[8:]
    seeds["header_not_json.safetensors"] = serialize([], header_override="{not json")
    seeds["header_not_object.safetensors"] = serialize([], header_override="[1, 2, 3]")
    seeds["header_bad_metadata.safetensors"] = serialize([], header_override='{"__metadata__": {"a": 1}}')
    seeds["header_duplicate_key.safetensors"] = serialize(
        [],
        header_override='{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
    ) + b"\0" * 8
    header = json.loads(good[8 : 8 + n])
    header["transformer.wte.weight"]["data_offsets"] = [0, 1 << 40]
    seeds["offsets_past_end.safetensors"] = serialize([], header_override=json.dumps(header)) + good[8 + n :]
    header = json.loads(good[8 : 8 + n])
    header["transformer.wpe.weight"]["data_offsets"] = [0, 64]
    seeds["offsets_overlap.safetensors"] = serialize([], header_override=json.dumps(header)) + good[8 + n :]
    header = json.loads(good[8 : 8 + n])
    header["transformer.wte.weight"]["shape"] = [1 << 62, 1 << 62]
    seeds["shape_overflow.safetensors"] = serialize([], header_override=json.dumps(header)) + good[8 + n :]
    header = json.loads(good[8 : 8 + n])
    header["transformer.wte.weight"]["shape"] = [1] * 40 + [32]
    seeds["shape_rank40.safetensors"] = serialize([], header_override=json.dumps(header)) + good[8 + n :]

    for old in OUT.glob("*.safetensors"):
        old.unlink()
    for name, data in sorted(seeds.items()):
        (OUT / name).write_bytes(data)
    print(f"wrote {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes, to {OUT}")


if __name__ == "__main__":
    main()
