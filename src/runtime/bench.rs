//! Benchmarks: latency, throughput and peak memory of one model over a grid of batch sizes
//! and sequence lengths, run through ONNX Runtime. `tfc bench` is a thin layer over
//! [`run_bench`].
//!
//! A spec is compiled and emitted to a temporary folder (deleted when the benchmark ends);
//! an ONNX file is loaded as it is. Each grid point is fed synthetic inputs made from the
//! names and shapes the loaded session declares ([`synthetic_inputs`]), run `warmup` times
//! untimed and `runs` times timed. Latency is the wall-clock time of one [`run_f32`] call:
//! wrapping the inputs, the ONNX Runtime run and copying the outputs out as `f32`.
//! Percentiles come from an HDR histogram (three significant digits); the mean is exact.
//!
//! Peak memory is the process's peak resident set size (`VmHWM` in `/proc/self/status`)
//! read after each grid point. It is process-wide and never goes down: it includes the
//! compiler, ONNX Runtime's arenas and every earlier grid point, so it bounds rather than
//! measures one point's footprint.

pub mod chart;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ndarray::ArrayD;
use ort::value::{TensorElementType, ValueType};
use serde::Serialize;
use thiserror::Error;

use super::session::{load_session_with, Provider, Session, SessionOptions};
use super::{run_f32, NamedInput, RuntimeError};
use crate::driver::{CompileError, CompileOptions, WeightsError};
use crate::emit::{EmitError, EmitOptions, Target, TargetProvider};
use crate::interrupt::Interrupted;
use crate::model::Model;
use crate::runtime::run::{compile_to_temp, position_limits};

/// Largest number of tokens (batch × sequence) one grid point may ask for; each input array
/// takes eight bytes per token.
pub const MAX_TOKENS: usize = 1 << 26;

/// Most warm-up or timed runs per grid point (a million runs of the
/// smallest model already take minutes).
pub const MAX_RUNS: usize = 1_000_000;

/// Token ids for an ONNX file, whose vocabulary is not declared, are drawn below this.
pub const ONNX_ID_RANGE: u64 = 100;

/// Input names [`synthetic_inputs`] knows how to fill.
pub use super::inputs::KNOWN_INPUTS;

/// Why a benchmark could not run.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The spec did not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The checkpoint could not be loaded into the compiled model.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The compiled model could not be written.
    #[error("could not emit the compiled model: {0}")]
    Emit(#[from] EmitError),
    /// ONNX Runtime failed to load or run the model.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The temporary folder for the compiled model could not be made.
    #[error("cannot create a temporary folder for the compiled model: {0}")]
    TempDir(std::io::Error),
    /// No batch size or no sequence length was asked for.
    #[error("nothing to measure: {what} is empty")]
    EmptyGrid {
        /// The flag at fault (`--batch`, `--sequence`).
        what: &'static str,
    },
    /// A batch size, sequence length or run count of zero.
    #[error("{what} must be at least 1")]
    Zero {
        /// The flag at fault (`--batch`, `--sequence`, `--runs`).
        what: &'static str,
    },
    /// More runs than any measurement needs.
    #[error("{what} {n} is more than {MAX_RUNS} runs per point")]
    TooManyRuns {
        /// The flag at fault (`--runs`, `--warmup`).
        what: &'static str,
        /// The number given.
        n: usize,
    },
    /// A grid point too large to make inputs for.
    #[error(
        "batch {batch} × sequence {sequence} is more than {MAX_TOKENS} tokens per run; \
         choose a smaller batch or sequence"
    )]
    TooManyTokens {
        /// The batch size.
        batch: usize,
        /// The sequence length.
        sequence: usize,
    },
    /// A sequence length beyond the model's position table.
    #[error(
        "sequence length {sequence} is longer than the {stack} position table of model \
         `{model}`, which has {max} positions; use --sequence {max} or less"
    )]
    TooLong {
        /// The model's name.
        model: String,
        /// Which stack's table (`encoder`, `decoder`).
        stack: &'static str,
        /// The sequence length asked for.
        sequence: usize,
        /// The number of positions.
        max: u64,
    },
    /// The model declares an input that cannot be made from token ids.
    #[error(
        "{} needs input `{name}`, which `tfc bench` cannot fill; it fills {known} \
         (the model's inputs are: {declared})",
        .model.display(),
        known = KNOWN_INPUTS.join(", ")
    )]
    UnknownInput {
        /// The model file.
        model: PathBuf,
        /// The input's name.
        name: String,
        /// Every input the model declares.
        declared: String,
    },
    /// An input that is not an int64 `[batch, sequence]` tensor.
    #[error(
        "input `{name}` of {} is declared as {declared}; `tfc bench` feeds int64 \
         [batch, sequence] arrays",
        .model.display()
    )]
    InputType {
        /// The model file.
        model: PathBuf,
        /// The input's name.
        name: String,
        /// The declared type and shape.
        declared: String,
    },
    /// An input whose fixed size differs from the grid point.
    #[error(
        "input `{name}` of {} has a fixed {axis} of {fixed}, so it cannot run at \
         {axis} {asked}",
        .model.display()
    )]
    FixedDim {
        /// The model file.
        model: PathBuf,
        /// The input's name.
        name: String,
        /// `batch` or `sequence`.
        axis: &'static str,
        /// The declared size.
        fixed: i64,
        /// The size asked for.
        asked: usize,
    },
    /// The latency histogram rejected a value.
    #[error("cannot record latencies: {0}")]
    Statistics(String),
    /// An interrupt was requested between runs.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

