//! The optimisation stage: IR [`Graph`] → IR [`Graph`], between lowering and
//! emission.
//!
//! A pass is one rewrite in its own file, implementing [`Pass`]: it changes
//! the graph in place and returns how many rewrites it applied. Passes are
//! grouped, and an optimisation level ([`OptLevel`]) picks the groups:
//!
//! | level | groups |
//! |---|---|
//! | `-O0` | none: the lowered graph is emitted as it is |
//! | `-O1` | cleanup: `fold`, `simplify_shapes`, `cse`, `dce` |
//! | `-O2` (default) | cleanup, then fusion: `fuse_rms_norm`, `fuse_skip_rms_norm`, `fuse_embed_layer_norm`, `fuse_skip_layer_norm`, `fuse_gelu`, `fuse_bias_gelu`, `fuse_rotary`, `fuse_attention`, `fuse_matmul_bias`, `fuse_qkv`, `cse`, `dce` |
//! | `-O3` | the same as `-O2`: no pass trades exactness for speed yet |
//!
//! Each group runs its passes in the listed order and repeats until a round
//! applies no rewrite, at most [`MAX_ROUNDS`] rounds. After every pass the
//! manager re-infers every node's type (a pass may only change the tracked
//! contents of small integer tensors, never a dtype or shape) and runs
//! [`crate::ir::verify`]; a failure names the pass. Every rewrite logs one
//! `debug` line naming the pass and the nodes involved. `docs/PASSES.md`
//! lists every pattern before → after.

mod cse;
mod dce;
mod fold;
mod fuse_attention;
mod fuse_bias_gelu;
mod fuse_embed_layer_norm;
mod fuse_gelu;
mod fuse_matmul_bias;
mod fuse_qkv;
mod fuse_rms_norm;
mod fuse_rotary;
mod fuse_skip_layer_norm;
mod fuse_skip_rms_norm;
mod pattern;
mod simplify_shapes;

use std::fmt;
use std::str::FromStr;

use crate::ir::{self, Graph, IrError};

/// The most rounds a group runs before the manager stops it.
pub const MAX_ROUNDS: usize = 8;

/// One graph rewrite.
pub trait Pass {
    /// The pass's name, as `--disable-pass` and `--after` take it.
    fn name(&self) -> &'static str;

    /// Rewrites `graph` in place; returns the number of rewrites applied.
    fn run(&self, graph: &mut Graph) -> Result<usize, PassError>;
}

/// A failed pass. Every variant is a compiler bug except the two about names.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// `--disable-pass` or `--after` named no pass.
    #[error("unknown pass `{name}`; the passes are: {}", known.join(", "))]
    UnknownPass {
        /// The name given.
        name: String,
        /// Every pass name.
        known: Vec<&'static str>,
    },
    /// `--after` named a pass that the chosen level and flags do not run.
    #[error("pass `{name}` does not run at -O{level}{}", if *.disabled { " (it is disabled)" } else { "" })]
    NotRun {
        /// The pass.
        name: String,
        /// The level.
        level: u8,
        /// Whether `--disable-pass` removed it.
        disabled: bool,
    },
    /// A pass failed to build a node.
    #[error("internal compiler error in pass `{pass}`: {source}")]
    Ir {
        /// The pass.
        pass: &'static str,
        /// What failed.
        source: IrError,
    },
    /// The graph a pass left behind does not verify.
    #[error("internal compiler error: the graph after pass `{pass}` does not verify: {source}")]
    Verify {
        /// The pass.
        pass: &'static str,
        /// The violated invariant.
        source: IrError,
    },
}

/// How much the optimiser does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum OptLevel {
    /// No passes.
    O0,
    /// Cleanups: folding, shape simplification, CSE, DCE.
    O1,
    /// Cleanups and transformer fusions (the default).
    #[default]
    O2,
    /// Currently the same as `O2`.
    O3,
}

impl OptLevel {
    /// The level as a number, `0..=3`.
    pub fn number(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for OptLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "O{}", self.number())
    }
}

impl FromStr for OptLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<OptLevel, String> {
        match s.trim_start_matches(['O', 'o']) {
            "0" => Ok(OptLevel::O0),
            "1" => Ok(OptLevel::O1),
            "2" => Ok(OptLevel::O2),
            "3" => Ok(OptLevel::O3),
            _ => Err(format!("unknown optimisation level `{s}` (0, 1, 2 or 3)")),
        }
    }
}

/// What the optimiser runs.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// The level.
    pub level: OptLevel,
    /// Names of passes to skip.
    pub disabled: Vec<String>,
    /// Keep a copy of the graph right after the first run of this pass.
    pub snapshot_after: Option<String>,
}

/// What the optimiser did.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    /// Rewrites per pass, summed over rounds, in pipeline order.
    pub rewrites: Vec<(&'static str, usize)>,
    /// The graph right after the first run of [`PassOptions::snapshot_after`].
    pub snapshot: Option<Graph>,
}

