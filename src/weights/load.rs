//! Loading a safetensors checkpoint into a compiled graph.
//!
//! [`load_checkpoint`] sits between lowering and emission: it fills every
//! `Op::Weight` of a [`Graph`] with `Init::Data` read from a Hugging Face
//! checkpoint, using a [`WeightMap`] to find each canonical parameter's
//! tensor and to transform it into tfc's layout. Steps:
//!
//! 1. open the checkpoint (one `.safetensors` file, a folder, or a sharded
//!    `model.safetensors.index.json`), memory-mapping each file;
//! 2. match every graph weight against the map's rules and pick the prefix
//!    (`bert.`, `model.`, none) under which most sources exist;
//! 3. read, transform, check and convert each source (f32, f16, bf16 or f64
//!    in the checkpoint; f32, f16 or bf16 in the graph);
//! 4. account for every checkpoint tensor: consumed, ignored buffer, tied
//!    alias equal to its original, optional, owned by another graph of the
//!    same model ([`LoadOptions::elsewhere`]), or unexpected.
//!
//! Loading is strict. Every problem of every tensor is collected and
//! returned together ([`LoadError::Mismatch`]); the graph is only changed
//! when there is none, so a failed load never leaves random weights behind
//! a checkpoint's name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use petgraph::stable_graph::NodeIndex;
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};

use super::error::{LoadError, Problem, Problems};
use super::map::{Captures, Rule, Size, Transform, WeightMap};
use crate::ir::{DType, Graph, Init, Op, TensorData};

/// The file a checkpoint folder holds when it is not sharded.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index a sharded checkpoint folder holds.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// What a successful load did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// The weight map used.
    pub map: String,
    /// The prefix chosen for the map's prefixed names (may be empty).
    pub prefix: String,
    /// The safetensors files read.
    pub files: Vec<PathBuf>,
    /// Number of graph weights filled.
    pub loaded: usize,
    /// Bytes written into the graph.
    pub bytes: u64,
    /// Dtype conversions done, as `"BF16 → f16"` and the number of weights.
    pub conversions: BTreeMap<String, usize>,
    /// Checkpoint buffers skipped by the map's `ignore` patterns.
    pub ignored: Vec<String>,
    /// Checkpoint tensors skipped as tied copies (equal to their original).
    pub tied: Vec<String>,
    /// Optional checkpoint tensors the model has no parameter for.
    pub unused: Vec<String>,
    /// Checkpoint tensors that feed parameters of the same model held by
    /// another graph ([`LoadOptions::elsewhere`]).
    pub elsewhere: Vec<String>,
}

/// Choices of one load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Canonical names of parameters of the same model that live in other
    /// graphs, not in the one being filled: the encoder and decoder graphs
    /// of a model with a key/value cache each hold part of the parameters.
    /// A checkpoint tensor that a rule maps to one of these (or a tied alias
    /// of one) is listed in [`LoadReport::elsewhere`] instead of being
    /// unexpected. Empty means the graph holds the whole model.
    pub elsewhere: BTreeSet<String>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.files.len();
        write!(
            f,
            "loaded {} tensors ({} bytes) from {files} file{} with map `{}`",
            self.loaded,
            self.bytes,
            if files == 1 { "" } else { "s" },
            self.map
        )?;
        if !self.prefix.is_empty() {
            write!(f, " (prefix `{}`)", self.prefix)?;
        }
        for (conversion, n) in &self.conversions {
            write!(f, "; converted {conversion} ×{n}")?;
        }
        let lists = [
            ("ignored", &self.ignored),
            ("tied", &self.tied),
            ("unused", &self.unused),
            ("in other graphs", &self.elsewhere),
        ];
        for (label, names) in lists {
            if !names.is_empty() {
                write!(f, "; {label}: {}", names.join(", "))?;
            }
        }
        Ok(())
    }
}

/// Fills every weight of `graph` from `checkpoint` through `map`.
///
/// `checkpoint` is a `.safetensors` file, a folder holding
/// [`SINGLE_FILE`] or [`INDEX_FILE`] (with its shards), or the index
/// itself. On any problem nothing in `graph` changes and the error lists
/// them all.
pub fn load_checkpoint(
    graph: &mut Graph,
    checkpoint: &Path,
    map: &WeightMap,
) -> Result<LoadReport, LoadError> {
    load_checkpoint_with(graph, checkpoint, map, &LoadOptions::default())
}