impl BenchError {
    /// Whether the benchmark stopped because an interrupt was requested.
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self,
            BenchError::Interrupted(_) | BenchError::Emit(EmitError::Interrupted)
        )
    }
}

/// Where the model comes from.
#[derive(Debug, Clone)]
pub enum BenchSource {
    /// A `.tfm` spec, compiled for this benchmark.
    Spec {
        /// The spec file.
        path: PathBuf,
        /// Compile options (model name, dtype, optimisation level).
        compile: CompileOptions,
        /// Emit options (target, provider, weight seed).
        emit: EmitOptions,
        /// A checkpoint to load instead of random weights.
        weights: Option<PathBuf>,
        /// The weight map: a built-in name or a YAML file; detected when `None`.
        weight_map: Option<String>,
    },
    /// An existing ONNX model file.
    Onnx(PathBuf),
}

/// Everything a benchmark needs.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    /// The model.
    pub source: BenchSource,
    /// Batch sizes, each at least 1.
    pub batches: Vec<usize>,
    /// Sequence lengths, each at least 1.
    pub sequences: Vec<usize>,
    /// Untimed runs before the timed ones, at each grid point.
    pub warmup: usize,
    /// Timed runs at each grid point, at least 1.
    pub runs: usize,
    /// Session configuration (provider, threads).
    pub session: SessionOptions,
}

impl BenchRequest {
    /// The grid points, batch-major: `(batch, sequence)` for every pair.
    pub fn grid(&self) -> Vec<(usize, usize)> {
        self.batches
            .iter()
            .flat_map(|&b| self.sequences.iter().map(move |&s| (b, s)))
            .collect()
    }

    /// Checks the grid and run counts before anything is compiled.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.batches.is_empty() {
            return Err(BenchError::EmptyGrid { what: "--batch" });
        }
        if self.sequences.is_empty() {
            return Err(BenchError::EmptyGrid { what: "--sequence" });
        }
        if self.runs == 0 {
            return Err(BenchError::Zero { what: "--runs" });
        }
        for (what, n) in [("--runs", self.runs), ("--warmup", self.warmup)] {
            if n > MAX_RUNS {
                return Err(BenchError::TooManyRuns { what, n });
            }
        }
        if self.batches.contains(&0) {
            return Err(BenchError::Zero { what: "--batch" });
        }
        if self.sequences.contains(&0) {
            return Err(BenchError::Zero { what: "--sequence" });
        }
        for (batch, sequence) in self.grid() {
            if batch.checked_mul(sequence).is_none_or(|n| n > MAX_TOKENS) {
                return Err(BenchError::TooManyTokens { batch, sequence });
            }
        }
        Ok(())
    }
}

