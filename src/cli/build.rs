//! `tfc build`: spec → ONNX file (or the IR as text with `--emit ir`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tfc::emit::{self, EmitOptions, ExternalData, WeightMode};
use tfc::inspect::{human_bytes, human_count};

use super::{compile_options, write_output, DTypeArg, SpecArgs};

/// What `tfc build` writes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmitKind {
    /// An ONNX model.
    Onnx,
    /// The verified IR as text.
    Ir,
}

/// Where the weights come from.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsArg {
    /// Seeded random initialisation as Hugging Face does it (normal, std 0.02;
    /// norm weights 1, biases 0).
    Random,
    /// No weights: the graph only, with each weight as a graph input (for
    /// inspecting huge models).
    None,
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

/// Arguments of `tfc build`.
#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    spec: SpecArgs,
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
    /// Where the weights come from.
    #[arg(long, value_enum, default_value_t = WeightsArg::Random)]
    weights: WeightsArg,
    /// When weights go to a separate `OUT.onnx.data` file.
    #[arg(long, value_enum, default_value_t = ExternalArg::Auto)]
    external_data: ExternalArg,
}

/// Runs `tfc build`.
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let compiled = tfc::driver::compile(&args.spec.spec, &compile_options(&args.spec, args.dtype))?;
    tracing::info!(
        "compiled `{}`: {} nodes, {} parameters",
        compiled.model.name,
        compiled.graph.g.node_count(),
        compiled.graph.parameter_count()
    );

    if args.emit == EmitKind::Ir {
        let text = tfc::ir::print(&compiled.graph)?;
        return write_output(args.output.as_deref(), &text);
    }

    let Some(out) = args.output else {
        anyhow::bail!("`tfc build` needs an output file: add `-o model.onnx`");
    };
    let opts = EmitOptions {
        seed: args.seed,
        weights: match args.weights {
            WeightsArg::Random => WeightMode::Random,
            WeightsArg::None => WeightMode::None,
        },
        external_data: match args.external_data {
            ExternalArg::Auto => ExternalData::Auto,
            ExternalArg::Always => ExternalData::Always,
            ExternalArg::Never => ExternalData::Never,
        },
        ..EmitOptions::default()
    };
    let report = emit::emit(&compiled.graph, &opts, &out)
        .with_context(|| format!("could not write {}", out.display()))?;
    print_summary(&report, &out, start);
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
