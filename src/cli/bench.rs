//! `tfc bench`: latency, throughput and peak memory of a spec (compiled in memory) or an ONNX
//! file over a grid of batch sizes and sequence lengths, as a table, JSON or CSV, with an
//! optional SVG chart.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tfc::emit::{EmitOptions, Target, TargetProvider};
use tfc::inspect::human_bytes;
use tfc::runtime::bench::{chart, run_bench, to_csv, BenchReport, BenchRequest, BenchSource};
use tfc::runtime::{Provider, SessionOptions};

use super::build::{ForProvider, TargetArg, WeightsArg};
use super::run::ProviderArg;
use super::{compile_options, write_output, DTypeArg, OptArgs, SpecArgs};

/// Arguments of `tfc bench`.
#[derive(Args)]
#[command(after_help = "Examples:
  tfc bench examples/01-tiny-encoder.tfm --batch 1,8 --sequence 32,128
  tfc bench specs/gpt2.tfm --target ort --threads 4 --json
  tfc bench model.onnx --sequence 16,64,256 --csv --svg latency.svg")]
pub struct BenchArgs {
    /// A .tfm spec (compiled for this benchmark) or an .onnx model file.
    source: PathBuf,
    /// Which model of the spec file (default: the last one defined in it).
    #[arg(short, long)]
    model: Option<String>,
    /// Batch sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1", value_name = "B,...")]
    batch: Vec<usize>,
    /// Sequence lengths in tokens, comma separated.
    #[arg(
        long,
        alias = "seq",
        value_delimiter = ',',
        default_value = "128",
        value_name = "S,..."
    )]
    sequence: Vec<usize>,
    /// Untimed runs before the timed ones, at each grid point.
    #[arg(long, default_value_t = 3, value_name = "N")]
    warmup: usize,
    /// Timed runs at each grid point.
    #[arg(long, default_value_t = 20, value_name = "N")]
    runs: usize,
    /// Intra-op threads (default: ONNX Runtime's choice, one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = ProviderArg::Cpu)]
    provider: ProviderArg,
    /// Which fused operators to emit (specs only; default portable).
    #[arg(long, value_enum)]
    target: Option<TargetArg>,
    /// The provider fused operators are chosen for (specs only; default: --provider).
    #[arg(long = "for-provider", value_enum)]
    for_provider: Option<ForProvider>,
    /// Weights (specs only): `random` (seeded) or a Hugging Face checkpoint.
    #[arg(long, value_name = "random|PATH")]
    weights: Option<WeightsArg>,
    /// Weight map for a checkpoint: a built-in name or a YAML file.
    #[arg(long, value_name = "NAME|FILE", requires = "weights")]
    weight_map: Option<String>,
    /// Seed of the random weights (specs only).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Element type of weights and activations (specs only; overrides the spec's dtype).
    #[arg(long, value_enum)]
    dtype: Option<DTypeArg>,
    #[command(flatten)]
    opt: OptArgs,
    /// Print one JSON object instead of the table.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV (a header, then one row per grid point) instead of the table.
    #[arg(long)]
    csv: bool,
    /// Also write an SVG chart of p50 latency against sequence length to this file.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// The ONNX Runtime library (libonnxruntime.so, or a folder or virtual environment
    /// holding it); default: ORT_DYLIB_PATH, TFC_ORT_LIB, then the .venv nearby.
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
}

/// Runs `tfc bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(lib) = &args.ort_lib {
        tfc::runtime::init_ort(Some(lib))?;
    }
    let request = request(&args)?;
    request.validate()?;
    super::stop_on_interrupt();

    // A bar on a terminal; nothing when stderr is piped.
    let total = request.grid().len() * (request.warmup + request.runs);
    let bar = ProgressBar::with_draw_target(Some(total as u64), draw_target());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = run_bench(&request, &mut |p| {
        bar.set_position((p.point * p.per_point + p.done) as u64);
        bar.set_message(format!("batch {}, sequence {}", p.batch, p.sequence));
    });
    bar.finish_and_clear();
    let report = report?;

    if let Some(warning) = &report.fallback {
        eprintln!("warning: {warning}");
    }
    if let Some(path) = &args.svg {
        write_output(Some(path), &chart::svg(&report))?;
    }
    let text = if args.json {
        serde_json::to_string_pretty(&json(&report))? + "\n"
    } else if args.csv {
        to_csv(&report.points)
    } else {
        table(&report)
    };
    super::run::print_stdout(&text)
}

