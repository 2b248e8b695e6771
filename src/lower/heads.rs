//! Task heads on the top stack's hidden states.
//!
//! Parameters live under `heads.{name}.…`, except the language-model head,
//! which uses Hugging Face's root names `lm_head.weight` and
//! `final_logits_bias` (or the token embedding when tied).

use crate::ir::{Init, Op, Value};
use crate::model::{Head, HeadKind, Model};

use super::builder::Builder;
use super::linear::Linear;
use super::pooling::{l2_normalize, pool};
use super::LowerError;

/// What the heads read.
#[derive(Debug, Clone, Copy)]
pub struct Trunk {
    /// Hidden states of the top stack `[batch, sequence, hidden]`.
    pub hidden: Value,
    /// The top stack's i64 attention mask `[batch, sequence]`, if any.
    pub mask: Option<Value>,
    /// `0..sequence` of the top stack.
    pub range: Value,
    /// The top stack's token embedding `[vocab, hidden]` (tied LM head).
    pub word: Value,
}

/// Lowers `head`, returning its outputs in [`Head::output_names`] order.
pub fn head(
    b: &mut Builder,
    model: &Model,
    head: &Head,
    trunk: &Trunk,
) -> Result<Vec<Value>, LowerError> {
    b.graph.set_span(Some(head.span));
    let hidden = model.hidden_size;
    if let HeadKind::LanguageModel { bias, scale } = head.kind {
        return Ok(vec![language_model(b, model, bias, scale, trunk)?]);
    }
    b.scoped("heads", |b| {
        b.scoped(head.name.clone(), |b| match head.kind {
            HeadKind::Hidden => Ok(vec![trunk.hidden]),
            HeadKind::Embedding {
                pooling,
                pooler,
                normalize,
            } => {
                let mut pooled = pool(b, pooling, trunk.hidden, trunk.mask, trunk.range)?;
                if pooler {
                    pooled = Linear::new(hidden, hidden, true).apply(b, "pooler.dense", pooled)?;
                    pooled = b.op(Op::Tanh, &[pooled])?;
                }
                let embedding = if normalize {
                    l2_normalize(b, pooled)?
                } else {
                    pooled
                };
                Ok(vec![embedding])
            }
            HeadKind::SequenceClassification {
                pooling,
                pooler,
                num_labels,
            } => {
                let mut x = pool(b, pooling, trunk.hidden, trunk.mask, trunk.range)?;
                if pooler {
                    x = Linear::new(hidden, hidden, true).apply(b, "pooler.dense", x)?;
                    x = b.op(Op::Tanh, &[x])?;
                }
                let classifier = Linear::new(hidden, num_labels, true);
                Ok(vec![classifier.apply(b, "classifier", x)?])
            }
            HeadKind::TokenClassification { num_labels } => {
                let classifier = Linear::new(hidden, num_labels, true);
                Ok(vec![classifier.apply(b, "classifier", trunk.hidden)?])
            }
            HeadKind::QuestionAnswering => {
                let spans = Linear::new(hidden, 2, true).apply(b, "qa_outputs", trunk.hidden)?;
                let mut outputs = Vec::with_capacity(2);
                for i in 0..2 {
                    let column = b.slice(spans, -1, i, i + 1)?;
                    outputs.push(b.op(Op::Squeeze { axes: vec![-1] }, &[column])?);
                }
                Ok(outputs)
            }
            HeadKind::LanguageModel { .. } => Ok(Vec::new()),
        })
    })
}

/// Logits `[batch, sequence, vocab]`: optional scale, the tied embedding or
/// `lm_head.weight`, optional `final_logits_bias`.
fn language_model(
    b: &mut Builder,
    model: &Model,
    bias: bool,
    scale: Option<f64>,
    trunk: &Trunk,
) -> Result<Value, LowerError> {
    b.scoped("lm_head", |b| {
        let mut x = trunk.hidden;
        if let Some(scale) = scale {
            let scale = b.scalar(scale);
            x = b.mul(x, scale)?;
        }
        let projection = if model.tie_word_embeddings {
            b.transpose(trunk.word, &[1, 0])?
        } else {
            b.matrix("weight", model.hidden_size, model.vocab_size)
        };
        let logits = b.matmul(x, projection)?;
        if !bias {
            return Ok(logits);
        }
        let vocab = model.vocab_size;
        let bias =
            b.outside_scopes(|b| Ok(b.weight("final_logits_bias", &[vocab], Init::Zeros)))?;
        b.add(logits, bias)
    })
}
