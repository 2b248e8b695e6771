//! Expression evaluation over a merged model body.
//!
//! Identifiers resolve to keys of the enclosing blocks (innermost first), then
//! to the `let` constants visible in the file the expression was written in.
//! Values are computed lazily, cached per expression, and checked for cycles,
//! so `intermediate_size = 4 * hidden_size` in a base model follows a derived
//! model's `hidden_size`.

use std::collections::HashMap;

use super::ast::{BinOp, Block, Expr, ExprKind, Ident, Value};
use super::diag::{codes, did_you_mean, Diagnostic};
use super::span::{FileId, Span};

/// Deepest chain of names referring to names (`a = b`, `b = c`, ...).
const MAX_REFERENCE_DEPTH: usize = 200;

/// Marker: the problem has been reported as a diagnostic already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported;

/// A computed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// A 64-bit integer.
    Int(i64),
    /// A 64-bit float, always finite.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
}

impl Val {
    /// The type's name with an article, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Int(_) => "an integer",
            Val::Float(_) => "a float",
            Val::Bool(_) => "a boolean",
            Val::Str(_) => "a string",
        }
    }
}

/// A value with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    /// The value.
    pub val: Val,
    /// The expression that produced it.
    pub span: Span,
    /// The first integer division with a remainder that fed into it, with a
    /// description (`770 / 12 = 64.17`); used to explain why a float appeared
    /// where an integer was expected.
    pub inexact: Option<(Span, String)>,
}

/// The `let` constants of all loaded files, and which ones each file sees.
#[derive(Debug, Default)]
pub struct Lets {
    defs: Vec<(Ident, Expr)>,
    visible: HashMap<FileId, HashMap<String, usize>>,
}

impl Lets {
    /// Records a definition; returns its index.
    pub fn define(&mut self, name: Ident, value: Expr) -> usize {
        self.defs.push((name, value));
        self.defs.len() - 1
    }

    /// Sets the names visible in `file`.
    pub fn set_visible(&mut self, file: FileId, names: HashMap<String, usize>) {
        self.visible.insert(file, names);
    }

    /// The names visible in `file`.
    pub fn visible(&self, file: FileId) -> Option<&HashMap<String, usize>> {
        self.visible.get(&file)
    }

    fn lookup(&self, file: FileId, name: &str) -> Option<&(Ident, Expr)> {
        let idx = *self.visible.get(&file)?.get(name)?;
        self.defs.get(idx)
    }
}

/// Evaluates expressions of one model, reporting problems into `diags`.
pub struct Evaluator<'a> {
    lets: &'a Lets,
    /// Diagnostics found so far.
    pub diags: &'a mut Vec<Diagnostic>,
    cache: HashMap<Span, Result<Evaluated, Reported>>,
    in_progress: Vec<(Span, String)>,
}

impl<'a> Evaluator<'a> {
    /// A fresh evaluator with an empty cache.
    pub fn new(lets: &'a Lets, diags: &'a mut Vec<Diagnostic>) -> Self {
        Evaluator {
            lets,
            diags,
            cache: HashMap::new(),
            in_progress: Vec::new(),
        }
    }

    /// Records a diagnostic and returns the marker.
    pub fn report(&mut self, d: Diagnostic) -> Reported {
        self.diags.push(d);
        Reported
    }

    /// Evaluates the value of a key whose expression sits in the innermost
    /// block of `chain` (outermost block first).
    pub fn eval_key(
        &mut self,
        name: &str,
        expr: &Expr,
        chain: &[&Block],
    ) -> Result<Evaluated, Reported> {
        self.eval_named(name, expr, Scope::Blocks(chain), None)
    }

