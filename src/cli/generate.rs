//! `tfc generate`: compiles a spec with its decoding graphs, loads weights and generates
//! tokens from prompts, streaming them to the terminal as they are produced, then reports
//! time to first token and decoding speed on stderr.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{ArgGroup, Args, ValueEnum};
use tfc::runtime::generate::load::{load, LoadRequest, LoadedModel};
use tfc::runtime::generate::{
    generate, BeamConfig, EarlyStopping, Generation, GenerationConfig, Processors, Prompt,
    SampleConfig, StepEvent, Strategy,
};
use tfc::runtime::inputs::parse_ids;
use tfc::runtime::{Provider, SessionOptions};

use super::run::ProviderArg;
use super::{compile_options, DTypeArg, OptArgs, SpecArgs};

/// How the next token is chosen.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyArg {
    /// The most likely token.
    Greedy,
    /// Beam search (Hugging Face semantics).
    Beam,
    /// A seeded draw from the (tempered, truncated) distribution.
    Sample,
}

/// Arguments of `tfc generate`.
#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["prompt", "ids"])))]
#[command(after_help = "Examples:
  tfc generate examples/03-decoder-rope-gqa.tfm --ids \"1 2 3\" --max-new-tokens 5
  tfc generate specs/gpt2.tfm --weights MODEL_DIR --tokenizer MODEL_DIR/tokenizer.json \\
      --prompt \"Hello\" --strategy sample --top-p 0.9 --seed 1
  tfc generate tests/specs/t5.tfm -m t5_fixture --weights tests/fixtures/t5 \\
      --ids \"58 17 70\" --strategy beam --num-beams 3 --num-return-sequences 2 --json")]
pub struct GenerateArgs {
    /// The .tfm spec.
    spec: PathBuf,
    /// Which model of the spec file (default: the last one defined in it).
    #[arg(short, long)]
    model: Option<String>,
    /// Load weights from a Hugging Face checkpoint (a .safetensors file or a model folder)
    /// instead of random ones.
    #[arg(long, value_name = "PATH")]
    weights: Option<PathBuf>,
    /// Weight map for --weights: a built-in name or a YAML file (default: detected).
    #[arg(long, value_name = "NAME|FILE", requires = "weights")]
    weight_map: Option<String>,
    /// Seed of the random weights when no --weights is given.
    #[arg(long, default_value_t = 0, value_name = "N")]
    init_seed: u64,
    /// A prompt to tokenize with --tokenizer; repeat for a batch.
    #[arg(long, requires = "tokenizer", value_name = "TEXT")]
    prompt: Vec<String>,
    /// A Hugging Face tokenizer.json: encodes --prompt and decodes the generated tokens.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// One prompt as token ids ("1 2 3"); repeat for a batch. Decoder-only rows are
    /// left-padded, encoder inputs right-padded.
    #[arg(long, value_name = "IDS")]
    ids: Vec<String>,
    /// Search strategy.
    #[arg(long, value_enum, default_value_t = StrategyArg::Greedy)]
    strategy: StrategyArg,
    /// Beam search: hypotheses per prompt [default: 4].
    #[arg(long, value_name = "N")]
    num_beams: Option<usize>,
    /// Beam search: exponent of the generated length dividing a score [default: 1.0].
    #[arg(long, value_name = "F")]
    length_penalty: Option<f32>,
    /// Beam search: true, false or never [default: true].
    #[arg(long, value_name = "MODE")]
    early_stopping: Option<EarlyStopping>,
    /// Beam search: sequences returned per prompt [default: 1].
    #[arg(long, value_name = "N")]
    num_return_sequences: Option<usize>,
    /// Sampling: divide the logits by this [default: 1.0].
    #[arg(long, value_name = "F")]
    temperature: Option<f32>,
    /// Sampling: keep only the k most likely tokens.
    #[arg(long, value_name = "N")]
    top_k: Option<usize>,
    /// Sampling: keep the most likely tokens up to this probability mass.
    #[arg(long, value_name = "F")]
    top_p: Option<f32>,
    /// Sampling: seed of the random generator [default: 0].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Tokens to generate at most per sequence.
    #[arg(long, default_value_t = 20, value_name = "N")]
    max_new_tokens: usize,
    /// Extra ids that end a sequence (repeatable or comma separated).
    #[arg(long, value_delimiter = ',', value_name = "ID")]
    stop: Vec<i64>,
    /// The end-of-sequence id (default: the spec's eos_token_id).
    #[arg(long, value_name = "ID")]
    eos: Option<i64>,
    /// The padding id (default: the spec's pad_token_id, else the tokenizer's, else 0).
    #[arg(long, value_name = "ID")]
    pad_id: Option<i64>,
    /// Discourage repeated tokens (above 1).
    #[arg(long, value_name = "F")]
    repetition_penalty: Option<f32>,
    /// Never repeat an n-gram of this size.
    #[arg(long, value_name = "N")]
    no_repeat_ngram_size: Option<usize>,
    /// Do not end a sequence before this many new tokens.
    #[arg(long, value_name = "N")]
    min_new_tokens: Option<usize>,
    /// Print one JSON object (ids, text, scores, per-step timings) instead of streaming.
    #[arg(long)]
    json: bool,
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = ProviderArg::Cpu)]
    provider: ProviderArg,
    /// Intra-op threads (default: ONNX Runtime's choice).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// The ONNX Runtime library (a file, or a folder or virtual environment holding it).
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// Element type of weights and activations (overrides the spec's dtype).
    #[arg(long, value_enum)]
    dtype: Option<DTypeArg>,
    /// Compile without a key/value cache: every step reruns the whole sequence.
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    opt: OptArgs,
}

