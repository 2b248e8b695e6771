//! Lowering: a resolved [`Model`] → an IR [`Graph`].
//!
//! This stage sits between the front end (`crate::front`, spec → model) and
//! the passes and emitter (graph → ONNX). It writes out every building block
//! with elementary ops whose numerics follow Hugging Face Transformers: one
//! file per block (embeddings, attention, rotary, ALiBi, relative bias,
//! masks, feed-forward, norms, layers and stacks, pooling, heads). Shapes stay
//! symbolic: batch and sequence sizes come from the graph inputs at run time,
//! never from a constant. With an f16 model, norms, softmax, masks and pooling
//! compute in f32 between casts.
//!
//! # Graph inputs
//!
//! | input | type | when |
//! |---|---|---|
//! | `input_ids` | i64 `[batch, sequence]` | always |
//! | `attention_mask` | i64 `[batch, sequence]` | `inputs.attention_mask` |
//! | `token_type_ids` | i64 `[batch, sequence]` | `inputs.token_type_ids` and segment embeddings |
//! | `position_ids` | i64 `[batch, sequence]` | `inputs.position_ids`; else `0..sequence` |
//! | `decoder_input_ids` | i64 `[batch, decoder_sequence]` | encoder–decoder |
//!
//! The optional inputs belong to the stack fed by `input_ids` (the encoder of
//! an encoder–decoder). The decoder of an encoder–decoder uses positions
//! `0..decoder_sequence` and treats every decoder token as real; its
//! cross-attention masks padded encoder tokens.
//!
//! # Graph outputs
//!
//! Each head's [`crate::model::Head::output_names`]: a head with one output
//! is named after the head; question answering gives `start_logits` and
//! `end_logits` (prefixed `{head name}/` when there are other heads). A model without heads outputs
//! `last_hidden_state`.
//!
//! # Parameter names
//!
//! Linear weights are stored `[in, out]`. `{stack}` is `encoder` or `decoder`
//! (a decoder-only model has only `decoder`), `{i}` a layer index and
//! `{head}` a head name. Initialisation follows Hugging Face: matrices
//! normal(0, 0.02), biases zeros, norm weights ones, norm biases zeros.
//!
//! | name | shape | when |
//! |---|---|---|
//! | `embeddings.word_embeddings.weight` | `[vocab, hidden]` | always |
//! | `decoder.embed_tokens.weight` | `[vocab, hidden]` | encoder–decoder without shared embeddings |
//! | `embeddings.token_type_embeddings.weight` | `[type_vocab, hidden]` | segment embeddings |
//! | `embeddings.position_embeddings.weight` | `[max_positions, hidden]` | learned positions, one stack |
//! | `{stack}.embed_positions.weight` | `[max_positions, hidden]` | learned positions, encoder–decoder |
//! | `{stack}.embedding_norm.{weight,bias}` | `[hidden]` | `embedding_norm` |
//! | `{stack}.relative_attention_bias.weight` | `[num_buckets, heads]` | relative bias |
//! | `{stack}.layers.{i}.attention.{q,k,v}_proj.weight` | `[hidden, heads·d]` (k, v: `kv_heads·d`) | always |
//! | `{stack}.layers.{i}.attention.{q,k,v}_proj.bias` | `[heads·d]` (k, v: `kv_heads·d`) | `qkv_bias` |
//! | `{stack}.layers.{i}.attention.o_proj.weight` | `[heads·d, hidden]` | always |
//! | `{stack}.layers.{i}.attention.o_proj.bias` | `[hidden]` | `out_bias` |
//! | `{stack}.layers.{i}.attention_norm.{weight,bias}` | `[hidden]` | always |
//! | `{stack}.layers.{i}.cross_attention.…` | as `attention` | cross-attention |
//! | `{stack}.layers.{i}.cross_attention_norm.{weight,bias}` | `[hidden]` | cross-attention |
//! | `{stack}.layers.{i}.feed_forward.up_proj.{weight,bias}` | `[hidden, inter]`, `[inter]` | always (bias if `bias`) |
//! | `{stack}.layers.{i}.feed_forward.gate_proj.{weight,bias}` | `[hidden, inter]`, `[inter]` | gated activations |
//! | `{stack}.layers.{i}.feed_forward.down_proj.{weight,bias}` | `[inter, hidden]`, `[hidden]` | always (bias if `bias`) |
//! | `{stack}.layers.{i}.feed_forward_norm.{weight,bias}` | `[hidden]` | always |
//! | `{stack}.final_norm.{weight,bias}` | `[hidden]` | `final_norm` |
//! | `heads.{head}.pooler.dense.{weight,bias}` | `[hidden, hidden]`, `[hidden]` | classification with pooler |
//! | `heads.{head}.classifier.{weight,bias}` | `[hidden, labels]`, `[labels]` | sequence/token classification |
//! | `heads.{head}.qa_outputs.{weight,bias}` | `[hidden, 2]`, `[2]` | question answering |
//! | `lm_head.weight` | `[hidden, vocab]` | LM head, untied |
//! | `final_logits_bias` | `[vocab]` | LM head with bias |
//!
//! RMSNorm has a `weight` and no `bias`. A tied LM head multiplies by the
//! transposed token embedding of the top stack. Learned position tables have
//! exactly `max_position_embeddings` rows; the position offset is added to
//! the ids, so the table must include the offset rows.

