//! Graphs with a key/value cache, for token-by-token generation.
//!
//! A decoder-only model becomes one graph (role `decoder`) used for the
//! prompt (an empty past) and for every later step; an encoder–decoder
//! becomes an `encoder` graph, which also computes every decoder layer's
//! cross-attention keys and values once, and a `decoder` graph that reads
//! them. Parameter names are those of the graph without a cache, so one
//! checkpoint fills each graph. `docs/KV_CACHE.md` states the contract: input
//! and output names, shapes and how to drive a step.

use crate::ir::{DType, Dim, Graph, Op, Value};
use crate::model::{FloatType, HeadKind, Model, Stack};

use super::attention::project_kv;
use super::block::{self, StackCache};
use super::builder::Builder;
use super::embeddings::EmbeddingTables;
use super::heads::{self, Trunk};
use super::inputs::{self, CacheShape, StackInputs, PAST_DECODER_SEQUENCE};
use super::LowerError;

/// Role of the graph of a model without a cache.
pub const ROLE_MODEL: &str = "model";
/// Role of the graph that runs the encoder of an encoder–decoder.
pub const ROLE_ENCODER: &str = "encoder";
/// Role of the graph that runs one decoding step.
pub const ROLE_DECODER: &str = "decoder";

/// The cached graphs of `model`, each with its role, verified.
pub fn graphs(model: &Model) -> Result<Vec<(String, Graph)>, LowerError> {
    super::check_heads(model)?;
    let graphs = match (&model.encoder, &model.decoder) {
        (None, Some(decoder)) => vec![(ROLE_DECODER, decoder_only(model, decoder)?)],
        (Some(encoder), Some(decoder)) => vec![
            (ROLE_ENCODER, encoder_graph(model, encoder, decoder)?),
            (ROLE_DECODER, decoder_graph(model, decoder)?),
        ],
        (Some(_), None) | (None, None) => {
            return Err(LowerError::Unsupported {
                what: "a key/value cache for a model without a decoder".to_string(),
                span: model.span,
            })
        }
    };
    graphs
        .into_iter()
        .map(|(role, g)| {
            crate::ir::verify(&g)?;
            Ok((role.to_string(), g))
        })
        .collect()
}

/// An empty graph named after the model, tagged with its role.
fn builder(model: &Model, role: &str) -> Builder {
    let float = match model.dtype {
        FloatType::F32 => DType::F32,
        FloatType::F16 => DType::F16,
    };
    let mut b = Builder::new(&model.name, float);
    b.graph
        .metadata
        .push(("tfc.model".to_string(), model.name.clone()));
    b.graph
        .metadata
        .push(("tfc.role".to_string(), role.to_string()));
    b.graph.set_span(Some(model.span));
    b
}

/// The token embedding `embeddings.word_embeddings.weight`.
fn word_embeddings(b: &mut Builder, model: &Model) -> Result<Value, LowerError> {
    let (vocab, hidden) = (model.vocab_size, model.hidden_size);
    b.at_root("embeddings", |b| {
        Ok(b.matrix("word_embeddings.weight", vocab, hidden))
    })
}

/// The shape of a stack's cached self-attention keys and values.
fn self_cache(stack: &Stack) -> CacheShape {
    CacheShape {
        kv_heads: stack.attention.kv_heads,
        head_dim: stack.attention.head_dim,
    }
}

/// The decoder-only step graph.
fn decoder_only(model: &Model, decoder: &Stack) -> Result<Graph, LowerError> {
    let mut b = builder(model, ROLE_DECODER);
    let word = word_embeddings(&mut b, model)?;
    let (inputs, past) =
        inputs::cached_primary(&mut b, model, decoder.layers, self_cache(decoder))?;
    let tables = EmbeddingTables {
        word,
        single_stack: true,
        segments: true,
        stack_name: ROLE_DECODER,
    };
    let cache = StackCache {
        past,
        ..StackCache::default()
    };
    let out = block::cached_stack(&mut b, model, decoder, true, &inputs, tables, &cache)?;

    // Heads that pool read the mask of the new tokens only.
    let mask = match inputs.mask {
        Some(mask) if model.heads.iter().any(pools) => {
            Some(b.op(Op::Gather { axis: 1 }, &[mask, inputs.queries])?)
        }
        _ => None,
    };
    let trunk = Trunk {
        hidden: out.hidden,
        mask,
        range: inputs.range,
        word,
    };
    outputs(&mut b, model, &trunk)?;
    for (i, (key, value)) in out.present.into_iter().enumerate() {
        b.graph.set_output(&format!("present.{i}.key"), key);
        b.graph.set_output(&format!("present.{i}.value"), value);
    }
    Ok(b.graph)
}

