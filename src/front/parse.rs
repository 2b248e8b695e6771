//! Parsing: source text → [`ast::File`], with syntax errors as diagnostics.
//!
//! The pest grammar (`grammar/tfm.pest`) recognises the text; this module
//! turns its pairs into the spanned syntax tree, applies operator precedence,
//! drops repeated keys (reporting them) and keeps nesting within fixed limits
//! so that no input can exhaust the stack.

use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::{self, BinOp, Block, Entry, Expr, ExprKind, Ident, Item, Value};
use super::diag::{codes, Diagnostic};
use super::span::{FileId, Span};

/// Deepest allowed nesting of `{` and `(` in a file.
pub const MAX_NESTING: usize = 64;
/// Deepest allowed expression tree (operators and calls nested in each other).
pub const MAX_EXPR_DEPTH: usize = 100;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/tfm.pest"]
struct TfmParser;

/// Parses one file. Syntax errors stop the file (the first one is reported);
/// other problems found while building the tree are reported and skipped.
pub fn parse_file(file: FileId, text: &str, diags: &mut Vec<Diagnostic>) -> Option<ast::File> {
    if let Some(d) = check_nesting(file, text) {
        diags.push(d);
        return None;
    }
    let mut pairs = match TfmParser::parse(Rule::file, text) {
        Ok(pairs) => pairs,
        Err(err) => {
            diags.push(syntax_error(file, text, &err));
            return None;
        }
    };
    let mut builder = Builder { file, diags };
    let root = pairs.next()?;
    let mut items = Vec::new();
    for pair in root.into_inner() {
        match pair.as_rule() {
            Rule::include => {
                let string = pair.into_inner().nth(1)?;
                let span = builder.span(&string);
                let path = builder.string(string)?;
                items.push(Item::Include { path, span });
            }
            Rule::let_item => {
                let mut inner = pair.into_inner().skip(1);
                let name = builder.ident(inner.next()?);
                let value = builder.expr(inner.nth(1)?);
                items.push(Item::Let { name, value });
            }
            Rule::model => items.push(Item::Model(builder.model(pair)?)),
            _ => {}
        }
    }
    Some(ast::File { items })
}

/// Rejects files whose brackets nest deeper than [`MAX_NESTING`], before the
/// recursive-descent parser sees them.
fn check_nesting(file: FileId, text: &str) -> Option<Diagnostic> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => i = skip_line(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'/') => i = skip_line(bytes, i),
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    let span = Span::new(file, i, i + 1);
                    let msg = format!("brackets nested more than {MAX_NESTING} deep");
                    return Some(
                        Diagnostic::error(codes::TOO_DEEP, msg, span, "too deep")
                            .with_help("flatten the spec; real models need a few levels"),
                    );
                }
            }
            b'}' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

fn skip_line(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i] != b'\n' {
        i += 1;
    }
    i
}

/// Turns a pest error into a diagnostic in plain words.
fn syntax_error(file: FileId, text: &str, err: &pest::error::Error<Rule>) -> Diagnostic {
    let pos = match err.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<&'static str> = Vec::new();
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &err.variant {
        for rule in positives {
            let word = describe(*rule);
            if !expected.contains(&word) {
                expected.push(word);
            }
        }
    }
    let (found, len) = found_at(text, pos);
    let span = Span::new(file, pos, pos + len);
    let wanted = join_plain(&expected);
    let message = if wanted.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {wanted}, found {found}")
    };
    let label = if wanted.is_empty() {
        "unexpected here".to_string()
    } else {
        format!("expected {wanted}")
    };
    let keyword = super::diag::suggest(&found.replace('`', ""), ["model", "let", "include"]);
    let help = match keyword {
        Some(k) if expected.contains(&"`model`") => format!("did you mean `{k}`?"),
        _ => syntax_help(&expected),
    };
    Diagnostic::error(codes::SYNTAX, message, span, label).with_help(help)
}

fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::include | Rule::kw_include => "`include`",
        Rule::let_item | Rule::kw_let => "`let`",
        Rule::model | Rule::kw_model => "`model`",
        Rule::EOI => "end of file",
        Rule::entry | Rule::key => "a key",
        Rule::block | Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::rparen => "`)`",
        Rule::eq => "`=`",
        Rule::string | Rule::str_inner => "a string",
        Rule::pow | Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::rem => "an operator",
        Rule::base | Rule::name => "a name",
        Rule::variant_name | Rule::ident => "a value",
        _ => "a value",
    }
}

fn join_plain(items: &[&str]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].to_string(),
        n => format!("{} or {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

/// Describes the text at `pos` and how many bytes of it to underline.
fn found_at(text: &str, pos: usize) -> (String, usize) {
    let rest = text.get(pos..).unwrap_or("");
    let Some(first) = rest.chars().next() else {
        return ("end of file".to_string(), 0);
    };
    if first == '\n' || first == '\r' {
        return ("end of line".to_string(), 0);
    }
    let word_len: usize = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .map(char::len_utf8)
        .sum();
    let len = if word_len > 0 {
        word_len
    } else {
        first.len_utf8()
    };
    (format!("`{}`", &rest[..len]), len)
}

fn syntax_help(expected: &[&str]) -> String {
    let has = |w: &str| expected.contains(&w);
    if has("`model`") {
        "a file holds `include \"file.tfm\"`, `let NAME = value` and `model NAME { ... }` items"
            .to_string()
    } else if has("`=`") {
        "set a key with `key = value`, or open a block with `key { ... }`".to_string()
    } else if has("a value") {
        "a value is a number, `true` or `false`, a string, a name, or an expression such as \
         `4 * hidden_size`"
            .to_string()
    } else if has("`}`") || has("a key") {
        "a block holds `key = value`, `key { ... }` and `key = variant { ... }` entries, \
         separated by newlines or commas, and ends with `}`"
            .to_string()
    } else if has("`)`") {
        "close the parenthesis with `)`".to_string()
    } else {
        "check the syntax near this point".to_string()
    }
}

struct Builder<'d> {
    file: FileId,
    diags: &'d mut Vec<Diagnostic>,
}

/// One operator on the shunting-yard stack.
enum Op {
    Neg(usize),
    Bin(BinOp),
}

fn precedence(op: &Op) -> u8 {
    match op {
        Op::Bin(BinOp::Add | BinOp::Sub) => 1,
        Op::Bin(BinOp::Mul | BinOp::Div | BinOp::Rem) => 2,
        Op::Neg(_) => 3,
        Op::Bin(BinOp::Pow) => 4,
    }
}

