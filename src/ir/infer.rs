//! Shape and dtype inference for every [`Op`].
//!
//! Inference is symbolic: dimensions are [`Dim`] polynomials, and small integer
//! tensors whose contents are known (shapes, constant indices) carry those
//! contents in [`TensorType::value`], so `Shape → Gather → Range` chains and
//! `Expand` targets get exact symbolic shapes.

use super::dim::{shape_string, Dim, Shape};
use super::dtype::DType;
use super::graph::TensorType;
use super::op::{Op, ReshapeDim, TensorData};

/// The largest integer constant whose contents are tracked symbolically.
const MAX_TRACKED: u64 = 64;

/// The type of a literal constant, with its contents tracked when small.
pub fn constant_type(data: &TensorData) -> TensorType {
    let shape = data.shape.iter().map(|d| Dim::c(*d as i64)).collect();
    let value = match data.as_i64() {
        Some(v) if data.shape.len() <= 1 && data.numel() <= MAX_TRACKED => {
            Some(v.into_iter().map(Dim::c).collect())
        }
        _ => None,
    };
    TensorType {
        dtype: data.dtype,
        shape,
        value,
    }
}

fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// Numpy broadcasting of two symbolic shapes.
pub fn broadcast(a: &Shape, b: &Shape) -> Result<Shape, String> {
    let n = a.len().max(b.len());
    let one = Dim::c(1);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n {
            &a[i + a.len() - n]
        } else {
            &one
        };
        let db = if i + b.len() >= n {
            &b[i + b.len() - n]
        } else {
            &one
        };
        let d = if da == db || *db == one {
            da.clone()
        } else if *da == one {
            db.clone()
        } else {
            return Err(format!(
                "shapes {} and {} do not broadcast",
                shape_string(a),
                shape_string(b)
            ));
        };
        out.push(d);
    }
    Ok(out)
}

fn same_dtype(inputs: &[&TensorType]) -> Result<DType, String> {
    let d = inputs[0].dtype;
    if let Some(t) = inputs.iter().find(|t| t.dtype != d) {
        return Err(format!("mixed element types {} and {}", d, t.dtype));
    }
    Ok(d)
}

/// Element-wise combination of symbolic contents (scalars broadcast).
fn combine_values(
    a: &Option<Vec<Dim>>,
    b: &Option<Vec<Dim>>,
    f: impl Fn(&Dim, &Dim) -> Option<Dim>,
) -> Option<Vec<Dim>> {
    let (a, b) = (a.as_ref()?, b.as_ref()?);
    let n = a.len().max(b.len());
    if !(a.len() == n || a.len() == 1) || !(b.len() == n || b.len() == 1) {
        return None;
    }
    (0..n)
        .map(|i| {
            f(
                &a[if a.len() == 1 { 0 } else { i }],
                &b[if b.len() == 1 { 0 } else { i }],
            )
        })
        .collect()
}

fn reduce(x: &TensorType, axes: &[i64], keepdims: bool) -> Result<Vec<TensorType>, String> {
    let axes: Vec<usize> = axes
        .iter()
        .map(|a| norm_axis(*a, x.rank()))
        .collect::<Result<_, _>>()?;
    let mut shape = Vec::new();
    for (i, d) in x.shape.iter().enumerate() {
        if axes.contains(&i) {
            if keepdims {
                shape.push(Dim::c(1));
            }
        } else {
            shape.push(d.clone());
        }
    }
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn product(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::c(1), |acc, d| acc.mul(d))
}