/// Whether a head pools over the sequence (and so reads the mask).
fn pools(head: &crate::model::Head) -> bool {
    matches!(
        head.kind,
        HeadKind::Embedding { .. } | HeadKind::SequenceClassification { .. }
    )
}

/// The heads' outputs, or `last_hidden_state` without heads.
fn outputs(b: &mut Builder, model: &Model, trunk: &Trunk) -> Result<(), LowerError> {
    if model.heads.is_empty() {
        b.graph.set_output("last_hidden_state", trunk.hidden);
    }
    for head in &model.heads {
        let values = heads::head(b, model, head, trunk)?;
        let names = head.output_names(model.heads.len());
        for (name, value) in names.iter().zip(values) {
            b.graph.set_output(name, value);
        }
    }
    Ok(())
}

/// The encoder graph: the encoder stack, its output, and every decoder
/// layer's cross-attention keys and values.
fn encoder_graph(model: &Model, encoder: &Stack, decoder: &Stack) -> Result<Graph, LowerError> {
    let mut b = builder(model, ROLE_ENCODER);
    let word = word_embeddings(&mut b, model)?;
    let mut with_mask = model.clone();
    with_mask.inputs.attention_mask = true;
    let primary = inputs::primary(&mut b, &with_mask)?;
    let tables = EmbeddingTables {
        word,
        single_stack: false,
        segments: true,
        stack_name: ROLE_ENCODER,
    };
    let encoded = block::stack(&mut b, model, encoder, false, &primary, tables, None)?;
    b.graph.set_output("last_hidden_state", encoded);

    let Some(cross) = &decoder.cross_attention else {
        return Ok(b.graph);
    };
    b.graph.set_span(Some(decoder.span));
    let hidden = model.hidden_size;
    for i in 0..decoder.layers {
        let (key, value) = b.at_root(ROLE_DECODER, |b| {
            b.scoped(format!("layers.{i}"), |b| {
                project_kv(b, "cross_attention", cross, hidden, encoded)
            })
        })?;
        b.graph.set_output(&format!("present.{i}.encoder.key"), key);
        b.graph
            .set_output(&format!("present.{i}.encoder.value"), value);
    }
    Ok(b.graph)
}

/// The decoder step graph of an encoder–decoder.
fn decoder_graph(model: &Model, decoder: &Stack) -> Result<Graph, LowerError> {
    let mut b = builder(model, ROLE_DECODER);
    let batch = Dim::sym(&model.dims.batch);
    let sequence = Dim::sym(&model.dims.sequence);
    let decoder_sequence = Dim::sym(&model.dims.decoder_sequence);
    let ids_shape = vec![batch.clone(), decoder_sequence];
    let ids = b.graph.input("decoder_input_ids", DType::I64, ids_shape);
    let mask_shape = vec![batch, sequence.clone()];
    let encoder_mask = b
        .graph
        .input("encoder_attention_mask", DType::I64, mask_shape);

    let past_length = Dim::sym(PAST_DECODER_SEQUENCE);
    let mut cache = StackCache {
        cross_mask: Some(encoder_mask),
        ..StackCache::default()
    };
    for i in 0..decoder.layers {
        let own = format!("past_key_values.{i}.decoder");
        let pair = inputs::past_pair(&mut b, model, &own, self_cache(decoder), &past_length);
        cache.past.push(pair);
        if let Some(cross) = &decoder.cross_attention {
            let shape = CacheShape {
                kv_heads: cross.kv_heads,
                head_dim: cross.head_dim,
            };
            let theirs = format!("past_key_values.{i}.encoder");
            cache
                .cross
                .push(inputs::past_pair(&mut b, model, &theirs, shape, &sequence));
        }
    }

    let word = if model.shared_embeddings {
        word_embeddings(&mut b, model)?
    } else {
        let (vocab, hidden) = (model.vocab_size, model.hidden_size);
        b.at_root(ROLE_DECODER, |b| {
            Ok(b.matrix("embed_tokens.weight", vocab, hidden))
        })?
    };
    let first_past = cache.past.first().map(|p| p.0);
    let inputs: StackInputs = inputs::cached_decoder(&mut b, ids, first_past)?;
    let tables = EmbeddingTables {
        word,
        single_stack: false,
        segments: false,
        stack_name: ROLE_DECODER,
    };
    let out = block::cached_stack(&mut b, model, decoder, true, &inputs, tables, &cache)?;
    let trunk = Trunk {
        hidden: out.hidden,
        mask: None,
        range: inputs.range,
        word,
    };
    outputs(&mut b, model, &trunk)?;
    for (i, (key, value)) in out.present.into_iter().enumerate() {
        b.graph.set_output(&format!("present.{i}.decoder.key"), key);
        b.graph
            .set_output(&format!("present.{i}.decoder.value"), value);
    }
    Ok(b.graph)
}