    fn eval_named(
        &mut self,
        name: &str,
        expr: &Expr,
        scope: Scope<'_, '_>,
        used_at: Option<Span>,
    ) -> Result<Evaluated, Reported> {
        if let Some(done) = self.cache.get(&expr.span) {
            return done.clone();
        }
        if let Some(pos) = self.in_progress.iter().position(|(s, _)| *s == expr.span) {
            let mut names: Vec<&str> = self.in_progress[pos..]
                .iter()
                .map(|(_, n)| n.as_str())
                .collect();
            names.push(name);
            let path = names.join("` → `");
            let at = used_at.unwrap_or(expr.span);
            let msg = format!("`{name}` depends on itself");
            let d = Diagnostic::error(codes::CYCLIC_VALUE, msg, at, "used in its own definition")
                .with_secondary(expr.span, format!("`{name}` is defined here"))
                .with_help(format!("the chain is `{path}`; give one of them a value"));
            return Err(self.report(d));
        }
        if self.in_progress.len() >= MAX_REFERENCE_DEPTH {
            let msg = format!("names refer to names more than {MAX_REFERENCE_DEPTH} deep");
            let d = Diagnostic::error(codes::TOO_DEEP, msg, expr.span, "too deep")
                .with_help("write some of these values directly");
            return Err(self.report(d));
        }
        self.in_progress.push((expr.span, name.to_string()));
        let result = self.eval(expr, scope);
        self.in_progress.pop();
        self.cache.insert(expr.span, result.clone());
        result
    }

    fn eval(&mut self, expr: &Expr, scope: Scope<'_, '_>) -> Result<Evaluated, Reported> {
        let span = expr.span;
        let plain = |val| {
            Ok(Evaluated {
                val,
                span,
                inexact: None,
            })
        };
        match &expr.kind {
            ExprKind::Int(v) => plain(Val::Int(*v)),
            ExprKind::Float(v) => plain(Val::Float(*v)),
            ExprKind::Bool(v) => plain(Val::Bool(*v)),
            ExprKind::Str(v) => plain(Val::Str(v.clone())),
            ExprKind::Invalid => Err(Reported),
            ExprKind::Ident(name) => {
                let mut found = self.lookup(name, span, scope)?;
                found.span = span;
                Ok(found)
            }
            ExprKind::Neg(inner) => {
                let v = self.eval(inner, scope)?;
                let val = match v.val {
                    Val::Int(i) => match i.checked_neg() {
                        Some(n) => Val::Int(n),
                        None => return Err(self.overflow(span)),
                    },
                    Val::Float(f) => Val::Float(-f),
                    other => return Err(self.not_numeric("-", &other, inner.span)),
                };
                Ok(Evaluated {
                    val,
                    span,
                    inexact: v.inexact,
                })
            }
            ExprKind::Binary(op, a, b) => {
                let (l, r) = (self.eval(a, scope), self.eval(b, scope));
                let (l, r) = (l?, r?);
                let inexact = l.inexact.clone().or(r.inexact.clone());
                let val = self.binary(*op, &l, &r, span)?;
                let inexact = match (&val, inexact) {
                    (_, Some(i)) => Some(i),
                    (Val::Float(_), None) if *op == BinOp::Div => match (&l.val, &r.val) {
                        (Val::Int(a), Val::Int(b)) => Some((
                            span,
                            format!("{a} / {b} leaves a remainder of {}", a.rem_euclid(*b)),
                        )),
                        _ => None,
                    },
                    _ => None,
                };
                Ok(Evaluated { val, span, inexact })
            }
            ExprKind::Call(func, args) => {
                let mut vals = Vec::new();
                let mut failed = false;
                for a in args {
                    match self.eval(a, scope) {
                        Ok(v) => vals.push(v),
                        Err(_) => failed = true,
                    }
                }
                if failed {
                    return Err(Reported);
                }
                let val = self.call(func, &vals, span)?;
                let rounds = matches!(func.name.as_str(), "floor" | "ceil" | "round");
                let inexact = match rounds {
                    true => None,
                    false => vals.iter().find_map(|v| v.inexact.clone()),
                };
                Ok(Evaluated { val, span, inexact })
            }
        }
    }

