//! Errors of checkpoint loading: a bad weight map ([`MapError`]) and a
//! checkpoint that does not fit the compiled graph ([`LoadError`]).
//!
//! Loading is strict and reports everything at once: [`LoadError::Mismatch`]
//! carries every [`Problem`] found (missing and unexpected tensors, shapes,
//! dtypes, non-finite values, damaged files), rendered one per line with the
//! canonical name, the checkpoint name and both shapes.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

/// A weight map that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// `WeightMap::builtin` was asked for a family it does not know.
    #[error("no built-in weight map named `{name}` (known: {})", known.join(", "))]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
        /// The built-in names.
        known: Vec<String>,
    },
    /// The map file could not be read.
    #[error("cannot read weight map `{path}`: {source}")]
    Io {
        /// The map file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The map is not valid YAML of the expected form.
    #[error("weight map `{origin}`: {reason}")]
    Parse {
        /// The file path or built-in name.
        origin: String,
        /// What the YAML reader reported, with line and column.
        reason: String,
    },
    /// The map parses but says something impossible (a source template that
    /// uses a placeholder its target lacks, a transform with a zero size).
    #[error("weight map `{origin}`: {reason}")]
    Invalid {
        /// The file path or built-in name.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a checkpoint could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path names neither a safetensors file, nor a folder holding
    /// `model.safetensors` or `model.safetensors.index.json`, nor an index.
    #[error("cannot open checkpoint `{path}`: {reason}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The checkpoint was read, and does not fit the graph: every problem found.
    #[error("{0}")]
    Mismatch(Problems),
}

/// Every problem found while matching a checkpoint against a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Problems {
    /// The checkpoint path as given.
    pub checkpoint: PathBuf,
    /// The name of the weight map used.
    pub map: String,
    /// The problems, file problems first, then in graph order, then
    /// unexpected checkpoint tensors by name.
    pub problems: Vec<Problem>,
}

/// One way in which a checkpoint does not fit the graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// A file of the checkpoint is damaged: the safetensors reader's error.
    File {
        /// The file.
        path: PathBuf,
        /// What the reader reported.
        reason: String,
    },
    /// A shard named by the index does not exist or cannot be opened.
    Shard {
        /// The shard file.
        path: PathBuf,
        /// How many tensors the index places in it.
        tensors: usize,
        /// The I/O error.
        reason: String,
    },
    /// A graph weight whose checkpoint tensor is absent.
    Missing {
        /// Canonical parameter name.
        target: String,
        /// Its shape in the graph.
        expected: Vec<u64>,
        /// The checkpoint names tried, in order.
        looked_for: Vec<String>,
    },
    /// A graph weight that no rule of the map covers.
    Unmapped {
        /// Canonical parameter name.
        target: String,
        /// Its shape in the graph.
        expected: Vec<u64>,
    },
    /// The transformed checkpoint tensor has the wrong shape.
    Shape {
        /// Canonical parameter name.
        target: String,
        /// Its shape in the graph.
        expected: Vec<u64>,
        /// The shape after the map's transforms.
        found: Vec<u64>,
        /// The checkpoint tensor.
        source: String,
    },
    /// A transform does not apply to the checkpoint tensor.
    Transform {
        /// Canonical parameter name.
        target: String,
        /// The checkpoint tensor.
        source: String,
        /// Its shape in the checkpoint.
        shape: Vec<u64>,
        /// Why the transform fails.
        reason: String,
    },
    /// The checkpoint tensor's element type cannot be converted.
    Dtype {
        /// The checkpoint tensor.
        source: String,
        /// Its safetensors dtype.
        dtype: String,
        /// The graph weight's dtype.
        target_dtype: String,
    },
    /// The checkpoint tensor holds NaN or infinite values.
    NonFinite {
        /// The checkpoint tensor.
        source: String,
        /// Number of NaNs.
        nan: usize,
        /// Number of infinities.
        inf: usize,
    },
    /// Finite values that become infinite in the weight's narrower dtype.
    Range {
        /// The checkpoint tensor.
        source: String,
        /// The graph weight's dtype.
        target_dtype: String,
        /// How many values overflow.
        count: usize,
        /// The largest magnitude found.
        largest: f32,
    },
    /// A tensor the map lists as tied differs from the tensor it is tied to.
    Untied {
        /// The checkpoint tensor.
        source: String,
        /// The checkpoint tensor it should equal.
        same_as: String,
        /// The graph weight that stands for both.
        target: String,
    },
    /// One checkpoint tensor would feed several graph weights through one rule.
    Ambiguous {
        /// The checkpoint tensor.
        source: String,
        /// The graph weights.
        targets: Vec<String>,
    },
    /// A transform uses a variable that is not bound.
    Variable {
        /// Canonical parameter name.
        target: String,
        /// The variable.
        name: String,
    },
    /// A checkpoint tensor that no rule consumes and that is not ignored.
    Unexpected {
        /// The checkpoint tensor.
        name: String,
        /// Its shape.
        shape: Vec<u64>,
    },
}