/// [`load_checkpoint`] into a graph that holds part of a model's parameters:
/// tensors that feed `opts.elsewhere` are expected but not read.
pub fn load_checkpoint_with(
    graph: &mut Graph,
    checkpoint: &Path,
    map: &WeightMap,
    opts: &LoadOptions,
) -> Result<LoadReport, LoadError> {
    let ckpt = Checkpoint::open(checkpoint)?;
    let mismatch = |problems| {
        LoadError::Mismatch(Problems {
            checkpoint: checkpoint.to_path_buf(),
            map: map.name().to_string(),
            problems,
        })
    };
    if ckpt.names_unknown {
        return Err(mismatch(ckpt.problems));
    }

    let weights = graph_weights(graph);
    let candidates: Vec<Vec<(&Rule, Captures)>> = weights
        .iter()
        .map(|w| {
            map.rules()
                .iter()
                .filter_map(|r| r.target.matches(&w.name).map(|c| (r, c)))
                .collect()
        })
        .collect();
    let prefix = choose_prefix(map, &candidates, &ckpt);
    let elsewhere = elsewhere_sources(map, &opts.elsewhere, &prefix);

    let mut loader = Loader {
        ckpt: &ckpt,
        map,
        problems: ckpt.problems.iter().map(|p| (0, p.clone())).collect(),
        at: 0,
        consumed: BTreeSet::new(),
        checked: BTreeSet::new(),
        cache: None,
        loaded: Vec::new(),
        elsewhere,
        report: LoadReport {
            map: map.name().to_string(),
            prefix: prefix.clone(),
            files: ckpt.files.clone(),
            ..LoadReport::default()
        },
    };

    // Resolve each weight to the first candidate whose source exists.
    let mut sources: HashMap<String, String> = HashMap::new();
    let mut feeds: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
    let mut resolved = Vec::new();
    for (k, (w, cands)) in weights.iter().zip(&candidates).enumerate() {
        loader.at = 1 + k;
        if cands.is_empty() {
            loader.push(Problem::Unmapped {
                target: w.name.clone(),
                expected: w.shape.clone(),
            });
            continue;
        }
        let named: Vec<(&Rule, String)> = cands
            .iter()
            .filter_map(|(r, c)| source_name(r, c, &prefix).map(|s| (*r, s)))
            .collect();
        let found = named.iter().find(|(_, s)| ckpt.tensors.contains_key(s));
        let Some((rule, source)) = found else {
            let mut looked_for: Vec<String> = Vec::new();
            for (_, s) in &named {
                if !looked_for.contains(s) {
                    looked_for.push(s.clone());
                }
            }
            loader.push(Problem::Missing {
                target: w.name.clone(),
                expected: w.shape.clone(),
                looked_for,
            });
            continue;
        };
        let rule_index = map
            .rules()
            .iter()
            .position(|r| std::ptr::eq(r, *rule))
            .unwrap_or(usize::MAX);
        feeds
            .entry((rule_index, source.clone()))
            .or_default()
            .push(w.name.clone());
        sources.insert(w.name.clone(), source.clone());
        loader.consumed.insert(source.clone());
        resolved.push((k, w, *rule, source.clone()));
    }
    loader.at = 1 + weights.len();
    for ((_, source), targets) in &feeds {
        if targets.len() > 1 {
            loader.push(Problem::Ambiguous {
                source: source.clone(),
                targets: targets.clone(),
            });
        }
    }

    // Read, transform, check and convert.
    for (k, w, rule, source) in resolved {
        loader.at = 1 + k;
        loader.load(w, rule, &source);
    }

    // Account for every checkpoint tensor that no rule consumed.
    loader.at = 2 + weights.len();
    loader.leftovers(&prefix, &sources);

    if !loader.problems.is_empty() {
        return Err(mismatch(loader.into_problems()));
    }
    let mut report = loader.report;
    for (node, data) in loader.loaded {
        if let Some(Op::Weight { init, .. }) = graph.g.node_weight_mut(node).map(|n| &mut n.op) {
            report.bytes += data.bytes.len() as u64;
            report.loaded += 1;
            *init = Init::Data(data);
        }
    }
    Ok(report)
}

/// The names of every tensor in a checkpoint (sorted), for
/// [`WeightMap::detect`]. Fails when a header cannot be read.
pub fn checkpoint_names(checkpoint: &Path) -> Result<Vec<String>, LoadError> {
    let ckpt = Checkpoint::open(checkpoint)?;
    if !ckpt.problems.is_empty() {
        return Err(LoadError::Mismatch(Problems {
            checkpoint: checkpoint.to_path_buf(),
            map: String::new(),
            problems: ckpt.problems,
        }));
    }
    Ok(ckpt.tensors.into_keys().collect())
}