/// Infers the output types of `op` applied to inputs of the given types.
/// The error is a plain sentence; the caller adds node and input context.
pub fn infer(op: &Op, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (lo, hi) = op.arity();
    if inputs.len() < lo || inputs.len() > hi {
        return Err(format!("expects {lo}..={hi} inputs, got {}", inputs.len()));
    }
    let one = |t: TensorType| Ok(vec![t]);
    match op {
        Op::Input { dtype, shape, .. } => one(TensorType::new(*dtype, shape.clone())),
        Op::Weight { dtype, shape, .. } => one(TensorType::new(
            *dtype,
            shape.iter().map(|d| Dim::c(*d as i64)).collect(),
        )),
        Op::Constant(data) => one(constant_type(data)),

        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow | Op::Max | Op::Min => {
            let (a, b) = (inputs[0], inputs[1]);
            let dtype = if matches!(op, Op::Pow) {
                a.dtype
            } else {
                same_dtype(inputs)?
            };
            let shape = broadcast(&a.shape, &b.shape)?;
            let value = match op {
                Op::Add => combine_values(&a.value, &b.value, |x, y| Some(x.add(y))),
                Op::Sub => combine_values(&a.value, &b.value, |x, y| Some(x.sub(y))),
                Op::Mul => combine_values(&a.value, &b.value, |x, y| Some(x.mul(y))),
                Op::Div => combine_values(&a.value, &b.value, |x, y| x.div_dim(y)),
                _ => None,
            };
            one(TensorType {
                dtype,
                shape,
                value,
            })
        }
        Op::Equal | Op::Less | Op::LessOrEqual | Op::Greater => {
            same_dtype(inputs)?;
            one(TensorType::new(
                DType::Bool,
                broadcast(&inputs[0].shape, &inputs[1].shape)?,
            ))
        }
        Op::And => {
            if inputs.iter().any(|t| t.dtype != DType::Bool) {
                return Err("And takes bool inputs".into());
            }
            one(TensorType::new(
                DType::Bool,
                broadcast(&inputs[0].shape, &inputs[1].shape)?,
            ))
        }
        Op::Where => {
            if inputs[0].dtype != DType::Bool {
                return Err("the condition of Where must be bool".into());
            }
            let dtype = same_dtype(&inputs[1..])?;
            let s = broadcast(&inputs[0].shape, &inputs[1].shape)?;
            one(TensorType::new(dtype, broadcast(&s, &inputs[2].shape)?))
        }
        Op::Neg
        | Op::Sqrt
        | Op::Reciprocal
        | Op::Tanh
        | Op::Erf
        | Op::Sin
        | Op::Cos
        | Op::Relu
        | Op::Sigmoid
        | Op::Exp
        | Op::Log
        | Op::Abs => {
            let x = inputs[0];
            if !x.dtype.is_float() && !matches!(op, Op::Neg | Op::Abs | Op::Relu) {
                return Err(format!(
                    "{} needs a float input, got {}",
                    op.name(),
                    x.dtype
                ));
            }
            one(TensorType::new(x.dtype, x.shape.clone()))
        }
        Op::Not => {
            if inputs[0].dtype != DType::Bool {
                return Err("Not takes a bool input".into());
            }
            one(TensorType::new(DType::Bool, inputs[0].shape.clone()))
        }
        Op::Cast { to } => {
            let x = inputs[0];
            let value = if to.is_float() || *to == DType::Bool {
                None
            } else {
                x.value.clone()
            };
            one(TensorType {
                dtype: *to,
                shape: x.shape.clone(),
                value,
            })
        }
        Op::MatMul => {
            let (a, b) = (inputs[0], inputs[1]);
            same_dtype(inputs)?;
            if a.rank() < 2 || b.rank() < 2 {
                return Err("MatMul operands must have rank 2 or more".into());
            }
            let (m, k1) = (&a.shape[a.rank() - 2], &a.shape[a.rank() - 1]);
            let (k2, n) = (&b.shape[b.rank() - 2], &b.shape[b.rank() - 1]);
            if k1 != k2 {
                return Err(format!(
                    "inner dimensions differ: {} × {}",
                    shape_string(&a.shape),
                    shape_string(&b.shape)
                ));
            }
            let mut shape = broadcast(
                &a.shape[..a.rank() - 2].to_vec(),
                &b.shape[..b.rank() - 2].to_vec(),
            )?;
            shape.push(m.clone());
            shape.push(n.clone());
            one(TensorType::new(a.dtype, shape))
        }
        Op::Softmax { axis } | Op::CumSum { axis } => {
            let x = inputs[0];
            norm_axis(*axis, x.rank())?;
            one(TensorType::new(x.dtype, x.shape.clone()))
        }
        Op::ReduceMean { axes, keepdims }
        | Op::ReduceSum { axes, keepdims }
        | Op::ReduceMax { axes, keepdims } => reduce(inputs[0], axes, *keepdims),
        Op::LayerNorm { .. } => {
            let x = inputs[0];
            let last = x
                .shape
                .last()
                .ok_or("LayerNorm input must have rank 1 or more")?;
            for p in &inputs[1..] {
                if p.shape.len() != 1 || &p.shape[0] != last {
                    return Err(format!(
                        "scale/bias shape {} does not match the last axis {last}",
                        shape_string(&p.shape)
                    ));
                }
            }
            same_dtype(inputs)?;
            one(TensorType::new(x.dtype, x.shape.clone()))
        }
        Op::Gather { axis } => {
            let (data, idx) = (inputs[0], inputs[1]);
            if !matches!(idx.dtype, DType::I64 | DType::I32) {
                return Err(format!(
                    "Gather indices must be integers, got {}",
                    idx.dtype
                ));
            }
            let a = norm_axis(*axis, data.rank())?;
            let mut shape: Shape = data.shape[..a].to_vec();
            shape.extend(idx.shape.iter().cloned());
            shape.extend(data.shape[a + 1..].iter().cloned());
            let value = match (&data.value, &idx.value) {
                (Some(v), Some(ix)) if data.rank() == 1 => ix
                    .iter()
                    .map(|i| {
                        let i = i.as_const()?;
                        let i = if i < 0 { i + v.len() as i64 } else { i };
                        v.get(usize::try_from(i).ok()?).cloned()
                    })
                    .collect(),
                _ => None,
            };
            one(TensorType {
                dtype: data.dtype,
                shape,
                value,
            })
        }
        Op::Reshape { shape: target } => {
            let x = inputs[0];
            let mut out: Vec<Option<Dim>> = Vec::new();
            for (i, t) in target.iter().enumerate() {
                out.push(match t {
                    ReshapeDim::Copy => Some(
                        x.shape
                            .get(i)
                            .cloned()
                            .ok_or_else(|| format!("axis {i} has no input size to copy"))?,
                    ),
                    ReshapeDim::Fixed(n) if *n > 0 => Some(Dim::c(*n)),
                    ReshapeDim::Fixed(n) => return Err(format!("bad reshape size {n}")),
                    ReshapeDim::Infer => None,
                });
            }
            let total = product(&x.shape);
            let infer_count = out.iter().filter(|d| d.is_none()).count();
            let known: Vec<Dim> = out.iter().flatten().cloned().collect();
            let known_prod = product(&known);
            let shape: Shape = match infer_count {
                0 => {
                    if known_prod != total {
                        return Err(format!(
                            "cannot reshape {} to {}",
                            shape_string(&x.shape),
                            shape_string(&known)
                        ));
                    }
                    known
                }
                1 => {
                    let rest = total.div_dim(&known_prod).ok_or_else(|| {
                        format!(
                            "cannot infer a size: {} / ({known_prod})",
                            shape_string(&x.shape)
                        )
                    })?;
                    out.into_iter()
                        .map(|d| d.unwrap_or_else(|| rest.clone()))
                        .collect()
                }
                _ => return Err("at most one reshape axis may be inferred".into()),
            };
            let value = if shape.len() <= 1 {
                x.value.clone()
            } else {
                None
            };
            one(TensorType {
                dtype: x.dtype,
                shape,
                value,
            })
        }
        Op::Transpose { perm } => {
            let x = inputs[0];
            if perm.len() != x.rank() {
                return Err(format!(
                    "permutation {perm:?} does not fit rank {}",
                    x.rank()
                ));
            }
            let mut seen = vec![false; perm.len()];
            let mut shape = Vec::new();
            for p in perm {
                let a = norm_axis(*p, x.rank())?;
                if std::mem::replace(&mut seen[a], true) {
                    return Err(format!("{perm:?} is not a permutation"));
                }
                shape.push(x.shape[a].clone());
            }
            one(TensorType::new(x.dtype, shape))
        }
        Op::Unsqueeze { axes } => {
            let x = inputs[0];
            let rank = x.rank() + axes.len();
            let axes: Vec<usize> = axes
                .iter()
                .map(|a| norm_axis(*a, rank))
                .collect::<Result<_, _>>()?;
            let mut it = x.shape.iter();
            let shape: Shape = (0..rank)
                .map(|i| {
                    if axes.contains(&i) {
                        Some(Dim::c(1))
                    } else {
                        it.next().cloned()
                    }
                })
                .collect::<Option<_>>()
                .ok_or("repeated unsqueeze axis")?;
            one(TensorType {
                dtype: x.dtype,
                shape,
                value: x.value.clone(),
            })
        }
        Op::Squeeze { axes } => {
            let x = inputs[0];
            let axes: Vec<usize> = axes
                .iter()
                .map(|a| norm_axis(*a, x.rank()))
                .collect::<Result<_, _>>()?;
            let mut shape = Vec::new();
            for (i, d) in x.shape.iter().enumerate() {
                if axes.contains(&i) {
                    if *d != Dim::c(1) {
                        return Err(format!("cannot squeeze axis {i} of size {d}"));
                    }
                } else {
                    shape.push(d.clone());
                }
            }
            one(TensorType {
                dtype: x.dtype,
                shape,
                value: x.value.clone(),
            })
        }
        Op::Concat { axis } => {
            let first = inputs[0];
            let a = norm_axis(*axis, first.rank())?;
            let dtype = same_dtype(inputs)?;
            let mut size = Dim::c(0);
            for t in inputs {
                if t.rank() != first.rank() {
                    return Err("Concat inputs differ in rank".into());
                }
                for (i, (d, e)) in t.shape.iter().zip(&first.shape).enumerate() {
                    if i != a && d != e {
                        return Err(format!(
                            "Concat inputs differ on axis {i}: {} vs {}",
                            shape_string(&first.shape),
                            shape_string(&t.shape)
                        ));
                    }
                }
                size = size.add(&t.shape[a]);
            }
            let mut shape = first.shape.clone();
            shape[a] = size;
            let value = if first.rank() == 1 {
                inputs
                    .iter()
                    .map(|t| t.value.clone())
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.concat())
            } else {
                None
            };
            one(TensorType {
                dtype,
                shape,
                value,
            })
        }
        Op::Slice { axes, starts, ends } => {
            let x = inputs[0];
            if axes.len() != starts.len() || axes.len() != ends.len() {
                return Err("Slice axes, starts and ends differ in length".into());
            }
            let mut shape = x.shape.clone();
            let mut value = x.value.clone();
            for ((axis, s), e) in axes.iter().zip(starts).zip(ends) {
                let a = norm_axis(*axis, x.rank())?;
                let d = &x.shape[a];
                let size = slice_len(d, *s, *e)?;
                if let (Some(v), Some(n)) = (value.as_mut(), d.as_const()) {
                    let lo = clamp_index(*s, n) as usize;
                    let hi = clamp_index(*e, n) as usize;
                    *v = v[lo..hi.max(lo)].to_vec();
                } else {
                    value = None;
                }
                shape[a] = size;
            }
            one(TensorType {
                dtype: x.dtype,
                shape,
                value,
            })
        }
        Op::Shape { start, end } => {
            let x = inputs[0];
            let r = x.rank() as i64;
            let s = if *start < 0 { start + r } else { *start }.clamp(0, r) as usize;
            let e = match end {
                Some(e) => if *e < 0 { e + r } else { *e }.clamp(0, r) as usize,
                None => x.rank(),
            };
            let value: Vec<Dim> = x.shape[s..e.max(s)].to_vec();
            let shape = vec![Dim::c(value.len() as i64)];
            one(TensorType {
                dtype: DType::I64,
                shape,
                value: Some(value),
            })
        }
        Op::Range => {
            let dtype = same_dtype(inputs)?;
            if inputs.iter().any(|t| t.rank() != 0) {
                return Err("Range takes scalar inputs".into());
            }
            let get = |t: &TensorType| t.value.as_ref().and_then(|v| v.first().cloned());
            let len = match (get(inputs[0]), get(inputs[1]), get(inputs[2])) {
                (Some(s), Some(l), Some(d)) if d.as_const() == Some(1) => l.sub(&s),
                _ => {
                    return Err(
                        "Range needs symbolically known start and limit and a step of 1".into(),
                    )
                }
            };
            one(TensorType::new(dtype, vec![len]))
        }
        Op::Expand => {
            let (x, s) = (inputs[0], inputs[1]);
            let target = s
                .value
                .as_ref()
                .ok_or("the Expand target shape is not known")?;
            one(TensorType::new(x.dtype, broadcast(&x.shape, target)?))
        }
        Op::Attention {
            heads,
            kv_heads,
            head_dim,
            ..
        } => attention(inputs, *heads, *kv_heads, *head_dim),
        Op::SkipLayerNorm { .. } | Op::SkipRmsNorm { .. } => {
            let n_params = if matches!(op, Op::SkipLayerNorm { .. }) {
                2
            } else {
                1
            };
            let params = &inputs[2..2 + n_params];
            let sum = skip_sum(inputs[0], inputs[1], inputs.get(2 + n_params).copied())?;
            norm_params(&sum, params)?;
            Ok(vec![sum.clone(), sum])
        }
        Op::RmsNorm { .. } => {
            let x = inputs[0];
            if !x.dtype.is_float() {
                return Err(format!("RmsNorm needs a float input, got {}", x.dtype));
            }
            norm_params(x, &inputs[1..])?;
            one(TensorType::new(x.dtype, x.shape.clone()))
        }
        Op::Gelu { .. } => infer(&Op::Erf, inputs),
        Op::BiasGelu { .. } => {
            let sum = infer(&Op::Add, inputs)?;
            infer(&Op::Erf, &[&sum[0]])
        }
        Op::RotaryEmbedding {
            interleaved: _,
            rotary_dim,
        } => rotary(inputs, *rotary_dim),
        Op::MatMulAddBias => {
            let product = infer(&Op::MatMul, &inputs[..2])?;
            if inputs[2].rank() != 1 {
                return Err("MatMulAddBias takes a 1-D bias".into());
            }
            let sum = infer(&Op::Add, &[&product[0], inputs[2]])?;
            if sum[0].shape != product[0].shape {
                return Err("the bias does not fit the product's last axis".into());
            }
            Ok(sum)
        }
        Op::EmbedLayerNorm { .. } => embed_layer_norm(inputs),
    }
}

