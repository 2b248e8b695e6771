//! Typed access to one block of a merged model body.
//!
//! A [`Reader`] knows which keys its block may hold (and reports the others,
//! with a suggestion), evaluates values on demand and checks their types,
//! signs and magnitudes. The schema (`schema.rs`) is written in terms of it.

use super::ast::{Block, Entry, Expr, Value};
use super::diag::{codes, did_you_mean, list, Diagnostic};
use super::eval::{show, Evaluated, Evaluator, Reported, Val};
use super::span::Span;

/// Largest size accepted anywhere (2^40): keeps every later product in range.
pub const MAX_SIZE: u64 = 1 << 40;
/// Largest number of layers of one stack. Lowering writes out every layer,
/// so this bounds the size of the graph (about 60 nodes per layer).
pub const MAX_LAYERS: u64 = 1024;
/// Largest total parameter count of a model (2^40, 4 TiB of fp32 weights).
pub const MAX_PARAMETERS: u64 = 1 << 40;

/// The options of a variant written without a block (`position = alibi`).
pub static EMPTY_BLOCK: Block = Block {
    entries: Vec::new(),
    span: Span {
        file: 0,
        start: 0,
        end: 0,
    },
};

/// The result of reading a key: `Ok(None)` when it is absent.
pub type Got<T> = Result<Option<T>, Reported>;

/// A block being read, with the blocks that enclose it.
pub struct Reader<'b> {
    /// Enclosing blocks, outermost first, ending with this one.
    pub chain: Vec<&'b Block>,
    /// Dotted path for messages (`encoder.attention`).
    pub path: String,
    /// Where to point when a required key is missing.
    pub anchor: Span,
    /// The keys this block may hold.
    known: Vec<&'static str>,
    /// The variant whose options this block holds, if it does.
    variant: Option<&'static str>,
}

impl<'b> Reader<'b> {
    /// A reader of the outermost block; reports keys not in `known`.
    pub fn root(
        ev: &mut Evaluator<'_>,
        block: &'b Block,
        path: &str,
        anchor: Span,
        known: &[&'static str],
    ) -> Self {
        let r = Reader {
            chain: vec![block],
            path: path.to_string(),
            anchor,
            known: known.to_vec(),
            variant: None,
        };
        r.check_keys(ev, known);
        r
    }

    /// A reader of a block nested in this one.
    pub fn child(
        &self,
        ev: &mut Evaluator<'_>,
        block: &'b Block,
        name: &str,
        anchor: Span,
        known: &[&'static str],
    ) -> Reader<'b> {
        let mut chain = self.chain.clone();
        chain.push(block);
        let r = Reader {
            chain,
            path: format!("{}.{name}", self.path),
            anchor,
            known: known.to_vec(),
            variant: None,
        };
        r.check_keys(ev, known);
        r
    }

    /// A reader of a nested block whose keys are names the user chooses
    /// (the heads); no key is unknown there.
    pub fn child_open(&self, block: &'b Block, name: &str, anchor: Span) -> Reader<'b> {
        let mut chain = self.chain.clone();
        chain.push(block);
        Reader {
            chain,
            path: format!("{}.{name}", self.path),
            anchor,
            known: Vec::new(),
            variant: None,
        }
    }

    /// A reader of the options of a chosen variant (an empty block when none
    /// were written); reports keys not in `known`.
    pub fn options(
        &self,
        ev: &mut Evaluator<'_>,
        choice: &Choice<'b>,
        key: &str,
        known: &[&'static str],
    ) -> Reader<'b> {
        let mut chain = self.chain.clone();
        chain.push(choice.options.unwrap_or(&EMPTY_BLOCK));
        let r = Reader {
            chain,
            path: format!("{}.{key}", self.path),
            anchor: choice.span,
            known: known.to_vec(),
            variant: Some(choice.name),
        };
        r.check_keys(ev, known);
        r
    }

    /// This block.
    pub fn block(&self) -> &'b Block {
        self.chain[self.chain.len() - 1]
    }

    fn check_keys(&self, ev: &mut Evaluator<'_>, known: &[&'static str]) {
        for entry in &self.block().entries {
            let key = entry.key.name.as_str();
            if known.contains(&key) {
                continue;
            }
            let (msg, what, label) = match self.variant {
                Some(v) => (
                    format!("unknown option `{key}` of `{v}` in `{}`", self.path),
                    format!("`{v}`"),
                    "unknown option",
                ),
                None => (
                    format!("unknown key `{key}` in `{}`", self.path),
                    format!("`{}`", self.path),
                    "unknown key",
                ),
            };
            let help = match super::diag::suggest(key, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None if known.is_empty() => format!("{what} takes no options"),
                None => format!("the keys of {what} are {}", list(known)),
            };
            ev.report(
                Diagnostic::error(codes::UNKNOWN_KEY, msg, entry.key.span, label).with_help(help),
            );
        }
    }