/// Runs `tfc generate`.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if let Some(lib) = &args.ort_lib {
        tfc::runtime::init_ort(Some(lib))?;
    }
    let strategy = strategy(&args)?;
    let tokenizer = match &args.tokenizer {
        Some(path) => Some(
            tokenizers::Tokenizer::from_file(path)
                .map_err(|e| anyhow::anyhow!("tokenizer {}: {e}", path.display()))?,
        ),
        None => None,
    };

    // The model.
    let spec = SpecArgs {
        spec: args.spec.clone(),
        model: args.model.clone(),
    };
    let request = LoadRequest {
        spec: args.spec.clone(),
        compile: args.opt.apply(compile_options(&spec, args.dtype)),
        seed: args.init_seed,
        weights: args.weights.clone(),
        weight_map: args.weight_map.clone(),
        session: SessionOptions {
            provider: match args.provider {
                ProviderArg::Cpu => Provider::Cpu,
                ProviderArg::Cuda => Provider::Cuda,
            },
            intra_threads: args.threads,
        },
        no_cache: args.no_cache,
    };
    let mut loaded = load(&request)?;
    if let Some(warning) = &loaded.fallback {
        eprintln!("warning: {warning}");
    }
    if !loaded.cached && !args.no_cache {
        eprintln!(
            "note: the model has no key/value cache graphs; every step reruns the whole sequence"
        );
    }

    // Special ids, prompt and settings.
    let model = &loaded.model;
    let tokenizer_pad = tokenizer
        .as_ref()
        .and_then(|t| t.get_padding().map(|p| i64::from(p.pad_id)));
    let pad = args
        .pad_id
        .or(model.pad_token_id.map(|p| p as i64))
        .or(tokenizer_pad);
    let mut eos: Vec<i64> = args
        .eos
        .or(model.eos_token_id.map(|e| e as i64))
        .into_iter()
        .collect();
    for &stop in &args.stop {
        if !eos.contains(&stop) {
            eos.push(stop);
        }
    }
    let rows = prompt_rows(&args, tokenizer.as_ref())?;
    let vocab = model.vocab_size;
    for (row, ids) in rows.iter().enumerate() {
        if let Some(&bad) = ids.iter().find(|&&id| id < 0 || id as u64 >= vocab) {
            bail!("token id {bad} in prompt {row} is outside the vocabulary of {vocab} entries");
        }
    }
    for (flag, id) in args
        .pad_id
        .map(|p| ("--pad-id", p))
        .into_iter()
        .chain(args.eos.map(|e| ("--eos", e)))
        .chain(args.stop.iter().map(|&s| ("--stop", s)))
    {
        if id < 0 || id as u64 >= vocab {
            bail!("{flag} {id} is outside the vocabulary of {vocab} entries");
        }
    }
    check_positions(model, &rows, args.max_new_tokens)?;
    let fill = pad.or(eos.first().copied()).unwrap_or(0);
    let prompt = if model.is_encoder_decoder() {
        Prompt::right_padded(&rows, fill)?
    } else {
        Prompt::left_padded(&rows, fill)?
    };
    let config = GenerationConfig {
        strategy,
        max_new_tokens: args.max_new_tokens,
        eos_token_ids: eos,
        pad_token_id: pad,
        decoder_start_token_id: model.decoder_start_token_id.map(|d| d as i64).or(pad),
        processors: Processors {
            repetition_penalty: args.repetition_penalty,
            no_repeat_ngram_size: args.no_repeat_ngram_size,
            min_new_tokens: args.min_new_tokens,
            ..Processors::default()
        },
    };

    // Decode, streaming.
    let mut stream = Stream::new(
        !args.json && !matches!(config.strategy, Strategy::Beam(_)),
        rows.len(),
        tokenizer.as_ref(),
    );
    let generation = generate(loaded.step.as_mut(), &prompt, &config, &mut |event| {
        stream.step(event)
    })?;
    stream.finish();

    if args.json {
        let value = json(&generation, &loaded, tokenizer.as_ref());
        println!("{}", serde_json::to_string(&value)?);
    } else if matches!(config.strategy, Strategy::Beam(_)) || rows.len() > 1 {
        print_sequences(&generation, tokenizer.as_ref())?;
    }
    eprintln!("{}", timing_line(&generation, &loaded, rows.len()));
    Ok(())
}