/// `x + skip [+ bias]` of a skip-norm: the sum must have `x`'s shape.
fn skip_sum(
    x: &TensorType,
    skip: &TensorType,
    bias: Option<&TensorType>,
) -> Result<TensorType, String> {
    if !x.dtype.is_float() {
        return Err(format!("the input must be float, got {}", x.dtype));
    }
    let mut sum = infer(&Op::Add, &[x, skip])?.remove(0);
    if let Some(bias) = bias {
        sum = infer(&Op::Add, &[&sum, bias])?.remove(0);
    }
    if sum.shape != x.shape {
        return Err("the skip input must not broadcast x to a larger shape".into());
    }
    Ok(TensorType::new(x.dtype, x.shape.clone()))
}

/// Norm parameters: 1-D, the size of `x`'s last axis, `x`'s element type.
fn norm_params(x: &TensorType, params: &[&TensorType]) -> Result<(), String> {
    let last = x
        .shape
        .last()
        .ok_or("a norm input must have rank 1 or more")?;
    for p in params {
        if p.shape.len() != 1 || &p.shape[0] != last {
            return Err(format!(
                "parameter shape {} does not match the last axis {last}",
                shape_string(&p.shape)
            ));
        }
        if p.dtype != x.dtype {
            return Err(format!("mixed element types {} and {}", x.dtype, p.dtype));
        }
    }
    Ok(())
}

