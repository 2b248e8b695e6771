//! The schema: reads a merged model body into a checked [`Model`].
//!
//! This is where keys get their meaning, defaults are filled in and the
//! cross-field rules are enforced (heads divide the width, key/value heads
//! divide heads, a rotary dimension fits a head, cross-attention needs an
//! encoder). Every problem is reported and reading goes on, so one run shows
//! all the errors of a model.

use super::ast::{Block, Ident};
use super::diag::{codes, Diagnostic};
use super::eval::{Evaluator, Lets, Reported};
use super::reader::{Reader, EMPTY_BLOCK, MAX_LAYERS, MAX_PARAMETERS, MAX_SIZE};
use super::span::Span;
use crate::model::*;

const MODEL_KEYS: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "dtype",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "decoder_start_token_id",
    "tie_word_embeddings",
    "shared_embeddings",
    "inputs",
    "dims",
    "embeddings",
    "encoder",
    "decoder",
    "heads",
];
const EMBEDDING_KEYS: &[&str] = &["type_vocab_size", "scale", "position", "norm"];
const STACK_KEYS: &[&str] = &[
    "layers",
    "attention",
    "cross_attention",
    "feed_forward",
    "norm",
    "final_norm",
    "parallel_residual",
    "position",
    "embedding_norm",
];
const ATTENTION_KEYS: &[&str] = &[
    "heads", "kv_heads", "head_dim", "bias", "qkv_bias", "out_bias", "scale",
];
const FEED_FORWARD_KEYS: &[&str] = &["intermediate_size", "activation", "bias"];
const INPUT_KEYS: &[&str] = &["attention_mask", "token_type_ids", "position_ids"];
const DIM_KEYS: &[&str] = &["batch", "sequence", "decoder_sequence"];

const POSITIONS: &[&str] = &[
    "none",
    "learned",
    "sinusoidal",
    "rotary",
    "alibi",
    "relative_bias",
];
const NORMS: &[&str] = &["layer_norm", "rms_norm"];
const NORMS_OR_NONE: &[&str] = &["layer_norm", "rms_norm", "none"];
const HEAD_KINDS: &[&str] = &[
    "hidden",
    "embedding",
    "sequence_classification",
    "token_classification",
    "question_answering",
    "language_model",
];

const ACTIVATIONS: &[(&str, Activation)] = &[
    ("relu", Activation::Relu),
    ("gelu", Activation::Gelu),
    ("gelu_tanh", Activation::GeluTanh),
    ("silu", Activation::Silu),
    ("swiglu", Activation::SwiGlu),
    ("geglu", Activation::GeGlu),
];
const POOLINGS: &[(&str, Pooling)] = &[
    ("cls", Pooling::Cls),
    ("mean", Pooling::Mean),
    ("last", Pooling::Last),
    ("max", Pooling::Max),
];
const NORM_POSITIONS: &[(&str, NormPosition)] =
    &[("pre", NormPosition::Pre), ("post", NormPosition::Post)];

/// Reads the merged body of model `name` into a [`Model`], or reports why not.
pub fn build_model(
    name: &Ident,
    body: &Block,
    lets: &Lets,
    diags: &mut Vec<Diagnostic>,
) -> Option<Model> {
    let before = diags.len();
    let mut ev = Evaluator::new(lets, diags);
    let model = read_model(&mut ev, name, body);
    match model {
        Ok(m) if diags.len() == before => Some(m),
        _ => None,
    }
}

/// Everything read at the model level that the stacks need.
struct Trunk {
    hidden: Option<u64>,
    hidden_span: Span,
}

