//! IR operations.
//!
//! Each [`Op`] is one tensor operation with ONNX-like semantics (numpy
//! broadcasting, negative axes counted from the end). Attributes that ONNX
//! passes as constant inputs (reshape targets, slice bounds, reduction axes)
//! are attributes here, so shapes can be inferred symbolically and the emitter
//! chooses how a given opset wants them. Fused operators, cache inputs and
//! quantized weights are ordinary variants and dtypes, not special cases.

use std::fmt;
use std::sync::Arc;

use super::dtype::DType;

/// How a weight's values are produced when the model is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// Normal(0, std), seeded by the build seed and the weight's name.
    Normal {
        /// Standard deviation.
        std: f32,
    },
    /// All zeros (biases).
    Zeros,
    /// All ones (norm weights).
    Ones,
    /// Values given explicitly (loaded from a checkpoint or computed tables).
    Data(Arc<TensorData>),
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Normal { std } => write!(f, "normal({std})"),
            Init::Zeros => f.write_str("zeros"),
            Init::Ones => f.write_str("ones"),
            Init::Data(_) => f.write_str("data"),
        }
    }
}

/// Literal tensor contents: little-endian bytes of `dtype`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    /// Element type.
    pub dtype: DType,
    /// Concrete shape.
    pub shape: Vec<u64>,
    /// Raw little-endian bytes.
    pub bytes: Vec<u8>,
}

impl TensorData {
    /// An f32 tensor.
    pub fn f32(shape: Vec<u64>, values: &[f32]) -> TensorData {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorData {
            dtype: DType::F32,
            shape,
            bytes,
        }
    }

    /// An i64 tensor.
    pub fn i64(shape: Vec<u64>, values: &[i64]) -> TensorData {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorData {
            dtype: DType::I64,
            shape,
            bytes,
        }
    }

    /// An f32 scalar.
    pub fn scalar_f32(v: f32) -> TensorData {
        TensorData::f32(vec![], &[v])
    }

    /// An i64 scalar.
    pub fn scalar_i64(v: i64) -> TensorData {
        TensorData::i64(vec![], &[v])
    }

    /// A float tensor stored in `dtype` (f32 or f16), converted from f32 values.
    pub fn float(dtype: DType, shape: Vec<u64>, values: &[f32]) -> TensorData {
        match dtype {
            DType::F16 => {
                let bytes = values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect();
                TensorData {
                    dtype,
                    shape,
                    bytes,
                }
            }
            _ => TensorData::f32(shape, values),
        }
    }

    /// The values as i64, when the dtype is I64.
    pub fn as_i64(&self) -> Option<Vec<i64>> {
        (self.dtype == DType::I64).then(|| {
            self.bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        })
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// One axis of a reshape target, with ONNX `Reshape` semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReshapeDim {
    /// Keep the input's size on this axis (ONNX `0`).
    Copy,
    /// Whatever size makes the element count match (ONNX `-1`; at most one).
    Infer,
    /// A fixed size.
    Fixed(i64),
}

/// What the additive bias input of [`Op::Attention`] holds. Informational:
/// the bias input is authoritative and every target must add it as given;
/// a target may use the kind to pick a cheaper form (a key-padding index, an
/// `is_causal` flag) when it can rebuild the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttentionMask {
    /// No bias input.
    None,
    /// `(1 - attention_mask) · f32::MIN` over keys, `[batch, 1, 1, keys]`.
    Padding,
    /// `f32::MIN` where a key comes after its query, `[1, 1, queries, keys]`.
    Causal,
    /// The element-wise minimum of a padding and a causal mask.
    PaddingCausal,
    /// Any other additive bias (ALiBi, relative positions, combinations).
    Other,
}

impl AttentionMask {
    /// Lower-case name used in IR dumps.
    pub fn as_str(self) -> &'static str {
        match self {
            AttentionMask::None => "none",
            AttentionMask::Padding => "padding",
            AttentionMask::Causal => "causal",
            AttentionMask::PaddingCausal => "padding+causal",
            AttentionMask::Other => "other",
        }
    }
}

