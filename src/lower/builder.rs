//! The lowering builder: an IR [`Graph`] plus the model's activation type,
//! with the few shorthands every building block uses (scoped naming, typed
//! scalars, casts to and from f32, parameters with Hugging Face initialisation).

use crate::ir::{DType, Graph, Init, Op, TensorData, Value};

use super::LowerError;

/// Standard deviation of the normal initialisation of linear and embedding
/// weights (Hugging Face's `initializer_range`).
pub const INIT_STD: f32 = 0.02;

/// The graph under construction and the element type of its activations.
pub struct Builder {
    /// The graph being built.
    pub graph: Graph,
    /// Element type of weights and activations (f32 or f16).
    pub float: DType,
    /// The graph's naming scopes, innermost last (mirrored here so a block can
    /// name a parameter from the root).
    scope: Vec<String>,
}

impl Builder {
    /// An empty graph whose activations have type `float`.
    pub fn new(name: &str, float: DType) -> Builder {
        Builder {
            graph: Graph::new(name),
            float,
            scope: Vec::new(),
        }
    }

    /// Runs `f` inside the naming scope `name`, leaving the scope even on error.
    pub fn scoped<T>(
        &mut self,
        name: impl Into<String>,
        f: impl FnOnce(&mut Builder) -> Result<T, LowerError>,
    ) -> Result<T, LowerError> {
        let name = name.into();
        self.graph.push_scope(name.clone());
        self.scope.push(name);
        let out = f(self);
        self.scope.pop();
        self.graph.pop_scope();
        out
    }

    /// Runs `f` in the scope `name` directly under the root, then restores the
    /// current scopes. Shared parameters (the token embedding, position tables)
    /// keep one name wherever they are first used.
    pub fn at_root<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Builder) -> Result<T, LowerError>,
    ) -> Result<T, LowerError> {
        self.outside_scopes(|b| b.scoped(name, f))
    }

    /// Runs `f` with no scope at all, then restores the current scopes.
    pub fn outside_scopes<T>(
        &mut self,
        f: impl FnOnce(&mut Builder) -> Result<T, LowerError>,
    ) -> Result<T, LowerError> {
        let saved = std::mem::take(&mut self.scope);
        for _ in &saved {
            self.graph.pop_scope();
        }
        let out = f(self);
        for s in &saved {
            self.graph.push_scope(s.clone());
        }
        self.scope = saved;
        out
    }

    /// Adds a node labelled with its op name.
    pub fn op(&mut self, op: Op, inputs: &[Value]) -> Result<Value, LowerError> {
        let label = op.name();
        Ok(self.graph.add(label, op, inputs)?)
    }

    /// `a + b`.
    pub fn add(&mut self, a: Value, b: Value) -> Result<Value, LowerError> {
        self.op(Op::Add, &[a, b])
    }

    /// `a - b`.
    pub fn sub(&mut self, a: Value, b: Value) -> Result<Value, LowerError> {
        self.op(Op::Sub, &[a, b])
    }

    /// `a * b`.
    pub fn mul(&mut self, a: Value, b: Value) -> Result<Value, LowerError> {
        self.op(Op::Mul, &[a, b])
    }

    /// `a / b`.
    pub fn div(&mut self, a: Value, b: Value) -> Result<Value, LowerError> {
        self.op(Op::Div, &[a, b])
    }

    /// Batched matrix product.
    pub fn matmul(&mut self, a: Value, b: Value) -> Result<Value, LowerError> {
        self.op(Op::MatMul, &[a, b])
    }

    /// Inserts size-1 axes.
    pub fn unsqueeze(&mut self, x: Value, axes: &[i64]) -> Result<Value, LowerError> {
        self.op(
            Op::Unsqueeze {
                axes: axes.to_vec(),
            },
            &[x],
        )
    }

    /// Permutes axes.
    pub fn transpose(&mut self, x: Value, perm: &[i64]) -> Result<Value, LowerError> {
        self.op(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    /// Slices `start..end` of one axis.
    pub fn slice(
        &mut self,
        x: Value,
        axis: i64,
        start: i64,
        end: i64,
    ) -> Result<Value, LowerError> {
        let op = Op::Slice {
            axes: vec![axis],
            starts: vec![start],
            ends: vec![end],
        };
        self.op(op, &[x])
    }

    /// Converts `x` to `to`; no node when it already has that type.
    pub fn cast(&mut self, x: Value, to: DType) -> Result<Value, LowerError> {
        if self.graph.ty(x).dtype == to {
            return Ok(x);
        }
        self.op(Op::Cast { to }, &[x])
    }

    /// Converts an activation to f32 (norms, softmax and masks compute in f32).
    pub fn widen(&mut self, x: Value) -> Result<Value, LowerError> {
        self.cast(x, DType::F32)
    }

    /// Converts an f32 value back to the activation type.
    pub fn narrow(&mut self, x: Value) -> Result<Value, LowerError> {
        let float = self.float;
        self.cast(x, float)
    }

    /// A scalar constant of the activation type.
    pub fn scalar(&mut self, v: f64) -> Value {
        let data = TensorData::float(self.float, vec![], &[v as f32]);
        self.graph.constant("Constant", data)
    }

    /// An f32 scalar constant.
    pub fn scalar_f32(&mut self, v: f32) -> Value {
        self.graph.constant("Constant", TensorData::scalar_f32(v))
    }

    /// An i64 scalar constant.
    pub fn scalar_i64(&mut self, v: i64) -> Value {
        self.graph.constant("Constant", TensorData::scalar_i64(v))
    }

    /// A parameter of the activation type named `leaf` in the current scope.
    pub fn weight(&mut self, leaf: &str, shape: &[u64], init: Init) -> Value {
        let float = self.float;
        self.graph.weight(leaf, float, shape, init)
    }

    /// A normally initialised matrix (linear or embedding weight).
    pub fn matrix(&mut self, leaf: &str, rows: u64, cols: u64) -> Value {
        self.weight(leaf, &[rows, cols], Init::Normal { std: INIT_STD })
    }
}
