//! GELU fusion.
//!
//! Before (`lower::feed_forward`, constants in the activation type):
//!
//! ```text
//! exact: y = Mul(Mul(x, 0.5), Add(Erf(Div(x, √2)), 1))
//! tanh:  y = Mul(Mul(x, 0.5), Add(Tanh(Mul(Add(x, Mul(Mul(Mul(x, x), x), 0.044715)), √(2/π))), 1))
//! ```
//!
//! After: `y = Gelu{approximate=none|tanh}(x)`.
//!
//! Preconditions: the constants are scalars with those values (to f16
//! precision); every occurrence of `x` is the same value.

use petgraph::stable_graph::NodeIndex;

use super::pattern::{add_near, is_scalar, out, producer_of, replace, use_count};
use super::{Pass, PassError};
use crate::ir::{GeluApproximation, Graph, Op, Value};

/// Fuses the elementary GELU into [`Op::Gelu`].
pub struct FuseGelu;

impl Pass for FuseGelu {
    fn name(&self) -> &'static str {
        "fuse_gelu"
    }

    fn run(&self, g: &mut Graph) -> Result<usize, PassError> {
        let mut fused = 0;
        let candidates: Vec<NodeIndex> = g.g.node_indices().collect();
        for n in candidates {
            if !g.g.contains_node(n) || use_count(g, out(n)) == 0 {
                continue;
            }
            let Some((x, approximate)) = matches(g, out(n)) else {
                continue;
            };
            let y = add_near(g, self.name(), n, Op::Gelu { approximate }, &[x])?[0];
            tracing::debug!(
                pass = self.name(),
                root = %g.g[n].name,
                approximate = approximate.as_str(),
                "fused Gelu"
            );
            replace(g, out(n), y);
            fused += 1;
        }
        Ok(fused)
    }
}

fn matches(g: &Graph, y: Value) -> Option<(Value, GeluApproximation)> {
    // y = Mul(Mul(x, 0.5), Add(t, 1)).
    let [half_x, shifted] = producer_of(g, y, "Mul")?[..] else {
        return None;
    };
    let [x, half] = producer_of(g, half_x, "Mul")?[..] else {
        return None;
    };
    if !is_scalar(g, half, 0.5) {
        return None;
    }
    let [t, one] = producer_of(g, shifted, "Add")?[..] else {
        return None;
    };
    if !is_scalar(g, one, 1.0) {
        return None;
    }
    if let Some(erf_inputs) = producer_of(g, t, "Erf") {
        let [scaled] = erf_inputs[..] else {
            return None;
        };
        let [x2, sqrt2] = producer_of(g, scaled, "Div")?[..] else {
            return None;
        };
        return (x2 == x && is_scalar(g, sqrt2, std::f64::consts::SQRT_2))
            .then_some((x, GeluApproximation::None));
    }
    // t = Tanh(Mul(Add(x, Mul(Mul(Mul(x, x), x), 0.044715)), √(2/π))).
    let [inner] = producer_of(g, t, "Tanh")?[..] else {
        return None;
    };
    let [sum, factor] = producer_of(g, inner, "Mul")?[..] else {
        return None;
    };
    if !is_scalar(g, factor, (2.0 / std::f64::consts::PI).sqrt()) {
        return None;
    }
    let [x2, cubic] = producer_of(g, sum, "Add")?[..] else {
        return None;
    };
    let [cube, coefficient] = producer_of(g, cubic, "Mul")?[..] else {
        return None;
    };
    if x2 != x || !is_scalar(g, coefficient, 0.044715) {
        return None;
    }
    let [square, x3] = producer_of(g, cube, "Mul")?[..] else {
        return None;
    };
    let [x4, x5] = producer_of(g, square, "Mul")?[..] else {
        return None;
    };
    (x3 == x && x4 == x && x5 == x).then_some((x, GeluApproximation::Tanh))
}