/// Which GELU formula a fused GELU computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeluApproximation {
    /// `x · 0.5 · (1 + erf(x / √2))`.
    None,
    /// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
    Tanh,
}

impl GeluApproximation {
    /// Name used in IR dumps and by ONNX's `approximate` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            GeluApproximation::None => "none",
            GeluApproximation::Tanh => "tanh",
        }
    }
}

/// A tensor operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A graph input; `shape` uses the spec's symbolic names.
    Input {
        /// Input name as it appears in the ONNX graph.
        name: String,
        /// Element type.
        dtype: DType,
        /// Symbolic shape.
        shape: super::Shape,
    },
    /// A trainable parameter (ONNX initializer). `name` is the canonical
    /// dotted parameter name (`encoder.layers.0.attention.q_proj.weight`).
    Weight {
        /// Canonical parameter name.
        name: String,
        /// Element type.
        dtype: DType,
        /// Concrete shape.
        shape: Vec<u64>,
        /// How values are produced.
        init: Init,
    },
    /// A small literal constant (scales, index tables, frequency tables).
    Constant(Arc<TensorData>),

    /// a + b.
    Add,
    /// a - b.
    Sub,
    /// a * b.
    Mul,
    /// a / b.
    Div,
    /// a ** b.
    Pow,
    /// Element-wise maximum.
    Max,
    /// Element-wise minimum.
    Min,
    /// a == b (bool).
    Equal,
    /// a < b (bool).
    Less,
    /// a <= b (bool).
    LessOrEqual,
    /// a > b (bool).
    Greater,
    /// Logical and.
    And,
    /// cond ? a : b.
    Where,

    /// -x.
    Neg,
    /// √x.
    Sqrt,
    /// 1/x.
    Reciprocal,
    /// tanh.
    Tanh,
    /// erf.
    Erf,
    /// sin (radians).
    Sin,
    /// cos (radians).
    Cos,
    /// max(0, x).
    Relu,
    /// Logistic sigmoid.
    Sigmoid,
    /// eˣ.
    Exp,
    /// ln x.
    Log,
    /// |x|.
    Abs,
    /// Logical not.
    Not,
    /// Convert element type.
    Cast {
        /// Target type.
        to: DType,
    },

    /// Batched matrix product with broadcasting of leading axes.
    MatMul,
    /// Softmax along one axis.
    Softmax {
        /// Axis.
        axis: i64,
    },
    /// Mean over axes.
    ReduceMean {
        /// Reduced axes.
        axes: Vec<i64>,
        /// Keep reduced axes with size 1.
        keepdims: bool,
    },
    /// Sum over axes.
    ReduceSum {
        /// Reduced axes.
        axes: Vec<i64>,
        /// Keep reduced axes with size 1.
        keepdims: bool,
    },
    /// Maximum over axes.
    ReduceMax {
        /// Reduced axes.
        axes: Vec<i64>,
        /// Keep reduced axes with size 1.
        keepdims: bool,
    },
    /// Inclusive cumulative sum along an axis (input 0), as ONNX `CumSum`.
    CumSum {
        /// Axis.
        axis: i64,
    },
    /// LayerNorm over the last axis: inputs x, weight and optional bias.
    LayerNorm {
        /// Epsilon.
        eps: f32,
    },

    /// Gather slices of input 0 at indices input 1 along `axis`.
    Gather {
        /// Axis of input 0.
        axis: i64,
    },
    /// Reshape to a target with ONNX semantics.
    Reshape {
        /// Target axes.
        shape: Vec<ReshapeDim>,
    },
    /// Permute axes.
    Transpose {
        /// Permutation.
        perm: Vec<i64>,
    },
    /// Insert size-1 axes.
    Unsqueeze {
        /// Positions in the output.
        axes: Vec<i64>,
    },
    /// Remove size-1 axes.
    Squeeze {
        /// Axes to remove.
        axes: Vec<i64>,
    },
    /// Concatenate all inputs along an axis.
    Concat {
        /// Axis.
        axis: i64,
    },
    /// Constant-bound slice (ONNX `Slice` with constant starts/ends).
    Slice {
        /// Axes sliced.
        axes: Vec<i64>,
        /// Start per axis (negative counts from the end).
        starts: Vec<i64>,
        /// End per axis (exclusive; `i64::MAX` means to the end).
        ends: Vec<i64>,
    },
    /// The input's shape (or axes `start..end` of it) as a 1-D i64 tensor.
    Shape {
        /// First axis.
        start: i64,
        /// One past the last axis; `None` means to the end.
        end: Option<i64>,
    },
    /// `start, start + delta, …` below `limit`; three scalar inputs of one type.
    Range,
    /// Broadcast input 0 to the shape given by the 1-D i64 input 1.
    Expand,

    // Fused operators. Each is exactly equal to the decomposition written in
    // its documentation, which is also what the portable emitter target writes.
    /// Scaled dot-product attention over packed heads.
    ///
    /// Inputs: `q` `[batch, queries, heads·head_dim]`, `k` and `v`
    /// `[batch, keys, kv_heads·head_dim]` (not transposed, not repeated), and
    /// optionally an f32 additive `bias` broadcastable to
    /// `[batch, heads, queries, keys]`. Query head `h` reads key/value head
    /// `h / (heads / kv_heads)`. Scores `q·kᵀ` are taken in the input type,
    /// then in f32: `softmax(scores · scale + bias)` over keys, cast back and
    /// multiplied by `v`. Output `[batch, queries, heads·head_dim]`.
    /// Self, cross, grouped-query and multi-query attention are all this op.
    Attention {
        /// Query heads.
        heads: u64,
        /// Key/value heads (divides `heads`).
        kv_heads: u64,
        /// Width of one head.
        head_dim: u64,
        /// Factor applied to the scores before the bias.
        scale: f32,
        /// What the bias input holds.
        mask: AttentionMask,
    },
    /// `sum = x + (skip [+ bias])`, then LayerNorm of `sum` over the last
    /// axis in f32 (sum, gamma and beta widened), cast back to `x`'s type.
    /// Inputs: `x, skip, gamma, beta [, bias]`; outputs: the normalised value
    /// and `sum` (for the next residual connection).
    SkipLayerNorm {
        /// Epsilon.
        eps: f32,
    },
    /// RMSNorm over the last axis: `narrow(w · 1/√(mean(w²) + eps)) · weight`
    /// with `w` the input widened to f32. Inputs: `x, weight`.
    RmsNorm {
        /// Epsilon.
        eps: f32,
    },
    /// `sum = x + (skip [+ bias])`, then [`Op::RmsNorm`] of `sum`. Inputs:
    /// `x, skip, weight [, bias]`; outputs: the normalised value and `sum`.
    SkipRmsNorm {
        /// Epsilon.
        eps: f32,
    },
    /// GELU of a float tensor.
    Gelu {
        /// Exact (erf) or tanh approximation.
        approximate: GeluApproximation,
    },
    /// GELU of `x + bias`. Inputs: `x, bias`.
    BiasGelu {
        /// Exact (erf) or tanh approximation.
        approximate: GeluApproximation,
    },
    /// Rotary position embedding of `x` `[batch, sequence, heads, head_dim]`
    /// with `cos` and `sin` `[batch | 1, sequence, rotary_dim / 2]` (the
    /// angle of each rotated pair). The first `rotary_dim` dimensions of each
    /// head rotate, the rest pass through. Rotate-half pairs dimension `i`
    /// with `i + rotary_dim/2`; interleaved pairs `2i` with `2i + 1`.
    RotaryEmbedding {
        /// Pairs are adjacent (GPT-J) rather than half a rotation apart.
        interleaved: bool,
        /// Rotated dimensions per head (even, at most `head_dim`).
        rotary_dim: u64,
    },
    /// `x · w + bias` with `w` `[in, out]` and `bias` `[out]`. Inputs: `x, w, bias`.
    MatMulAddBias,
    /// Embedding sum and LayerNorm: `LayerNorm(word[ids] + position[position_ids]
    /// (+ segment[segment_ids]))` with gamma and beta, computed like
    /// [`Op::LayerNorm`] (in f32, cast back). Inputs: `ids, position_ids,
    /// word, position, gamma, beta [, segment_ids, segment]`.
    EmbedLayerNorm {
        /// Epsilon.
        eps: f32,
    },
}