fn read_model(ev: &mut Evaluator<'_>, name: &Ident, body: &Block) -> Result<Model, Reported> {
    let m = Reader::root(ev, body, &name.name, name.span, MODEL_KEYS);

    // Scalars of the model.
    let vocab = m.size(ev, "vocab_size", None, MAX_SIZE);
    let hidden = m.size(ev, "hidden_size", None, MAX_SIZE);
    let dtypes = [("fp32", FloatType::F32), ("fp16", FloatType::F16)];
    let dtype = m.enumeration(ev, "dtype", &dtypes, Some(FloatType::F32), "dtype");
    let pad = m.index(ev, "pad_token_id");
    let bos = m.index(ev, "bos_token_id");
    let eos = m.index(ev, "eos_token_id");
    let start = m.index(ev, "decoder_start_token_id");
    let tie = m.bool(ev, "tie_word_embeddings", false);
    let trunk = Trunk {
        hidden: hidden.ok(),
        hidden_span: m.value_span("hidden_size"),
    };
    if let (Ok(v), Ok(h)) = (&vocab, &hidden) {
        let span = m.value_span("vocab_size");
        check_product(ev, "the token embedding", &[*v, *h], span);
    }

    // Embeddings and the two stacks.
    let emb = match m.sub_block(ev, "embeddings") {
        Ok(Some(b)) => {
            let anchor = key_span(&m, "embeddings");
            Ok(Some(m.child(ev, b, "embeddings", anchor, EMBEDDING_KEYS)))
        }
        Ok(None) => Ok(None),
        Err(r) => Err(r),
    };
    let emb_reader = emb.as_ref().ok().and_then(Option::as_ref);
    let type_vocab = match emb_reader {
        Some(e) => e.opt_size(ev, "type_vocab_size", MAX_SIZE),
        None => Ok(None),
    };
    let emb_scale = match emb_reader {
        Some(e) => e.positive_float(ev, "scale"),
        None => Ok(None),
    };
    let encoder = read_stack(ev, &m, emb_reader, "encoder", &trunk, false);
    let decoder = read_stack(ev, &m, emb_reader, "decoder", &trunk, true);

    // Heads, inputs and dimension names.
    let heads = read_heads(ev, &m, name);
    let inputs = read_inputs(ev, &m, type_vocab.as_ref().ok().map(Option::is_some));
    let dims = read_dims(ev, &m);

    // Rules that involve several parts.
    let (encoder, decoder) = (encoder?, decoder?);
    let both = encoder.is_some() && decoder.is_some();
    let shared = m.bool(ev, "shared_embeddings", both);
    check_stacks(ev, &m, name, encoder.as_ref(), decoder.as_ref())?;
    let vocab = vocab?;
    let (pad, bos, eos, start) = (pad?, bos?, eos?, start?);
    let special = [
        ("pad_token_id", pad),
        ("bos_token_id", bos),
        ("eos_token_id", eos),
        ("decoder_start_token_id", start),
    ];
    let mut out_of_range = false;
    for (key, id) in special {
        let Some(p) = id else { continue };
        if p >= vocab {
            let msg = format!("`{key}` {p} is outside the vocabulary of {vocab} tokens");
            let d = Diagnostic::error(
                codes::TOKEN_OUT_OF_RANGE,
                msg,
                m.value_span(key),
                "not a valid token id",
            )
            .with_help(format!("token ids run from 0 to {}", vocab - 1));
            ev.report(d);
            out_of_range = true;
        }
    }
    if out_of_range {
        return Err(Reported);
    }

    let model = Model {
        name: name.name.clone(),
        span: name.span,
        vocab_size: vocab,
        hidden_size: hidden?,
        dtype: dtype?,
        pad_token_id: pad,
        bos_token_id: bos,
        eos_token_id: eos,
        decoder_start_token_id: start,
        embeddings: Embeddings {
            type_vocab_size: type_vocab?,
            scale: emb_scale?,
        },
        encoder,
        decoder,
        shared_embeddings: shared?,
        tie_word_embeddings: tie?,
        heads: heads?,
        dims: dims?,
        inputs: inputs?,
    };
    check_parameters(ev, &model)?;
    Ok(model)
}