impl PassReport {
    /// Rewrites applied by the pass `name`.
    pub fn count(&self, name: &str) -> usize {
        self.rewrites
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, c)| c)
            .sum()
    }
}

/// The cleanup group, in order.
fn cleanup() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(fold::Fold),
        Box::new(simplify_shapes::SimplifyShapes),
        Box::new(cse::Cse),
        Box::new(dce::Dce),
    ]
}

/// The fusion group, in order. Norms go before the skip variants that
/// extend them, GELU before the bias variant, rotary before the attention
/// that reads it, and the generic bias fusion last so the specific ones
/// claim their biases first.
fn fusion() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(fuse_rms_norm::FuseRmsNorm),
        Box::new(fuse_skip_rms_norm::FuseSkipRmsNorm),
        Box::new(fuse_embed_layer_norm::FuseEmbedLayerNorm),
        Box::new(fuse_skip_layer_norm::FuseSkipLayerNorm),
        Box::new(fuse_gelu::FuseGelu),
        Box::new(fuse_bias_gelu::FuseBiasGelu),
        Box::new(fuse_rotary::FuseRotary),
        Box::new(fuse_attention::FuseAttention),
        Box::new(fuse_matmul_bias::FuseMatMulBias),
        Box::new(fuse_qkv::FuseQkv),
        Box::new(cse::Cse),
        Box::new(dce::Dce),
    ]
}

/// The groups a level runs.
fn groups(level: OptLevel) -> Vec<Vec<Box<dyn Pass>>> {
    match level {
        OptLevel::O0 => vec![],
        OptLevel::O1 => vec![cleanup()],
        OptLevel::O2 | OptLevel::O3 => vec![cleanup(), fusion()],
    }
}

/// Every pass name, in pipeline order, without repeats.
pub fn pass_names() -> Vec<&'static str> {
    let mut names = Vec::new();
    for p in cleanup().iter().chain(fusion().iter()) {
        if !names.contains(&p.name()) {
            names.push(p.name());
        }
    }
    names
}

fn check_name(name: &str) -> Result<(), PassError> {
    let known = pass_names();
    if known.contains(&name) {
        return Ok(());
    }
    Err(PassError::UnknownPass {
        name: name.to_string(),
        known,
    })
}

/// Runs the passes of `opts.level` on `graph`.
pub fn optimize(graph: &mut Graph, opts: &PassOptions) -> Result<PassReport, PassError> {
    for name in &opts.disabled {
        check_name(name)?;
    }
    let groups = groups(opts.level);
    if let Some(after) = &opts.snapshot_after {
        check_name(after)?;
        let disabled = opts.disabled.contains(after);
        let scheduled = groups.iter().flatten().any(|p| p.name() == after);
        if disabled || !scheduled {
            return Err(PassError::NotRun {
                name: after.clone(),
                level: opts.level.number(),
                disabled,
            });
        }
    }

    let mut report = PassReport::default();
    for group in &groups {
        let passes: Vec<&dyn Pass> = group
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| !opts.disabled.iter().any(|d| d == p.name()))
            .collect();
        for round in 0..MAX_ROUNDS {
            let mut applied = 0;
            for pass in &passes {
                let n = run_one(*pass, graph)?;
                applied += n;
                add_count(&mut report, pass.name(), n);
                if report.snapshot.is_none() && opts.snapshot_after.as_deref() == Some(pass.name())
                {
                    report.snapshot = Some(graph.clone());
                }
            }
            tracing::debug!(round, applied, "pass group round");
            if applied == 0 {
                break;
            }
        }
    }
    Ok(report)
}

fn add_count(report: &mut PassReport, name: &'static str, n: usize) {
    match report.rewrites.iter_mut().find(|(p, _)| *p == name) {
        Some((_, c)) => *c += n,
        None => report.rewrites.push((name, n)),
    }
}

/// Runs one pass, re-types the graph and verifies it.
fn run_one(pass: &dyn Pass, graph: &mut Graph) -> Result<usize, PassError> {
    let n = pass.run(graph)?;
    let verify_err = |source| PassError::Verify {
        pass: pass.name(),
        source,
    };
    if n > 0 {
        pattern::retype(graph).map_err(verify_err)?;
    }
    ir::verify(graph).map_err(verify_err)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_print() {
        assert_eq!("2".parse::<OptLevel>(), Ok(OptLevel::O2));
        assert_eq!("O3".parse::<OptLevel>(), Ok(OptLevel::O3));
        assert!("4".parse::<OptLevel>().is_err());
        assert_eq!(OptLevel::default().to_string(), "O2");
    }

    #[test]
    fn unknown_pass_lists_the_passes() {
        let mut g = Graph::new("g");
        let opts = PassOptions {
            disabled: vec!["fuse_everything".into()],
            ..PassOptions::default()
        };
        let err = optimize(&mut g, &opts).unwrap_err().to_string();
        assert!(err.contains("unknown pass `fuse_everything`"), "{err}");
        assert!(err.contains("fuse_attention"), "{err}");
    }
}