    fn lookup(
        &mut self,
        name: &str,
        span: Span,
        scope: Scope<'_, '_>,
    ) -> Result<Evaluated, Reported> {
        if let Scope::Blocks(chain) = scope {
            for depth in (0..chain.len()).rev() {
                let Some(entry) = chain[depth].get(name) else {
                    continue;
                };
                return match &entry.value {
                    Value::Expr(e) => {
                        self.eval_named(name, e, Scope::Blocks(&chain[..=depth]), Some(span))
                    }
                    _ => {
                        let msg = format!("`{name}` is a block, not a value");
                        let d = Diagnostic::error(codes::WRONG_TYPE, msg, span, "not a value")
                            .with_secondary(entry.key.span, format!("`{name}` is defined here"))
                            .with_help(
                                "only keys set with `key = value` can be used in expressions",
                            );
                        Err(self.report(d))
                    }
                };
            }
        }
        if let Some((_, value)) = self.lets.lookup(span.file, name) {
            return self.eval_named(name, value, Scope::Lets, Some(span));
        }
        let mut candidates: Vec<&str> = Vec::new();
        if let Scope::Blocks(chain) = scope {
            for b in chain {
                for e in &b.entries {
                    if matches!(e.value, Value::Expr(_)) {
                        candidates.push(&e.key.name);
                    }
                }
            }
        }
        if let Some(lets) = self.lets.visible(span.file) {
            candidates.extend(lets.keys().map(String::as_str));
        }
        candidates.sort_unstable();
        candidates.dedup();
        let help = match super::diag::suggest(name, candidates.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "a name in an expression refers to a key set in this block or an \
                     enclosing one, or to a `let` constant"
                .to_string(),
        };
        let msg = format!("unknown name `{name}`");
        let d = Diagnostic::error(codes::UNKNOWN_IDENT, msg, span, "not found in this scope")
            .with_help(help);
        Err(self.report(d))
    }