/// A lower bound on the parameter count (embeddings, the LM head and the
/// projections of every layer; norms, biases and small heads left out) and
/// the element count of the largest of those matrices.
fn parameter_floor(m: &Model) -> (u128, u128) {
    let h = u128::from(m.hidden_size);
    let mut largest = 0u128;
    let mut matrix = |rows: u128, cols: u128| {
        largest = largest.max(rows * cols);
        rows * cols
    };
    let embedding = matrix(u128::from(m.vocab_size), h);
    let untied_lm_head = m
        .heads
        .iter()
        .any(|hd| matches!(hd.kind, HeadKind::LanguageModel { .. }))
        && !m.tie_word_embeddings;
    let mut total = if untied_lm_head {
        2 * embedding
    } else {
        embedding
    };
    for s in m.encoder.iter().chain(m.decoder.iter()) {
        let mut layer = 0;
        for a in std::iter::once(&s.attention).chain(s.cross_attention.as_ref()) {
            let d = u128::from(a.head_dim);
            let (q, kv) = (u128::from(a.heads) * d, u128::from(a.kv_heads) * d);
            layer += 2 * matrix(h, q) + 2 * matrix(h, kv);
        }
        let ff = &s.feed_forward;
        let projections = if ff.activation.is_gated() { 3 } else { 2 };
        layer += projections * matrix(h, u128::from(ff.intermediate_size));
        total += u128::from(s.layers) * layer;
    }
    (total, largest)
}

/// Reports a model with more than [`MAX_PARAMETERS`] parameters in all
/// whose weights are each within [`MAX_SIZE`] (an oversized weight has been
/// reported already).
fn check_parameters(ev: &mut Evaluator<'_>, m: &Model) -> Result<(), Reported> {
    let (count, largest) = parameter_floor(m);
    if count <= u128::from(MAX_PARAMETERS) || largest > u128::from(MAX_SIZE) {
        return Ok(());
    }
    let msg = format!(
        "model `{}` is too large: at least {count} parameters",
        m.name
    );
    let label = format!("more than {MAX_PARAMETERS} parameters in all");
    let d = Diagnostic::error(codes::TOO_LARGE, msg, m.span, label).with_help(
        "a model may have at most 2^40 parameters; reduce `layers`, `hidden_size` or \
         `intermediate_size`",
    );
    Err(ev.report(d))
}

fn key_span(r: &Reader<'_>, key: &str) -> Span {
    r.entry(key).map_or(r.anchor, |e| e.key.span)
}

/// Reports a weight matrix whose element count exceeds [`MAX_SIZE`].
fn check_product(ev: &mut Evaluator<'_>, what: &str, factors: &[u64], span: Span) -> bool {
    let product = factors
        .iter()
        .try_fold(1u128, |acc, f| acc.checked_mul(u128::from(*f)));
    match product {
        Some(p) if p <= u128::from(MAX_SIZE) => true,
        _ => {
            let shape: Vec<String> = factors.iter().map(u64::to_string).collect();
            let msg = format!("{what} is too large: [{}]", shape.join(", "));
            let label = format!("more than {MAX_SIZE} elements");
            let d = Diagnostic::error(codes::TOO_LARGE, msg, span, label)
                .with_help("no single weight may hold more than 2^40 elements");
            ev.report(d);
            false
        }
    }
}

fn check_stacks(
    ev: &mut Evaluator<'_>,
    m: &Reader<'_>,
    name: &Ident,
    encoder: Option<&Stack>,
    decoder: Option<&Stack>,
) -> Result<(), Reported> {
    match (encoder, decoder) {
        (None, None) => {
            let msg = format!("model `{}` has neither an encoder nor a decoder", name.name);
            let d = Diagnostic::error(codes::NO_STACK, msg, name.span, "no layers").with_help(
                "add an `encoder { ... }` (bidirectional) or a `decoder { ... }` (causal) block",
            );
            Err(ev.report(d))
        }
        (None, Some(dec)) if dec.cross_attention.is_some() => {
            let span = m
                .entry("decoder")
                .and_then(|e| match &e.value {
                    super::ast::Value::Block(b) => b.get("cross_attention"),
                    _ => None,
                })
                .map_or(dec.span, |e| e.key.span);
            let d = Diagnostic::error(
                codes::CROSS_WITHOUT_ENCODER,
                "cross-attention without an encoder",
                span,
                "there is no encoder to attend to",
            )
            .with_secondary(name.span, "this model has no `encoder` block")
            .with_help("add an `encoder { ... }` block, or remove `cross_attention` for a decoder-only model");
            Err(ev.report(d))
        }
        (Some(_), Some(dec)) if dec.cross_attention.is_none() => {
            let d = Diagnostic::error(
                codes::CONFLICT,
                "the decoder does not attend to the encoder",
                dec.span,
                "no `cross_attention` here",
            )
            .with_help("add `cross_attention {}` to the decoder, or remove the encoder");
            Err(ev.report(d))
        }
        _ => Ok(()),
    }
}