impl Builder<'_> {
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, s.start(), s.end())
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(&pair),
        }
    }

    fn model(&mut self, pair: Pair<Rule>) -> Option<ast::ModelDecl> {
        let mut name = None;
        let mut base = None;
        let mut body = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::name => name = Some(self.ident(p)),
                Rule::base => base = Some(self.ident(p)),
                Rule::block => body = Some(self.block(p)),
                _ => {}
            }
        }
        let name = name?;
        let body = body.unwrap_or(Block {
            entries: Vec::new(),
            span: name.span,
        });
        Some(ast::ModelDecl { name, base, body })
    }

    fn block(&mut self, pair: Pair<Rule>) -> Block {
        let span = self.span(&pair);
        let mut entries: Vec<Entry> = Vec::new();
        for p in pair.into_inner() {
            if p.as_rule() != Rule::entry {
                continue;
            }
            let Some(entry) = self.entry(p) else { continue };
            if let Some(first) = entries.iter().find(|e| e.key.name == entry.key.name) {
                let msg = format!("`{}` is set twice in this block", entry.key.name);
                self.diags.push(
                    Diagnostic::error(codes::DUPLICATE_KEY, msg, entry.key.span, "set again here")
                        .with_secondary(first.key.span, "first set here")
                        .with_help("remove one of them; to change a key of a base model, set it in the derived model's body"),
                );
                continue;
            }
            entries.push(entry);
        }
        Block { entries, span }
    }

    fn entry(&mut self, pair: Pair<Rule>) -> Option<Entry> {
        let mut inner = pair.into_inner();
        let key = self.ident(inner.next()?);
        let mut value = None;
        for p in inner {
            match p.as_rule() {
                Rule::block => value = Some(Value::Block(self.block(p))),
                Rule::variant => {
                    let mut vi = p.into_inner();
                    let name = self.ident(vi.next()?);
                    let options = self.block(vi.next()?);
                    value = Some(Value::Variant { name, options });
                }
                Rule::expr => value = Some(Value::Expr(self.expr(p))),
                _ => {}
            }
        }
        Some(Entry { key, value: value? })
    }

    /// Builds an expression with operator precedence (shunting-yard, no recursion
    /// over the operator chain).
    fn expr(&mut self, pair: Pair<Rule>) -> Expr {
        let span = self.span(&pair);
        let mut out: Vec<(Expr, usize)> = Vec::new();
        let mut ops: Vec<Op> = Vec::new();
        let mut too_deep = false;
        for p in pair.into_inner() {
            let op = match p.as_rule() {
                Rule::operand => {
                    for q in p.into_inner() {
                        if q.as_rule() == Rule::neg {
                            ops.push(Op::Neg(q.as_span().start()));
                        } else {
                            let (e, d) = self.primary(q);
                            too_deep |= d > MAX_EXPR_DEPTH;
                            out.push((e, d));
                        }
                    }
                    continue;
                }
                Rule::add => BinOp::Add,
                Rule::sub => BinOp::Sub,
                Rule::mul => BinOp::Mul,
                Rule::div => BinOp::Div,
                Rule::rem => BinOp::Rem,
                _ => BinOp::Pow,
            };
            let incoming = Op::Bin(op);
            while let Some(top) = ops.last() {
                let (pt, pi) = (precedence(top), precedence(&incoming));
                if pt > pi || (pt == pi && op != BinOp::Pow) {
                    if let Some(top) = ops.pop() {
                        too_deep |= reduce(self.file, &mut out, top) > MAX_EXPR_DEPTH;
                    }
                } else {
                    break;
                }
            }
            ops.push(incoming);
        }
        while let Some(top) = ops.pop() {
            too_deep |= reduce(self.file, &mut out, top) > MAX_EXPR_DEPTH;
        }
        if too_deep {
            let msg = format!("expression nested more than {MAX_EXPR_DEPTH} operators deep");
            self.diags.push(
                Diagnostic::error(codes::TOO_DEEP, msg, span, "too deep")
                    .with_help("split it with `let` constants"),
            );
            return Expr {
                kind: ExprKind::Invalid,
                span,
            };
        }
        match out.pop() {
            Some((e, _)) if out.is_empty() => e,
            _ => Expr {
                kind: ExprKind::Invalid,
                span,
            },
        }
    }

    /// A primary expression and its depth.
    fn primary(&mut self, pair: Pair<Rule>) -> (Expr, usize) {
        let span = self.span(&pair);
        let text = pair.as_str();
        let kind = match pair.as_rule() {
            Rule::int => match text.replace('_', "").parse::<i64>() {
                Ok(v) => ExprKind::Int(v),
                Err(_) => {
                    self.number_too_large(span, "integer", "at most 9223372036854775807");
                    ExprKind::Invalid
                }
            },
            Rule::float => match text.replace('_', "").parse::<f64>() {
                Ok(v) if v.is_finite() => ExprKind::Float(v),
                _ => {
                    self.number_too_large(span, "number", "at most about 1.8e308");
                    ExprKind::Invalid
                }
            },
            Rule::boolean => ExprKind::Bool(text == "true"),
            Rule::string => match self.string(pair) {
                Some(s) => ExprKind::Str(s),
                None => ExprKind::Invalid,
            },
            Rule::ident => ExprKind::Ident(text.to_string()),
            Rule::paren => {
                return match pair.into_inner().next() {
                    Some(inner) => {
                        let e = self.expr(inner);
                        let d = depth(&e);
                        (Expr { kind: e.kind, span }, d)
                    }
                    None => (Expr::invalid(span), 1),
                };
            }
            Rule::call => {
                let mut inner = pair.into_inner();
                let Some(callee) = inner.next() else {
                    return (Expr::invalid(span), 1);
                };
                let callee = self.ident(callee);
                let args: Vec<Expr> = inner
                    .filter(|p| p.as_rule() == Rule::expr)
                    .map(|p| self.expr(p))
                    .collect();
                let d = args.iter().map(depth).max().unwrap_or(0) + 1;
                return (
                    Expr {
                        kind: ExprKind::Call(callee, args),
                        span,
                    },
                    d,
                );
            }
            _ => ExprKind::Invalid,
        };
        (Expr { kind, span }, 1)
    }

    fn number_too_large(&mut self, span: Span, what: &str, limit: &str) {
        let msg = format!("{what} literal too large");
        self.diags.push(
            Diagnostic::error(
                codes::NUMBER_TOO_LARGE,
                msg,
                span,
                "does not fit in 64 bits",
            )
            .with_help(format!("numbers must be {limit}")),
        );
    }

    /// The text of a string literal with its escapes resolved.
    fn string(&mut self, pair: Pair<Rule>) -> Option<String> {
        let inner = pair.into_inner().next()?;
        let start = inner.as_span().start();
        let mut out = String::new();
        let mut chars = inner.as_str().char_indices();
        while let Some((_, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((i, other)) => {
                    let at = start + i - 1;
                    let span = Span::new(self.file, at, at + 1 + other.len_utf8());
                    let msg = format!("unknown escape `\\{other}` in string");
                    self.diags.push(
                        Diagnostic::error(codes::BAD_ESCAPE, msg, span, "unknown escape")
                            .with_help(r#"the escapes are `\"`, `\\`, `\n` and `\t`"#),
                    );
                    return None;
                }
                None => return None,
            }
        }
        Some(out)
    }
}

