//! Tiny hand-built models shared by the lowering tests, and helpers to read
//! graph outputs.

#![allow(dead_code)]

use tfc::front::span::Span;
use tfc::ir::{DType, Dim, Graph, Shape};
use tfc::model::*;

/// Default dimension names.
pub fn dims() -> DimNames {
    DimNames {
        batch: "batch".into(),
        sequence: "sequence".into(),
        decoder_sequence: "decoder_sequence".into(),
    }
}

/// `[batch, sequence, ...rest]`.
pub fn seq_shape(rest: &[i64]) -> Shape {
    let mut s = vec![Dim::sym("batch"), Dim::sym("sequence")];
    s.extend(rest.iter().map(|d| Dim::c(*d)));
    s
}

/// `[batch, ...rest]`.
pub fn batch_shape(rest: &[i64]) -> Shape {
    let mut s = vec![Dim::sym("batch")];
    s.extend(rest.iter().map(|d| Dim::c(*d)));
    s
}

/// The type (dtype, shape) of the graph output `name`.
pub fn output(graph: &Graph, name: &str) -> (DType, Shape) {
    let (_, v) = graph
        .outputs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no output {name}"));
    let t = graph.ty(*v);
    (t.dtype, t.shape.clone())
}

/// Names of the graph outputs in order.
pub fn output_names(graph: &Graph) -> Vec<String> {
    graph.outputs.iter().map(|(n, _)| n.clone()).collect()
}

/// Whether the graph has a parameter called `name`.
pub fn has_weight(graph: &Graph, name: &str) -> bool {
    graph.weights().iter().any(|n| graph.g[*n].name == name)
}

pub fn head(name: &str, kind: HeadKind) -> Head {
    Head {
        name: name.into(),
        span: Span::default(),
        kind,
    }
}

pub fn layer_norm() -> Norm {
    Norm {
        kind: NormKind::LayerNorm,
        eps: 1e-12,
    }
}

pub fn rms_norm() -> Norm {
    Norm {
        kind: NormKind::RmsNorm,
        eps: 1e-6,
    }
}

// Sizes of the tiny BERT-like encoder.
pub const V: u64 = 50;
pub const H: u64 = 16;
pub const HEADS: u64 = 4;
pub const D: u64 = 4;
pub const I: u64 = 32;
pub const L: u64 = 2;
pub const P: u64 = 32;
pub const T: u64 = 2;

/// A BERT-like stack: post-norm LayerNorm, GELU, biases, learned positions.
pub fn bert_stack() -> Stack {
    Stack {
        span: Span::default(),
        layers: L,
        attention: Attention {
            heads: HEADS,
            kv_heads: HEADS,
            head_dim: D,
            qkv_bias: true,
            out_bias: true,
            scale: None,
        },
        cross_attention: None,
        feed_forward: FeedForward {
            intermediate_size: I,
            activation: Activation::Gelu,
            bias: true,
        },
        norm: layer_norm(),
        norm_position: NormPosition::Post,
        parallel_residual: false,
        final_norm: None,
        position: Position::Learned {
            max_position_embeddings: P,
            offset: 0,
        },
        embedding_norm: Some(layer_norm()),
    }
}

/// A tiny BERT-like encoder with the given heads.
pub fn bert(heads: Vec<Head>) -> Model {
    Model {
        name: "tiny_bert".into(),
        span: Span::default(),
        vocab_size: V,
        hidden_size: H,
        dtype: FloatType::F32,
        pad_token_id: Some(0),
        bos_token_id: None,
        eos_token_id: None,
        decoder_start_token_id: None,
        embeddings: Embeddings {
            type_vocab_size: Some(T),
            scale: None,
        },
        encoder: Some(bert_stack()),
        decoder: None,
        shared_embeddings: false,
        tie_word_embeddings: false,
        heads,
        dims: dims(),
        inputs: InputSet {
            attention_mask: true,
            token_type_ids: true,
            position_ids: false,
        },
    }
}

/// The closed-form parameter count of [`bert`] without heads.
pub fn bert_parameters() -> u64 {
    let embeddings = V * H + P * H + T * H + 2 * H;
    let attention = 4 * (H * H + H) + 2 * H;
    let ffn = (H * I + I) + (I * H + H) + 2 * H;
    embeddings + L * (attention + ffn)
}