fn read_stack(
    ev: &mut Evaluator<'_>,
    m: &Reader<'_>,
    emb: Option<&Reader<'_>>,
    key: &str,
    trunk: &Trunk,
    is_decoder: bool,
) -> Result<Option<Stack>, Reported> {
    let Some(block) = m.sub_block(ev, key)? else {
        return Ok(None);
    };
    let span = key_span(m, key);
    let s = m.child(ev, block, key, span, STACK_KEYS);

    // The sub-blocks of each layer.
    let layers = s.size(ev, "layers", None, MAX_LAYERS);
    let attention = match s.sub_block(ev, "attention") {
        Ok(Some(b)) => read_attention(ev, &s, b, "attention", trunk, None),
        Ok(None) => Err(s.missing(ev, "attention", "add `attention { heads = ... }`")),
        Err(r) => Err(r),
    };
    let cross = match s.sub_block(ev, "cross_attention") {
        Ok(Some(_)) if !is_decoder => {
            let d = Diagnostic::error(
                codes::CONFLICT,
                "cross-attention in an encoder",
                key_span(&s, "cross_attention"),
                "only a decoder attends to an encoder",
            )
            .with_help("move `cross_attention` into the `decoder` block");
            Err(ev.report(d))
        }
        Ok(Some(b)) => {
            let own = attention.as_ref().ok();
            read_attention(ev, &s, b, "cross_attention", trunk, own).map(Some)
        }
        Ok(None) => Ok(None),
        Err(r) => Err(r),
    };
    let feed_forward = read_feed_forward(ev, &s, trunk);
    let norm = match read_norm(ev, &s, "norm", NORMS, true) {
        Ok(Some((Some(n), Some(p)))) => Ok((n, p)),
        Ok(None) => Err(s.missing(
            ev,
            "norm",
            "add `norm = layer_norm { position = post }` or `norm = rms_norm { position = pre }`",
        )),
        _ => Err(Reported),
    };
    let final_norm = s.bool(ev, "final_norm", false);
    let parallel_residual = s.bool(ev, "parallel_residual", false);

    // Position and embedding norm: the stack's own, else the embeddings'.
    let head_dim = attention.as_ref().ok().map(|a| a.head_dim);
    let position = match (s.entry("position"), emb) {
        (Some(_), _) => read_position(ev, &s, head_dim, trunk),
        (None, Some(e)) if e.entry("position").is_some() => read_position(ev, e, head_dim, trunk),
        (None, Some(e)) => Err(e.missing(ev, "position", POSITION_HINT)),
        (None, None) => Err(s.missing(ev, "position", POSITION_HINT)),
    };
    let embedding_norm = match (s.entry("embedding_norm"), emb) {
        (Some(_), _) => read_norm(ev, &s, "embedding_norm", NORMS_OR_NONE, false),
        (None, Some(e)) => read_norm(ev, e, "norm", NORMS, false),
        (None, None) => Ok(None),
    };

    let (norm, norm_position) = norm?;
    Ok(Some(Stack {
        span,
        layers: layers?,
        attention: attention?,
        cross_attention: cross?,
        feed_forward: feed_forward?,
        norm,
        norm_position,
        parallel_residual: parallel_residual?,
        final_norm: final_norm?.then_some(norm),
        position: position?,
        embedding_norm: embedding_norm?.and_then(|(n, _)| n),
    }))
}

const POSITION_HINT: &str = "add `position = ...`: `learned { max_position_embeddings = 512 }`, \
    `sinusoidal { ... }`, `rotary`, `alibi`, `relative_bias`, or `none`";

