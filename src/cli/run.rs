//! `tfc run`: runs a spec (compiled in memory) or an ONNX file through ONNX Runtime on token
//! ids or text, and prints what came out (or saves it).

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Args, ValueEnum};
use tfc::runtime::inputs::{parse_ids, read_ids_file};
use tfc::runtime::outputs::{outputs_json, save_outputs, summarize};
use tfc::runtime::run::{run_model, ModelSource, RunReport, RunRequest, TokenSource};
use tfc::runtime::{Provider, SessionOptions};

use super::{compile_options, DTypeArg, OptArgs, SpecArgs};

/// Where the model runs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderArg {
    /// ONNX Runtime's CPU kernels.
    Cpu,
    /// NVIDIA GPU (needs `pip install "onnxruntime-gpu[cuda,cudnn]==1.31.1"`; falls back to
    /// the CPU with a warning when the loaded ONNX Runtime has no CUDA).
    Cuda,
}

/// Arguments of `tfc run`.
#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["ids", "ids_file", "text"])))]
#[command(after_help = "Examples:
  tfc run examples/01-tiny-encoder.tfm --ids \"1 2 3 4\" --ids \"5 6\"
  tfc run specs/all-minilm-l6-v2.tfm --weights MODEL_DIR --tokenizer MODEL_DIR/tokenizer.json \\
      --text \"Hello world\" --text \"Hi there\" --out emb.safetensors
  tfc run model.onnx --ids-file ids.json --json")]
pub struct RunArgs {
    /// A .tfm spec (compiled for this run) or an .onnx model file.
    source: PathBuf,
    /// Which model of the spec file (default: the last one defined in it).
    #[arg(short, long)]
    model: Option<String>,
    /// One sequence of token ids ("101 7592 102"); repeat for a batch. Ragged rows are
    /// right-padded with the pad id and masked.
    #[arg(long, value_name = "IDS")]
    ids: Vec<String>,
    /// Token ids from a file: one sequence per line, or JSON `[[...], [...]]`.
    #[arg(long, value_name = "FILE")]
    ids_file: Option<PathBuf>,
    /// Text to tokenize with --tokenizer; repeat for a batch.
    #[arg(long, requires = "tokenizer")]
    text: Vec<String>,
    /// A Hugging Face tokenizer.json (for --text, and to show predicted tokens as text).
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Truncate text to this many tokens (default: a sentence_bert_config.json next to the
    /// tokenizer, else the tokenizer's own setting).
    #[arg(long, value_name = "N")]
    max_length: Option<usize>,
    /// Decoder input ids of an encoder-decoder model, one sequence per row (default: the
    /// pad id alone).
    #[arg(long, value_name = "IDS")]
    decoder_ids: Vec<String>,
    /// The padding id (default: the spec's pad_token_id, the tokenizer's, or 0).
    #[arg(long, value_name = "ID")]
    pad_id: Option<i64>,
    /// Class names for classifier outputs, comma separated (default LABEL_0, LABEL_1, ...).
    #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
    labels: Vec<String>,
    /// Print one JSON object (inputs, outputs with shapes and every value, timing).
    #[arg(long)]
    json: bool,
    /// Save the outputs: `.safetensors` (all of them) or `.npy` (a single output).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = ProviderArg::Cpu)]
    provider: ProviderArg,
    /// Intra-op threads (default: ONNX Runtime's choice, one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// The ONNX Runtime library (libonnxruntime.so, or a folder or virtual environment
    /// holding it); default: ORT_DYLIB_PATH, TFC_ORT_LIB, then the .venv nearby.
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    #[command(flatten)]
    opt: OptArgs,
    /// Seed of the random weights (specs only).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Element type of weights and activations (specs only; overrides the spec's dtype).
    #[arg(long, value_enum)]
    dtype: Option<DTypeArg>,
    /// Load weights from a Hugging Face checkpoint (a .safetensors file or a model folder)
    /// instead of random ones (specs only).
    #[arg(long, value_name = "PATH")]
    weights: Option<PathBuf>,
    /// Weight map for --weights: a built-in name (bert, gpt2, llama, t5, bart, bloom) or a
    /// YAML file (default: detected from the checkpoint's tensor names).
    #[arg(long, value_name = "NAME|FILE", requires = "weights")]
    weight_map: Option<String>,
}

/// Runs `tfc run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if let Some(lib) = &args.ort_lib {
        tfc::runtime::init_ort(Some(lib))?;
    }
    let request = request(&args)?;
    let is_onnx = matches!(request.source, ModelSource::Onnx(_));
    if is_onnx && (args.weights.is_some() || args.dtype.is_some()) {
        anyhow::bail!(
            "--weights and --dtype apply to specs; {} is an ONNX file",
            args.source.display()
        );
    }

    let report = run_model(&request)?;
    if let Some(warning) = &report.fallback {
        eprintln!("warning: {warning}");
    }
    if let Some(out) = &args.out {
        save_outputs(out, &report.outputs)?;
    }
    let mut text = if args.json {
        serde_json::to_string(&json(&report))? + "\n"
    } else {
        summary(&report, args.labels)
    };
    if let (Some(out), false) = (&args.out, args.json) {
        let count = report.outputs.len();
        text += &format!("saved {count} output(s) to {}\n", out.display());
    }
    print_stdout(&text)
}