fn draw_target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// The request the flags describe; flags that only apply to specs are refused for an ONNX
/// file.
fn request(args: &BenchArgs) -> anyhow::Result<BenchRequest> {
    let is_onnx = args
        .source
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    let session = SessionOptions {
        provider: match args.provider {
            ProviderArg::Cpu => Provider::Cpu,
            ProviderArg::Cuda => Provider::Cuda,
        },
        intra_threads: args.threads,
    };
    let source = if is_onnx {
        let spec_only = [
            (args.target.is_some(), "--target"),
            (args.for_provider.is_some(), "--for-provider"),
            (args.weights.is_some(), "--weights"),
            (args.dtype.is_some(), "--dtype"),
            (args.model.is_some(), "--model"),
        ];
        if let Some((_, flag)) = spec_only.iter().find(|(given, _)| *given) {
            anyhow::bail!(
                "{flag} applies to specs; {} is an ONNX file, benchmarked as it was built",
                args.source.display()
            );
        }
        BenchSource::Onnx(args.source.clone())
    } else {
        spec_source(args)?
    };
    Ok(BenchRequest {
        source,
        batches: args.batch.clone(),
        sequences: args.sequence.clone(),
        warmup: args.warmup,
        runs: args.runs,
        session,
    })
}

fn spec_source(args: &BenchArgs) -> anyhow::Result<BenchSource> {
    let spec = SpecArgs {
        spec: args.source.clone(),
        model: args.model.clone(),
    };
    let weights = match &args.weights {
        None | Some(WeightsArg::Random) => None,
        Some(WeightsArg::Checkpoint(path)) => Some(path.clone()),
        Some(WeightsArg::None) => anyhow::bail!(
            "--weights none makes every weight a graph input, which a benchmark cannot feed; \
             use `random` or a checkpoint"
        ),
    };
    let target = Target::from(args.target.unwrap_or(TargetArg::Portable));
    let for_provider = args.for_provider.unwrap_or(match args.provider {
        ProviderArg::Cpu => ForProvider::Cpu,
        ProviderArg::Cuda => ForProvider::Cuda,
    });
    let emit = EmitOptions {
        seed: args.seed,
        ..EmitOptions::for_target(target, for_provider.into())
    };
    Ok(BenchSource::Spec {
        path: args.source.clone(),
        compile: args.opt.apply(compile_options(&spec, args.dtype)),
        emit,
        weights,
        weight_map: args.weight_map.clone(),
    })
}

/// The header lines and one table row per grid point.
fn table(report: &BenchReport) -> String {
    use comfy_table::{presets::UTF8_BORDERS_ONLY, CellAlignment, Table};
    let mut out = String::new();
    let name = match &report.model_name {
        Some(name) => format!(" (model `{name}`)"),
        None => String::new(),
    };
    out += &format!("{}{name}\n", report.model_path.display());
    let target = match report.target {
        Some((target, provider)) => format!("target {target} for {}, ", provider_name(provider)),
        None => String::new(),
    };
    let threads = match report.threads {
        Some(n) => n.to_string(),
        None => "default".to_string(),
    };
    out += &format!(
        "{target}provider {}, threads {threads}, {} warm-up + {} timed runs per point\n",
        report.provider, report.warmup, report.runs
    );
    if let Some(weights) = &report.weights {
        out += &format!("weights: {weights}\n");
    }
    let compile = match report.compile_ms {
        Some(ms) => format!("compile {ms:.1} ms, "),
        None => String::new(),
    };
    out += &format!("{compile}session load {:.1} ms\n", report.load_ms);

    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "batch", "sequence", "mean ms", "p50 ms", "p90 ms", "p99 ms", "tokens/s", "seq/s",
        "peak RSS",
    ]);
    for p in &report.points {
        let l = &p.latency;
        table.add_row(vec![
            p.batch.to_string(),
            p.sequence.to_string(),
            format!("{:.3}", l.mean_ms),
            format!("{:.3}", l.p50_ms),
            format!("{:.3}", l.p90_ms),
            format!("{:.3}", l.p99_ms),
            format!("{:.0}", p.tokens_per_s),
            format!("{:.1}", p.sequences_per_s),
            p.peak_rss_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    for i in 0..9 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    out += &table.to_string();
    out += "\npeak RSS is the whole process's high-water mark so far (it never goes down)\n";
    out
}

fn provider_name(provider: TargetProvider) -> &'static str {
    match provider {
        TargetProvider::Cpu => "cpu",
        TargetProvider::Cuda => "cuda",
    }
}

fn json(report: &BenchReport) -> serde_json::Value {
    serde_json::json!({
        "model": report.model_path.display().to_string(),
        "model_name": report.model_name,
        "target": report.target.map(|(t, _)| t.name()),
        "for_provider": report.target.map(|(_, p)| provider_name(p)),
        "provider": report.provider.to_string(),
        "fallback": report.fallback,
        "weights": report.weights,
        "inputs": report.inputs,
        "threads": report.threads,
        "warmup": report.warmup,
        "runs": report.runs,
        "timing_ms": {
            "compile": report.compile_ms,
            "load": report.load_ms,
        },
        "points": report.points,
    })
}
