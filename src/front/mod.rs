//! The front end: `.tfm` text → checked [`Model`]s, or diagnostics.
//!
//! | stage | file | in → out |
//! |---|---|---|
//! | parse | `parse.rs` (grammar in `grammar/tfm.pest`) | text → syntax tree (`ast.rs`) |
//! | load | this file | includes, `let`s and model declarations of every file |
//! | derive | `derive.rs` | `model a = b { ... }` → one merged body per model |
//! | evaluate + check | `eval.rs`, `reader.rs`, `schema.rs` | merged body → [`Model`] |
//!
//! Every stage reports problems as [`Diagnostic`]s (codes in [`codes`]) and
//! keeps going where it can, so one run shows all the errors of a spec;
//! [`render`] prints them like a compiler does.
//!
//! # The language in brief
//!
//! ```text
//! include "other.tfm"               # relative to this file; its models can be bases
//! let width = 768                   # file constant, visible in this file and its includers
//!
//! model bert_base {                 # a model: a block of entries
//!   vocab_size  = 30522             # key = expression
//!   hidden_size = width
//!   embeddings {                    # key { nested block }
//!     position = learned { max_position_embeddings = 512 }   # key = variant { options }
//!     norm     = layer_norm { eps = 1e-12 }
//!   }
//!   encoder {
//!     layers = 12, attention { heads = 12 }                   # commas or newlines
//!     feed_forward { intermediate_size = 4 * hidden_size, activation = gelu }
//!     norm = layer_norm { eps = 1e-12, position = post }
//!   }
//! }
//! model tiny = bert_base { encoder { layers = 2 } }           # derive: deep merge
//! ```
//!
//! Expressions: integers (`128_256`), floats (`1e-12`), `true`/`false`,
//! strings, `+ - * / % **` (usual precedence, `**` binds tightest and to the
//! right, `-2 ** 2` is `-4`), parentheses, unary minus, and `sqrt`, `min`,
//! `max`, `floor`, `ceil`, `round`. Integer `/` is exact or gives a float,
//! which is an error where an integer is needed. Names resolve to keys of the
//! enclosing blocks, innermost first, then to `let`s; where a key takes an
//! enum (activation, dtype, pooling, norm position, ...) a bare name is the
//! enum value. Expressions are evaluated after derivation, so a base's
//! `4 * hidden_size` follows a derived model's `hidden_size`.
//!
//! Derivation merges blocks key by key; a choice with the same variant name
//! merges its options, a different variant replaces it, anything else is
//! replaced. A value starts on the line of its `=`; a newline ends it unless
//! it follows an operator or sits in parentheses. `#` and `//` start comments.

mod ast;
mod derive;
mod diag;
mod eval;
mod parse;
mod reader;
mod schema;
pub mod span;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;

pub use derive::MAX_DERIVATION_DEPTH;
pub use diag::{codes, Diagnostic, Severity};
pub use parse::{MAX_EXPR_DEPTH, MAX_NESTING};
pub use reader::{MAX_LAYERS, MAX_PARAMETERS, MAX_SIZE};
pub use span::{FileId, Span};

use crate::model::Model;
use ast::Item;
use derive::Models;
use eval::Lets;

/// Deepest chain of files including files.
pub const MAX_INCLUDE_DEPTH: usize = 64;

/// The source files of a run: their names and texts, by [`FileId`].
pub struct SourceMap {
    files: SimpleFiles<String, String>,
    by_path: HashMap<PathBuf, FileId>,
    count: usize,
}

impl Default for SourceMap {
    fn default() -> Self {
        Self::new()
    }
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        SourceMap {
            files: SimpleFiles::new(),
            by_path: HashMap::new(),
            count: 0,
        }
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.count += 1;
        self.files.add(name.into(), text.into())
    }

    /// Number of files added.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no file was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The name a file was added under.
    pub fn name(&self, id: FileId) -> Option<&str> {
        self.files.get(id).ok().map(|f| f.name().as_str())
    }

    /// The text of a file.
    pub fn text(&self, id: FileId) -> Option<&str> {
        self.files.get(id).ok().map(|f| f.source().as_str())
    }

    /// The 1-based line and column of the start of a span.
    pub fn line_col(&self, span: Span) -> Option<(usize, usize)> {
        let text = self.text(span.file)?;
        let before = text.get(..span.start)?;
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Some((line, col))
    }

    /// The id of a file loaded from `path` (canonical), if any.
    pub fn id_of(&self, path: &Path) -> Option<FileId> {
        let canonical = std::fs::canonicalize(path).ok()?;
        self.by_path.get(&canonical).copied()
    }
}

