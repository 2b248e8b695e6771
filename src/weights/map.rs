//! Weight maps: data that says which checkpoint tensor feeds which graph
//! parameter, and how to reshape it on the way.
//!
//! A map is a YAML file, one per model family (`src/weights/maps/*.yaml`,
//! embedded in the binary; users may pass their own). Lowering names every
//! parameter canonically (`encoder.layers.3.attention.q_proj.weight`, linear
//! weights `[in, out]`, see `crate::lower`); a map's rules run from those
//! names back to the checkpoint:
//!
//! ```yaml
//! family: gpt2
//! prefixes: ["transformer.", ""]        # tried on every rule's source
//! detect: ["*h.*.attn.c_attn.weight"]   # names that identify the family
//! ignore: ["*.attn.bias"]               # buffers, never loaded
//! optional: []                          # parameters the model may not use
//! tied:                                 # aliases accepted if equal
//!   - { name: lm_head.weight, same_as: embeddings.word_embeddings.weight, prefix: false }
//! rules:
//!   - target: decoder.layers.{i}.attention.q_proj.weight
//!     source: h.{i}.attn.c_attn.weight
//!     transform: [{ split: { axis: 1, parts: 3, index: 0 } }]
//! ```
//!
//! `{name}` placeholders in a target match one dotted segment (or part of
//! one) and are copied into the source; `{name:a|b}` matches only `a` or `b`. Several rules may name the same
//! target: the first whose source exists in the checkpoint wins, so a map
//! can list alternatives (BERT's `classifier`, RoBERTa's
//! `classifier.out_proj`). Transforms apply in order: `transpose` (2-D),
//! `permute: [..]`, `split: {axis, parts, index}` (contiguous blocks),
//! `split_heads: {axis, parts, index, group}` (the axis laid out as
//! `[n, parts, group]`, as in BLOOM's fused `query_key_value`; `group` is a
//! number or a variable such as `head_dim`) and `reshape: [..]` (one `-1`
//! allowed). Variables come from the map's `vars` or [`WeightMap::with_model`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::error::MapError;
use crate::model::Model;

/// A weight map: rules from canonical parameter names to checkpoint tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightMap {
    name: String,
    description: String,
    prefixes: Vec<String>,
    detect: Vec<Glob>,
    ignore: Vec<Glob>,
    optional: Vec<Glob>,
    tied: Vec<Tied>,
    vars: BTreeMap<String, u64>,
    rules: Vec<Rule>,
}

/// One rule: a graph parameter (template) read from a checkpoint tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Canonical parameter names this rule covers.
    pub target: Template,
    /// The checkpoint name, with the target's placeholders filled in.
    pub source: Template,
    /// Whether the map's prefix goes in front of the source name.
    pub prefix: bool,
    /// Applied to the checkpoint tensor, in order.
    pub transforms: Vec<Transform>,
}

/// A checkpoint tensor that may be present as a copy of a loaded one.
#[derive(Debug, Clone, PartialEq)]
pub struct Tied {
    /// The checkpoint name (a template; placeholders match any segment).
    pub name: Template,
    /// The canonical parameter whose checkpoint tensor it must equal.
    pub same_as: String,
    /// Whether the map's prefix goes in front of `name`.
    pub prefix: bool,
}

/// A reshaping step between the checkpoint layout and the graph's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Transform {
    /// Swap the two axes of a matrix (`Linear`'s `[out, in]` → `[in, out]`).
    Transpose,
    /// Reorder axes: output axis `k` is input axis `perm[k]`.
    Permute(Vec<usize>),
    /// Cut `axis` into `parts` equal contiguous blocks and keep block `index`.
    Split {
        /// The axis to cut.
        axis: usize,
        /// Number of blocks.
        parts: usize,
        /// The block kept.
        index: usize,
    },
    /// View `axis` as `[n, parts, group]` and keep `[:, index, :]`: per-head
    /// packing such as BLOOM's `query_key_value`.
    #[serde(alias = "split_interleaved")]
    SplitHeads {
        /// The axis to cut.
        axis: usize,
        /// Number of interleaved parts (3 for q, k, v).
        parts: usize,
        /// The part kept.
        index: usize,
        /// Width of one group (usually `head_dim`).
        group: Size,
    },
    /// A new shape with the same number of elements; one entry may be -1.
    Reshape(Vec<i64>),
}

