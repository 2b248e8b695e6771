//! Symbolic dimensions: integer polynomials over named sizes.
//!
//! A [`Dim`] is a sum of monomials with integer coefficients, such as `batch`,
//! `sequence + past_sequence` or `12 * batch`. This is enough to carry the
//! spec's symbolic axes through reshapes, concatenations and ranges without
//! ever baking a sample size into the graph.

use std::collections::BTreeMap;
use std::fmt;

/// A product of symbol names, kept sorted; the empty product is the constant 1.
type Monomial = Vec<String>;

/// A symbolic dimension size.
///
/// Invariant: no stored coefficient is zero, so equal polynomials compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Dim {
    terms: BTreeMap<Monomial, i64>,
}

impl Dim {
    /// A constant size.
    pub fn c(value: i64) -> Dim {
        let mut terms = BTreeMap::new();
        if value != 0 {
            terms.insert(Vec::new(), value);
        }
        Dim { terms }
    }

    /// A named symbolic size.
    pub fn sym(name: &str) -> Dim {
        let mut terms = BTreeMap::new();
        terms.insert(vec![name.to_string()], 1);
        Dim { terms }
    }

    /// The value when the dimension is a known constant.
    pub fn as_const(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    /// The symbol name when the dimension is exactly one symbol.
    pub fn as_sym(&self) -> Option<&str> {
        if self.terms.len() != 1 {
            return None;
        }
        let (mono, coef) = self.terms.iter().next()?;
        (mono.len() == 1 && *coef == 1).then(|| mono[0].as_str())
    }

    /// Sum of two dimensions.
    pub fn add(&self, other: &Dim) -> Dim {
        let mut terms = self.terms.clone();
        for (mono, coef) in &other.terms {
            *terms.entry(mono.clone()).or_insert(0) += coef;
        }
        terms.retain(|_, c| *c != 0);
        Dim { terms }
    }

    /// Difference of two dimensions.
    pub fn sub(&self, other: &Dim) -> Dim {
        self.add(&other.scale(-1))
    }

    /// Product with an integer.
    pub fn scale(&self, k: i64) -> Dim {
        let mut terms: BTreeMap<Monomial, i64> =
            self.terms.iter().map(|(m, c)| (m.clone(), c * k)).collect();
        terms.retain(|_, c| *c != 0);
        Dim { terms }
    }

    /// Product of two dimensions.
    pub fn mul(&self, other: &Dim) -> Dim {
        let mut terms: BTreeMap<Monomial, i64> = BTreeMap::new();
        for (ma, ca) in &self.terms {
            for (mb, cb) in &other.terms {
                let mut mono: Monomial = ma.iter().chain(mb.iter()).cloned().collect();
                mono.sort();
                *terms.entry(mono).or_insert(0) += ca * cb;
            }
        }
        terms.retain(|_, c| *c != 0);
        Dim { terms }
    }

    /// Exact division by a positive integer, when every coefficient divides.
    pub fn div_exact(&self, k: i64) -> Option<Dim> {
        if k == 0 || self.terms.values().any(|c| c % k != 0) {
            return None;
        }
        Some(Dim {
            terms: self.terms.iter().map(|(m, c)| (m.clone(), c / k)).collect(),
        })
    }

    /// Exact division by another dimension: by a constant, or by a dimension
    /// that equals `self` up to a constant factor.
    pub fn div_dim(&self, other: &Dim) -> Option<Dim> {
        if let Some(k) = other.as_const() {
            return self.div_exact(k);
        }
        if self == other {
            return Some(Dim::c(1));
        }
        // self == k * other for an integer k?
        let (mono, coef) = other.terms.iter().next()?;
        let k = self.terms.get(mono)? / coef;
        (other.scale(k) == *self).then(|| Dim::c(k))
    }

    /// The value under an assignment of the symbols; `None` if a symbol is unassigned.
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        let mut total: i64 = 0;
        for (mono, coef) in &self.terms {
            let mut term = *coef;
            for s in mono {
                term = term.checked_mul(env(s)?)?;
            }
            total = total.checked_add(term)?;
        }
        Some(total)
    }

    /// Whether the dimension is a positive constant or contains a symbol.
    pub fn is_symbolic(&self) -> bool {
        self.as_const().is_none()
    }
}

impl From<i64> for Dim {
    fn from(v: i64) -> Dim {
        Dim::c(v)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        // Symbolic terms first (sorted), then the constant, for readability.
        let mut first = true;
        let ordered = self
            .terms
            .iter()
            .filter(|(m, _)| !m.is_empty())
            .chain(self.terms.iter().filter(|(m, _)| m.is_empty()));
        for (mono, coef) in ordered {
            let (sign, mag) = if *coef < 0 {
                ("-", -coef)
            } else {
                ("+", *coef)
            };
            if first {
                if sign == "-" {
                    f.write_str("-")?;
                }
            } else {
                write!(f, " {sign} ")?;
            }
            first = false;
            if mono.is_empty() {
                write!(f, "{mag}")?;
            } else {
                if mag != 1 {
                    write!(f, "{mag}*")?;
                }
                f.write_str(&mono.join("*"))?;
            }
        }
        Ok(())
    }
}

/// A tensor shape: one [`Dim`] per axis.
pub type Shape = Vec<Dim>;

/// Renders a shape as `[batch, sequence, 768]`.
pub fn shape_string(shape: &[Dim]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_simplifies() {
        let s = Dim::sym("sequence");
        let p = Dim::sym("past");
        let total = s.add(&p);
        assert_eq!(total.sub(&p), s);
        assert_eq!(total.to_string(), "past + sequence");
        assert_eq!(Dim::c(12).mul(&Dim::sym("batch")).to_string(), "12*batch");
        assert_eq!(Dim::c(768).div_exact(12), Some(Dim::c(64)));
        assert_eq!(Dim::c(768).div_exact(7), None);
        assert_eq!(s.scale(4).div_dim(&s), Some(Dim::c(4)));
        assert_eq!(s.sub(&s).as_const(), Some(0));
    }
}