/// Loads a spec file: parses it and its includes, derives, evaluates and
/// checks every model defined in the file itself (not those only included).
pub fn load(path: &Path, sources: &mut SourceMap) -> Result<Vec<Model>, Vec<Diagnostic>> {
    let mut loader = Loader::new(sources);
    let names = loader.load_top_path(path);
    loader.build(names)
}

/// Loads one model of a spec file: the one called `name`, or the last model
/// defined in the file when `name` is `None`.
pub fn load_model(
    path: &Path,
    name: Option<&str>,
    sources: &mut SourceMap,
) -> Result<Model, Vec<Diagnostic>> {
    let mut loader = Loader::new(sources);
    let names = loader.load_top_path(path);
    loader.build_one(names, name)
}

/// Like [`load`], from a string; `name` is the file name shown in diagnostics,
/// and includes are resolved relative to the current directory.
pub fn load_str(
    name: &str,
    text: &str,
    sources: &mut SourceMap,
) -> Result<Vec<Model>, Vec<Diagnostic>> {
    let mut loader = Loader::new(sources);
    let names = loader.load_top_str(name, text);
    loader.build(names)
}

/// Like [`load_model`], from a string.
pub fn load_model_str(
    name: &str,
    text: &str,
    model: Option<&str>,
    sources: &mut SourceMap,
) -> Result<Model, Vec<Diagnostic>> {
    let mut loader = Loader::new(sources);
    let names = loader.load_top_str(name, text);
    loader.build_one(names, model)
}

/// Renders diagnostics like a compiler: `error[E0101]: message`, the file,
/// line and column, the source line with a caret, and a help note. Without
/// colour when `color` is false (for logs and snapshots).
pub fn render(diags: &[Diagnostic], sources: &SourceMap, color: bool) -> String {
    let config = term::Config::default();
    let mut plain = String::new();
    let mut ansi = term::termcolor::Buffer::ansi();
    for d in diags {
        let report = to_codespan(d, sources);
        let written = if color {
            term::emit_to_write_style(&mut ansi, &config, &sources.files, &report)
        } else {
            term::emit_to_string(&mut plain, &config, &sources.files, &report)
        };
        if written.is_err() {
            plain.push_str(&format!("error[{}]: {}\n", d.code, d.message));
        }
    }
    if color {
        String::from_utf8_lossy(ansi.as_slice()).into_owned() + &plain
    } else {
        plain
    }
}

fn to_codespan(d: &Diagnostic, sources: &SourceMap) -> cs::Diagnostic<FileId> {
    let severity = match d.severity {
        Severity::Error => cs::Severity::Error,
        Severity::Warning => cs::Severity::Warning,
    };
    let has_text = |s: &Span| sources.text(s.file).is_some_and(|t| !t.is_empty());
    let mut labels = Vec::new();
    if has_text(&d.primary) {
        labels.push(
            cs::Label::primary(d.primary.file, d.primary.start..d.primary.end)
                .with_message(&d.label),
        );
    }
    for (span, text) in d.secondary.iter().filter(|(s, _)| has_text(s)) {
        labels.push(cs::Label::secondary(span.file, span.start..span.end).with_message(text));
    }
    let mut notes = Vec::new();
    if labels.is_empty() {
        if let Some(name) = sources.name(d.primary.file) {
            notes.push(format!("in {name}"));
        }
    }
    if let Some(help) = &d.help {
        notes.push(format!("help: {help}"));
    }
    cs::Diagnostic::new(severity)
        .with_code(d.code)
        .with_message(&d.message)
        .with_labels(labels)
        .with_notes(notes)
}

/// State of one load: files, `let`s and models seen so far, and diagnostics.
struct Loader<'s> {
    sources: &'s mut SourceMap,
    diags: Vec<Diagnostic>,
    lets: Lets,
    models: Models,
    /// Canonical paths of files being loaded, outermost first.
    stack: Vec<(PathBuf, String)>,
    /// Whether a file could not be read or parsed (models are then not built,
    /// to avoid follow-on errors).
    broken: bool,
    /// The top file, once added.
    top: FileId,
    /// Files read by this load, by canonical path (a diamond of includes
    /// reads a file once).
    loaded: HashMap<PathBuf, FileId>,
}

impl<'s> Loader<'s> {
    fn new(sources: &'s mut SourceMap) -> Self {
        Loader {
            sources,
            diags: Vec::new(),
            lets: Lets::default(),
            models: Models::default(),
            stack: Vec::new(),
            broken: false,
            top: 0,
            loaded: HashMap::new(),
        }
    }