    /// The entry of a key.
    pub fn entry(&self, key: &str) -> Option<&'b Entry> {
        self.block().get(key)
    }

    /// The span of a key's value, or the anchor when the key is absent.
    pub fn value_span(&self, key: &str) -> Span {
        self.entry(key).map_or(self.anchor, |e| e.value.span())
    }

    /// Reports a missing required key.
    pub fn missing(&self, ev: &mut Evaluator<'_>, key: &str, hint: &str) -> Reported {
        // A misspelt key was reported as unknown, with this key as suggestion.
        let misspelt = self.block().entries.iter().any(|e| {
            let k = e.key.name.as_str();
            !self.known.contains(&k)
                && super::diag::suggest(k, self.known.iter().copied()) == Some(key)
        });
        if misspelt {
            return Reported;
        }
        let msg = format!("missing `{key}` in `{}`", self.path);
        let label = format!("`{}` needs `{key}`", self.path);
        let help = if hint.is_empty() {
            format!("add `{key} = ...`")
        } else {
            hint.to_string()
        };
        ev.report(Diagnostic::error(codes::MISSING_KEY, msg, self.anchor, label).with_help(help))
    }

    /// The expression of a `key = expr` entry.
    pub fn expr(&self, ev: &mut Evaluator<'_>, key: &str) -> Got<&'b Expr> {
        let Some(entry) = self.entry(key) else {
            return Ok(None);
        };
        match &entry.value {
            Value::Expr(e) => Ok(Some(e)),
            other => {
                let msg = format!("`{key}` takes a value, not a block");
                let d = Diagnostic::error(codes::WRONG_TYPE, msg, other.span(), "expected a value")
                    .with_help(format!("write `{key} = <value>`"));
                Err(ev.report(d))
            }
        }
    }

    /// The evaluated value of a key.
    pub fn eval(&self, ev: &mut Evaluator<'_>, key: &str) -> Got<Evaluated> {
        match self.expr(ev, key)? {
            Some(e) => ev.eval_key(key, e, &self.chain).map(Some),
            None => Ok(None),
        }
    }

    /// An integer value.
    pub fn int(&self, ev: &mut Evaluator<'_>, key: &str) -> Got<i64> {
        let Some(v) = self.eval(ev, key)? else {
            return Ok(None);
        };
        match &v.val {
            Val::Int(i) => Ok(Some(*i)),
            Val::Float(_) if v.inexact.is_some() => {
                let (span, what) = v.inexact.clone().unwrap_or((v.span, String::new()));
                let msg = format!("`{key}` must be an integer, but {what}");
                let d = Diagnostic::error(codes::INEXACT_DIVISION, msg, span, "not exact")
                    .with_help("choose sizes that divide exactly");
                Err(ev.report(d))
            }
            other => Err(wrong_type(ev, key, "an integer", other, v.span)),
        }
    }

    /// A positive size no larger than `max`; `default` when absent, or an
    /// error when absent without a default.
    pub fn size(
        &self,
        ev: &mut Evaluator<'_>,
        key: &str,
        default: Option<u64>,
        max: u64,
    ) -> Result<u64, Reported> {
        match self.int(ev, key)? {
            Some(v) => {
                let span = self.value_span(key);
                check_size(ev, key, v, span, max)
            }
            None => default.ok_or_else(|| self.missing(ev, key, "")),
        }
    }

    /// A positive size no larger than `max`, when the key is present.
    pub fn opt_size(&self, ev: &mut Evaluator<'_>, key: &str, max: u64) -> Got<u64> {
        match self.int(ev, key)? {
            Some(v) => check_size(ev, key, v, self.value_span(key), max).map(Some),
            None => Ok(None),
        }
    }

    /// A non-negative integer (ids, offsets).
    pub fn index(&self, ev: &mut Evaluator<'_>, key: &str) -> Got<u64> {
        let Some(v) = self.int(ev, key)? else {
            return Ok(None);
        };
        let span = self.value_span(key);
        if v < 0 {
            let msg = format!("`{key}` must not be negative, found {v}");
            let d = Diagnostic::error(codes::NOT_POSITIVE, msg, span, "negative")
                .with_help(format!("`{key}` is zero or more"));
            return Err(ev.report(d));
        }
        if v as u64 > MAX_SIZE {
            let msg = format!("`{key}` is too large: {v}");
            let d = Diagnostic::error(
                codes::TOO_LARGE,
                msg,
                span,
                format!("larger than {MAX_SIZE}"),
            )
            .with_help(format!("`{key}` may be at most {MAX_SIZE}"));
            return Err(ev.report(d));
        }
        Ok(Some(v as u64))
    }

    /// A float (integers are accepted).
    pub fn float(&self, ev: &mut Evaluator<'_>, key: &str) -> Got<f64> {
        let Some(v) = self.eval(ev, key)? else {
            return Ok(None);
        };
        match v.val {
            Val::Int(i) => Ok(Some(i as f64)),
            Val::Float(f) => Ok(Some(f)),
            ref other => Err(wrong_type(ev, key, "a number", other, v.span)),
        }
    }

    /// A float that must be greater than zero.
    pub fn positive_float(&self, ev: &mut Evaluator<'_>, key: &str) -> Got<f64> {
        let Some(v) = self.float(ev, key)? else {
            return Ok(None);
        };
        if v > 0.0 {
            return Ok(Some(v));
        }
        let msg = format!("`{key}` must be greater than zero, found {v}");
        let d = Diagnostic::error(
            codes::NOT_POSITIVE,
            msg,
            self.value_span(key),
            "not positive",
        )
        .with_help(format!("give `{key}` a positive value"));
        Err(ev.report(d))
    }

    /// A boolean, `default` when absent.
    pub fn bool(&self, ev: &mut Evaluator<'_>, key: &str, default: bool) -> Result<bool, Reported> {
        let Some(v) = self.eval(ev, key)? else {
            return Ok(default);
        };
        match v.val {
            Val::Bool(b) => Ok(b),
            ref other => Err(wrong_type(ev, key, "`true` or `false`", other, v.span)),
        }
    }

    /// A string, `default` when absent.
    pub fn string(
        &self,
        ev: &mut Evaluator<'_>,
        key: &str,
        default: &str,
    ) -> Result<String, Reported> {
        let Some(v) = self.eval(ev, key)? else {
            return Ok(default.to_string());
        };
        match v.val {
            Val::Str(s) => Ok(s),
            ref other => Err(wrong_type(ev, key, "a string", other, v.span)),
        }
    }

    /// A nested block `key { ... }`.
    pub fn sub_block(&self, ev: &mut Evaluator<'_>, key: &str) -> Got<&'b Block> {
        let Some(entry) = self.entry(key) else {
            return Ok(None);
        };
        match &entry.value {
            Value::Block(b) => Ok(Some(b)),
            other => {
                let msg = format!("`{key}` is a block");
                let d = Diagnostic::error(codes::WRONG_TYPE, msg, other.span(), "expected a block")
                    .with_help(format!("write `{key} {{ ... }}`"));
                Err(ev.report(d))
            }
        }
    }

    /// A choice `key = variant` or `key = variant { options }`: the variant's
    /// name, its span, and its options when written. Unknown names are reported.
    pub fn variant(
        &self,
        ev: &mut Evaluator<'_>,
        key: &str,
        names: &[&'static str],
        what: &str,
    ) -> Got<Choice<'b>> {
        let Some(entry) = self.entry(key) else {
            return Ok(None);
        };
        let (name, span, options) = match &entry.value {
            Value::Variant { name, options } => (name.name.as_str(), name.span, Some(options)),
            Value::Expr(e) => match e.as_ident() {
                Some(name) => (name, e.span, None),
                None => {
                    let msg = format!("`{key}` expects {what}");
                    let label = format!("expected one of {}", list(names));
                    let d = Diagnostic::error(codes::WRONG_TYPE, msg, e.span, label)
                        .with_help(format!("write `{key} = {}`", names[0]));
                    return Err(ev.report(d));
                }
            },
            Value::Block(b) => {
                let msg = format!("`{key}` expects {what}, not a block");
                let d = Diagnostic::error(codes::WRONG_TYPE, msg, b.span, "expected a name")
                    .with_help(format!("write `{key} = {} {{ ... }}`", names[0]));
                return Err(ev.report(d));
            }
        };
        if !names.contains(&name) {
            let msg = format!("unknown {what} `{name}` for `{key}`");
            let d = Diagnostic::error(codes::UNKNOWN_VARIANT, msg, span, format!("unknown {what}"))
                .with_help(did_you_mean(name, names, what));
            return Err(ev.report(d));
        }
        Ok(Some(Choice {
            name: names.iter().copied().find(|n| *n == name).unwrap_or(""),
            span,
            options,
        }))
    }

    /// An enum value `key = name` (no options allowed), `default` when absent.
    pub fn enumeration<T: Copy>(
        &self,
        ev: &mut Evaluator<'_>,
        key: &str,
        values: &[(&'static str, T)],
        default: Option<T>,
        what: &str,
    ) -> Result<T, Reported> {
        let names: Vec<&'static str> = values.iter().map(|(n, _)| *n).collect();
        let Some(choice) = self.variant(ev, key, &names, what)? else {
            return default.ok_or_else(|| {
                let hint = format!("add `{key} = ...`, one of {}", list(&names));
                self.missing(ev, key, &hint)
            });
        };
        if let Some(opts) = choice.options {
            let msg = format!("{what} `{}` takes no options", choice.name);
            let d = Diagnostic::error(codes::WRONG_TYPE, msg, opts.span, "unexpected options")
                .with_help(format!("write `{key} = {}`", choice.name));
            return Err(ev.report(d));
        }
        let found = values.iter().find(|(n, _)| *n == choice.name);
        found.map(|(_, v)| *v).ok_or(Reported)
    }
}

/// A chosen variant.
pub struct Choice<'b> {
    /// Its name (one of the allowed names).
    pub name: &'static str,
    /// Where the name was written.
    pub span: Span,
    /// Its options block, when one was written.
    pub options: Option<&'b Block>,
}

fn wrong_type(
    ev: &mut Evaluator<'_>,
    key: &str,
    wanted: &str,
    found: &Val,
    span: Span,
) -> Reported {
    let msg = format!("`{key}` must be {wanted}, found {}", found.type_name());
    let label = format!("this is {} ({})", found.type_name(), show(found));
    let help = match (wanted, found) {
        ("an integer", Val::Float(_)) => format!("write `{key}` as a whole number"),
        ("an integer" | "a number", Val::Str(_)) => "remove the quotes".to_string(),
        _ => format!("`{key}` is {wanted}"),
    };
    ev.report(Diagnostic::error(codes::WRONG_TYPE, msg, span, label).with_help(help))
}

/// Checks that an integer is a positive size no larger than `max`.
pub fn check_size(
    ev: &mut Evaluator<'_>,
    key: &str,
    v: i64,
    span: Span,
    max: u64,
) -> Result<u64, Reported> {
    if v <= 0 {
        let msg = format!("`{key}` must be positive, found {v}");
        let d = Diagnostic::error(codes::NOT_POSITIVE, msg, span, "not positive")
            .with_help(format!("`{key}` is a size and must be at least 1"));
        return Err(ev.report(d));
    }
    let v = v as u64;
    if v > max {
        let msg = format!("`{key}` is too large: {v}");
        let d = Diagnostic::error(codes::TOO_LARGE, msg, span, format!("larger than {max}"))
            .with_help(format!("`{key}` may be at most {max}"));
        return Err(ev.report(d));
    }
    Ok(v)
}