/// Refuses a run whose sequences would outgrow a learned or sinusoidal
/// position table, before any token is generated.
fn check_positions(
    model: &tfc::model::Model,
    rows: &[Vec<i64>],
    max_new_tokens: usize,
) -> anyhow::Result<()> {
    let limits = tfc::runtime::run::position_limits(model);
    let longest = rows.iter().map(Vec::len).max().unwrap_or(0) as u64;
    let new = max_new_tokens as u64;
    if model.is_encoder_decoder() {
        if let Some((_, max)) = limits.input.filter(|&(_, max)| longest > max) {
            bail!("the prompt has {longest} tokens, but the encoder has only {max} positions");
        }
        // The decoder reads its start token and every generated token but the last.
        if let Some(max) = limits.decoder.filter(|&max| new > max) {
            bail!(
                "--max-new-tokens {new} needs {new} decoder positions, but the decoder has \
                 only {max}: pass --max-new-tokens {max} or less"
            );
        }
    } else if let Some((_, max)) = limits.input.filter(|&(_, max)| longest + new > max + 1) {
        let room = (max + 1).saturating_sub(longest);
        bail!(
            "a prompt of {longest} tokens and {new} new tokens need {} positions, but the \
             model has only {max}: pass --max-new-tokens {room} or less",
            longest + new - 1
        );
    }
    Ok(())
}

/// The strategy, refusing flags that belong to another one.
fn strategy(args: &GenerateArgs) -> anyhow::Result<Strategy> {
    let beam_flags = [
        ("--num-beams", args.num_beams.is_some()),
        ("--length-penalty", args.length_penalty.is_some()),
        ("--early-stopping", args.early_stopping.is_some()),
        (
            "--num-return-sequences",
            args.num_return_sequences.is_some(),
        ),
    ];
    let sample_flags = [
        ("--temperature", args.temperature.is_some()),
        ("--top-k", args.top_k.is_some()),
        ("--top-p", args.top_p.is_some()),
        ("--seed", args.seed.is_some()),
    ];
    let misplaced = |flags: &[(&str, bool)], strategy: &str| -> anyhow::Result<()> {
        if let Some((flag, _)) = flags.iter().find(|(_, given)| *given) {
            bail!("{flag} applies to --strategy {strategy}");
        }
        Ok(())
    };
    match args.strategy {
        StrategyArg::Greedy => {
            misplaced(&beam_flags, "beam")?;
            misplaced(&sample_flags, "sample")?;
            Ok(Strategy::Greedy)
        }
        StrategyArg::Beam => {
            misplaced(&sample_flags, "sample")?;
            let defaults = BeamConfig::default();
            Ok(Strategy::Beam(BeamConfig {
                num_beams: args.num_beams.unwrap_or(defaults.num_beams),
                length_penalty: args.length_penalty.unwrap_or(defaults.length_penalty),
                early_stopping: args.early_stopping.unwrap_or(defaults.early_stopping),
                num_return_sequences: args
                    .num_return_sequences
                    .unwrap_or(defaults.num_return_sequences),
            }))
        }
        StrategyArg::Sample => {
            misplaced(&beam_flags, "beam")?;
            let defaults = SampleConfig::default();
            Ok(Strategy::Sample(SampleConfig {
                temperature: args.temperature.unwrap_or(defaults.temperature),
                top_k: args.top_k,
                top_p: args.top_p,
                seed: args.seed.unwrap_or(defaults.seed),
            }))
        }
    }
}

/// The prompts as unpadded id rows, from --ids or by tokenizing --prompt.
fn prompt_rows(
    args: &GenerateArgs,
    tokenizer: Option<&tokenizers::Tokenizer>,
) -> anyhow::Result<Vec<Vec<i64>>> {
    if !args.ids.is_empty() {
        return args
            .ids
            .iter()
            .map(|row| parse_ids(row).context("in --ids"))
            .collect();
    }
    let Some(tokenizer) = tokenizer else {
        bail!("--prompt needs a tokenizer: add --tokenizer tokenizer.json");
    };
    let mut rows = Vec::with_capacity(args.prompt.len());
    for text in &args.prompt {
        let encoding = tokenizer
            .encode(text.as_str(), true)
            .map_err(|e| anyhow::anyhow!("could not tokenize {text:?}: {e}"))?;
        let ids: Vec<i64> = encoding
            .get_ids()
            .iter()
            .zip(encoding.get_attention_mask())
            .filter(|(_, &m)| m != 0)
            .map(|(&id, _)| i64::from(id))
            .collect();
        rows.push(ids);
    }
    Ok(rows)
}