/// Types of [`Op::Attention`]: q, k, v `[batch, seq, heads·d]`, optional bias.
fn attention(
    inputs: &[&TensorType],
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
) -> Result<Vec<TensorType>, String> {
    let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(format!(
            "{kv_heads} key/value heads do not divide {heads} heads"
        ));
    }
    same_dtype(&inputs[..3])?;
    if !q.dtype.is_float() {
        return Err(format!("attention needs float inputs, got {}", q.dtype));
    }
    if q.rank() != 3 || k.rank() != 3 || v.rank() != 3 {
        return Err("q, k and v must be [batch, sequence, heads·head_dim]".into());
    }
    let width = |h: u64| Dim::c((h * head_dim) as i64);
    if q.shape[2] != width(heads) {
        return Err(format!("q's last axis is not {heads}·{head_dim}"));
    }
    if k.shape[2] != width(kv_heads) || v.shape[2] != width(kv_heads) {
        return Err(format!(
            "k's and v's last axes are not {kv_heads}·{head_dim}"
        ));
    }
    if k.shape[..2] != v.shape[..2] {
        return Err("k and v differ in batch or length".into());
    }
    broadcast(&q.shape[..1].to_vec(), &k.shape[..1].to_vec())?;
    if let Some(bias) = inputs.get(3) {
        if bias.dtype != DType::F32 || bias.rank() > 4 {
            return Err("the bias must be f32 with rank 4 or less".into());
        }
        let scores = vec![
            q.shape[0].clone(),
            Dim::c(heads as i64),
            q.shape[1].clone(),
            k.shape[1].clone(),
        ];
        if broadcast(&scores, &bias.shape)? != scores {
            return Err(format!(
                "the bias {} does not broadcast to the scores {}",
                shape_string(&bias.shape),
                shape_string(&scores)
            ));
        }
    }
    Ok(vec![TensorType::new(q.dtype, q.shape.clone())])
}