    fn binary(
        &mut self,
        op: BinOp,
        l: &Evaluated,
        r: &Evaluated,
        span: Span,
    ) -> Result<Val, Reported> {
        let sym = op.symbol();
        match (&l.val, &r.val) {
            (Val::Int(a), Val::Int(b)) => self.int_op(op, *a, *b, r.span, span),
            (Val::Int(_) | Val::Float(_), Val::Int(_) | Val::Float(_)) => {
                let (a, b) = (to_f64(&l.val), to_f64(&r.val));
                if matches!(op, BinOp::Div | BinOp::Rem) && b == 0.0 {
                    return Err(self.div_zero(r.span));
                }
                let v = match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                    BinOp::Rem => a % b,
                    BinOp::Pow => a.powf(b),
                };
                self.finite(v, span)
            }
            (Val::Int(_) | Val::Float(_), other) => Err(self.not_numeric(sym, other, r.span)),
            (other, _) => Err(self.not_numeric(sym, other, l.span)),
        }
    }

    fn int_op(
        &mut self,
        op: BinOp,
        a: i64,
        b: i64,
        rhs: Span,
        span: Span,
    ) -> Result<Val, Reported> {
        let v = match op {
            BinOp::Add => a.checked_add(b),
            BinOp::Sub => a.checked_sub(b),
            BinOp::Mul => a.checked_mul(b),
            BinOp::Div | BinOp::Rem if b == 0 => return Err(self.div_zero(rhs)),
            BinOp::Rem => a.checked_rem(b),
            BinOp::Div => match a.checked_rem(b) {
                Some(0) => a.checked_div(b),
                Some(_) => return self.finite(a as f64 / b as f64, span),
                None => None,
            },
            BinOp::Pow if b < 0 => return self.finite((a as f64).powf(b as f64), span),
            BinOp::Pow => u32::try_from(b).ok().and_then(|e| a.checked_pow(e)),
        };
        match v {
            Some(v) => Ok(Val::Int(v)),
            None => Err(self.overflow(span)),
        }
    }

    fn call(&mut self, func: &Ident, args: &[Evaluated], span: Span) -> Result<Val, Reported> {
        const FUNCTIONS: [&str; 6] = ["sqrt", "min", "max", "floor", "ceil", "round"];
        let name = func.name.as_str();
        if !FUNCTIONS.contains(&name) {
            let msg = format!("unknown function `{name}`");
            let help = did_you_mean(name, &FUNCTIONS, "function");
            let d = Diagnostic::error(codes::BAD_CALL, msg, func.span, "unknown function")
                .with_help(help);
            return Err(self.report(d));
        }
        for a in args {
            if !matches!(a.val, Val::Int(_) | Val::Float(_)) {
                return Err(self.not_numeric(name, &a.val, a.span));
            }
        }
        match (name, args) {
            ("sqrt", [x]) => {
                let v = to_f64(&x.val);
                if v < 0.0 {
                    let msg = "square root of a negative number";
                    let d = Diagnostic::error(codes::OVERFLOW, msg, x.span, format!("this is {v}"))
                        .with_help("`sqrt` takes a number that is zero or more");
                    return Err(self.report(d));
                }
                self.finite(v.sqrt(), span)
            }
            ("floor" | "ceil" | "round", [x]) => {
                let v = to_f64(&x.val);
                let r = match name {
                    "floor" => v.floor(),
                    "ceil" => v.ceil(),
                    _ => v.round(),
                };
                if r.abs() >= 9.2e18 {
                    return Err(self.overflow(span));
                }
                Ok(Val::Int(r as i64))
            }
            ("min" | "max", [_, _, ..]) => {
                let all_int = args.iter().all(|a| matches!(a.val, Val::Int(_)));
                let pick_max = name == "max";
                if all_int {
                    let ints = args.iter().filter_map(|a| match a.val {
                        Val::Int(i) => Some(i),
                        _ => None,
                    });
                    let v = if pick_max { ints.max() } else { ints.min() };
                    return Ok(Val::Int(v.unwrap_or(0)));
                }
                let fold = |acc: f64, a: &Evaluated| {
                    let v = to_f64(&a.val);
                    if pick_max {
                        acc.max(v)
                    } else {
                        acc.min(v)
                    }
                };
                let start = if pick_max {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                };
                Ok(Val::Float(args.iter().fold(start, fold)))
            }
            _ => {
                let wanted = if name != "min" && name != "max" {
                    "one argument"
                } else {
                    "two or more arguments"
                };
                let msg = format!("`{name}` takes {wanted}, found {}", args.len());
                let d = Diagnostic::error(codes::BAD_CALL, msg, span, "wrong number of arguments")
                    .with_help(format!("call it as `{name}(...)` with {wanted}"));
                Err(self.report(d))
            }
        }
    }

    fn finite(&mut self, v: f64, span: Span) -> Result<Val, Reported> {
        if v.is_finite() {
            Ok(Val::Float(v))
        } else {
            let d = Diagnostic::error(
                codes::OVERFLOW,
                "the result is not a finite number",
                span,
                format!("this evaluates to {v}"),
            )
            .with_help("check the operands; values must stay finite");
            Err(self.report(d))
        }
    }

    fn overflow(&mut self, span: Span) -> Reported {
        let d = Diagnostic::error(
            codes::OVERFLOW,
            "integer overflow",
            span,
            "overflows 64 bits",
        )
        .with_help("integers must stay between -2^63 and 2^63 - 1");
        self.report(d)
    }

    fn div_zero(&mut self, span: Span) -> Reported {
        let d = Diagnostic::error(
            codes::DIVISION_BY_ZERO,
            "division by zero",
            span,
            "this is zero",
        )
        .with_help("the right side of `/` and `%` must not be zero");
        self.report(d)
    }

    fn not_numeric(&mut self, op: &str, v: &Val, span: Span) -> Reported {
        let msg = format!("`{op}` needs numbers, found {}", v.type_name());
        let d = Diagnostic::error(
            codes::WRONG_TYPE,
            msg,
            span,
            format!("this is {}", v.type_name()),
        )
        .with_help("arithmetic works on integers and floats only");
        self.report(d)
    }
}

/// Where names are looked up.
#[derive(Clone, Copy)]
enum Scope<'s, 'b> {
    /// In these blocks (innermost last), then in the `let`s of the file.
    Blocks(&'s [&'b Block]),
    /// Only in the `let`s of the file (the value of a `let`).
    Lets,
}

fn to_f64(v: &Val) -> f64 {
    match v {
        Val::Int(i) => *i as f64,
        Val::Float(f) => *f,
        _ => 0.0,
    }
}

/// A value as a user would write it.
pub fn show(v: &Val) -> String {
    match v {
        Val::Int(i) => i.to_string(),
        Val::Float(f) => format!("{f:?}"),
        Val::Bool(b) => b.to_string(),
        Val::Str(s) => format!("{s:?}"),
    }
}
