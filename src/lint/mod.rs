//! `tfc lint`: which operators of an ONNX model a named consumer (a runtime
//! or compiler that loads ONNX) would reject.
//!
//! What each consumer accepts is data, `consumers.yaml` beside this file:
//! the standard-domain opsets it reads, standard operators it lacks, and
//! the operators it has in other domains. The check reads only the model's
//! graph (opset imports and nodes), never its weights, so it is as fast for
//! a 7B model as for a toy.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use prost::Message;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::emit::ModelProto;

/// Errors of [`read_model`] and [`consumer`].
#[derive(Debug, Error)]
pub enum LintError {
    /// No consumer has this name.
    #[error("unknown consumer `{name}` (known: {})", known.join(", "))]
    UnknownConsumer {
        /// The name asked for.
        name: String,
        /// The consumers of `consumers.yaml`.
        known: Vec<String>,
    },
    /// The model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not an ONNX model.
    #[error("{path} is not an ONNX model: {reason}")]
    NotOnnx {
        /// The file.
        path: String,
        /// What the protobuf decoder said.
        reason: String,
    },
}

/// What one consumer accepts (a row of `consumers.yaml`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// The version the entry describes.
    pub version: String,
    /// Where the entry comes from, and whether tfc's tests verify it.
    pub basis: String,
    /// Lowest and highest standard-domain opset read.
    pub opsets: [i64; 2],
    /// Standard-domain operators the consumer lacks.
    pub unsupported: Vec<String>,
    /// Operators accepted per non-standard domain.
    pub domains: BTreeMap<String, Vec<String>>,
}

fn table() -> &'static BTreeMap<String, Consumer> {
    static TABLE: OnceLock<BTreeMap<String, Consumer>> = OnceLock::new();
    TABLE.get_or_init(|| {
        serde_yaml_ng::from_str(include_str!("consumers.yaml"))
            .expect("src/lint/consumers.yaml is valid (checked by a unit test)")
    })
}

/// The names of the known consumers, sorted.
pub fn consumers() -> Vec<String> {
    table().keys().cloned().collect()
}

/// The consumer called `name`.
pub fn consumer(name: &str) -> Result<&'static Consumer, LintError> {
    table().get(name).ok_or_else(|| LintError::UnknownConsumer {
        name: name.to_string(),
        known: consumers(),
    })
}

/// One thing a consumer would reject, with how many nodes it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `domain::Op`, `Op` for the standard domain, or `opset N`.
    pub what: String,
    /// Nodes of that operator (0 for an opset finding).
    pub nodes: usize,
    /// Why the consumer rejects it.
    pub reason: String,
}

/// The findings for `model` read by `consumer`, in a stable order: the
/// opset first, then operators by name.
pub fn lint(model: &ModelProto, consumer: &Consumer) -> Vec<Finding> {
    let mut findings = Vec::new();
    let standard = model
        .opset_import
        .iter()
        .find(|o| {
            o.domain.as_deref().unwrap_or("").is_empty() || o.domain.as_deref() == Some("ai.onnx")
        })
        .and_then(|o| o.version);
    let [lo, hi] = consumer.opsets;
    if let Some(v) = standard.filter(|v| !(lo..=hi).contains(v)) {
        findings.push(Finding {
            what: format!("opset {v}"),
            nodes: 0,
            reason: format!("reads standard-domain opsets {lo} to {hi}"),
        });
    }

    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    if let Some(graph) = &model.graph {
        for node in &graph.node {
            let domain = match node.domain.as_deref() {
                None | Some("") | Some("ai.onnx") => String::new(),
                Some(d) => d.to_string(),
            };
            let op = node.op_type.clone().unwrap_or_default();
            *counts.entry((domain, op)).or_default() += 1;
        }
    }
    for ((domain, op), nodes) in counts {
        let reason = if domain.is_empty() {
            consumer
                .unsupported
                .contains(&op)
                .then(|| "not implemented for the standard domain".to_string())
        } else {
            match consumer.domains.get(&domain) {
                None => Some(format!("does not read the `{domain}` domain")),
                Some(ops) if ops.iter().any(|o| o == "*" || *o == op) => None,
                Some(_) => Some(format!("has no `{domain}` operator of this name")),
            }
        };
        if let Some(reason) = reason {
            let what = if domain.is_empty() {
                op
            } else {
                format!("{domain}::{op}")
            };
            findings.push(Finding {
                what,
                nodes,
                reason,
            });
        }
    }
    findings
}

/// Reads the graph of the ONNX file at `path` (weights stored in external
/// data are not read).
pub fn read_model(path: &Path) -> Result<ModelProto, LintError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| LintError::Io {
        path: shown.clone(),
        source,
    })?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| LintError::NotOnnx {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    // Protobuf decodes an empty file as an empty message: a model needs a
    // graph with nodes.
    if model.graph.as_ref().is_none_or(|g| g.node.is_empty()) {
        return Err(LintError::NotOnnx {
            path: shown,
            reason: "it has no graph nodes".into(),
        });
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::onnx_proto::{GraphProto, NodeProto, OperatorSetIdProto};

    fn model(opset: i64, nodes: &[(&str, &str)]) -> ModelProto {
        ModelProto {
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            graph: Some(GraphProto {
                node: nodes
                    .iter()
                    .map(|(d, op)| NodeProto {
                        domain: (!d.is_empty()).then(|| d.to_string()),
                        op_type: Some(op.to_string()),
                        ..NodeProto::default()
                    })
                    .collect(),
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    #[test]
    fn the_table_parses_and_every_consumer_reads_opset_17() {
        assert!(consumers().len() >= 5);
        for name in consumers() {
            let c = consumer(&name).unwrap();
            assert!(c.opsets[0] <= 17 && 17 <= c.opsets[1], "{name}");
        }
        assert!(matches!(
            consumer("trt"),
            Err(LintError::UnknownConsumer { .. })
        ));
    }

    #[test]
    fn findings_name_the_opset_the_domain_and_the_operator() {
        let m = model(
            23,
            &[
                ("", "MatMul"),
                ("", "Attention"),
                ("", "Attention"),
                ("com.microsoft", "SkipLayerNormalization"),
                ("com.microsoft", "MultiHeadAttention"),
            ],
        );
        let tract = lint(&m, consumer("tract").unwrap());
        let what: Vec<(&str, usize)> = tract.iter().map(|f| (f.what.as_str(), f.nodes)).collect();
        assert_eq!(
            what,
            [
                ("opset 23", 0),
                ("Attention", 2),
                ("com.microsoft::MultiHeadAttention", 1),
                ("com.microsoft::SkipLayerNormalization", 1)
            ]
        );
        let openvino = lint(&m, consumer("openvino").unwrap());
        assert!(openvino
            .iter()
            .all(|f| f.what != "com.microsoft::SkipLayerNormalization"));
        assert!(openvino
            .iter()
            .any(|f| f.what == "com.microsoft::MultiHeadAttention"));
        assert!(lint(&m, consumer("onnxruntime").unwrap()).is_empty());
        assert!(lint(&model(17, &[("", "MatMul")]), consumer("tensorrt").unwrap()).is_empty());
    }
}