/// One parameter of the graph.
struct GraphWeight {
    node: NodeIndex,
    name: String,
    dtype: DType,
    shape: Vec<u64>,
}

fn graph_weights(graph: &Graph) -> Vec<GraphWeight> {
    graph
        .weights()
        .into_iter()
        .filter_map(|node| match &graph.g[node].op {
            Op::Weight {
                name, dtype, shape, ..
            } => Some(GraphWeight {
                node,
                name: name.clone(),
                dtype: *dtype,
                shape: shape.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The checkpoint name a rule reads for the captured placeholders.
fn source_name(rule: &Rule, caps: &Captures, prefix: &str) -> Option<String> {
    let name = rule.source.fill(caps)?;
    Some(if rule.prefix {
        format!("{prefix}{name}")
    } else {
        name
    })
}

/// Every checkpoint name a rule of `map` could read for the parameters
/// `targets`, with `targets` itself.
fn elsewhere_sources(
    map: &WeightMap,
    targets: &BTreeSet<String>,
    prefix: &str,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let sources = targets
        .iter()
        .flat_map(|t| {
            map.rules()
                .iter()
                .filter_map(|r| r.target.matches(t).map(|c| (r, c)))
                .filter_map(|(r, c)| source_name(r, &c, prefix))
                .collect::<Vec<_>>()
        })
        .collect();
    (sources, targets.clone())
}

/// The map prefix under which most prefixed sources exist; the first on a tie.
fn choose_prefix(
    map: &WeightMap,
    candidates: &[Vec<(&Rule, Captures)>],
    ckpt: &Checkpoint,
) -> String {
    let mut best = (0usize, String::new());
    for (k, prefix) in map.prefixes().iter().enumerate() {
        let hits = candidates
            .iter()
            .flatten()
            .filter(|(r, _)| r.prefix)
            .filter_map(|(r, c)| source_name(r, c, prefix))
            .filter(|s| ckpt.tensors.contains_key(s))
            .count();
        if k == 0 || hits > best.0 {
            best = (hits, prefix.clone());
        }
    }
    best.1
}

/// The state of one load: problems so far and the data ready for the graph.
struct Loader<'a> {
    ckpt: &'a Checkpoint,
    map: &'a WeightMap,
    /// Problems with their order key: 0 for files, 1 + index for graph
    /// weights, after them ambiguity and then leftover checkpoint tensors.
    problems: Vec<(usize, Problem)>,
    /// The order key of problems pushed now.
    at: usize,
    /// Checkpoint tensors some rule reads.
    consumed: BTreeSet<String>,
    /// Sources already checked for NaN and infinities.
    checked: BTreeSet<String>,
    /// Checkpoint names that feed parameters held by other graphs, and the
    /// canonical names of those parameters.
    elsewhere: (BTreeSet<String>, BTreeSet<String>),
    /// The last decoded source (fused tensors feed several weights in a row).
    cache: Option<(String, Arc<Vec<f32>>)>,
    loaded: Vec<(NodeIndex, Arc<TensorData>)>,
    report: LoadReport,
}

impl Loader<'_> {
    fn push(&mut self, problem: Problem) {
        self.problems.push((self.at, problem));
    }

    /// Every problem, files first, then in graph order, then the rest.
    fn into_problems(mut self) -> Vec<Problem> {
        self.problems.sort_by_key(|(k, _)| *k);
        self.problems.into_iter().map(|(_, p)| p).collect()
    }

    fn load(&mut self, w: &GraphWeight, rule: &Rule, source: &str) {
        let view = match self.ckpt.tensor(source) {
            Some(Ok(view)) => view,
            // Unreadable (its shard is reported) or absent (cannot happen here).
            _ => return,
        };

        // Shapes first: a wrong shape needs no data.
        let mut shape: Vec<usize> = view.shape.clone();
        for t in &rule.transforms {
            match out_shape(t, &shape, self.map) {
                Ok(s) => shape = s,
                Err(e) => return self.transform_problem(w, source, &view.shape, e),
            }
        }
        let found: Vec<u64> = shape.iter().map(|d| *d as u64).collect();
        if found != w.shape {
            self.push(Problem::Shape {
                target: w.name.clone(),
                expected: w.shape.clone(),
                found,
                source: source.to_string(),
            });
            return;
        }

        // Values: decode once per source, check once per source.
        let values = match self.decode(source, &view, w.dtype) {
            Some(v) => v,
            None => return,
        };
        if !self.problems.is_empty() {
            // Keep checking the rest, but stop holding data for the graph.
            self.loaded.clear();
        }
        let mut transformed: Option<Vec<f32>> = None;
        let mut shape = view.shape.clone();
        for t in &rule.transforms {
            let input = transformed.as_deref().unwrap_or(&values);
            match apply(t, input, &shape, self.map) {
                Ok((d, s)) => (transformed, shape) = (Some(d), s),
                Err(e) => return self.transform_problem(w, source, &view.shape, e),
            }
        }
        let data = transformed.as_deref().unwrap_or(&values);
        let Some(bytes) = self.encode(source, data, w.dtype, view.dtype) else {
            return;
        };
        if self.problems.is_empty() {
            let tensor = TensorData {
                dtype: w.dtype,
                shape: w.shape.clone(),
                bytes,
            };
            self.loaded.push((w.node, Arc::new(tensor)));
        }
    }

    fn transform_problem(
        &mut self,
        w: &GraphWeight,
        source: &str,
        shape: &[usize],
        e: TransformError,
    ) {
        let problem = match e {
            TransformError::Variable(name) => Problem::Variable {
                target: w.name.clone(),
                name,
            },
            TransformError::Bad(reason) => Problem::Transform {
                target: w.name.clone(),
                source: source.to_string(),
                shape: shape.iter().map(|d| *d as u64).collect(),
                reason,
            },
        };
        self.push(problem);
    }

    /// The source's values as f32, checked for NaN and infinities.
    fn decode(&mut self, source: &str, view: &View<'_>, target: DType) -> Option<Arc<Vec<f32>>> {
        if let Some((name, values)) = &self.cache {
            if name == source {
                return Some(values.clone());
            }
        }
        let Some(values) = decode(view) else {
            if self.checked.insert(source.to_string()) {
                self.push(Problem::Dtype {
                    source: source.to_string(),
                    dtype: format!("{:?}", view.dtype),
                    target_dtype: target.to_string(),
                });
            }
            return None;
        };
        if self.checked.insert(source.to_string()) {
            let nan = values.iter().filter(|v| v.is_nan()).count();
            let inf = values.iter().filter(|v| v.is_infinite()).count();
            if nan + inf > 0 {
                self.push(Problem::NonFinite {
                    source: source.to_string(),
                    nan,
                    inf,
                });
            }
        }
        let values = Arc::new(values);
        self.cache = Some((source.to_string(), values.clone()));
        Some(values)
    }

    /// Little-endian bytes of `values` in `target`, or `None` with a problem.
    fn encode(
        &mut self,
        source: &str,
        values: &[f32],
        target: DType,
        from: Dtype,
    ) -> Option<Vec<u8>> {
        let same = matches!(
            (from, target),
            (Dtype::F32, DType::F32) | (Dtype::F16, DType::F16) | (Dtype::BF16, DType::BF16)
        );
        if !same {
            let key = format!("{from:?} → {target}");
            *self.report.conversions.entry(key).or_default() += 1;
        }
        let narrow = |to_bits: &dyn Fn(f32) -> (u16, bool)| {
            let mut bytes = Vec::with_capacity(values.len() * 2);
            let (mut overflow, mut largest) = (0usize, 0f32);
            for v in values {
                let (bits, finite) = to_bits(*v);
                if !finite && v.is_finite() {
                    overflow += 1;
                    largest = largest.max(v.abs());
                }
                bytes.extend_from_slice(&bits.to_le_bytes());
            }
            (bytes, overflow, largest)
        };
        let (bytes, overflow, largest) = match target {
            DType::F32 => (
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                0,
                0.0,
            ),
            DType::F16 => narrow(&|v| {
                let h = half::f16::from_f32(v);
                (h.to_bits(), h.is_finite())
            }),
            DType::BF16 => narrow(&|v| {
                let h = half::bf16::from_f32(v);
                (h.to_bits(), h.is_finite())
            }),
            other => {
                self.push(Problem::Dtype {
                    source: source.to_string(),
                    dtype: format!("{from:?}"),
                    target_dtype: other.to_string(),
                });
                return None;
            }
        };
        if overflow > 0 {
            self.push(Problem::Range {
                source: source.to_string(),
                target_dtype: target.to_string(),
                count: overflow,
                largest,
            });
            return None;
        }
        Some(bytes)
    }

    /// Ignored buffers, tied copies, optional leftovers and unexpected tensors.
    fn leftovers(&mut self, prefix: &str, sources: &HashMap<String, String>) {
        let ckpt = self.ckpt;
        for (name, location) in &ckpt.tensors {
            if self.consumed.contains(name) {
                continue;
            }
            if self.map.is_ignored(name) {
                self.report.ignored.push(name.clone());
                continue;
            }
            let (sources_elsewhere, targets_elsewhere) = &self.elsewhere;
            let tied_elsewhere = self
                .tied_target(name, prefix)
                .is_some_and(|t| !sources.contains_key(&t) && targets_elsewhere.contains(&t));
            if sources_elsewhere.contains(name) || tied_elsewhere {
                self.report.elsewhere.push(name.clone());
                continue;
            }
            if let Some(original) = self.tied_original(name, prefix, sources) {
                match self.same_values(name, &original) {
                    Some(true) => self.report.tied.push(name.clone()),
                    Some(false) => {
                        let target = self.tied_target(name, prefix).unwrap_or_default();
                        self.push(Problem::Untied {
                            source: name.clone(),
                            same_as: original,
                            target,
                        });
                    }
                    None => {}
                }
                continue;
            }
            if self.map.is_optional(name) {
                self.report.unused.push(name.clone());
                continue;
            }
            if let Location::Shard(_) = location {
                let shape = ckpt
                    .tensor(name)
                    .and_then(Result::ok)
                    .map(|v| v.shape.iter().map(|d| *d as u64).collect())
                    .unwrap_or_default();
                self.push(Problem::Unexpected {
                    name: name.clone(),
                    shape,
                });
            }
        }
    }

    /// The canonical weight a tied checkpoint name stands for, if the map ties it.
    fn tied_target(&self, name: &str, prefix: &str) -> Option<String> {
        self.map.tied().iter().find_map(|t| {
            let bare = if t.prefix {
                name.strip_prefix(prefix)?
            } else {
                name
            };
            t.name.matches(bare).map(|_| t.same_as.clone())
        })
    }

    /// The checkpoint tensor a tied name must equal, if the map ties it and
    /// the original was loaded.
    fn tied_original(
        &self,
        name: &str,
        prefix: &str,
        sources: &HashMap<String, String>,
    ) -> Option<String> {
        sources.get(&self.tied_target(name, prefix)?).cloned()
    }

    /// Whether two checkpoint tensors hold the same shape and values;
    /// `None` when either cannot be read (already reported).
    fn same_values(&self, a: &str, b: &str) -> Option<bool> {
        let (a, b) = (self.ckpt.tensor(a)?.ok()?, self.ckpt.tensor(b)?.ok()?);
        if a.shape != b.shape {
            return Some(false);
        }
        if a.dtype == b.dtype {
            return Some(a.data == b.data);
        }
        Some(decode(&a)? == decode(&b)?)
    }
}

/// Where a checkpoint tensor lives.
#[derive(Debug, Clone, Copy)]
enum Location {
    /// In this shard.
    Shard(usize),
    /// In a shard that could not be read (already reported).
    Unreadable,
}

/// One memory-mapped safetensors file with its parsed header.
struct Shard {
    mmap: Mmap,
    header_len: usize,
    metadata: Metadata,
}

/// A borrowed checkpoint tensor.
struct View<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    data: &'a [u8],
}

/// An opened checkpoint: its files, and every tensor name it holds.
struct Checkpoint {
    files: Vec<PathBuf>,
    shards: Vec<Shard>,
    tensors: BTreeMap<String, Location>,
    problems: Vec<Problem>,
    /// A file failed before its tensor names were known: nothing else can
    /// be said.
    names_unknown: bool,
}

#[derive(serde::Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

impl Checkpoint {
    fn open(path: &Path) -> Result<Checkpoint, LoadError> {
        let open_err = |reason: String| LoadError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| open_err(e.to_string()))?;
        if meta.is_dir() {
            let single = path.join(SINGLE_FILE);
            let index = path.join(INDEX_FILE);
            if single.is_file() {
                Ok(Checkpoint::single(&single))
            } else if index.is_file() {
                Ok(Checkpoint::sharded(&index))
            } else {
                Err(open_err(format!(
                    "the folder holds neither `{SINGLE_FILE}` nor `{INDEX_FILE}`"
                )))
            }
        } else if path.extension().is_some_and(|e| e == "json") {
            Ok(Checkpoint::sharded(path))
        } else {
            Ok(Checkpoint::single(path))
        }
    }

    fn empty(files: Vec<PathBuf>) -> Checkpoint {
        Checkpoint {
            files,
            shards: Vec::new(),
            tensors: BTreeMap::new(),
            problems: Vec::new(),
            names_unknown: false,
        }
    }

    fn single(path: &Path) -> Checkpoint {
        let mut ckpt = Checkpoint::empty(vec![path.to_path_buf()]);
        match read_shard(path) {
            Ok(shard) => ckpt.add_shard(shard),
            Err(reason) => {
                ckpt.problems.push(Problem::File {
                    path: path.to_path_buf(),
                    reason,
                });
                ckpt.names_unknown = true;
            }
        }
        ckpt
    }

    fn sharded(index_path: &Path) -> Checkpoint {
        let mut ckpt = Checkpoint::empty(Vec::new());
        let index: Index = match std::fs::read_to_string(index_path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("invalid index: {e}")))
        {
            Ok(index) => index,
            Err(reason) => {
                ckpt.problems.push(Problem::File {
                    path: index_path.to_path_buf(),
                    reason,
                });
                ckpt.names_unknown = true;
                return ckpt;
            }
        };
        let folder = index_path.parent().unwrap_or(Path::new("."));
        let mut by_file: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (tensor, file) in &index.weight_map {
            by_file.entry(file).or_default().push(tensor);
        }
        for (file, names) in by_file {
            let path = folder.join(file);
            ckpt.files.push(path.clone());
            let shard = match std::fs::metadata(&path) {
                Err(e) => Err(Problem::Shard {
                    path: path.clone(),
                    tensors: names.len(),
                    reason: e.to_string(),
                }),
                Ok(_) => read_shard(&path).map_err(|reason| Problem::File {
                    path: path.clone(),
                    reason,
                }),
            };
            match shard {
                Ok(shard) => {
                    let absent: Vec<&&str> = names
                        .iter()
                        .filter(|n| shard.metadata.info(n).is_none())
                        .collect();
                    if let Some(first) = absent.first() {
                        ckpt.problems.push(Problem::File {
                            path: path.clone(),
                            reason: format!(
                                "lacks {} tensors that the index places in it (first: `{first}`)",
                                absent.len()
                            ),
                        });
                    }
                    ckpt.add_shard(shard);
                }
                Err(problem) => {
                    ckpt.problems.push(problem);
                    for n in names {
                        ckpt.tensors
                            .entry(n.to_string())
                            .or_insert(Location::Unreadable);
                    }
                }
            }
        }
        ckpt
    }

    fn add_shard(&mut self, shard: Shard) {
        let k = self.shards.len();
        for name in shard.metadata.offset_keys() {
            self.tensors.entry(name).or_insert(Location::Shard(k));
        }
        self.shards.push(shard);
    }

    /// `None` if absent; `Some(Err(()))` if its file could not be read.
    fn tensor(&self, name: &str) -> Option<Result<View<'_>, ()>> {
        let k = match self.tensors.get(name)? {
            Location::Shard(k) => *k,
            Location::Unreadable => return Some(Err(())),
        };
        let view = self.shards.get(k).and_then(|shard| {
            let info = shard.metadata.info(name)?;
            let base = 8 + shard.header_len;
            let (start, end) = info.data_offsets;
            let data = shard
                .mmap
                .get(base.checked_add(start)?..base.checked_add(end)?)?;
            Some(View {
                dtype: info.dtype,
                shape: info.shape.clone(),
                data,
            })
        });
        Some(view.ok_or(()))
    }
}