    /// Loads the top file; returns the names of the models it defines.
    fn load_top_path(&mut self, path: &Path) -> Vec<String> {
        let display = path.display().to_string();
        match (std::fs::canonicalize(path), std::fs::read_to_string(path)) {
            (Ok(canonical), Ok(text)) => {
                let id = self.sources.add(display, text);
                self.top = id;
                self.sources.by_path.insert(canonical.clone(), id);
                self.loaded.insert(canonical.clone(), id);
                let dirs = Dirs {
                    real: canonical
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                    shown: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                };
                self.load_text(id, &dirs, 0, Some(canonical))
            }
            (_, Err(e)) | (Err(e), _) => {
                let id = self.sources.add(display.clone(), String::new());
                self.top = id;
                let msg = format!("cannot read `{display}`: {e}");
                let help = if e.kind() == std::io::ErrorKind::InvalidData {
                    "a .tfm spec is UTF-8 text; an ONNX model is read as one when its name \
                     ends in .onnx"
                } else {
                    "check the path"
                };
                self.diags.push(
                    Diagnostic::error(codes::FILE_NOT_FOUND, msg, Span::new(id, 0, 0), "")
                        .with_help(help),
                );
                self.broken = true;
                Vec::new()
            }
        }
    }

    fn load_top_str(&mut self, name: &str, text: &str) -> Vec<String> {
        let id = self.sources.add(name, text);
        self.top = id;
        let dir = std::env::current_dir().unwrap_or_default();
        let dirs = Dirs {
            real: dir,
            shown: PathBuf::new(),
        };
        self.load_text(id, &dirs, 0, None)
    }