/// Types of [`Op::RotaryEmbedding`]: x `[b, s, h, d]`, cos/sin `[b|1, s, dim/2]`.
fn rotary(inputs: &[&TensorType], rotary_dim: u64) -> Result<Vec<TensorType>, String> {
    let (x, cos, sin) = (inputs[0], inputs[1], inputs[2]);
    if x.rank() != 4 || !x.dtype.is_float() {
        return Err("x must be a float [batch, sequence, heads, head_dim]".into());
    }
    let head_dim = x.shape[3].as_const().unwrap_or(0);
    if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) || rotary_dim as i64 > head_dim {
        return Err(format!(
            "rotary_dim {rotary_dim} must be even and fit the head"
        ));
    }
    if cos.shape != sin.shape || cos.rank() != 3 {
        return Err("cos and sin must both be [batch | 1, sequence, rotary_dim/2]".into());
    }
    same_dtype(inputs)?;
    if cos.shape[2] != Dim::c((rotary_dim / 2) as i64) || cos.shape[1] != x.shape[1] {
        return Err("cos and sin do not fit the sequence or rotary_dim/2".into());
    }
    broadcast(&x.shape[..1].to_vec(), &cos.shape[..1].to_vec())?;
    Ok(vec![TensorType::new(x.dtype, x.shape.clone())])
}