/// Maps a safetensors file and parses its header; the reader's error otherwise.
fn read_shard(path: &Path) -> Result<Shard, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: the map is read-only and lives inside the `Shard`, which every
    // view borrows. As with any memory-mapped loader, the file must not be
    // truncated by another process while tfc reads it.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| e.to_string())?;
    let (header_len, metadata) = SafeTensors::read_metadata(&mmap).map_err(|e| e.to_string())?;
    Ok(Shard {
        mmap,
        header_len,
        metadata,
    })
}

/// The values of a float tensor as f32; `None` for other dtypes.
fn decode(view: &View<'_>) -> Option<Vec<f32>> {
    let d = view.data;
    let two = |f: fn([u8; 2]) -> f32| d.chunks_exact(2).map(|c| f([c[0], c[1]])).collect();
    Some(match view.dtype {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => two(|b| half::f16::from_le_bytes(b).to_f32()),
        Dtype::BF16 => two(|b| half::bf16::from_le_bytes(b).to_f32()),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        _ => return None,
    })
}

/// Why a transform does not apply.
enum TransformError {
    /// A variable is not bound.
    Variable(String),
    /// The tensor's shape does not allow it.
    Bad(String),
}

fn size(s: &Size, map: &WeightMap) -> Result<usize, TransformError> {
    match s {
        Size::Value(v) => Ok(*v as usize),
        Size::Var(name) => map
            .var(name)
            .map(|v| v as usize)
            .ok_or_else(|| TransformError::Variable(name.clone())),
    }
}