/// Where a running benchmark stands, after each run (warm-up or timed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The grid point being measured, counted from 0.
    pub point: usize,
    /// The number of grid points.
    pub points: usize,
    /// Its batch size.
    pub batch: usize,
    /// Its sequence length.
    pub sequence: usize,
    /// Runs done at this point, warm-up included.
    pub done: usize,
    /// Runs per point, warm-up included.
    pub per_point: usize,
}

/// Latency statistics of one grid point, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Arithmetic mean (exact).
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Fastest run.
    pub min_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
}

/// Statistics of `samples` (at least one). Percentiles, minimum and maximum come from an
/// HDR histogram of nanoseconds with three significant digits, so they are within 0.1 % of
/// the exact order statistics and never decrease with the percentile.
pub fn latency(samples: &[Duration]) -> Result<Latency, BenchError> {
    if samples.is_empty() {
        return Err(BenchError::Statistics("no samples".into()));
    }
    let mut histogram =
        Histogram::<u64>::new(3).map_err(|e| BenchError::Statistics(e.to_string()))?;
    let mut total = 0.0;
    for sample in samples {
        let nanos = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX).max(1);
        histogram
            .record(nanos)
            .map_err(|e| BenchError::Statistics(format!("{nanos} ns: {e:?}")))?;
        total += sample.as_secs_f64();
    }
    let ms = |nanos: u64| nanos as f64 / 1e6;
    Ok(Latency {
        mean_ms: total * 1e3 / samples.len() as f64,
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p90_ms: ms(histogram.value_at_quantile(0.90)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        min_ms: ms(histogram.min()),
        max_ms: ms(histogram.max()),
    })
}

/// The measurements of one grid point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchPoint {
    /// Batch size.
    pub batch: usize,
    /// Sequence length, in tokens.
    pub sequence: usize,
    /// Latency of one run.
    #[serde(flatten)]
    pub latency: Latency,
    /// batch × sequence / mean latency.
    pub tokens_per_s: f64,
    /// batch / mean latency.
    pub sequences_per_s: f64,
    /// The process's peak resident set size after this point, in bytes (process-wide; see
    /// the module docs); `None` where `/proc/self/status` cannot be read.
    pub peak_rss_bytes: Option<u64>,
}

/// The result of a benchmark.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The spec or ONNX file given.
    pub model_path: PathBuf,
    /// The model's name, for a spec.
    pub model_name: Option<String>,
    /// The target and provider the spec was emitted for (`None` for an ONNX file).
    pub target: Option<(Target, TargetProvider)>,
    /// The provider the session ran on.
    pub provider: Provider,
    /// Why the provider differs from the one asked for, if it does.
    pub fallback: Option<String>,
    /// What loading the checkpoint did, if one was loaded.
    pub weights: Option<String>,
    /// The inputs fed, in the model's order.
    pub inputs: Vec<String>,
    /// Intra-op threads asked for (`None`: ONNX Runtime's default).
    pub threads: Option<usize>,
    /// Untimed runs per point.
    pub warmup: usize,
    /// Timed runs per point.
    pub runs: usize,
    /// Milliseconds spent compiling and emitting the spec (`None` for an ONNX file).
    pub compile_ms: Option<f64>,
    /// Milliseconds spent loading the session.
    pub load_ms: f64,
    /// One entry per grid point, batch-major.
    pub points: Vec<BenchPoint>,
}

/// The process's peak resident set size in bytes (`VmHWM`), where the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// One declared model input: its name and, for an int64 tensor, its dimensions (negative
/// where symbolic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredInput {
    /// The input's name.
    pub name: String,
    /// Dimensions of an int64 tensor; `Err` holds the declared type of anything else.
    pub dims: Result<Vec<i64>, String>,
}