impl Expr {
    fn invalid(span: Span) -> Expr {
        Expr {
            kind: ExprKind::Invalid,
            span,
        }
    }
}

/// Depth of an expression tree (bounded by construction, so recursion is safe).
fn depth(e: &Expr) -> usize {
    match &e.kind {
        ExprKind::Neg(x) => depth(x) + 1,
        ExprKind::Binary(_, a, b) => depth(a).max(depth(b)) + 1,
        ExprKind::Call(_, args) => args.iter().map(depth).max().unwrap_or(0) + 1,
        _ => 1,
    }
}

/// Applies one operator to the top of the output stack; returns the new depth.
///
/// A result deeper than [`MAX_EXPR_DEPTH`] is kept as an `Invalid` leaf
/// (with its depth, so the caller reports it): a tree of a long operator
/// chain is never built, so it is never dropped recursively either.
fn reduce(file: FileId, out: &mut Vec<(Expr, usize)>, op: Op) -> usize {
    let d = reduce_once(file, out, op);
    if d > MAX_EXPR_DEPTH {
        if let Some((e, _)) = out.pop() {
            let invalid = Expr {
                kind: ExprKind::Invalid,
                span: e.span,
            };
            out.push((invalid, d));
        }
    }
    d
}

/// Pops the operands of `op`, pushes the node, and returns its depth.
fn reduce_once(file: FileId, out: &mut Vec<(Expr, usize)>, op: Op) -> usize {
    match op {
        Op::Neg(start) => {
            let Some((e, d)) = out.pop() else { return 0 };
            let span = Span::new(file, start, e.span.end);
            out.push((
                Expr {
                    kind: ExprKind::Neg(Box::new(e)),
                    span,
                },
                d + 1,
            ));
            d + 1
        }
        Op::Bin(b) => {
            let (Some((rhs, dr)), Some((lhs, dl))) = (out.pop(), out.pop()) else {
                return 0;
            };
            let span = lhs.span.to(rhs.span);
            let d = dl.max(dr) + 1;
            out.push((
                Expr {
                    kind: ExprKind::Binary(b, Box::new(lhs), Box::new(rhs)),
                    span,
                },
                d,
            ));
            d
        }
    }
}