/// A LLaMA-like decoder: GQA (4 query heads, 2 key/value heads), full rotary,
/// pre-norm RMSNorm, SwiGLU, no biases, untied LM head.
pub fn llama() -> Model {
    let stack = Stack {
        span: Span::default(),
        layers: L,
        attention: Attention {
            heads: 4,
            kv_heads: 2,
            head_dim: 4,
            qkv_bias: false,
            out_bias: false,
            scale: None,
        },
        cross_attention: None,
        feed_forward: FeedForward {
            intermediate_size: I,
            activation: Activation::SwiGlu,
            bias: false,
        },
        norm: rms_norm(),
        norm_position: NormPosition::Pre,
        parallel_residual: false,
        final_norm: Some(rms_norm()),
        position: Position::Rotary(Rotary {
            theta: 10000.0,
            dim: 4,
            layout: RotaryLayout::RotateHalf,
        }),
        embedding_norm: None,
    };
    Model {
        name: "tiny_llama".into(),
        span: Span::default(),
        vocab_size: V,
        hidden_size: H,
        dtype: FloatType::F32,
        pad_token_id: None,
        bos_token_id: None,
        eos_token_id: None,
        decoder_start_token_id: None,
        embeddings: Embeddings {
            type_vocab_size: None,
            scale: None,
        },
        encoder: None,
        decoder: Some(stack),
        shared_embeddings: false,
        tie_word_embeddings: false,
        heads: vec![head(
            "logits",
            HeadKind::LanguageModel {
                bias: false,
                scale: None,
            },
        )],
        dims: dims(),
        inputs: InputSet {
            attention_mask: true,
            token_type_ids: false,
            position_ids: false,
        },
    }
}

/// The closed-form parameter count of [`llama`].
pub fn llama_parameters() -> u64 {
    let (kv_width, q_width) = (2 * 4, 4 * 4);
    let attention = H * q_width + 2 * H * kv_width + q_width * H + H;
    let ffn = 3 * H * I + H;
    V * H + L * (attention + ffn) + H + H * V
}

/// A T5-like encoder–decoder: relative bias, RMSNorm pre-norm, ReLU, no
/// biases, attention scale 1, inner attention width (2 × 8) above d_model 12,
/// shared embeddings and a tied LM head scaled by d_model^-0.5.
pub fn t5() -> Model {
    let d_model = 12;
    let attention = Attention {
        heads: 2,
        kv_heads: 2,
        head_dim: 8,
        qkv_bias: false,
        out_bias: false,
        scale: Some(1.0),
    };
    let stack = |cross: bool| Stack {
        span: Span::default(),
        layers: L,
        attention: attention.clone(),
        cross_attention: cross.then(|| attention.clone()),
        feed_forward: FeedForward {
            intermediate_size: I,
            activation: Activation::Relu,
            bias: false,
        },
        norm: rms_norm(),
        norm_position: NormPosition::Pre,
        parallel_residual: false,
        final_norm: Some(rms_norm()),
        position: Position::RelativeBias {
            num_buckets: 32,
            max_distance: 128,
        },
        embedding_norm: None,
    };
    Model {
        name: "tiny_t5".into(),
        span: Span::default(),
        vocab_size: V,
        hidden_size: d_model,
        dtype: FloatType::F32,
        pad_token_id: Some(0),
        bos_token_id: None,
        eos_token_id: None,
        decoder_start_token_id: None,
        embeddings: Embeddings {
            type_vocab_size: None,
            scale: None,
        },
        encoder: Some(stack(false)),
        decoder: Some(stack(true)),
        shared_embeddings: true,
        tie_word_embeddings: true,
        heads: vec![head(
            "logits",
            HeadKind::LanguageModel {
                bias: false,
                scale: Some((d_model as f64).powf(-0.5)),
            },
        )],
        dims: dims(),
        inputs: InputSet {
            attention_mask: true,
            token_type_ids: false,
            position_ids: false,
        },
    }
}

/// The closed-form parameter count of [`t5`].
pub fn t5_parameters() -> u64 {
    let (d, inner, buckets, heads) = (12, 16, 32, 2);
    let attention = 4 * d * inner + d;
    let ffn = 2 * d * I + d;
    let encoder = buckets * heads + L * (attention + ffn) + d;
    let decoder = buckets * heads + L * (2 * attention + ffn) + d;
    V * d + encoder + decoder
}