/// The inputs `session` declares, in order.
pub fn declared_inputs(session: &mut Session) -> Vec<DeclaredInput> {
    session
        .ort_session()
        .inputs()
        .iter()
        .map(|input| {
            let dims = match input.dtype() {
                ValueType::Tensor {
                    ty: TensorElementType::Int64,
                    shape,
                    ..
                } => Ok(shape.iter().copied().collect()),
                other => Err(other.to_string()),
            };
            DeclaredInput {
                name: input.name().to_string(),
                dims,
            }
        })
        .collect()
}

/// Deterministic pseudo-random token ids in `0..range`, `batch` rows of `sequence`.
pub fn token_ids(batch: usize, sequence: usize, range: u64, salt: u64) -> ArrayD<i64> {
    let range = range.max(1);
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ salt;
    ArrayD::from_shape_fn(vec![batch, sequence], |_| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % range) as i64
    })
}

/// Synthetic inputs for every input `declared` by the model at `model`, at one grid point:
/// token ids below `id_range`, an all-ones attention mask, zero token types, positions
/// `0..sequence`; an encoder–decoder's decoder gets `sequence` tokens as well. Every input
/// must be an int64 `[batch, sequence]` tensor; a fixed dimension must equal the grid's.
pub fn synthetic_inputs(
    model: &Path,
    declared: &[DeclaredInput],
    batch: usize,
    sequence: usize,
    id_range: u64,
) -> Result<Vec<(String, NamedInput)>, BenchError> {
    let shape = vec![batch, sequence];
    let mut inputs = Vec::with_capacity(declared.len());
    for input in declared {
        check_dims(model, input, batch, sequence)?;
        let array = match input.name.as_str() {
            "input_ids" => token_ids(batch, sequence, id_range, 1),
            "decoder_input_ids" => token_ids(batch, sequence, id_range, 2),
            "attention_mask" | "decoder_attention_mask" => ArrayD::ones(shape.clone()),
            "token_type_ids" => ArrayD::zeros(shape.clone()),
            "position_ids" => ArrayD::from_shape_fn(shape.clone(), |ix| ix[1] as i64),
            _ => {
                let names: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
                return Err(BenchError::UnknownInput {
                    model: model.to_path_buf(),
                    name: input.name.clone(),
                    declared: names.join(", "),
                });
            }
        };
        inputs.push((input.name.clone(), NamedInput::I64(array)));
    }
    Ok(inputs)
}

/// Refuses an input that is not an int64 rank-2 tensor, or whose fixed size differs from
/// the grid point.
fn check_dims(
    model: &Path,
    input: &DeclaredInput,
    batch: usize,
    sequence: usize,
) -> Result<(), BenchError> {
    let type_error = |declared: String| BenchError::InputType {
        model: model.to_path_buf(),
        name: input.name.clone(),
        declared,
    };
    let dims = input.dims.as_ref().map_err(|t| type_error(t.clone()))?;
    if dims.len() != 2 {
        return Err(type_error(format!("int64 {dims:?}")));
    }
    for ((&fixed, axis), asked) in dims
        .iter()
        .zip(["batch", "sequence"])
        .zip([batch, sequence])
    {
        if fixed >= 0 && fixed as u64 != asked as u64 {
            return Err(BenchError::FixedDim {
                model: model.to_path_buf(),
                name: input.name.clone(),
                axis,
                fixed,
                asked,
            });
        }
    }
    Ok(())
}

/// Refuses sequence lengths beyond the position tables of `model`'s stacks.
pub fn check_positions(model: &Model, sequences: &[usize]) -> Result<(), BenchError> {
    let limits = position_limits(model);
    let decoder = limits.decoder.map(|max| ("decoder", max));
    for (stack, max) in limits.input.into_iter().chain(decoder) {
        if let Some(&sequence) = sequences.iter().find(|&&n| n as u64 > max) {
            return Err(BenchError::TooLong {
                model: model.name.clone(),
                stack,
                sequence,
                max,
            });
        }
    }
    Ok(())
}

