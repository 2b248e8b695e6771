//! `tfc lint`: the operators of a model (or of the model a spec builds) that
//! named ONNX consumers would reject.

use std::path::PathBuf;

use clap::Args;
use tfc::emit::{self, EmitOptions, WeightMode};
use tfc::lint::{self, Finding};

use super::build::{ForProvider, TargetArg};
use super::{compile_options, OptArgs, SpecArgs};

/// Arguments of `tfc lint`.
#[derive(Args)]
#[command(
    after_help = "Exit status 1 when a consumer rejects something.\n\nExamples:\n  \
    tfc lint specs/bert-base.tfm -m bert_base --target ort --consumer tensorrt\n  \
    tfc lint model.onnx"
)]
pub struct LintArgs {
    /// A .tfm spec (its model is built graph-only) or an .onnx file.
    input: PathBuf,
    /// Which model of a spec (default: the last one defined in it).
    #[arg(short, long)]
    model: Option<String>,
    /// Consumer to check against (repeatable; default: every known one).
    #[arg(long, value_name = "NAME")]
    consumer: Vec<String>,
    /// Emitter target a spec is built for.
    #[arg(long, value_enum, default_value_t = TargetArg::Portable)]
    target: TargetArg,
    /// Execution provider the fused forms are chosen for.
    #[arg(long = "for-provider", value_enum, default_value_t = ForProvider::Cpu)]
    for_provider: ForProvider,
    #[command(flatten)]
    opt: OptArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `tfc lint`.
pub fn run(args: LintArgs) -> anyhow::Result<()> {
    let is_onnx = args
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    let model = if is_onnx {
        if args.target != TargetArg::Portable || args.model.is_some() {
            anyhow::bail!("--target and -m apply to a spec; an .onnx file is linted as it is");
        }
        lint::read_model(&args.input)?
    } else {
        let spec = SpecArgs {
            spec: args.input.clone(),
            model: args.model.clone(),
        };
        let compiled =
            tfc::driver::compile(&spec.spec, &args.opt.apply(compile_options(&spec, None)))?;
        // The graph only: weights become inputs, so nothing large is built.
        let opts = EmitOptions {
            weights: WeightMode::None,
            ..EmitOptions::for_target(args.target.into(), args.for_provider.into())
        };
        emit::to_model_proto(&compiled.graph, &opts)?
    };

    let names = if args.consumer.is_empty() {
        lint::consumers()
    } else {
        args.consumer.clone()
    };
    let mut results: Vec<(String, &lint::Consumer, Vec<Finding>)> = Vec::new();
    for name in names {
        let consumer = lint::consumer(&name)?;
        results.push((name, consumer, lint::lint(&model, consumer)));
    }

    if args.json {
        let value: Vec<serde_json::Value> = results
            .iter()
            .map(|(name, c, findings)| {
                serde_json::json!({
                    "consumer": name,
                    "version": c.version,
                    "basis": c.basis,
                    "accepted": findings.is_empty(),
                    "findings": findings,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&results));
    }
    let rejected = results.iter().filter(|(_, _, f)| !f.is_empty()).count();
    if rejected > 0 {
        anyhow::bail!(
            "{rejected} of {} consumers would reject this model",
            results.len()
        );
    }
    Ok(())
}

/// One block per consumer: accepted, or each finding with its node count.
fn render(results: &[(String, &lint::Consumer, Vec<Finding>)]) -> String {
    let mut out = String::new();
    for (name, consumer, findings) in results {
        let verdict = if findings.is_empty() {
            "accepts every operator".to_string()
        } else {
            format!("would reject {} item(s)", findings.len())
        };
        out += &format!("{name} {}: {verdict}\n", consumer.version);
        for f in findings {
            let nodes = match f.nodes {
                0 => String::new(),
                1 => " (1 node)".to_string(),
                n => format!(" ({n} nodes)"),
            };
            out += &format!("  {}{nodes}: {}\n", f.what, f.reason);
        }
        out += &format!("  basis: {}\n", consumer.basis);
    }
    out
}