/// Prints to standard output; a reader that went away (`tfc run ... | head`) is not an error.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}

fn request(args: &RunArgs) -> anyhow::Result<RunRequest> {
    let spec = SpecArgs {
        spec: args.source.clone(),
        model: args.model.clone(),
    };
    let mut source = ModelSource::from_path(
        &args.source,
        args.opt.apply(compile_options(&spec, args.dtype)),
        args.seed,
    );
    if let ModelSource::Spec {
        weights,
        weight_map,
        ..
    } = &mut source
    {
        weights.clone_from(&args.weights);
        weight_map.clone_from(&args.weight_map);
    }

    let tokens = if let Some(file) = &args.ids_file {
        TokenSource::Ids(read_ids_file(file)?)
    } else if !args.text.is_empty() {
        TokenSource::Text(args.text.clone())
    } else {
        let rows = args
            .ids
            .iter()
            .map(|row| parse_ids(row))
            .collect::<Result<_, _>>()?;
        TokenSource::Ids(rows)
    };
    let decoder_ids = args
        .decoder_ids
        .iter()
        .map(|row| parse_ids(row))
        .collect::<Result<_, _>>()
        .context("in --decoder-ids")?;

    Ok(RunRequest {
        source,
        tokens,
        tokenizer: args.tokenizer.clone(),
        max_length: args.max_length,
        decoder_ids,
        pad_id: args.pad_id,
        session: SessionOptions {
            provider: match args.provider {
                ProviderArg::Cpu => Provider::Cpu,
                ProviderArg::Cuda => Provider::Cuda,
            },
            intra_threads: args.threads,
        },
    })
}

fn summary(report: &RunReport, labels: Vec<String>) -> String {
    let mut text = String::new();
    let name = match &report.model_name {
        Some(name) => format!(" (model `{name}`)"),
        None => String::new(),
    };
    let source = report.model_path.display();
    text += &format!("{source}{name} on {}\n", report.provider);
    if let Some(weights) = &report.weights {
        text += &format!("weights: {weights}\n");
    }
    let inputs: Vec<String> = report
        .inputs
        .iter()
        .map(|(name, shape)| format!("{name} {shape:?}"))
        .collect();
    text += &format!("inputs: {}\n\n", inputs.join(", "));
    text += &summarize(&report.outputs, &report.summary_context(labels));

    let t = report.timing;
    let compile = match t.compile_ms {
        Some(ms) => format!("compile {ms:.1} ms, "),
        None => String::new(),
    };
    text += &format!(
        "\n{compile}load {:.1} ms, run {:.1} ms\n",
        t.load_ms, t.run_ms
    );
    text
}

fn json(report: &RunReport) -> serde_json::Value {
    let inputs: serde_json::Map<String, serde_json::Value> = report
        .inputs
        .iter()
        .map(|(name, shape)| (name.clone(), serde_json::json!(shape)))
        .collect();
    serde_json::json!({
        "model": report.model_path.display().to_string(),
        "model_name": report.model_name,
        "provider": report.provider.to_string(),
        "weights": report.weights,
        "inputs": inputs,
        "input_ids": report.tokens.ids,
        "outputs": outputs_json(&report.outputs),
        "timing_ms": {
            "compile": report.timing.compile_ms,
            "load": report.timing.load_ms,
            "run": report.timing.run_ms,
        },
    })
}
