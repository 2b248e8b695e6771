//! `tfc inspect`: parameter, memory and FLOP estimates before anything is written.

use clap::Args;
use tfc::inspect::{render, report, Workload};

use super::{compile_options, DTypeArg, SpecArgs};

/// Largest `--batch` taken: keeps every FLOP count within 64 bits.
const MAX_BATCH: i64 = 1 << 20;
/// Largest `--sequence` taken.
const MAX_SEQUENCE: i64 = 1 << 24;

/// Arguments of `tfc inspect`.
#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Batch size for the FLOP count.
    #[arg(long, default_value_t = 1)]
    batch: i64,
    /// Sequence length for the FLOP count.
    #[arg(long, alias = "seq", default_value_t = 128)]
    sequence: i64,
    /// Override the spec's dtype (changes weight bytes).
    #[arg(long, value_enum)]
    dtype: Option<DTypeArg>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `tfc inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    if args.batch < 1 || args.sequence < 1 {
        anyhow::bail!("--batch and --sequence must be at least 1");
    }
    if args.batch > MAX_BATCH || args.sequence > MAX_SEQUENCE {
        anyhow::bail!(
            "--batch is at most {MAX_BATCH} and --sequence at most {MAX_SEQUENCE} \
             (FLOPs beyond them are not a workload any machine runs)"
        );
    }
    // The report reads the lowered graph, before any fusion hides a MatMul.
    let options = tfc::driver::CompileOptions {
        opt_level: tfc::passes::OptLevel::O0,
        ..compile_options(&args.spec, args.dtype)
    };
    let compiled = tfc::driver::compile(&args.spec.spec, &options)?;
    let workload = Workload {
        batch: args.batch,
        sequence: args.sequence,
    };
    let r = report(&compiled.model, &compiled.graph, workload);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", render(&r));
    }
    Ok(())
}
