//! Front-end diagnostics: what went wrong in a spec, where, and how to fix it.
//!
//! Every check of the front end produces a [`Diagnostic`] with a stable code
//! (listed in [`codes`]), a primary span, optional secondary spans and a help
//! line. [`crate::front::render`] turns them into compiler-style reports.

use super::span::Span;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The spec cannot be compiled.
    Error,
    /// The spec compiles but probably does not mean what it says.
    Warning,
}

/// One problem found in a spec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("error[{code}]: {message}")]
pub struct Diagnostic {
    /// Stable code, e.g. `E0101`; see [`codes`].
    pub code: &'static str,
    /// How serious it is.
    pub severity: Severity,
    /// One-line summary.
    pub message: String,
    /// The offending construct.
    pub primary: Span,
    /// Text shown under the primary span.
    pub label: String,
    /// Related places, each with its own label.
    pub secondary: Vec<(Span, String)>,
    /// A suggestion of how to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error with a code, message, primary span and label.
    pub fn error(
        code: &'static str,
        message: impl Into<String>,
        primary: Span,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            primary,
            label: label.into(),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// Adds a secondary span with its label.
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }

    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the help line when there is one.
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// Whether this diagnostic stops compilation.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The stable diagnostic codes of the front end.
///
/// `E00xx` are about files and syntax, `E01xx` about the structure of blocks,
/// `E02xx` about expressions, `E03xx` about models and derivation, and `E04xx`
/// about the meaning of the sizes and options.
pub mod codes {
    /// Syntax error.
    pub const SYNTAX: &str = "E0001";
    /// A file (top file or include) cannot be read.
    pub const FILE_NOT_FOUND: &str = "E0002";
    /// A file includes itself, directly or through others.
    pub const INCLUDE_CYCLE: &str = "E0003";
    /// Includes, blocks or expressions nested too deeply.
    pub const TOO_DEEP: &str = "E0004";
    /// Two `let`s or two models with the same name.
    pub const DUPLICATE_DEFINITION: &str = "E0005";
    /// A number literal that does not fit in 64 bits.
    pub const NUMBER_TOO_LARGE: &str = "E0006";
    /// A string literal with an unknown escape.
    pub const BAD_ESCAPE: &str = "E0007";

    /// A key the schema does not know in this block.
    pub const UNKNOWN_KEY: &str = "E0101";
    /// The same key twice in one block.
    pub const DUPLICATE_KEY: &str = "E0102";
    /// A required key is missing.
    pub const MISSING_KEY: &str = "E0103";
    /// A value of the wrong type (string for number, float for integer, ...).
    pub const WRONG_TYPE: &str = "E0104";
    /// A variant or enum value the schema does not know.
    pub const UNKNOWN_VARIANT: &str = "E0105";

    /// An identifier in an expression that names nothing in scope.
    pub const UNKNOWN_IDENT: &str = "E0201";
    /// An integer division with a remainder where an integer is needed.
    pub const INEXACT_DIVISION: &str = "E0202";
    /// Arithmetic overflow, or a result that is not a finite number.
    pub const OVERFLOW: &str = "E0203";
    /// Division or remainder by zero.
    pub const DIVISION_BY_ZERO: &str = "E0204";
    /// An unknown function, or a call with the wrong arguments.
    pub const BAD_CALL: &str = "E0205";
    /// A value that depends on itself.
    pub const CYCLIC_VALUE: &str = "E0206";

    /// A derived model names a base that does not exist.
    pub const UNKNOWN_BASE: &str = "E0301";
    /// A model derives from itself, directly or through others.
    pub const DERIVATION_CYCLE: &str = "E0302";
    /// A model was asked for by name and the file has none of that name.
    pub const UNKNOWN_MODEL: &str = "E0303";
    /// The file defines no model.
    pub const NO_MODEL: &str = "E0304";

    /// A size that must be positive is zero or negative.
    pub const NOT_POSITIVE: &str = "E0401";
    /// A size so large that no machine could hold the model.
    pub const TOO_LARGE: &str = "E0402";
    /// Attention heads do not divide the hidden size.
    pub const HEADS_DIVIDE: &str = "E0403";
    /// Key/value heads do not divide the attention heads.
    pub const KV_HEADS_DIVIDE: &str = "E0404";
    /// A rotary dimension that is odd or wider than a head.
    pub const ROTARY_DIM: &str = "E0405";
    /// Cross-attention in a model without an encoder.
    pub const CROSS_WITHOUT_ENCODER: &str = "E0406";
    /// A model with neither an encoder nor a decoder.
    pub const NO_STACK: &str = "E0407";
    /// A token id outside the vocabulary.
    pub const TOKEN_OUT_OF_RANGE: &str = "E0408";
    /// Options that contradict each other.
    pub const CONFLICT: &str = "E0409";
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for cand in candidates {
        let score = strsim::jaro_winkler(word, cand);
        let close = strsim::damerau_levenshtein(word, cand) <= (word.len().max(3) / 3).max(1);
        if (score >= 0.85 || close) && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, cand));
        }
    }
    best.map(|(_, c)| c)
}

/// A `did you mean` help line, or a list of what is allowed when nothing is close.
pub fn did_you_mean(word: &str, candidates: &[&str], what: &str) -> String {
    match suggest(word, candidates.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if candidates.is_empty() => format!("no {what} is allowed here"),
        None => format!("expected one of {}", list(candidates)),
    }
}

/// `a`, `b` or `c`, with backquotes.
pub fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("`{s}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}