/// Compiles (for a spec), loads and measures the model at every grid point, calling
/// `progress` after each run. Checks the interrupt flag ([`crate::interrupt`]) between
/// runs.
pub fn run_bench(
    request: &BenchRequest,
    progress: &mut dyn FnMut(Progress),
) -> Result<BenchReport, BenchError> {
    request.validate()?;

    // The model file.
    let start = Instant::now();
    let (emitted, target) = match &request.source {
        BenchSource::Spec {
            path,
            compile,
            emit,
            weights,
            weight_map,
        } => {
            let emitted = compile_to_temp(
                path,
                compile,
                emit,
                (weights.as_deref(), weight_map.as_deref()),
                |model| check_positions(model, &request.sequences),
                BenchError::TempDir,
            )?;
            (Some(emitted), Some((emit.target, emit.provider)))
        }
        BenchSource::Onnx(_) => (None, None),
    };
    let compile_ms = emitted
        .as_ref()
        .map(|_| start.elapsed().as_secs_f64() * 1e3);
    let (model_file, model_path) = match (&emitted, &request.source) {
        (Some(e), BenchSource::Spec { path, .. }) => (e.path.clone(), path.clone()),
        (_, BenchSource::Onnx(path) | BenchSource::Spec { path, .. }) => {
            (path.clone(), path.clone())
        }
    };
    let model = emitted.as_ref().map(|e| &e.model);
    let id_range = model.map_or(ONNX_ID_RANGE, |m| m.vocab_size);

    // The session.
    let start = Instant::now();
    let loaded = load_session_with(&model_file, &request.session)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut session = loaded.session;
    let declared = declared_inputs(&mut session);

    // Every input is checked at every grid point before the first run.
    let grid = request.grid();
    for &(batch, sequence) in &grid {
        for input in &declared {
            check_dims(&model_path, input, batch, sequence)?;
        }
    }

    // The grid.
    let per_point = request.warmup + request.runs;
    let mut points = Vec::with_capacity(grid.len());
    for (index, &(batch, sequence)) in grid.iter().enumerate() {
        let feeds = synthetic_inputs(&model_path, &declared, batch, sequence, id_range)?;
        let mut samples = Vec::with_capacity(request.runs);
        for done in 1..=per_point {
            crate::interrupt::check()?;
            let inputs = feeds.clone();
            let start = Instant::now();
            run_f32(&mut session, inputs)?;
            let elapsed = start.elapsed();
            if done > request.warmup {
                samples.push(elapsed);
            }
            progress(Progress {
                point: index,
                points: grid.len(),
                batch,
                sequence,
                done,
                per_point,
            });
        }
        let latency = latency(&samples)?;
        let seconds = latency.mean_ms / 1e3;
        points.push(BenchPoint {
            batch,
            sequence,
            latency,
            tokens_per_s: (batch * sequence) as f64 / seconds,
            sequences_per_s: batch as f64 / seconds,
            peak_rss_bytes: peak_rss_bytes(),
        });
    }

    Ok(BenchReport {
        model_path,
        model_name: model.map(|m| m.name.clone()),
        target,
        provider: loaded.provider,
        fallback: loaded.fallback,
        weights: emitted.as_ref().and_then(|e| e.weights.clone()),
        inputs: declared.into_iter().map(|d| d.name).collect(),
        threads: request.session.intra_threads,
        warmup: request.warmup,
        runs: request.runs,
        compile_ms,
        load_ms,
        points,
    })
}