impl Problem {
    /// The short label that opens the problem's line.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::File { .. } => "file",
            Problem::Shard { .. } => "shard",
            Problem::Missing { .. } => "missing",
            Problem::Unmapped { .. } => "unmapped",
            Problem::Shape { .. } => "shape",
            Problem::Transform { .. } => "transform",
            Problem::Dtype { .. } => "dtype",
            Problem::NonFinite { .. } => "non-finite",
            Problem::Range { .. } => "range",
            Problem::Untied { .. } => "untied",
            Problem::Ambiguous { .. } => "ambiguous",
            Problem::Variable { .. } => "variable",
            Problem::Unexpected { .. } => "unexpected",
        }
    }
}

/// `[32, 64]`.
pub(crate) fn shape_text(shape: &[u64]) -> String {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<11} ", self.kind())?;
        match self {
            Problem::File { path, reason } => write!(f, "{}: {reason}", path.display()),
            Problem::Shard {
                path,
                tensors,
                reason,
            } => write!(
                f,
                "{} (named by the index for {tensors} tensors): {reason}",
                path.display()
            ),
            Problem::Missing {
                target,
                expected,
                looked_for,
            } => {
                let tried: Vec<String> = looked_for.iter().map(|n| format!("`{n}`")).collect();
                write!(
                    f,
                    "{target}  expected {}  (looked for {})",
                    shape_text(expected),
                    tried.join(" or ")
                )
            }
            Problem::Unmapped { target, expected } => write!(
                f,
                "{target}  expected {}  (no rule of the map names this weight)",
                shape_text(expected)
            ),
            Problem::Shape {
                target,
                expected,
                found,
                source,
            } => write!(
                f,
                "{target}  expected {}, found {} in `{source}`",
                shape_text(expected),
                shape_text(found)
            ),
            Problem::Transform {
                target,
                source,
                shape,
                reason,
            } => write!(f, "{target}  `{source}` {}: {reason}", shape_text(shape)),
            Problem::Dtype {
                source,
                dtype,
                target_dtype,
            } => write!(
                f,
                "`{source}` is {dtype}, which cannot be converted to {target_dtype} \
                 (F32, F16, BF16 and F64 can)"
            ),
            Problem::NonFinite { source, nan, inf } => {
                let count = |n: usize, what: &str| match n {
                    0 => None,
                    1 => Some(format!("1 {what} value")),
                    n => Some(format!("{n} {what} values")),
                };
                let counts: Vec<String> = [count(*nan, "NaN"), count(*inf, "infinite")]
                    .into_iter()
                    .flatten()
                    .collect();
                write!(f, "`{source}` holds {}", counts.join(" and "))
            }
            Problem::Range {
                source,
                target_dtype,
                count,
                largest,
            } => write!(
                f,
                "`{source}`: {count} values overflow {target_dtype} (largest magnitude {largest:e})"
            ),
            Problem::Untied {
                source,
                same_as,
                target,
            } => write!(
                f,
                "`{source}` differs from `{same_as}`, but the model ties both to {target}"
            ),
            Problem::Ambiguous { source, targets } => {
                write!(f, "`{source}` would load into {}", targets.join(" and "))
            }
            Problem::Variable { target, name } => write!(
                f,
                "{target}  the map's transform needs `{name}`, which is not bound"
            ),
            Problem::Unexpected { name, shape } => write!(f, "{name}  {}", shape_text(shape)),
        }
    }
}

impl Problems {
    /// One `help:` line per kind of trouble present, in a fixed order.
    fn help(&self) -> Vec<String> {
        let has = |kinds: &[&str]| self.problems.iter().any(|p| kinds.contains(&p.kind()));
        let mut help = Vec::new();
        if has(&["file", "shard"]) {
            help.push(
                "the checkpoint files are damaged or incomplete: fetch them again".to_string(),
            );
        }
        if has(&[
            "missing",
            "unmapped",
            "unexpected",
            "shape",
            "transform",
            "ambiguous",
        ]) {
            help.push(format!(
                "the spec and the checkpoint disagree: compare the spec's sizes, layer count \
                 and heads with the checkpoint's config.json, or give a weight map that fits \
                 this checkpoint's names (used: `{}`)",
                self.map
            ));
        }
        if has(&["non-finite"]) {
            help.push("NaN or infinite weights make every output meaningless".to_string());
        }
        if has(&["range"]) {
            help.push("compile the model in f32 to keep these values".to_string());
        }
        if has(&["dtype"]) {
            help.push("convert the checkpoint to a floating-point dtype".to_string());
        }
        if has(&["untied"]) {
            help.push(
                "the checkpoint has its own LM head: set `tie_word_embeddings = false` in the spec"
                    .to_string(),
            );
        }
        if has(&["variable"]) {
            help.push("bind the model's sizes with `WeightMap::with_model`".to_string());
        }
        help
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        let plural = if n == 1 { "" } else { "s" };
        writeln!(
            f,
            "error: the checkpoint does not fit the model ({n} problem{plural})"
        )?;
        writeln!(f, "  --> {}", self.checkpoint.display())?;
        let mut text = String::new();
        for p in &self.problems {
            let _ = writeln!(text, "  {p}");
        }
        for h in self.help() {
            let _ = writeln!(text, "help: {h}");
        }
        f.write_str(text.trim_end())
    }
}
