//! Derivation: `model tiny = bert_base { encoder { layers = 2 } }`.
//!
//! A derived model's body is deep-merged into its base's merged body before
//! anything is evaluated. Blocks merge key by key; a choice with the same
//! variant name merges its options, a different name replaces it; any other
//! entry is replaced. Bases may be derived themselves (up to
//! [`MAX_DERIVATION_DEPTH`]); cycles are reported.

use std::collections::HashMap;

use super::ast::{Block, Entry, ModelDecl, Value};
use super::diag::{codes, did_you_mean, Diagnostic};

/// Longest chain of models deriving from models.
pub const MAX_DERIVATION_DEPTH: usize = 64;

/// All models known to a load, by name, and the merged bodies computed so far.
#[derive(Default)]
pub struct Models {
    /// Declarations by name.
    pub decls: HashMap<String, ModelDecl>,
    merged: HashMap<String, Option<Block>>,
}

impl Models {
    /// The merged body of model `name`, or `None` after reporting why not.
    pub fn merged(&mut self, name: &str, diags: &mut Vec<Diagnostic>) -> Option<Block> {
        let mut chain = Vec::new();
        self.resolve(name, &mut chain, diags)
    }

    fn resolve(
        &mut self,
        name: &str,
        chain: &mut Vec<String>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Block> {
        if let Some(done) = self.merged.get(name) {
            return done.clone();
        }
        let decl = self.decls.get(name)?.clone();
        let result = match &decl.base {
            None => Some(decl.body.clone()),
            Some(base) => {
                chain.push(name.to_string());
                let merged = if chain.contains(&base.name) {
                    let start = chain.iter().position(|n| *n == base.name).unwrap_or(0);
                    let mut cycle: Vec<&str> = chain[start..].iter().map(String::as_str).collect();
                    cycle.push(&base.name);
                    let msg = if base.name == name {
                        format!("model `{name}` derives from itself")
                    } else {
                        format!(
                            "models `{}` derive from each other",
                            cycle[..cycle.len() - 1].join("`, `")
                        )
                    };
                    diags.push(
                        Diagnostic::error(codes::DERIVATION_CYCLE, msg, base.span, "cycle here")
                            .with_help(format!(
                                "the chain is `{}`; one of them must stand on its own",
                                cycle.join("` → `")
                            )),
                    );
                    None
                } else if chain.len() > MAX_DERIVATION_DEPTH {
                    let msg =
                        format!("models derive from models more than {MAX_DERIVATION_DEPTH} deep");
                    diags.push(
                        Diagnostic::error(codes::TOO_DEEP, msg, base.span, "too deep")
                            .with_help("write some of these models out in full"),
                    );
                    None
                } else if !self.decls.contains_key(&base.name) {
                    let names: Vec<&str> = self.decls.keys().map(String::as_str).collect();
                    let mut sorted = names.clone();
                    sorted.sort_unstable();
                    let msg = format!("unknown base model `{}`", base.name);
                    let help = if sorted.is_empty() {
                        "no model is defined or included".to_string()
                    } else {
                        did_you_mean(&base.name, &sorted, "model")
                    };
                    diags.push(
                        Diagnostic::error(codes::UNKNOWN_BASE, msg, base.span, "no such model")
                            .with_help(format!("{help} (bases may come from included files)")),
                    );
                    None
                } else {
                    self.resolve(&base.name, chain, diags)
                        .map(|b| merge_blocks(&b, &decl.body))
                };
                chain.pop();
                merged
            }
        };
        self.merged.insert(name.to_string(), result.clone());
        result
    }
}

/// Deep-merges `over` into `base`; the result keeps the base's span.
pub fn merge_blocks(base: &Block, over: &Block) -> Block {
    let mut entries: Vec<Entry> = base.entries.clone();
    for o in &over.entries {
        match entries.iter_mut().find(|e| e.key.name == o.key.name) {
            Some(slot) => slot.value = merge_values(&slot.value, &o.value),
            None => entries.push(o.clone()),
        }
    }
    Block {
        entries,
        span: base.span,
    }
}

fn merge_values(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Block(b), Value::Block(o)) => Value::Block(merge_blocks(b, o)),
        (
            Value::Variant { name, options },
            Value::Variant {
                name: oname,
                options: oopts,
            },
        ) if name.name == oname.name => Value::Variant {
            name: oname.clone(),
            options: merge_blocks(options, oopts),
        },
        (Value::Variant { name, .. }, Value::Expr(e)) if e.as_ident() == Some(&name.name) => {
            base.clone()
        }
        _ => over.clone(),
    }
}