/// A BLOOM-like decoder: ALiBi, embedding LayerNorm, pre-norm, GELU (tanh),
/// biases, 6 heads (not a power of two), tied LM head.
pub fn bloom() -> Model {
    let hidden = 24;
    let stack = Stack {
        span: Span::default(),
        layers: L,
        attention: Attention {
            heads: 6,
            kv_heads: 6,
            head_dim: 4,
            qkv_bias: true,
            out_bias: true,
            scale: None,
        },
        cross_attention: None,
        feed_forward: FeedForward {
            intermediate_size: 4 * hidden,
            activation: Activation::GeluTanh,
            bias: true,
        },
        norm: layer_norm(),
        norm_position: NormPosition::Pre,
        parallel_residual: false,
        final_norm: Some(layer_norm()),
        position: Position::Alibi,
        embedding_norm: Some(layer_norm()),
    };
    Model {
        name: "tiny_bloom".into(),
        span: Span::default(),
        vocab_size: V,
        hidden_size: hidden,
        dtype: FloatType::F32,
        pad_token_id: Some(3),
        bos_token_id: None,
        eos_token_id: None,
        decoder_start_token_id: None,
        embeddings: Embeddings {
            type_vocab_size: None,
            scale: None,
        },
        encoder: None,
        decoder: Some(stack),
        shared_embeddings: false,
        tie_word_embeddings: true,
        heads: vec![head(
            "logits",
            HeadKind::LanguageModel {
                bias: false,
                scale: None,
            },
        )],
        dims: dims(),
        inputs: InputSet {
            attention_mask: true,
            token_type_ids: false,
            position_ids: false,
        },
    }
}

/// The closed-form parameter count of [`bloom`].
pub fn bloom_parameters() -> u64 {
    let h = 24;
    let i = 4 * h;
    let attention = 4 * (h * h + h) + 2 * h;
    let ffn = (h * i + i) + (i * h + h) + 2 * h;
    V * h + 2 * h + L * (attention + ffn) + 2 * h
}

/// A Marian-like encoder–decoder: sinusoidal (halves) positions, √d scaled
/// embeddings, post-norm, SiLU, untied decoder embeddings, LM head with
/// `final_logits_bias`.
pub fn marian() -> Model {
    let attention = Attention {
        heads: HEADS,
        kv_heads: HEADS,
        head_dim: D,
        qkv_bias: true,
        out_bias: true,
        scale: None,
    };
    let stack = |cross: bool| Stack {
        span: Span::default(),
        layers: 1,
        attention: attention.clone(),
        cross_attention: cross.then(|| attention.clone()),
        feed_forward: FeedForward {
            intermediate_size: I,
            activation: Activation::Silu,
            bias: true,
        },
        norm: layer_norm(),
        norm_position: NormPosition::Post,
        parallel_residual: false,
        final_norm: None,
        position: Position::Sinusoidal {
            max_position_embeddings: P,
            layout: SinusoidalLayout::Halves,
        },
        embedding_norm: None,
    };
    Model {
        name: "tiny_marian".into(),
        span: Span::default(),
        vocab_size: V,
        hidden_size: H,
        dtype: FloatType::F32,
        pad_token_id: Some(0),
        bos_token_id: None,
        eos_token_id: None,
        decoder_start_token_id: None,
        embeddings: Embeddings {
            type_vocab_size: None,
            scale: Some((H as f64).sqrt()),
        },
        encoder: Some(stack(false)),
        decoder: Some(stack(true)),
        shared_embeddings: false,
        tie_word_embeddings: false,
        heads: vec![head(
            "logits",
            HeadKind::LanguageModel {
                bias: true,
                scale: None,
            },
        )],
        dims: dims(),
        inputs: InputSet {
            attention_mask: true,
            token_type_ids: false,
            position_ids: false,
        },
    }
}

/// The closed-form parameter count of [`marian`].
pub fn marian_parameters() -> u64 {
    let attention = 4 * (H * H + H) + 2 * H;
    let ffn = (H * I + I) + (I * H + H) + 2 * H;
    let encoder = attention + ffn;
    let decoder = 2 * attention + ffn;
    2 * V * H + encoder + decoder + H * V + V
}

/// A GPT-J-like decoder: interleaved partial rotary (8 of 16 head dims),
/// parallel residual, position ids as an input, learned-free, untied head.
pub fn gptj() -> Model {
    let mut m = llama();
    m.name = "tiny_gptj".into();
    let stack = m.decoder.as_mut().expect("llama has a decoder");
    stack.attention = Attention {
        heads: 2,
        kv_heads: 2,
        head_dim: 8,
        qkv_bias: false,
        out_bias: false,
        scale: None,
    };
    stack.position = Position::Rotary(Rotary {
        theta: 10000.0,
        dim: 4,
        layout: RotaryLayout::Interleaved,
    });
    stack.parallel_residual = true;
    stack.norm = layer_norm();
    stack.final_norm = Some(layer_norm());
    stack.feed_forward.activation = Activation::GeluTanh;
    stack.feed_forward.bias = true;
    m.inputs.position_ids = true;
    m
}

/// The closed-form parameter count of [`gptj`].
pub fn gptj_parameters() -> u64 {
    let attention = 4 * H * H + 2 * H;
    let ffn = (H * I + I) + (I * H + H) + 2 * H;
    V * H + L * (attention + ffn) + 2 * H + H * V
}