/// Reads an attention block; `inherit` gives the defaults of cross-attention
/// (the stack's self-attention).
fn read_attention(
    ev: &mut Evaluator<'_>,
    s: &Reader<'_>,
    block: &Block,
    key: &str,
    trunk: &Trunk,
    inherit: Option<&Attention>,
) -> Result<Attention, Reported> {
    let a = s.child(ev, block, key, key_span(s, key), ATTENTION_KEYS);
    let heads_written = a.entry("heads").is_some();
    let heads = a.size(ev, "heads", inherit.map(|i| i.heads), MAX_SIZE);
    let kv_heads = match (a.entry("kv_heads"), inherit) {
        (Some(_), _) => a.size(ev, "kv_heads", None, MAX_SIZE),
        (None, Some(i)) if !heads_written => Ok(i.kv_heads),
        (None, _) => heads,
    };
    let head_dim = match (a.entry("head_dim"), inherit) {
        (Some(_), _) => a.size(ev, "head_dim", None, MAX_SIZE),
        (None, Some(i)) if !heads_written => Ok(i.head_dim),
        (None, _) => default_head_dim(ev, &a, heads.as_ref().ok(), trunk),
    };
    let bias = a.bool(ev, "bias", true);
    let bias_written = a.entry("bias").is_some();
    let qkv_default = match (inherit, &bias) {
        (Some(i), _) if !bias_written => i.qkv_bias,
        (_, b) => *b.as_ref().unwrap_or(&true),
    };
    let out_default = match (inherit, &bias) {
        (Some(i), _) if !bias_written => i.out_bias,
        (_, b) => *b.as_ref().unwrap_or(&true),
    };
    let qkv_bias = a.bool(ev, "qkv_bias", qkv_default);
    let out_bias = a.bool(ev, "out_bias", out_default);
    let scale = match a.positive_float(ev, "scale") {
        Ok(None) => Ok(inherit.and_then(|i| i.scale)),
        other => other,
    };

    let (heads, kv_heads, head_dim) = (heads?, kv_heads?, head_dim?);
    if heads % kv_heads != 0 {
        let span = a
            .entry("kv_heads")
            .map_or(a.value_span("heads"), |e| e.value.span());
        let msg = format!("`kv_heads` ({kv_heads}) does not divide `heads` ({heads})");
        let d = Diagnostic::error(codes::KV_HEADS_DIVIDE, msg, span, "does not divide `heads`")
            .with_help("each key/value head serves a whole group of query heads; choose `kv_heads` dividing `heads` (1 for multi-query)");
        return Err(ev.report(d));
    }
    if let Some(h) = trunk.hidden {
        check_product(
            ev,
            "an attention projection",
            &[h, heads, head_dim],
            a.value_span("heads"),
        );
    }
    bias?;
    Ok(Attention {
        heads,
        kv_heads,
        head_dim,
        qkv_bias: qkv_bias?,
        out_bias: out_bias?,
        scale: scale?,
    })
}

fn default_head_dim(
    ev: &mut Evaluator<'_>,
    a: &Reader<'_>,
    heads: Option<&u64>,
    trunk: &Trunk,
) -> Result<u64, Reported> {
    let (Some(hidden), Some(&heads)) = (trunk.hidden, heads) else {
        return Err(Reported);
    };
    if hidden % heads == 0 {
        return Ok(hidden / heads);
    }
    let msg = format!("`heads` ({heads}) does not divide `hidden_size` ({hidden})");
    let d = Diagnostic::error(
        codes::HEADS_DIVIDE,
        msg,
        a.value_span("heads"),
        format!("{hidden} is not a multiple of {heads}"),
    )
    .with_secondary(trunk.hidden_span, "`hidden_size` is set here")
    .with_help(
        "`head_dim` defaults to `hidden_size / heads`; choose `heads` dividing `hidden_size`, \
         or set `head_dim` explicitly",
    );
    Err(ev.report(d))
}

fn read_feed_forward(
    ev: &mut Evaluator<'_>,
    s: &Reader<'_>,
    trunk: &Trunk,
) -> Result<FeedForward, Reported> {
    let Some(block) = s.sub_block(ev, "feed_forward")? else {
        let hint = "add `feed_forward { intermediate_size = ..., activation = ... }`";
        return Err(s.missing(ev, "feed_forward", hint));
    };
    let f = s.child(
        ev,
        block,
        "feed_forward",
        key_span(s, "feed_forward"),
        FEED_FORWARD_KEYS,
    );
    let size = f.size(ev, "intermediate_size", None, MAX_SIZE);
    let activation = f.enumeration(ev, "activation", ACTIVATIONS, None, "activation");
    let bias = f.bool(ev, "bias", true);
    if let (Some(h), Ok(i)) = (trunk.hidden, &size) {
        let span = f.value_span("intermediate_size");
        check_product(ev, "a feed-forward projection", &[h, *i], span);
    }
    Ok(FeedForward {
        intermediate_size: size?,
        activation: activation?,
        bias: bias?,
    })
}

