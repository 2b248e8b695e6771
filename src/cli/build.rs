//! `tfc build`: spec → ONNX file (or the IR as text with `--emit ir`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tfc::emit::{self, EmitOptions, ExternalData, Target, TargetProvider, WeightMode};
use tfc::inspect::{human_bytes, human_count};

use super::{compile_options, write_output, DTypeArg, OptArgs, SpecArgs};

/// What `tfc build` writes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmitKind {
    /// An ONNX model.
    Onnx,
    /// The verified IR as text.
    Ir,
}

/// Where the weights come from: `random`, `none` or a checkpoint path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsArg {
    /// Seeded random initialisation as Hugging Face does it (normal, std 0.02;
    /// norm weights 1, biases 0).
    Random,
    /// No weights: the graph only, with each weight as a graph input (for
    /// inspecting huge models).
    None,
    /// A Hugging Face checkpoint: a `.safetensors` file, a sharded index or a
    /// model folder.
    Checkpoint(PathBuf),
}

impl std::str::FromStr for WeightsArg {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<WeightsArg, Self::Err> {
        Ok(match text {
            "random" => WeightsArg::Random,
            "none" => WeightsArg::None,
            path => WeightsArg::Checkpoint(PathBuf::from(path)),
        })
    }
}

/// When weights go to a separate `.onnx.data` file.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalArg {
    /// When the model would exceed protobuf's 2 GiB limit.
    Auto,
    /// Always.
    Always,
    /// Never (a model over 2 GiB is an error).
    Never,
}

/// `--target`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetArg {
    /// Standard ONNX, opset 17: runs in any runtime.
    Portable,
    /// Standard ONNX, opset 23, with its fused operators.
    Onnx23,
    /// Opset 17 plus ONNX Runtime's com.microsoft operators.
    Ort,
}

impl From<TargetArg> for Target {
    fn from(t: TargetArg) -> Target {
        match t {
            TargetArg::Portable => Target::Portable,
            TargetArg::Onnx23 => Target::Onnx23,
            TargetArg::Ort => Target::Ort,
        }
    }
}

/// `--for-provider`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForProvider {
    /// ONNX Runtime's CPU provider (and other runtimes).
    Cpu,
    /// ONNX Runtime's CUDA provider.
    Cuda,
}

impl From<ForProvider> for TargetProvider {
    fn from(p: ForProvider) -> TargetProvider {
        match p {
            ForProvider::Cpu => TargetProvider::Cpu,
            ForProvider::Cuda => TargetProvider::Cuda,
        }
    }
}

/// Arguments of `tfc build`.
#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    opt: OptArgs,
    /// With `--emit ir`: print the IR right after the first run of this pass.
    #[arg(long, value_name = "PASS")]
    after: Option<String>,
    /// Output file (`.onnx`; for `--emit ir`, a text file; default: standard output).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// What to write.
    #[arg(long, value_enum, default_value_t = EmitKind::Onnx)]
    emit: EmitKind,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Element type of weights and activations (overrides the spec's dtype).
    #[arg(long, value_enum)]
    dtype: Option<DTypeArg>,
    /// Where the weights come from: `random` (seeded), `none` (weights become
    /// graph inputs) or a Hugging Face checkpoint (a .safetensors file or a
    /// model folder).
    #[arg(long, default_value = "random", value_name = "random|none|PATH")]
    weights: WeightsArg,
    /// Weight map for a checkpoint: a built-in name (bert, gpt2, llama, t5,
    /// bart, bloom) or a YAML file (default: detected from the tensor names).
    #[arg(long, value_name = "NAME|FILE")]
    weight_map: Option<String>,
    /// When weights go to a separate `OUT.onnx.data` file.
    #[arg(long, value_enum, default_value_t = ExternalArg::Auto)]
    external_data: ExternalArg,
    /// Which fused operators to write: `portable` (standard opset-17 nodes
    /// only; any runtime), `onnx23` (opset-23 Attention, RMSNormalization,
    /// RotaryEmbedding) or `ort` (ONNX Runtime's com.microsoft operators).
    #[arg(long, value_enum, default_value_t = TargetArg::Portable)]
    target: TargetArg,
    /// The execution provider the fused operators are chosen for (with
    /// `--target onnx23|ort`).
    #[arg(long = "for-provider", value_enum, default_value_t = ForProvider::Cpu)]
    for_provider: ForProvider,
    /// Compile for generation with a key/value cache: `-o` names a folder that
    /// receives `decoder.onnx` (and `encoder.onnx` for an encoder–decoder);
    /// see docs/KV_CACHE.md.
    #[arg(long)]
    kv_cache: bool,
}