mod alibi;
mod attention;
mod block;
mod builder;
mod cache;
mod embeddings;
mod feed_forward;
mod heads;
mod inputs;
mod linear;
mod mask;
mod norm;
mod pooling;
mod relative_bias;
mod rotary;
mod sinusoidal;

use crate::front::span::Span;
use crate::ir::{DType, Graph, IrError};
use crate::model::{FloatType, HeadKind, Model};

use block::Memory;
use builder::Builder;
use embeddings::EmbeddingTables;
use heads::Trunk;

pub use cache::{ROLE_DECODER, ROLE_ENCODER, ROLE_MODEL};
pub use inputs::{PAST_DECODER_SEQUENCE, PAST_SEQUENCE};

/// Errors from lowering a model.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// The model combines features that lowering does not implement.
    #[error("not supported: {what}")]
    Unsupported {
        /// What is not supported.
        what: String,
        /// The spec construct it comes from.
        span: Span,
    },
    /// Building the graph failed: a bug in lowering, with the node, op and shapes.
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// Choices that change which graphs lowering produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LowerOptions {
    /// Produce graphs that take and return a key/value cache (see the
    /// module docs and `docs/KV_CACHE.md`) instead of one full-sequence graph.
    pub kv_cache: bool,
}

/// Lowers `model` to one or more verified graphs, each with its role.
///
/// Without a cache: one graph, role [`ROLE_MODEL`], equal to [`lower`]'s.
/// With one: role [`ROLE_DECODER`] for a decoder-only model; roles
/// [`ROLE_ENCODER`] and [`ROLE_DECODER`], in that order, for an
/// encoder–decoder. An encoder-only model has no cached form and is
/// [`LowerError::Unsupported`].
pub fn lower_with(model: &Model, opts: &LowerOptions) -> Result<Vec<(String, Graph)>, LowerError> {
    if opts.kv_cache {
        cache::graphs(model)
    } else {
        Ok(vec![(ROLE_MODEL.to_string(), lower(model)?)])
    }
}

/// Lowers `model` to a verified IR graph.
pub fn lower(model: &Model) -> Result<Graph, LowerError> {
    let float = match model.dtype {
        FloatType::F32 => DType::F32,
        FloatType::F16 => DType::F16,
    };
    let mut b = Builder::new(&model.name, float);
    b.graph
        .metadata
        .push(("tfc.model".to_string(), model.name.clone()));
    b.graph.set_span(Some(model.span));
    check_heads(model)?;

    let trunk = trunk(&mut b, model)?;
    if model.heads.is_empty() {
        b.graph.set_output("last_hidden_state", trunk.hidden);
    }
    for head in &model.heads {
        let values = heads::head(&mut b, model, head, &trunk)?;
        let names = head.output_names(model.heads.len());
        for (name, value) in names.iter().zip(values) {
            b.graph.set_output(name, value);
        }
    }

    crate::ir::verify(&b.graph)?;
    Ok(b.graph)
}

/// Rejects head combinations that would need one parameter twice.
fn check_heads(model: &Model) -> Result<(), LowerError> {
    let mut language_models = model
        .heads
        .iter()
        .filter(|h| matches!(h.kind, HeadKind::LanguageModel { .. }));
    if let (Some(_), Some(second)) = (language_models.next(), language_models.next()) {
        return Err(LowerError::Unsupported {
            what: "more than one language-model head".to_string(),
            span: second.span,
        });
    }
    Ok(())
}

/// Inputs, embeddings and stacks: everything below the heads.
fn trunk(b: &mut Builder, model: &Model) -> Result<Trunk, LowerError> {
    let (vocab, hidden) = (model.vocab_size, model.hidden_size);
    let word = b.at_root("embeddings", |b| {
        Ok(b.matrix("word_embeddings.weight", vocab, hidden))
    })?;
    let primary = inputs::primary(b, model)?;
    let tables = |stack_name, word, single_stack, segments| EmbeddingTables {
        word,
        single_stack,
        segments,
        stack_name,
    };

    match (&model.encoder, &model.decoder) {
        (Some(encoder), Some(decoder)) => {
            let encoder_tables = tables("encoder", word, false, true);
            let encoded = block::stack(b, model, encoder, false, &primary, encoder_tables, None)?;
            let memory = Memory {
                hidden: encoded,
                mask: primary.mask,
            };

            let decoder_inputs = inputs::decoder(b, model)?;
            let decoder_word = if model.shared_embeddings {
                word
            } else {
                b.at_root("decoder", |b| {
                    Ok(b.matrix("embed_tokens.weight", vocab, hidden))
                })?
            };
            let decoder_tables = tables("decoder", decoder_word, false, false);
            let hidden = block::stack(
                b,
                model,
                decoder,
                true,
                &decoder_inputs,
                decoder_tables,
                Some(memory),
            )?;
            Ok(Trunk {
                hidden,
                mask: None,
                range: decoder_inputs.range,
                word: decoder_word,
            })
        }
        (Some(stack), None) | (None, Some(stack)) => {
            let causal = model.decoder.is_some();
            let name = if causal { "decoder" } else { "encoder" };
            let stack_tables = tables(name, word, true, true);
            let hidden = block::stack(b, model, stack, causal, &primary, stack_tables, None)?;
            Ok(Trunk {
                hidden,
                mask: primary.mask,
                range: primary.range,
                word,
            })
        }
        (None, None) => Err(LowerError::Unsupported {
            what: "a model with neither an encoder nor a decoder".to_string(),
            span: model.span,
        }),
    }
}