/// Types of [`Op::EmbedLayerNorm`].
fn embed_layer_norm(inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let gather = |table: &TensorType, ids: &TensorType| {
        infer(&Op::Gather { axis: 0 }, &[table, ids]).map(|mut t| t.remove(0))
    };
    let mut sum = gather(inputs[2], inputs[0])?;
    if inputs.len() == 8 {
        let segment = gather(inputs[7], inputs[6])?;
        sum = infer(&Op::Add, &[&sum, &segment])?.remove(0);
    } else if inputs.len() != 6 {
        return Err("segment ids and table come together".into());
    }
    let position = gather(inputs[3], inputs[1])?;
    sum = infer(&Op::Add, &[&sum, &position])?.remove(0);
    if !sum.dtype.is_float() {
        return Err("embedding tables must be float".into());
    }
    norm_params(&sum, &inputs[4..6])?;
    Ok(vec![TensorType::new(sum.dtype, sum.shape)])
}

fn clamp_index(i: i64, n: i64) -> i64 {
    if i < 0 {
        (i + n).max(0)
    } else {
        i.min(n)
    }
}

/// Length of `start..end` on an axis of size `d`.
fn slice_len(d: &Dim, start: i64, end: i64) -> Result<Dim, String> {
    if let Some(n) = d.as_const() {
        return Ok(Dim::c((clamp_index(end, n) - clamp_index(start, n)).max(0)));
    }
    match (start >= 0, end) {
        (true, i64::MAX) => Ok(d.sub(&Dim::c(start))),
        (false, i64::MAX) => Ok(Dim::c(-start)),
        (true, e) if e >= start => Ok(Dim::c(e - start)),
        (true, e) if e < 0 => Ok(d.add(&Dim::c(e)).sub(&Dim::c(start))),
        _ => Err(format!("cannot slice {start}..{end} of symbolic size {d}")),
    }
}