impl Op {
    /// Operation name used in IR dumps and node names.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "Input",
            Op::Weight { .. } => "Weight",
            Op::Constant(_) => "Constant",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Pow => "Pow",
            Op::Max => "Max",
            Op::Min => "Min",
            Op::Equal => "Equal",
            Op::Less => "Less",
            Op::LessOrEqual => "LessOrEqual",
            Op::Greater => "Greater",
            Op::And => "And",
            Op::Where => "Where",
            Op::Neg => "Neg",
            Op::Sqrt => "Sqrt",
            Op::Reciprocal => "Reciprocal",
            Op::Tanh => "Tanh",
            Op::Erf => "Erf",
            Op::Sin => "Sin",
            Op::Cos => "Cos",
            Op::Relu => "Relu",
            Op::Sigmoid => "Sigmoid",
            Op::Exp => "Exp",
            Op::Log => "Log",
            Op::Abs => "Abs",
            Op::Not => "Not",
            Op::Cast { .. } => "Cast",
            Op::MatMul => "MatMul",
            Op::Softmax { .. } => "Softmax",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::ReduceSum { .. } => "ReduceSum",
            Op::ReduceMax { .. } => "ReduceMax",
            Op::CumSum { .. } => "CumSum",
            Op::LayerNorm { .. } => "LayerNormalization",
            Op::Gather { .. } => "Gather",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Squeeze { .. } => "Squeeze",
            Op::Concat { .. } => "Concat",
            Op::Slice { .. } => "Slice",
            Op::Shape { .. } => "Shape",
            Op::Range => "Range",
            Op::Expand => "Expand",
            Op::Attention { .. } => "Attention",
            Op::SkipLayerNorm { .. } => "SkipLayerNorm",
            Op::RmsNorm { .. } => "RmsNorm",
            Op::SkipRmsNorm { .. } => "SkipRmsNorm",
            Op::Gelu { .. } => "Gelu",
            Op::BiasGelu { .. } => "BiasGelu",
            Op::RotaryEmbedding { .. } => "RotaryEmbedding",
            Op::MatMulAddBias => "MatMulAddBias",
            Op::EmbedLayerNorm { .. } => "EmbedLayerNorm",
        }
    }

    /// Allowed number of inputs (inclusive bounds).
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::Input { .. } | Op::Weight { .. } | Op::Constant(_) => (0, 0),
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Pow
            | Op::Max
            | Op::Min
            | Op::Equal
            | Op::Less
            | Op::LessOrEqual
            | Op::Greater
            | Op::And
            | Op::MatMul
            | Op::Gather { .. }
            | Op::Expand => (2, 2),
            Op::Where | Op::Range | Op::MatMulAddBias => (3, 3),
            Op::LayerNorm { .. } => (2, 3),
            Op::Attention { .. } => (3, 4),
            Op::SkipLayerNorm { .. } => (4, 5),
            Op::RmsNorm { .. } | Op::BiasGelu { .. } => (2, 2),
            Op::SkipRmsNorm { .. } => (3, 4),
            Op::RotaryEmbedding { .. } => (3, 3),
            Op::EmbedLayerNorm { .. } => (6, 8),
            Op::Concat { .. } => (1, usize::MAX),
            _ => (1, 1),
        }
    }

    /// Number of outputs.
    pub fn output_count(&self) -> usize {
        match self {
            Op::SkipLayerNorm { .. } | Op::SkipRmsNorm { .. } => 2,
            _ => 1,
        }
    }

    /// Whether the op is one of the fused operators, which a target may map
    /// to a single kernel or decompose.
    pub fn is_fused(&self) -> bool {
        matches!(
            self,
            Op::Attention { .. }
                | Op::SkipLayerNorm { .. }
                | Op::RmsNorm { .. }
                | Op::SkipRmsNorm { .. }
                | Op::Gelu { .. }
                | Op::BiasGelu { .. }
                | Op::RotaryEmbedding { .. }
                | Op::MatMulAddBias
                | Op::EmbedLayerNorm { .. }
        )
    }

    /// Whether the op is a source (input, weight or constant).
    pub fn is_source(&self) -> bool {
        matches!(self, Op::Input { .. } | Op::Weight { .. } | Op::Constant(_))
    }

    /// Attributes rendered for IR dumps, e.g. `{axis=-1}`; empty when none.
    pub fn attrs(&self) -> String {
        let list = |v: &[i64]| {
            let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            format!("[{}]", parts.join(","))
        };
        match self {
            Op::Cast { to } => format!("{{to={to}}}"),
            Op::Softmax { axis } | Op::CumSum { axis } | Op::Gather { axis } => {
                format!("{{axis={axis}}}")
            }
            Op::Concat { axis } => format!("{{axis={axis}}}"),
            Op::ReduceMean { axes, keepdims }
            | Op::ReduceSum { axes, keepdims }
            | Op::ReduceMax { axes, keepdims } => {
                format!("{{axes={},keepdims={}}}", list(axes), u8::from(*keepdims))
            }
            Op::LayerNorm { eps }
            | Op::SkipLayerNorm { eps }
            | Op::RmsNorm { eps }
            | Op::SkipRmsNorm { eps }
            | Op::EmbedLayerNorm { eps } => format!("{{eps={eps:e}}}"),
            Op::Attention {
                heads,
                kv_heads,
                head_dim,
                scale,
                mask,
            } => format!(
                "{{heads={heads},kv_heads={kv_heads},head_dim={head_dim},scale={scale:e},mask={}}}",
                mask.as_str()
            ),
            Op::Gelu { approximate } | Op::BiasGelu { approximate } => {
                format!("{{approximate={}}}", approximate.as_str())
            }
            Op::RotaryEmbedding {
                interleaved,
                rotary_dim,
            } => format!(
                "{{interleaved={},rotary_dim={rotary_dim}}}",
                u8::from(*interleaved)
            ),
            Op::Reshape { shape } => {
                let parts: Vec<String> = shape
                    .iter()
                    .map(|d| match d {
                        ReshapeDim::Copy => "0".to_string(),
                        ReshapeDim::Infer => "-1".to_string(),
                        ReshapeDim::Fixed(n) => n.to_string(),
                    })
                    .collect();
                format!("{{shape=[{}]}}", parts.join(","))
            }
            Op::Transpose { perm } => format!("{{perm={}}}", list(perm)),
            Op::Unsqueeze { axes } | Op::Squeeze { axes } => format!("{{axes={}}}", list(axes)),
            Op::Slice { axes, starts, ends } => {
                let ends: Vec<String> = ends
                    .iter()
                    .map(|e| {
                        if *e == i64::MAX {
                            "end".into()
                        } else {
                            e.to_string()
                        }
                    })
                    .collect();
                format!(
                    "{{axes={},starts={},ends=[{}]}}",
                    list(axes),
                    list(starts),
                    ends.join(",")
                )
            }
            Op::Shape { start, end } => match end {
                Some(e) => format!("{{start={start},end={e}}}"),
                None => format!("{{start={start}}}"),
            },
            _ => String::new(),
        }
    }
}