fn shape_string(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// The shape after `t`, or why `t` does not apply.
fn out_shape(
    t: &Transform,
    shape: &[usize],
    map: &WeightMap,
) -> Result<Vec<usize>, TransformError> {
    let bad = |reason: String| Err(TransformError::Bad(reason));
    let axis_len = |axis: usize| match shape.get(axis) {
        Some(n) => Ok(*n),
        None => Err(TransformError::Bad(format!(
            "axis {axis} is out of range for a rank-{} tensor",
            shape.len()
        ))),
    };
    match t {
        Transform::Transpose if shape.len() != 2 => bad(format!(
            "transpose needs a matrix, found rank {}",
            shape.len()
        )),
        Transform::Transpose => Ok(vec![shape[1], shape[0]]),
        Transform::Permute(perm) if perm.len() != shape.len() => bad(format!(
            "permute {perm:?} does not fit a rank-{} tensor",
            shape.len()
        )),
        Transform::Permute(perm) => Ok(perm.iter().map(|p| shape[*p]).collect()),
        Transform::Split { axis, parts, .. } => {
            let n = axis_len(*axis)?;
            if *parts == 0 || n % parts != 0 {
                return bad(format!(
                    "cannot split axis {axis} ({n}) into {parts} equal parts"
                ));
            }
            let mut out = shape.to_vec();
            out[*axis] = n / parts;
            Ok(out)
        }
        Transform::SplitHeads {
            axis, parts, group, ..
        } => {
            let n = axis_len(*axis)?;
            let g = size(group, map)?;
            let block = parts.saturating_mul(g);
            if block == 0 || n % block != 0 {
                return bad(format!(
                    "axis {axis} ({n}) is not a whole number of heads of {parts} × {g}"
                ));
            }
            let mut out = shape.to_vec();
            out[*axis] = n / parts;
            Ok(out)
        }
        Transform::Reshape(target) => {
            let total: usize = shape.iter().product();
            let known = target
                .iter()
                .filter(|d| **d >= 0)
                .try_fold(1usize, |acc, d| acc.checked_mul(*d as usize));
            let out: Option<Vec<usize>> = known.and_then(|known| {
                target
                    .iter()
                    .map(|d| match d {
                        -1 if known > 0 && total.is_multiple_of(known) => Some(total / known),
                        -1 => None,
                        d => Some(*d as usize),
                    })
                    .collect()
            });
            match out {
                Some(out) if out.iter().product::<usize>() == total => Ok(out),
                _ => bad(format!(
                    "cannot reshape {} to {target:?}",
                    shape_string(shape)
                )),
            }
        }
    }
}

/// Applies `t` to row-major `data` of `shape`.
fn apply(
    t: &Transform,
    data: &[f32],
    shape: &[usize],
    map: &WeightMap,
) -> Result<(Vec<f32>, Vec<usize>), TransformError> {
    let out = out_shape(t, shape, map)?;
    let inner = |axis: usize| shape.get(axis + 1..).map_or(1, |s| s.iter().product());
    let outer = |axis: usize| shape.get(..axis).map_or(1, |s| s.iter().product::<usize>());
    let data = match t {
        Transform::Transpose => transpose(data, shape[0], shape[1]),
        Transform::Permute(perm) => permute(data, shape, perm),
        Transform::Split { axis, parts, index } => {
            let n = shape[*axis];
            let groups = Groups {
                count: 1,
                parts: *parts,
                width: n / parts,
            };
            groups.pick(data, outer(*axis), n * inner(*axis), inner(*axis), *index)
        }
        Transform::SplitHeads {
            axis,
            parts,
            index,
            group,
        } => {
            let (n, width) = (shape[*axis], size(group, map)?);
            let groups = Groups {
                count: n / (parts * width),
                parts: *parts,
                width,
            };
            groups.pick(data, outer(*axis), n * inner(*axis), inner(*axis), *index)
        }
        Transform::Reshape(_) => data.to_vec(),
    };
    Ok((data, out))
}

/// An axis laid out as `[count, parts, width]`.
struct Groups {
    count: usize,
    parts: usize,
    width: usize,
}

impl Groups {
    /// Keeps part `index` of every group: the axis becomes `count · width`.
    /// `row` is the number of elements per step of the axes before it,
    /// `inner` per step of the axis itself.
    fn pick(&self, data: &[f32], outer: usize, row: usize, inner: usize, index: usize) -> Vec<f32> {
        let block = self.width * inner;
        let mut out = Vec::with_capacity(outer * self.count * block);
        for o in 0..outer {
            for h in 0..self.count {
                let start = o * row + (h * self.parts + index) * block;
                if let Some(values) = data.get(start..start + block) {
                    out.extend_from_slice(values);
                }
            }
        }
        out
    }
}

/// `[rows, cols]` → `[cols, rows]`, in tiles so both sides stay in cache.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0f32; data.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    if let (Some(o), Some(v)) = (out.get_mut(c * rows + r), data.get(r * cols + c))
                    {
                        *o = *v;
                    }
                }
            }
        }
    }
    out
}

