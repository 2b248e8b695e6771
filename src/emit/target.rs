//! Emitter targets: which ONNX operators the IR's fused ops become.
//!
//! | target | opset | fused ops become |
//! |---|---|---|
//! | [`Target::Portable`] | 17 | standard nodes only (`ops/decompose.rs`); runs in any runtime |
//! | [`Target::Onnx23`] | 23 | the standard opset-23 fused operators where one exists (`Attention`, `RMSNormalization`, `RotaryEmbedding`) |
//! | [`Target::Ort`] | 17 + `com.microsoft` | ONNX Runtime's contrib operators (`MultiHeadAttention`, `SkipLayerNormalization`, `SkipSimplifiedLayerNormalization`, `EmbedLayerNormalization`, `BiasGelu`, `FastGelu`, `Gelu`) |
//!
//! Which fused form is used is data, not code: `targets.yaml` beside this
//! file lists, per target and IR op, the operator and the execution
//! providers and element types it is used for. Anything not listed is
//! decomposed into standard nodes, so every target computes the same thing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::ir::{DType, GeluApproximation, Op};

/// What kind of ONNX the emitter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Target {
    /// Standard ONNX, opset 17, no fused operators.
    #[default]
    Portable,
    /// Standard ONNX, opset 23, with its fused operators.
    Onnx23,
    /// Opset 17 plus ONNX Runtime's `com.microsoft` operators.
    Ort,
}

impl Target {
    /// Every target, in order.
    pub const ALL: [Target; 3] = [Target::Portable, Target::Onnx23, Target::Ort];

    /// The target's name, as `--target` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Target::Portable => "portable",
            Target::Onnx23 => "onnx23",
            Target::Ort => "ort",
        }
    }

    /// The standard-domain opset the target writes by default (and at least).
    pub fn opset(self) -> i64 {
        match self {
            Target::Portable | Target::Ort => 17,
            Target::Onnx23 => 23,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown target `{s}`; the targets are portable, onnx23, ort"))
    }
}

/// The execution provider a model is built for (it decides which fused
/// forms ONNX Runtime has kernels for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TargetProvider {
    /// ONNX Runtime's CPU provider (and any other runtime).
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA provider.
    Cuda,
}

impl TargetProvider {
    fn key(self) -> &'static str {
        match self {
            TargetProvider::Cpu => "cpu",
            TargetProvider::Cuda => "cuda",
        }
    }
}

/// One row of `targets.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    /// `domain.Op` or `Op` (standard domain).
    op: String,
    /// Element types by provider: `{cpu: [f32], cuda: [f32, f16]}`.
    dtypes: BTreeMap<String, Vec<String>>,
}

type Table = BTreeMap<String, BTreeMap<String, Row>>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        serde_yaml_ng::from_str(include_str!("targets.yaml"))
            .expect("src/emit/targets.yaml is valid (checked by a unit test)")
    })
}

/// A fused operator chosen for an IR op: its domain (`""` standard) and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FusedForm {
    /// Operator domain.
    pub domain: &'static str,
    /// Operator type.
    pub op_type: &'static str,
}

/// The key of `op` in `targets.yaml`: the IR op's name, with `Tanh`
/// appended for the tanh forms of GELU (they map to another operator).
pub fn table_key(op: &Op) -> String {
    match op {
        Op::Gelu {
            approximate: GeluApproximation::Tanh,
        }
        | Op::BiasGelu {
            approximate: GeluApproximation::Tanh,
        } => format!("{}Tanh", op.name()),
        _ => op.name().to_string(),
    }
}

/// The fused operator `target` uses for IR op `op` on `provider` with
/// activations of `dtype`, or `None` to decompose it.
pub fn fused_form(
    target: Target,
    provider: TargetProvider,
    op: &Op,
    dtype: DType,
) -> Option<FusedForm> {
    let row = table().get(target.name())?.get(&table_key(op))?;
    let types = row.dtypes.get(provider.key())?;
    if !types.iter().any(|t| t == dtype.short()) {
        return None;
    }
    let (domain, op_type) = match row.op.rsplit_once('.') {
        Some((d, o)) => (d, o),
        None => ("", row.op.as_str()),
    };
    Some(FusedForm { domain, op_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_names_known_targets_and_ops() {
        let known_ops = [
            "Attention",
            "SkipLayerNorm",
            "RmsNorm",
            "SkipRmsNorm",
            "Gelu",
            "GeluTanh",
            "BiasGelu",
            "BiasGeluTanh",
            "RotaryEmbedding",
            "MatMulAddBias",
            "EmbedLayerNorm",
        ];
        for (target, rows) in table() {
            assert!(target.parse::<Target>().is_ok(), "{target}");
            for (op, row) in rows {
                assert!(known_ops.contains(&op.as_str()), "{target}: {op}");
                for (provider, types) in &row.dtypes {
                    assert!(["cpu", "cuda"].contains(&provider.as_str()), "{provider}");
                    for t in types {
                        assert!(["f32", "f16"].contains(&t.as_str()), "{t}");
                    }
                }
            }
        }
        assert!(table().get("portable").is_none_or(|rows| rows.is_empty()));
    }

    #[test]
    fn forms_depend_on_target_provider_dtype_and_variant() {
        use crate::ir::AttentionMask;
        let attention = Op::Attention {
            heads: 2,
            kv_heads: 2,
            head_dim: 4,
            scale: 0.5,
            mask: AttentionMask::None,
        };
        let (cpu, cuda) = (TargetProvider::Cpu, TargetProvider::Cuda);
        let form = fused_form(Target::Ort, cpu, &attention, DType::F32);
        assert_eq!(
            form.map(|f| (f.domain, f.op_type)),
            Some(("com.microsoft", "MultiHeadAttention"))
        );
        assert_eq!(fused_form(Target::Ort, cpu, &attention, DType::F16), None);
        assert!(fused_form(Target::Ort, cuda, &attention, DType::F16).is_some());
        assert_eq!(
            fused_form(Target::Portable, cpu, &attention, DType::F32),
            None
        );
        let form = fused_form(Target::Onnx23, cpu, &attention, DType::F32);
        assert_eq!(form.map(|f| (f.domain, f.op_type)), Some(("", "Attention")));

        let tanh = Op::BiasGelu {
            approximate: GeluApproximation::Tanh,
        };
        let erf = Op::BiasGelu {
            approximate: GeluApproximation::None,
        };
        let op_type = |op: &Op| fused_form(Target::Ort, cpu, op, DType::F32).map(|f| f.op_type);
        assert_eq!(op_type(&tanh), Some("FastGelu"));
        assert_eq!(op_type(&erf), Some("BiasGelu"));
    }
}