/// Runs `tfc build`.
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let options = args.opt.apply(compile_options(&args.spec, args.dtype));
    if args.after.is_some() && args.emit != EmitKind::Ir {
        anyhow::bail!("--after shows the IR: add `--emit ir`");
    }
    if args.kv_cache {
        return build_cached(args, &options, start);
    }
    let (mut compiled, passes) =
        tfc::driver::compile_with_report(&args.spec.spec, &options, args.after.as_deref())?;
    if let Some(snapshot) = passes.snapshot {
        let text = tfc::ir::print(&snapshot)?;
        return write_output(args.output.as_deref(), &text);
    }
    tracing::info!(
        "compiled `{}`: {} nodes, {} parameters",
        compiled.model.name,
        compiled.graph.g.node_count(),
        compiled.graph.parameter_count()
    );

    match &args.weights {
        WeightsArg::Checkpoint(checkpoint) => {
            let map = args.weight_map.as_deref();
            let report = tfc::driver::load_weights(&mut compiled, checkpoint, map)
                .with_context(|| format!("could not load weights from {}", checkpoint.display()))?;
            tracing::info!("{report}");
        }
        _ if args.weight_map.is_some() => {
            anyhow::bail!("--weight-map needs a checkpoint: add `--weights PATH`")
        }
        _ => {}
    }

    if args.emit == EmitKind::Ir {
        let text = tfc::ir::print(&compiled.graph)?;
        return write_output(args.output.as_deref(), &text);
    }

    let Some(out) = args.output.clone() else {
        anyhow::bail!("`tfc build` needs an output file: add `-o model.onnx`");
    };
    check_output_path(&out, &args.spec.spec)?;
    let opts = emit_options(&args);
    super::stop_on_interrupt();
    let report = emit::emit(&compiled.graph, &opts, &out)
        .with_context(|| format!("could not write {}", out.display()))?;
    print_summary(&report, &out, start);
    Ok(())
}

/// Refuses an output path that names a folder or the spec itself, which a
/// build would otherwise replace with a model.
fn check_output_path(out: &std::path::Path, spec: &std::path::Path) -> anyhow::Result<()> {
    if out.is_dir() || out.as_os_str().to_string_lossy().ends_with('/') {
        anyhow::bail!(
            "{} is a folder: give a file name such as `-o {}`",
            out.display(),
            out.join("model.onnx").display()
        );
    }
    let same = |a: &std::path::Path, b: &std::path::Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if same(out, spec) {
        anyhow::bail!(
            "the output {} is the spec being compiled: choose another file, such as `-o {}`",
            out.display(),
            out.with_extension("onnx").display()
        );
    }
    Ok(())
}

/// The emit options the flags ask for.
fn emit_options(args: &BuildArgs) -> EmitOptions {
    EmitOptions {
        seed: args.seed,
        weights: match &args.weights {
            WeightsArg::Random | WeightsArg::Checkpoint(_) => WeightMode::Random,
            WeightsArg::None => WeightMode::None,
        },
        external_data: match args.external_data {
            ExternalArg::Auto => ExternalData::Auto,
            ExternalArg::Always => ExternalData::Always,
            ExternalArg::Never => ExternalData::Never,
        },
        ..EmitOptions::for_target(args.target.into(), args.for_provider.into())
    }
}

/// `tfc build --kv-cache`: the cached graphs, each written to `{role}.onnx` in the
/// output folder.
fn build_cached(
    args: BuildArgs,
    options: &tfc::driver::CompileOptions,
    start: Instant,
) -> anyhow::Result<()> {
    if args.after.is_some() {
        anyhow::bail!("--after shows one graph: leave out --kv-cache");
    }
    let lower = tfc::lower::LowerOptions { kv_cache: true };
    let mut compiled = tfc::driver::compile_graphs(&args.spec.spec, options, &lower)?;
    match &args.weights {
        WeightsArg::Checkpoint(checkpoint) => {
            let map = args.weight_map.as_deref();
            let reports = tfc::driver::load_weights_graphs(&mut compiled, checkpoint, map)
                .with_context(|| format!("could not load weights from {}", checkpoint.display()))?;
            for ((role, _), report) in compiled.graphs.iter().zip(&reports) {
                tracing::info!("{role}: {report}");
            }
        }
        _ if args.weight_map.is_some() => {
            anyhow::bail!("--weight-map needs a checkpoint: add `--weights PATH`")
        }
        _ => {}
    }
    if args.emit == EmitKind::Ir {
        let mut text = String::new();
        for (role, graph) in &compiled.graphs {
            text.push_str(&format!("# role: {role}\n"));
            text.push_str(&tfc::ir::print(graph)?);
        }
        return write_output(args.output.as_deref(), &text);
    }
    let Some(dir) = args.output.clone() else {
        anyhow::bail!("`tfc build --kv-cache` needs an output folder: add `-o DIR`");
    };
    if dir.extension().is_some_and(|e| e == "onnx") {
        anyhow::bail!(
            "with --kv-cache, -o names a folder that receives decoder.onnx (and encoder.onnx); \
             `{}` looks like a file",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("could not create the folder {}", dir.display()))?;
    let opts = emit_options(&args);
    super::stop_on_interrupt();
    for (role, graph) in &compiled.graphs {
        let out = dir.join(format!("{role}.onnx"));
        let report = emit::emit(graph, &opts, &out)
            .with_context(|| format!("could not write {}", out.display()))?;
        print_summary(&report, &out, start);
    }
    Ok(())
}

fn print_summary(report: &emit::EmitReport, out: &Path, start: Instant) {
    let data = match &report.data_path {
        Some(p) => format!(" + {} ({})", p.display(), human_bytes(report.data_bytes)),
        None => String::new(),
    };
    eprintln!(
        "wrote {} ({}){data}: {} nodes, {} parameters, in {:.2} s",
        out.display(),
        human_bytes(report.model_bytes),
        report.nodes,
        human_count(report.parameters),
        start.elapsed().as_secs_f64()
    );
}