    /// Loads an included file; returns its id, or `None` after reporting.
    fn load_include(
        &mut self,
        written: &str,
        span: Span,
        dirs: &Dirs,
        depth: usize,
    ) -> Option<FileId> {
        let path = dirs.real.join(written);
        let shown = dirs.shown.join(written);
        let fail = |msg: String, label: &str, help: String| {
            Diagnostic::error(codes::FILE_NOT_FOUND, msg, span, label).with_help(help)
        };
        let canonical = match std::fs::canonicalize(&path) {
            Ok(c) => c,
            Err(_) => {
                let msg = format!("cannot find included file `{written}`");
                let help = format!(
                    "looked for `{}`; include paths are relative to the including file",
                    shown.display()
                );
                self.diags.push(fail(msg, "not found", help));
                return None;
            }
        };
        if let Some(pos) = self.stack.iter().position(|(p, _)| *p == canonical) {
            let mut names: Vec<&str> = self.stack[pos..].iter().map(|(_, n)| n.as_str()).collect();
            let again = names[0];
            names.push(written);
            let msg = format!("include cycle: `{again}` includes itself");
            let help = format!(
                "the include chain is `{}`; remove one of these includes",
                names.join("` → `")
            );
            self.diags.push(
                Diagnostic::error(codes::INCLUDE_CYCLE, msg, span, "include cycle").with_help(help),
            );
            return None;
        }
        if let Some(id) = self.loaded.get(&canonical) {
            return Some(*id);
        }
        if depth >= MAX_INCLUDE_DEPTH {
            let msg = format!("files include files more than {MAX_INCLUDE_DEPTH} deep");
            let d = Diagnostic::error(codes::TOO_DEEP, msg, span, "too deep")
                .with_help("include the files you need directly from the top file");
            self.diags.push(d);
            return None;
        }
        let text = match std::fs::read_to_string(&canonical) {
            Ok(t) => t,
            Err(e) => {
                let msg = format!("cannot read included file `{written}`");
                self.diags.push(fail(msg, "cannot read", format!("{e}")));
                return None;
            }
        };
        let id = self.sources.add(shown.display().to_string(), text);
        self.sources.by_path.insert(canonical.clone(), id);
        self.loaded.insert(canonical.clone(), id);
        let child = Dirs {
            real: canonical
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            shown: shown.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        self.load_text(id, &child, depth + 1, Some(canonical));
        Some(id)
    }

    /// Parses a file already in the source map and registers its items;
    /// returns the names of the models it defines.
    fn load_text(
        &mut self,
        id: FileId,
        dir: &Dirs,
        depth: usize,
        canonical: Option<PathBuf>,
    ) -> Vec<String> {
        let text = self.sources.text(id).unwrap_or_default().to_string();
        let Some(file) = parse::parse_file(id, &text, &mut self.diags) else {
            self.broken = true;
            self.lets.set_visible(id, HashMap::new());
            return Vec::new();
        };
        let name = self.sources.name(id).unwrap_or_default().to_string();
        if let Some(c) = &canonical {
            self.stack.push((c.clone(), name));
        }

        let mut included: HashMap<String, usize> = HashMap::new();
        let mut own: HashMap<String, (usize, Span)> = HashMap::new();
        let mut models = Vec::new();
        for item in file.items {
            match item {
                Item::Include { path, span } => match self.load_include(&path, span, dir, depth) {
                    Some(child) => {
                        if let Some(vis) = self.lets.visible(child) {
                            for (k, v) in vis {
                                included.entry(k.clone()).or_insert(*v);
                            }
                        }
                    }
                    None => self.broken = true,
                },
                Item::Let { name, value } => {
                    if let Some((_, first)) = own.get(&name.name) {
                        self.duplicate("constant", &name.name, name.span, *first);
                        continue;
                    }
                    let (key, span) = (name.name.clone(), name.span);
                    let idx = self.lets.define(name, value);
                    own.insert(key, (idx, span));
                }
                Item::Model(decl) => {
                    if let Some(first) = self.models.decls.get(&decl.name.name) {
                        let first = first.name.span;
                        self.duplicate("model", &decl.name.name, decl.name.span, first);
                        continue;
                    }
                    models.push(decl.name.name.clone());
                    self.models.decls.insert(decl.name.name.clone(), decl);
                }
            }
        }

        let mut visible = included;
        visible.extend(own.into_iter().map(|(k, (idx, _))| (k, idx)));
        self.lets.set_visible(id, visible);
        if canonical.is_some() {
            self.stack.pop();
        }
        models
    }

    fn duplicate(&mut self, what: &str, name: &str, span: Span, first: Span) {
        let msg = format!("the {what} `{name}` is defined twice");
        self.diags.push(
            Diagnostic::error(codes::DUPLICATE_DEFINITION, msg, span, "defined again here")
                .with_secondary(first, "first defined here")
                .with_help(format!("rename one of them; a {what} name must be unique")),
        );
    }

    /// Builds the named models, or returns every diagnostic of the run.
    fn build(mut self, names: Vec<String>) -> Result<Vec<Model>, Vec<Diagnostic>> {
        let mut out = Vec::new();
        if !self.broken {
            for name in &names {
                let Some(body) = self.models.merged(name, &mut self.diags) else {
                    continue;
                };
                let Some(decl) = self.models.decls.get(name) else {
                    continue;
                };
                if let Some(m) = schema::build_model(&decl.name, &body, &self.lets, &mut self.diags)
                {
                    out.push(m);
                }
            }
        }
        if self.diags.iter().any(Diagnostic::is_error) {
            return Err(finish(self.diags));
        }
        Ok(out)
    }

    /// Builds one model, chosen by name or the last of `names`.
    fn build_one(
        mut self,
        names: Vec<String>,
        wanted: Option<&str>,
    ) -> Result<Model, Vec<Diagnostic>> {
        let top = self.top;
        let chosen = match wanted {
            Some(w) if self.models.decls.contains_key(w) => Some(w.to_string()),
            Some(w) => {
                let mut known: Vec<&str> = self.models.decls.keys().map(String::as_str).collect();
                known.sort_unstable();
                let help = if known.is_empty() {
                    "the file defines no model".to_string()
                } else {
                    diag::did_you_mean(w, &known, "model")
                };
                let msg = format!("no model named `{w}`");
                self.diags.push(
                    Diagnostic::error(codes::UNKNOWN_MODEL, msg, Span::new(top, 0, 0), "")
                        .with_help(help),
                );
                None
            }
            None => {
                if names.is_empty() && !self.broken {
                    let d = Diagnostic::error(
                        codes::NO_MODEL,
                        "the file defines no model",
                        Span::new(top, 0, 0),
                        "",
                    )
                    .with_help("add `model NAME { ... }`");
                    self.diags.push(d);
                }
                names.last().cloned()
            }
        };
        let built = self.build(chosen.into_iter().collect())?;
        built.into_iter().next().ok_or_else(Vec::new)
    }
}

/// The folder of a file, as found on disk and as shown in diagnostics.
struct Dirs {
    real: PathBuf,
    shown: PathBuf,
}

/// Removes repeated diagnostics (a base model's error seen through several
/// derived models) and orders them by file and position.
fn finish(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    for d in diags {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out.sort_by_key(|d| (d.primary.file, d.primary.start));
    out
}
