//! Command-line verbs. Each verb parses its flags, calls the library and
//! prints; errors go to stderr with a non-zero exit status.

mod bench;
mod build;
mod generate;
mod inspect;
mod lint;
mod run;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tfc::driver::{CompileError, CompileOptions};
use tfc::model::FloatType;

/// tfc compiles declarative transformer specs (.tfm) into ONNX models.
#[derive(Parser)]
#[command(name = "tfc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log more (-v: one line per stage, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a spec to an ONNX model (or print its IR with --emit ir).
    Build(build::BuildArgs),
    /// Check every model of a spec (or one, with -m) and report every error, writing nothing.
    Check(SpecArgs),
    /// Show parameters, weight bytes, FLOPs and KV-cache size, per layer.
    Inspect(inspect::InspectArgs),
    /// Print the model's graph in Graphviz dot format.
    Graph(GraphArgs),
    /// Run a spec or an ONNX model on token ids or text through ONNX Runtime.
    Run(Box<run::RunArgs>),
    /// Generate tokens from a prompt (greedy, beam search or sampling), streaming them.
    Generate(Box<generate::GenerateArgs>),
    /// List the operators of a model that named ONNX consumers would reject.
    Lint(lint::LintArgs),
    /// Measure latency percentiles, throughput and peak memory over a grid of batch sizes
    /// and sequence lengths.
    Bench(Box<bench::BenchArgs>),
}

/// The spec to read and which model in it.
#[derive(Args, Clone)]
pub struct SpecArgs {
    /// The .tfm spec file.
    pub spec: PathBuf,
    /// Which model of the file (default: the last one defined in it).
    #[arg(short, long)]
    pub model: Option<String>,
}

#[derive(Args)]
struct GraphArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Graphviz dot output (the only format for now).
    #[arg(long, default_value_t = true)]
    dot: bool,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Element type of the emitted model.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum DTypeArg {
    /// 32-bit floats.
    Fp32,
    /// 16-bit floats (norms and softmax still accumulate in fp32).
    Fp16,
}

impl From<DTypeArg> for FloatType {
    fn from(d: DTypeArg) -> FloatType {
        match d {
            DTypeArg::Fp32 => FloatType::F32,
            DTypeArg::Fp16 => FloatType::F16,
        }
    }
}

/// Compile options shared by the verbs.
pub fn compile_options(spec: &SpecArgs, dtype: Option<DTypeArg>) -> CompileOptions {
    CompileOptions {
        model: spec.model.clone(),
        dtype: dtype.map(Into::into),
        color: std::io::stderr().is_terminal(),
        ..CompileOptions::default()
    }
}

/// Optimiser flags shared by `build`, `run` and `bench`.
#[derive(Args, Clone, Debug)]
pub struct OptArgs {
    /// Optimisation level: 0 (none), 1 (cleanups), 2 (+ transformer fusions), 3 (= 2).
    #[arg(short = 'O', value_name = "LEVEL", default_value = "2")]
    pub opt_level: tfc::passes::OptLevel,
    /// Skip a pass by name (repeatable; an unknown name lists the passes).
    #[arg(long = "disable-pass", value_name = "NAME")]
    pub disable_pass: Vec<String>,
}

impl OptArgs {
    /// Applies the flags to compile options.
    pub fn apply(&self, mut opts: CompileOptions) -> CompileOptions {
        opts.opt_level = self.opt_level;
        opts.disabled_passes = self.disable_pass.clone();
        opts
    }
}

/// Prints an error the way the user should see it.
pub fn report_error(err: &anyhow::Error) {
    if let Some(CompileError::Diagnostics { rendered, count }) = err.downcast_ref::<CompileError>()
    {
        eprint!("{rendered}");
        let plural = if *count == 1 { "" } else { "s" };
        eprintln!("error: could not compile the spec due to {count} error{plural}");
        return;
    }
    eprintln!("error: {err}");
    // Causes whose text the message above already quotes are not repeated.
    let mut shown = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
            shown = text;
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TFC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("tfc={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Build(args) => build::run(args),
        Command::Check(args) => check(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Graph(args) => graph(args),
        Command::Run(args) => run::run(*args),
        Command::Generate(args) => generate::run(*args),
        Command::Lint(args) => lint::run(args),
        Command::Bench(args) => bench::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report_error(&err);
            let interrupted = err
                .downcast_ref::<tfc::emit::EmitError>()
                .is_some_and(|e| matches!(e, tfc::emit::EmitError::Interrupted))
                || err
                    .downcast_ref::<tfc::runtime::bench::BenchError>()
                    .is_some_and(tfc::runtime::bench::BenchError::is_interrupted);
            if interrupted {
                ExitCode::from(EXIT_INTERRUPTED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Exit status after Ctrl-C, as shells report a process killed by SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

/// From here on, the first SIGINT or SIGTERM asks the library to stop at its
/// next check (temporary files are removed, outputs left as they were); a
/// second one exits at once.
pub fn stop_on_interrupt() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let stop = tfc::interrupt::flag();
    for signal in [SIGINT, SIGTERM] {
        // Registered in this order, a repeated signal finds the flag set and exits.
        let registered = flag::register_conditional_shutdown(
            signal,
            i32::from(EXIT_INTERRUPTED),
            std::sync::Arc::clone(&stop),
        )
        .and_then(|_| flag::register(signal, std::sync::Arc::clone(&stop)));
        if let Err(e) = registered {
            tracing::warn!(
                "cannot handle signal {signal}: {e}; an interrupt may leave temporary files"
            );
        }
    }
}

/// `tfc check`: one model with `-m`, otherwise every model of the file.
fn check(args: SpecArgs) -> anyhow::Result<()> {
    let options = compile_options(&args, None);
    let checked = match &args.model {
        Some(_) => {
            let compiled = tfc::driver::compile(&args.spec, &options)?;
            let parameters = compiled.graph.parameter_count();
            vec![(compiled.model.name, parameters)]
        }
        None => tfc::driver::check_all(&args.spec, &options)?,
    };
    if checked.is_empty() {
        anyhow::bail!("{} defines no model", args.spec.display());
    }
    for (name, parameters) in checked {
        println!(
            "{}: model `{name}` is valid ({parameters} parameters)",
            args.spec.display()
        );
    }
    Ok(())
}

fn graph(args: GraphArgs) -> anyhow::Result<()> {
    let compiled = tfc::driver::compile(&args.spec.spec, &compile_options(&args.spec, None))?;
    let dot = tfc::ir::to_dot(&compiled.graph)?;
    write_output(args.output.as_deref(), &dot)
}

/// Writes `text` to `path` atomically, or to standard output when `path` is `None`.
pub fn write_output(path: Option<&std::path::Path>, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let Some(path) = path else {
        print!("{text}");
        return Ok(());
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| anyhow::anyhow!("cannot write in {}: {e}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    // Temporary files are private (0600); the output is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o644);
        tmp.as_file().set_permissions(mode)?;
    }
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}