/// A norm as read: absent for `none`, with its placement when asked for.
type NormRead = (Option<Norm>, Option<NormPosition>);

/// Reads `key = layer_norm { ... }` / `rms_norm { ... }` (or `none` when
/// allowed). Returns the norm (absent for `none`) and, when `with_position`,
/// its placement.
fn read_norm(
    ev: &mut Evaluator<'_>,
    r: &Reader<'_>,
    key: &str,
    kinds: &[&'static str],
    with_position: bool,
) -> Result<Option<NormRead>, Reported> {
    let Some(c) = r.variant(ev, key, kinds, "norm")? else {
        return Ok(None);
    };
    let known: &[&str] = match (c.name, with_position) {
        ("none", _) => &[],
        (_, true) => &["eps", "position"],
        (_, false) => &["eps"],
    };
    let o = r.options(ev, &c, key, known);
    let (kind, default_eps) = match c.name {
        "layer_norm" => (NormKind::LayerNorm, 1e-5),
        "rms_norm" => (NormKind::RmsNorm, 1e-6),
        _ => return Ok(Some((None, None))),
    };
    let eps = o.positive_float(ev, "eps");
    let position = if with_position {
        let hint = "add `position = pre` (GPT-2, LLaMA, T5) or `position = post` \
                    (the 2017 paper, BERT)";
        match o.entry("position") {
            Some(_) => o
                .enumeration(ev, "position", NORM_POSITIONS, None, "norm position")
                .map(Some),
            None => Err(o.missing(ev, "position", hint)),
        }
    } else {
        Ok(None)
    };
    let eps = eps?.unwrap_or(default_eps);
    Ok(Some((Some(Norm { kind, eps }), position?)))
}

/// Reads `position = ...` of `r` for a stack whose heads are `head_dim` wide.
fn read_position(
    ev: &mut Evaluator<'_>,
    r: &Reader<'_>,
    head_dim: Option<u64>,
    trunk: &Trunk,
) -> Result<Position, Reported> {
    let Some(c) = r.variant(ev, "position", POSITIONS, "position scheme")? else {
        return Err(r.missing(ev, "position", POSITION_HINT));
    };
    let known: &[&str] = match c.name {
        "learned" => &["max_position_embeddings", "offset"],
        "sinusoidal" => &["max_position_embeddings", "layout"],
        "rotary" => &["theta", "dim", "layout"],
        "relative_bias" => &["num_buckets", "max_distance"],
        _ => &[],
    };
    let o = r.options(ev, &c, "position", known);
    match c.name {
        "learned" => {
            let max = o.size(ev, "max_position_embeddings", None, MAX_SIZE);
            let offset = o.index(ev, "offset");
            if let (Ok(m), Some(h)) = (&max, trunk.hidden) {
                let span = o.value_span("max_position_embeddings");
                check_product(ev, "the position table", &[*m, h], span);
            }
            Ok(Position::Learned {
                max_position_embeddings: max?,
                offset: offset?.unwrap_or(0),
            })
        }
        "sinusoidal" => {
            let max = o.size(ev, "max_position_embeddings", None, MAX_SIZE);
            let layouts = [
                ("interleaved", SinusoidalLayout::Interleaved),
                ("halves", SinusoidalLayout::Halves),
            ];
            let layout = o.enumeration(
                ev,
                "layout",
                &layouts,
                Some(SinusoidalLayout::Interleaved),
                "layout",
            );
            if let Some(h) = trunk.hidden.filter(|h| h % 2 == 1) {
                let msg = format!("sinusoidal positions need an even `hidden_size`, found {h}");
                let d = Diagnostic::error(codes::CONFLICT, msg, c.span, "needs an even width")
                    .with_secondary(trunk.hidden_span, "`hidden_size` is set here")
                    .with_help("sines and cosines come in pairs; make `hidden_size` even");
                return Err(ev.report(d));
            }
            if let (Ok(m), Some(h)) = (&max, trunk.hidden) {
                let span = o.value_span("max_position_embeddings");
                check_product(ev, "the position table", &[*m, h], span);
            }
            Ok(Position::Sinusoidal {
                max_position_embeddings: max?,
                layout: layout?,
            })
        }
        "rotary" => read_rotary(ev, &o, c.span, head_dim).map(Position::Rotary),
        "alibi" => Ok(Position::Alibi),
        "relative_bias" => {
            let buckets = o.size(ev, "num_buckets", Some(32), MAX_SIZE);
            let distance = o.size(ev, "max_distance", Some(128), MAX_SIZE);
            Ok(Position::RelativeBias {
                num_buckets: buckets?,
                max_distance: distance?,
            })
        }
        _ => Ok(Position::None),
    }
}

fn read_rotary(
    ev: &mut Evaluator<'_>,
    o: &Reader<'_>,
    at: Span,
    head_dim: Option<u64>,
) -> Result<Rotary, Reported> {
    let theta = o.positive_float(ev, "theta");
    let layouts = [
        ("rotate_half", RotaryLayout::RotateHalf),
        ("interleaved", RotaryLayout::Interleaved),
    ];
    let layout = o.enumeration(
        ev,
        "layout",
        &layouts,
        Some(RotaryLayout::RotateHalf),
        "layout",
    );
    let dim_written = o.entry("dim").is_some();
    let dim = match (o.opt_size(ev, "dim", MAX_SIZE), head_dim) {
        (Ok(Some(d)), _) => Ok(d),
        (Ok(None), Some(h)) => Ok(h),
        (Ok(None), None) | (Err(_), _) => Err(Reported),
    };
    let (dim, theta, layout) = (dim?, theta?, layout?);
    let span = if dim_written { o.value_span("dim") } else { at };
    let what = if dim_written {
        "the rotary `dim`".to_string()
    } else {
        "the rotary dimension (defaulted to `head_dim`)".to_string()
    };
    if dim % 2 == 1 {
        let msg = format!("{what} is odd: {dim}");
        let d = Diagnostic::error(codes::ROTARY_DIM, msg, span, "must be even")
            .with_help("rotary embeddings rotate pairs of dimensions; set `dim` to an even number");
        return Err(ev.report(d));
    }
    if let Some(h) = head_dim.filter(|h| dim > *h) {
        let msg = format!("{what} ({dim}) is wider than a head ({h})");
        let d = Diagnostic::error(codes::ROTARY_DIM, msg, span, "wider than `head_dim`")
            .with_help(format!("`dim` may be at most `head_dim` ({h})"));
        return Err(ev.report(d));
    }
    Ok(Rotary {
        theta: theta.unwrap_or(10_000.0),
        dim,
        layout,
    })
}

fn read_heads(
    ev: &mut Evaluator<'_>,
    m: &Reader<'_>,
    model: &Ident,
) -> Result<Vec<Head>, Reported> {
    let Some(block) = m.sub_block(ev, "heads")? else {
        return Ok(vec![Head {
            name: "hidden".to_string(),
            span: model.span,
            kind: HeadKind::Hidden,
        }]);
    };
    let span = key_span(m, "heads");
    let h = m.child_open(block, "heads", span);
    if block.entries.is_empty() {
        let d = Diagnostic::error(codes::MISSING_KEY, "`heads` names no head", span, "empty")
            .with_help("add a head such as `logits = language_model`, or remove the block to get the hidden states");
        return Err(ev.report(d));
    }
    let mut heads = Vec::new();
    let mut failed = false;
    for entry in &block.entries {
        match read_head(ev, &h, &entry.key) {
            Ok(head) => heads.push(head),
            Err(_) => failed = true,
        }
    }
    if failed {
        return Err(Reported);
    }
    Ok(heads)
}

fn read_head(ev: &mut Evaluator<'_>, h: &Reader<'_>, key: &Ident) -> Result<Head, Reported> {
    let Some(c) = h.variant(ev, &key.name, HEAD_KINDS, "head kind")? else {
        return Err(Reported);
    };
    let known: &[&str] = match c.name {
        "embedding" => &["pooling", "pooler", "normalize"],
        "sequence_classification" => &["pooling", "pooler", "num_labels"],
        "token_classification" => &["num_labels"],
        "language_model" => &["bias", "scale"],
        _ => &[],
    };
    let o = h.options(ev, &c, &key.name, known);
    let kind = match c.name {
        "hidden" => HeadKind::Hidden,
        "embedding" => {
            let pooling = o.enumeration(ev, "pooling", POOLINGS, Some(Pooling::Mean), "pooling");
            let pooler = o.bool(ev, "pooler", false);
            let normalize = o.bool(ev, "normalize", false);
            HeadKind::Embedding {
                pooling: pooling?,
                pooler: pooler?,
                normalize: normalize?,
            }
        }
        "sequence_classification" => {
            let pooling = o.enumeration(ev, "pooling", POOLINGS, Some(Pooling::Cls), "pooling");
            let pooler = o.bool(ev, "pooler", false);
            let labels = o.size(ev, "num_labels", None, MAX_SIZE);
            HeadKind::SequenceClassification {
                pooling: pooling?,
                pooler: pooler?,
                num_labels: labels?,
            }
        }
        "token_classification" => HeadKind::TokenClassification {
            num_labels: o.size(ev, "num_labels", None, MAX_SIZE)?,
        },
        "question_answering" => HeadKind::QuestionAnswering,
        _ => {
            let bias = o.bool(ev, "bias", false);
            let scale = o.positive_float(ev, "scale");
            HeadKind::LanguageModel {
                bias: bias?,
                scale: scale?,
            }
        }
    };
    Ok(Head {
        name: key.name.clone(),
        span: key.span,
        kind,
    })
}

fn read_inputs(
    ev: &mut Evaluator<'_>,
    m: &Reader<'_>,
    has_segments: Option<bool>,
) -> Result<InputSet, Reported> {
    let block = m.sub_block(ev, "inputs")?.unwrap_or(&EMPTY_BLOCK);
    let i = m.child(ev, block, "inputs", key_span(m, "inputs"), INPUT_KEYS);
    let has_segments = has_segments.ok_or(Reported);
    let attention_mask = i.bool(ev, "attention_mask", true);
    let token_type_ids = i.bool(
        ev,
        "token_type_ids",
        *has_segments.as_ref().unwrap_or(&false),
    );
    let position_ids = i.bool(ev, "position_ids", false);
    let (token_type_ids, has_segments) = (token_type_ids?, has_segments?);
    if token_type_ids && !has_segments {
        let d = Diagnostic::error(
            codes::CONFLICT,
            "`token_type_ids` input without segment embeddings",
            i.value_span("token_type_ids"),
            "nothing would read this input",
        )
        .with_help("set `embeddings { type_vocab_size = 2 }`, or drop this input");
        return Err(ev.report(d));
    }
    Ok(InputSet {
        attention_mask: attention_mask?,
        token_type_ids,
        position_ids: position_ids?,
    })
}

fn read_dims(ev: &mut Evaluator<'_>, m: &Reader<'_>) -> Result<DimNames, Reported> {
    let block = m.sub_block(ev, "dims")?.unwrap_or(&EMPTY_BLOCK);
    let d = m.child(ev, block, "dims", key_span(m, "dims"), DIM_KEYS);
    let mut names = Vec::new();
    let mut failed = false;
    for key in DIM_KEYS {
        match d.string(ev, key, key) {
            Ok(name) if name.is_empty() => {
                let diag = Diagnostic::error(
                    codes::WRONG_TYPE,
                    format!("`{key}` must not be empty"),
                    d.value_span(key),
                    "empty name",
                )
                .with_help("give the dimension a name, e.g. `\"batch\"`");
                ev.report(diag);
                failed = true;
            }
            Ok(name) => {
                if let Some((other, _)) = names.iter().find(|(_, n)| *n == name) {
                    let msg = format!("`{key}` and `{other}` have the same name `{name}`");
                    let diag =
                        Diagnostic::error(codes::CONFLICT, msg, d.value_span(key), "already used")
                            .with_help("symbolic dimensions must have distinct names");
                    ev.report(diag);
                    failed = true;
                }
                names.push((*key, name));
            }
            Err(_) => failed = true,
        }
    }
    if failed {
        return Err(Reported);
    }
    let mut take = |i: usize| std::mem::take(&mut names[i].1);
    Ok(DimNames {
        batch: take(0),
        sequence: take(1),
        decoder_sequence: take(2),
    })
}