/// Row-major axis permutation: output axis `k` is input axis `perm[k]`.
fn permute(data: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
    let rank = shape.len();
    let mut strides = vec![1usize; rank];
    for k in (0..rank.saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|p| shape[*p]).collect();
    let out_strides: Vec<usize> = perm.iter().map(|p| strides[*p]).collect();
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; rank];
    for _ in 0..data.len() {
        let src: usize = idx.iter().zip(&out_strides).map(|(i, s)| i * s).sum();
        out.push(data.get(src).copied().unwrap_or(0.0));
        for k in (0..rank).rev() {
            idx[k] += 1;
            if idx[k] < out_shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> WeightMap {
        WeightMap::from_yaml("family: t\nvars: {head_dim: 2}\nrules: []", "t").unwrap()
    }

    fn run(t: &str, data: Vec<f32>, shape: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let data = data.as_slice();
        let yaml = format!(
            "family: t\nvars: {{head_dim: 2}}\nrules: [{{target: a, source: b, transform: [{t}]}}]"
        );
        let m = WeightMap::from_yaml(&yaml, "t").unwrap();
        let t = m.rules()[0].transforms[0].clone();
        match apply(&t, data, shape, &map()) {
            Ok(r) => r,
            Err(_) => panic!("transform failed"),
        }
    }

    #[test]
    fn transpose_and_permute() {
        let (d, s) = run("transpose", vec![1., 2., 3., 4., 5., 6.], &[2, 3]);
        assert_eq!((d, s), (vec![1., 4., 2., 5., 3., 6.], vec![3, 2]));
        let (d, s) = run("{permute: [1, 0]}", vec![1., 2., 3., 4., 5., 6.], &[3, 2]);
        assert_eq!((d, s), (vec![1., 3., 5., 2., 4., 6.], vec![2, 3]));
    }

    #[test]
    fn tiled_transpose_matches_permute() {
        let data: Vec<f32> = (0..40 * 70).map(|v| v as f32).collect();
        assert_eq!(transpose(&data, 40, 70), permute(&data, &[40, 70], &[1, 0]));
    }

    #[test]
    fn split_blocks() {
        // [2, 6] split along axis 1 into 3: block 1 is columns 2..4.
        let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let (d, s) = run(
            "{split: {axis: 1, parts: 3, index: 1}}",
            data.clone(),
            &[2, 6],
        );
        assert_eq!((d, s), (vec![2., 3., 8., 9.], vec![2, 2]));
        let (d, s) = run("{split: {axis: 0, parts: 2, index: 1}}", data, &[2, 6]);
        assert_eq!(s, vec![1, 6]);
        assert_eq!(d, vec![6., 7., 8., 9., 10., 11.]);
    }

    #[test]
    fn split_heads_picks_every_head() {
        // 2 heads × (q, k, v) × head_dim 2 along axis 0 of a [12] bias.
        let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let spec = "{split_heads: {axis: 0, parts: 3, index: 1, group: head_dim}}";
        let (d, s) = run(spec, data, &[12]);
        assert_eq!((d, s), (vec![2., 3., 8., 9.], vec![4]));
    }

    #[test]
    fn reshape_infers_one_axis() {
        let (d, s) = run("{reshape: [-1]}", vec![1., 2., 3.], &[1, 3]);
        assert_eq!((d, s), (vec![1., 2., 3.], vec![3]));
        let t = Transform::Reshape(vec![2, -1]);
        assert!(out_shape(&t, &[1, 3], &map()).is_err());
    }
}
