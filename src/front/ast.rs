//! The spanned syntax tree of a `.tfm` file, before any meaning is given to it.
//!
//! The parser (`parse.rs`) builds it; derivation (`derive.rs`) merges model
//! bodies; the schema (`schema.rs`) reads the merged blocks into a
//! [`crate::model::Model`]. Blocks are generic: which keys exist is the
//! schema's business, not the grammar's.

use super::span::Span;

/// A name with the place it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The text of the name.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// A parsed source file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct File {
    /// Items in source order.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `include "path"`; the span covers the string.
    Include {
        /// The path as written, relative to the including file.
        path: String,
        /// Where the path was written.
        span: Span,
    },
    /// `let NAME = expr`.
    Let {
        /// The constant's name.
        name: Ident,
        /// Its value.
        value: Expr,
    },
    /// `model NAME [= BASE] { ... }`.
    Model(ModelDecl),
}

/// A model declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDecl {
    /// The model's name.
    pub name: Ident,
    /// The model it derives from, if any.
    pub base: Option<Ident>,
    /// Its own entries (the overrides, for a derived model).
    pub body: Block,
}

/// `{ entries }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Entries in source order; keys are unique (the parser reports and drops
    /// repeated ones).
    pub entries: Vec<Entry>,
    /// From `{` to `}`.
    pub span: Span,
}

impl Block {
    /// The entry with this key.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key.name == key)
    }
}

/// One entry of a block.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: Ident,
    /// What the key is set to.
    pub value: Value,
}

/// The right-hand side of an entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `key = expr`. A bare identifier may also name an enum value or a
    /// variant without options; the schema decides.
    Expr(Expr),
    /// `key { ... }`.
    Block(Block),
    /// `key = variant { ... }`.
    Variant {
        /// The variant's name.
        name: Ident,
        /// Its options.
        options: Block,
    },
}

impl Value {
    /// The span of the whole value.
    pub fn span(&self) -> Span {
        match self {
            Value::Expr(e) => e.span,
            Value::Block(b) => b.span,
            Value::Variant { name, options } => name.span.to(options.span),
        }
    }
}

/// An expression with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

impl Expr {
    /// The identifier, when the expression is a bare one.
    pub fn as_ident(&self) -> Option<&str> {
        match &self.kind {
            ExprKind::Ident(name) => Some(name),
            _ => None,
        }
    }
}

/// Expression forms.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// An integer literal.
    Int(i64),
    /// A floating-point literal.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A string literal, escapes resolved.
    Str(String),
    /// A reference to a key of an enclosing block or a `let`.
    Ident(String),
    /// `-x`.
    Neg(Box<Expr>),
    /// `a op b`.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `f(args)`.
    Call(Ident, Vec<Expr>),
    /// A literal already reported as invalid; evaluates to nothing, silently.
    Invalid,
}

/// Binary operators, from loosest to tightest binding: `+ -`, `* / %`, `**`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`; exact on integers, or a float.
    Div,
    /// `%`
    Rem,
    /// `**`, right-associative, binds tighter than unary minus.
    Pow,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Pow => "**",
        }
    }
}