/// The grid points as CSV: a header line, then one row per point (times in milliseconds,
/// peak RSS in bytes, empty where unknown).
pub fn to_csv(points: &[BenchPoint]) -> String {
    let mut out = String::from(
        "batch,sequence,mean_ms,p50_ms,p90_ms,p99_ms,min_ms,max_ms,\
         tokens_per_s,sequences_per_s,peak_rss_bytes\n",
    );
    for p in points {
        let l = &p.latency;
        let rss = p.peak_rss_bytes.map(|b| b.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.1},{:.3},{rss}\n",
            p.batch,
            p.sequence,
            l.mean_ms,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.min_ms,
            l.max_ms,
            p.tokens_per_s,
            p.sequences_per_s,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(name: &str, dims: Vec<i64>) -> DeclaredInput {
        DeclaredInput {
            name: name.into(),
            dims: Ok(dims),
        }
    }

    #[test]
    fn percentiles_are_ordered_and_close_to_the_samples() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = latency(&samples).unwrap();
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
        assert!(l.min_ms <= l.p50_ms && l.p50_ms <= l.p90_ms && l.p90_ms <= l.p99_ms);
        assert!(l.p99_ms <= l.max_ms);
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p90_ms - 90.0).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
    }

    #[test]
    fn inputs_follow_the_declared_names_and_grid() {
        let model = Path::new("m.onnx");
        let inputs = [
            declared("input_ids", vec![-1, -1]),
            declared("attention_mask", vec![-1, -1]),
            declared("token_type_ids", vec![-1, -1]),
            declared("position_ids", vec![-1, -1]),
        ];
        let feeds = synthetic_inputs(model, &inputs, 2, 5, 10).unwrap();
        let arrays: Vec<_> = feeds
            .iter()
            .map(|(_, f)| match f {
                NamedInput::I64(a) => a.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(arrays.iter().all(|a| a.shape() == [2, 5]));
        assert!(arrays[0].iter().all(|&id| (0..10).contains(&id)));
        assert!(arrays[1].iter().all(|&m| m == 1));
        assert!(arrays[2].iter().all(|&t| t == 0));
        let second_row: Vec<i64> = arrays[3].iter().skip(5).copied().collect();
        assert_eq!(second_row, [0, 1, 2, 3, 4]);
        let again = synthetic_inputs(model, &inputs, 2, 5, 10).unwrap();
        assert_eq!(feeds, again, "inputs are deterministic");
    }

    #[test]
    fn fixed_dims_unknown_names_and_types_are_refused() {
        let model = Path::new("m.onnx");
        let fixed = [declared("input_ids", vec![1, 128])];
        assert!(synthetic_inputs(model, &fixed, 1, 128, 10).is_ok());
        let err = synthetic_inputs(model, &fixed, 1, 64, 10).unwrap_err();
        assert!(matches!(
            err,
            BenchError::FixedDim {
                axis: "sequence",
                fixed: 128,
                ..
            }
        ));
        let unknown = [declared("pixel_values", vec![-1, -1])];
        let err = synthetic_inputs(model, &unknown, 1, 4, 10).unwrap_err();
        assert!(err.to_string().contains("pixel_values"), "{err}");
        let float = [DeclaredInput {
            name: "input_ids".into(),
            dims: Err("Tensor<f32>(-1, -1)".into()),
        }];
        let err = synthetic_inputs(model, &float, 1, 4, 10).unwrap_err();
        assert!(matches!(err, BenchError::InputType { .. }));
    }

    #[test]
    fn grid_and_limits_are_checked_up_front() {
        let request = |batches: Vec<usize>, sequences: Vec<usize>, runs| BenchRequest {
            source: BenchSource::Onnx(PathBuf::from("m.onnx")),
            batches,
            sequences,
            warmup: 0,
            runs,
            session: SessionOptions::default(),
        };
        let ok = request(vec![1, 8], vec![32, 128], 1);
        assert!(ok.validate().is_ok());
        assert_eq!(ok.grid(), [(1, 32), (1, 128), (8, 32), (8, 128)]);
        assert!(request(vec![], vec![4], 1).validate().is_err());
        assert!(request(vec![1], vec![4], 0).validate().is_err());
        assert!(request(vec![0], vec![4], 1).validate().is_err());
        let huge = request(vec![usize::MAX], vec![2], 1).validate();
        assert!(matches!(huge, Err(BenchError::TooManyTokens { .. })));
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_point() {
        let point = BenchPoint {
            batch: 2,
            sequence: 8,
            latency: latency(&[Duration::from_millis(4)]).unwrap(),
            tokens_per_s: 4000.0,
            sequences_per_s: 500.0,
            peak_rss_bytes: Some(1024),
        };
        let csv = to_csv(&[point.clone(), point]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("batch,sequence,mean_ms"));
        assert_eq!(lines[1].split(',').count(), lines[0].split(',').count());
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().is_some_and(|b| b > 0));
        }
    }
}