/// Prints tokens as they are produced: inline text or ids for one row, one line per step
/// for a batch.
struct Stream<'a> {
    enabled: bool,
    rows: usize,
    tokenizer: Option<&'a tokenizers::Tokenizer>,
    /// Generated ids of the single row, for incremental decoding.
    generated: Vec<u32>,
    /// Characters of decoded text already printed.
    printed: usize,
}

impl<'a> Stream<'a> {
    fn new(enabled: bool, rows: usize, tokenizer: Option<&'a tokenizers::Tokenizer>) -> Self {
        Stream {
            enabled,
            rows,
            tokenizer,
            generated: Vec::new(),
            printed: 0,
        }
    }

    fn step(&mut self, event: &StepEvent) {
        if !self.enabled || event.tokens.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        if self.rows > 1 {
            let shown: Vec<String> = event
                .tokens
                .iter()
                .zip(event.active)
                .map(|(t, &a)| if a { t.to_string() } else { "-".into() })
                .collect();
            let _ = writeln!(out, "step {}: {}", event.index, shown.join(" "));
            return;
        }
        if !event.active.first().copied().unwrap_or(false) {
            return;
        }
        let token = event.tokens[0];
        match self.tokenizer {
            Some(tokenizer) => {
                self.generated.push(u32::try_from(token).unwrap_or(0));
                if let Ok(text) = tokenizer.decode(&self.generated, true) {
                    let new: String = text.chars().skip(self.printed).collect();
                    self.printed += new.chars().count();
                    let _ = write!(out, "{new}");
                }
            }
            None => {
                let separator = if event.index == 0 { "" } else { " " };
                let _ = write!(out, "{separator}{token}");
            }
        }
        let _ = out.flush();
    }

    fn finish(&self) {
        if self.enabled && self.rows == 1 {
            println!();
        }
    }
}

/// One line per returned sequence: ids (and text with a tokenizer), and the beam score.
fn print_sequences(
    generation: &Generation,
    tokenizer: Option<&tokenizers::Tokenizer>,
) -> anyhow::Result<()> {
    let mut text = String::new();
    for (i, generated) in generation.generated().iter().enumerate() {
        let ids: Vec<String> = generated.iter().map(i64::to_string).collect();
        text += &format!("[{i}] {}", ids.join(" "));
        if let Some(score) = generation.scores.as_ref().and_then(|s| s.get(i)) {
            text += &format!("  (score {score:.4})");
        }
        if let Some(decoded) = tokenizer.and_then(|t| decode(t, generated)) {
            text += &format!("\n    {decoded:?}");
        }
        text += "\n";
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}

fn decode(tokenizer: &tokenizers::Tokenizer, ids: &[i64]) -> Option<String> {
    let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
    tokenizer.decode(&ids, true).ok()
}

/// `time to first token …, N tokens in … (… tokens/s)`.
fn timing_line(generation: &Generation, loaded: &LoadedModel, batch: usize) -> String {
    let t = &generation.timing;
    let steps = t.step_ms.len();
    let speed = match t.steps_per_second() {
        Some(per_second) => format!(
            "{} more steps in {:.1} ms ({:.1} tokens/s{})",
            steps - 1,
            t.decode_ms(),
            per_second * batch as f64,
            if batch > 1 {
                format!(", {per_second:.1} steps/s")
            } else {
                String::new()
            }
        ),
        None => "no steps after the first".to_string(),
    };
    format!(
        "time to first token {:.1} ms, {speed}; compile {:.0} ms, load {:.0} ms",
        t.first_token_ms(),
        loaded.compile_ms,
        loaded.load_ms
    )
}

fn json(
    generation: &Generation,
    loaded: &LoadedModel,
    tokenizer: Option<&tokenizers::Tokenizer>,
) -> serde_json::Value {
    let generated = generation.generated();
    let text: Option<Vec<Option<String>>> =
        tokenizer.map(|t| generated.iter().map(|ids| decode(t, ids)).collect());
    let t = &generation.timing;
    serde_json::json!({
        "model": loaded.model.name,
        "provider": loaded.provider.to_string(),
        "kv_cache": loaded.cached,
        "weights": loaded.weights,
        "sequences": generation.sequences,
        "generated": generated,
        "text": text,
        "scores": generation.scores,
        "prompt_width": generation.prompt_width,
        "timing_ms": {
            "compile": loaded.compile_ms,
            "load": loaded.load_ms,
            "first_token": t.first_token_ms(),
            "decode": t.decode_ms(),
            "total": t.total_ms,
            "steps": t.step_ms,
        },
        "steps_per_second": t.steps_per_second(),
    })
}