/// A size in a transform: a number or the name of a bound variable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// A literal size.
    Value(u64),
    /// A variable (`head_dim`), bound by the map's `vars` or [`WeightMap::with_model`].
    Var(String),
}

/// A name pattern with `{placeholder}` holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// A placeholder and the values it may take (any segment when empty).
    Hole(String, Vec<String>),
}

/// Captured placeholder values, by name.
pub type Captures = Vec<(String, String)>;

impl Template {
    /// Parses `text`; `{` must close with `}` around a non-empty name.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("unmatched `}}` in `{text}`"));
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{text}`"))?;
            let inner = &after[..close];
            let (name, choices) = match inner.split_once(':') {
                Some((name, choices)) => (name, choices.split('|').map(String::from).collect()),
                None => (inner, Vec::new()),
            };
            let word =
                |w: &str| !w.is_empty() && w.chars().all(|c| c.is_alphanumeric() || c == '_');
            if !word(name) || !choices.iter().all(|c: &String| word(c)) {
                return Err(format!("bad placeholder `{{{inner}}}` in `{text}`"));
            }
            if matches!(parts.last(), Some(Part::Hole(..))) {
                return Err(format!("two placeholders in a row in `{text}`"));
            }
            parts.push(Part::Hole(name.to_string(), choices));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The placeholder names, in order of appearance.
    pub fn holes(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Hole(h, _) => Some(h.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Matches a whole name; each placeholder takes one or more characters
    /// other than `.`, and a repeated placeholder must take the same text.
    pub fn matches(&self, name: &str) -> Option<Captures> {
        let mut caps = Vec::new();
        match_parts(&self.parts, name, &mut caps).then_some(caps)
    }

    /// The name with the placeholders filled in, or `None` if one is not captured.
    pub fn fill(&self, caps: &Captures) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Hole(h, _) => out.push_str(&caps.iter().find(|(k, _)| k == h)?.1),
            }
        }
        Some(out)
    }
}

fn match_parts(parts: &[Part], s: &str, caps: &mut Captures) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return s.is_empty();
    };
    match first {
        Part::Literal(l) => s
            .strip_prefix(l.as_str())
            .is_some_and(|tail| match_parts(rest, tail, caps)),
        Part::Hole(h, choices) => {
            let limit = s.find('.').unwrap_or(s.len());
            if !choices.is_empty() {
                return choices.iter().any(|c| {
                    let tail = match s.strip_prefix(c.as_str()) {
                        Some(tail) if c.len() <= limit => tail,
                        _ => return false,
                    };
                    caps.push((h.clone(), c.clone()));
                    let ok = match_parts(rest, tail, caps);
                    if !ok {
                        caps.pop();
                    }
                    ok
                });
            }
            if let Some((_, bound)) = caps.iter().find(|(k, _)| k == h) {
                let bound = bound.clone();
                return bound.len() <= limit
                    && s.starts_with(&bound)
                    && match_parts(rest, &s[bound.len()..], caps);
            }
            for end in (1..=limit).rev() {
                if !s.is_char_boundary(end) {
                    continue;
                }
                caps.push((h.clone(), s[..end].to_string()));
                if match_parts(rest, &s[end..], caps) {
                    return true;
                }
                caps.pop();
            }
            false
        }
    }
}

/// A glob over checkpoint names: `*` matches any text (dots included), `?`
/// one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let s: Vec<char> = name.chars().collect();
        let (mut i, mut j) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while j < s.len() {
            match p.get(i) {
                Some('*') => {
                    star = Some((i, j));
                    i += 1;
                }
                Some(c) if *c == '?' || *c == s[j] => {
                    i += 1;
                    j += 1;
                }
                _ => match star {
                    Some((si, sj)) => {
                        i = si + 1;
                        j = sj + 1;
                        star = Some((si, sj + 1));
                    }
                    None => return false,
                },
            }
        }
        p[i.min(p.len())..].iter().all(|c| *c == '*')
    }
}

/// The YAML form of a map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    family: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    detect: Vec<String>,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    optional: Vec<String>,
    #[serde(default)]
    tied: Vec<TiedFile>,
    #[serde(default)]
    vars: BTreeMap<String, u64>,
    rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    target: String,
    source: String,
    #[serde(default = "yes")]
    prefix: bool,
    #[serde(default, with = "serde_yaml_ng::with::singleton_map_recursive")]
    transform: Vec<Transform>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TiedFile {
    name: String,
    same_as: String,
    #[serde(default = "yes")]
    prefix: bool,
}

fn yes() -> bool {
    true
}

const BUILTIN_TEXTS: &[(&str, &str)] = &[
    ("bert", include_str!("maps/bert.yaml")),
    ("gpt2", include_str!("maps/gpt2.yaml")),
    ("llama", include_str!("maps/llama.yaml")),
    ("t5", include_str!("maps/t5.yaml")),
    ("bart", include_str!("maps/bart.yaml")),
    ("bloom", include_str!("maps/bloom.yaml")),
];

impl WeightMap {
    /// Names of the built-in maps, for [`WeightMap::builtin`].
    pub const BUILTIN_NAMES: &'static [&'static str] =
        &["bert", "gpt2", "llama", "t5", "bart", "bloom"];

    /// A built-in map by family name (see [`WeightMap::BUILTIN_NAMES`]).
    pub fn builtin(name: &str) -> Result<WeightMap, MapError> {
        let text = BUILTIN_TEXTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| MapError::UnknownBuiltin {
                name: name.to_string(),
                known: Self::BUILTIN_NAMES.iter().map(|s| s.to_string()).collect(),
            })?;
        WeightMap::from_yaml(text, name)
    }

    /// Other family names that a built-in map covers, as `(alias, map)`.
    pub const BUILTIN_ALIASES: &'static [(&'static str, &'static str)] = &[
        ("roberta", "bert"),
        ("minilm", "bert"),
        ("mistral", "llama"),
        ("qwen2", "llama"),
        ("marian", "bart"),
        ("mbart", "bart"),
    ];

    /// What `--weight-map` names: a built-in family (or one of its
    /// aliases), otherwise a YAML file. A name that is neither an existing
    /// file nor looks like a path is reported as an unknown family.
    pub fn named_or_file(name: &str) -> Result<WeightMap, MapError> {
        let family = Self::BUILTIN_ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, map)| map);
        if Self::BUILTIN_NAMES.contains(&family) {
            return WeightMap::builtin(family);
        }
        let path = Path::new(name);
        let looks_like_path = name.contains(std::path::MAIN_SEPARATOR)
            || name.ends_with(".yaml")
            || name.ends_with(".yml");
        if !path.exists() && !looks_like_path {
            let mut known: Vec<String> =
                Self::BUILTIN_NAMES.iter().map(|s| s.to_string()).collect();
            known.extend(
                Self::BUILTIN_ALIASES
                    .iter()
                    .map(|(a, m)| format!("{a} (= {m})")),
            );
            known.push("or a YAML map file".to_string());
            return Err(MapError::UnknownBuiltin {
                name: name.to_string(),
                known,
            });
        }
        WeightMap::from_file(path)
    }

    /// Reads a map from a YAML file.
    pub fn from_file(path: &Path) -> Result<WeightMap, MapError> {
        let text = std::fs::read_to_string(path).map_err(|source| MapError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        WeightMap::from_yaml(&text, &path.display().to_string())
    }

    /// Parses a map from YAML text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<WeightMap, MapError> {
        let file: MapFile = serde_yaml_ng::from_str(text).map_err(|e| MapError::Parse {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        let invalid = |reason: String| MapError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        let mut rules = Vec::with_capacity(file.rules.len());
        for r in file.rules {
            let target = Template::parse(&r.target).map_err(invalid)?;
            let source = Template::parse(&r.source).map_err(invalid)?;
            if let Some(h) = source.holes().find(|h| !target.holes().any(|t| t == *h)) {
                return Err(invalid(format!(
                    "source `{}` uses `{{{h}}}`, which its target `{}` does not have",
                    r.source, r.target
                )));
            }
            for t in &r.transform {
                check_transform(t).map_err(|e| invalid(format!("rule for `{}`: {e}", r.target)))?;
            }
            rules.push(Rule {
                target,
                source,
                prefix: r.prefix,
                transforms: r.transform,
            });
        }
        let mut tied = Vec::with_capacity(file.tied.len());
        for t in file.tied {
            tied.push(Tied {
                name: Template::parse(&t.name).map_err(invalid)?,
                same_as: t.same_as,
                prefix: t.prefix,
            });
        }
        let globs = |v: Vec<String>| v.into_iter().map(Glob).collect();
        let prefixes = if file.prefixes.is_empty() {
            vec![String::new()]
        } else {
            file.prefixes
        };
        Ok(WeightMap {
            name: file.family,
            description: file.description,
            prefixes,
            detect: globs(file.detect),
            ignore: globs(file.ignore),
            optional: globs(file.optional),
            tied,
            vars: file.vars,
            rules,
        })
    }

    /// Picks the built-in map whose `detect` patterns all match some of
    /// `names` (checkpoint tensor names); with several, the one with the most
    /// patterns, then the first in [`WeightMap::BUILTIN_NAMES`].
    pub fn detect<S: AsRef<str>>(names: &[S]) -> Option<WeightMap> {
        let mut best: Option<(usize, WeightMap)> = None;
        for name in Self::BUILTIN_NAMES {
            let Ok(map) = WeightMap::builtin(name) else {
                continue;
            };
            let fits = !map.detect.is_empty()
                && map
                    .detect
                    .iter()
                    .all(|g| names.iter().any(|n| g.matches(n.as_ref())));
            let score = map.detect.len();
            if fits && best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, map));
            }
        }
        best.map(|(_, map)| map)
    }

    /// Binds the variables transforms may use from the model's top stack:
    /// `head_dim`, `heads`, `kv_heads`, `hidden_size`, `vocab_size`. Values
    /// already in the map's `vars` are kept.
    pub fn with_model(mut self, model: &Model) -> WeightMap {
        let mut bind = |k: &str, v: u64| {
            self.vars.entry(k.to_string()).or_insert(v);
        };
        bind("hidden_size", model.hidden_size);
        bind("vocab_size", model.vocab_size);
        if let Some(stack) = model.top_stack() {
            bind("head_dim", stack.attention.head_dim);
            bind("heads", stack.attention.heads);
            bind("kv_heads", stack.attention.kv_heads);
        }
        self
    }

    /// Binds one variable.
    pub fn bind(mut self, name: &str, value: u64) -> WeightMap {
        self.vars.insert(name.to_string(), value);
        self
    }

    /// The family name (`bert`, `gpt2`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the map covers, in a sentence or two.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Prefixes tried in front of every prefixed source name.
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Tied aliases.
    pub fn tied(&self) -> &[Tied] {
        &self.tied
    }

    /// The value of a variable, if bound.
    pub fn var(&self, name: &str) -> Option<u64> {
        self.vars.get(name).copied()
    }

    /// Whether a checkpoint tensor is a buffer the map ignores.
    pub fn is_ignored(&self, name: &str) -> bool {
        self.ignore.iter().any(|g| g.matches(name))
    }

    /// Whether a checkpoint tensor may stay unused when the model has no
    /// parameter for it (BERT's pooler under a model without a pooled head).
    pub fn is_optional(&self, name: &str) -> bool {
        self.optional.iter().any(|g| g.matches(name))
    }
}

fn check_transform(t: &Transform) -> Result<(), String> {
    match t {
        Transform::Split { parts, index, .. } | Transform::SplitHeads { parts, index, .. }
            if *index >= *parts =>
        {
            Err(format!("split index {index} is not below parts {parts}"))
        }
        Transform::SplitHeads {
            group: Size::Value(0),
            ..
        } => Err("split_heads group must be positive".to_string()),
        Transform::Reshape(shape) if shape.iter().filter(|d| **d == -1).count() > 1 => {
            Err("reshape allows one -1".to_string())
        }
        Transform::Reshape(shape) if shape.iter().any(|d| *d < -1) => {
            Err("reshape sizes must be -1 or non-negative".to_string())
        }
        Transform::Permute(perm) => {
            let mut seen = vec![false; perm.len()];
            for p in perm {
                match seen.get_mut(*p) {
                    Some(s) if !*s => *s = true,
                    _ => return Err(format!("permute {perm:?} is not a permutation")),
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_capture_segments() {
        let t = Template::parse("encoder.layers.{i}.attention.{proj}.weight").unwrap();
        let caps = t
            .matches("encoder.layers.11.attention.q_proj.weight")
            .unwrap();
        assert_eq!(
            caps,
            vec![
                ("i".to_string(), "11".to_string()),
                ("proj".to_string(), "q_proj".to_string())
            ]
        );
        assert!(t.matches("encoder.layers.1.2.attention.q.weight").is_none());
        let s = Template::parse("h.{i}.attn.{proj}.weight").unwrap();
        assert_eq!(s.fill(&caps).unwrap(), "h.11.attn.q_proj.weight");
        assert!(Template::parse("a.{i").is_err());
        assert!(Template::parse("a.}").is_err());
        assert!(Template::parse("a.{}").is_err());
        let q = Template::parse("x.{proj:q_proj|k_proj}.w").unwrap();
        assert!(q.matches("x.k_proj.w").is_some());
        assert!(q.matches("x.o_proj.w").is_none());
    }

    #[test]
    fn globs() {
        let g = Glob("*.position_ids".to_string());
        assert!(g.matches("embeddings.position_ids"));
        assert!(g.matches("bert.embeddings.position_ids"));
        assert!(!g.matches("position_ids"));
        assert!(Glob("*h.*.attn.bias".into()).matches("transformer.h.0.attn.bias"));
        assert!(!Glob("*h.*.attn.bias".into()).matches("transformer.h.0.attn.c_attn.bias"));
        assert!(Glob("a?c".into()).matches("abc"));
        assert!(Glob("*".into()).matches(""));
    }

    #[test]
    fn every_builtin_parses() {
        for name in WeightMap::BUILTIN_NAMES {
            let map = WeightMap::builtin(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(map.name(), *name);
            assert!(!map.rules().is_empty());
        }
        assert_eq!(BUILTIN_TEXTS.len(), WeightMap::BUILTIN_NAMES.len());
    }

    #[test]
    fn bad_maps_are_errors() {
        let e = WeightMap::from_yaml("family: x\nrules: [{target: a, source: \"b.{i}\"}]", "t")
            .unwrap_err();
        assert!(e.to_string().contains("uses `{i}`"), "{e}");
        let e = WeightMap::from_yaml(
            "family: x\nrules: [{target: a, source: b, transform: [{split: {axis: 0, parts: 2, index: 2}}]}]",
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("split index"), "{e}");
        let e = WeightMap::from_yaml("family: x\nrulez: []", "t").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
