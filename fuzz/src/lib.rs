//! The code the fuzz targets run, shared with `tests/fuzz_regressions.rs`.
//!
//! Each function takes the raw bytes of one input and drives it through the
//! library the way the CLI does. Any error the library returns is an
//! acceptable outcome; a panic, an abort or an internal compiler error (a
//! graph that lowering built but the verifier rejects) is a finding. The
//! regression test includes this file as a module, so a saved crasher is
//! replayed through exactly the code that found it.

use std::path::Path;
use std::sync::OnceLock;

use tfc::driver::{self, CompileOptions, Compiled};
use tfc::front::{self, SourceMap};
use tfc::ir;
use tfc::lower::{self, LowerError, LowerOptions};
use tfc::model::FloatType;

/// The file an input spec may include by name, as `examples/02-*.tfm` does.
const INCLUDABLE: (&str, &str) = (
    "01-tiny-encoder.tfm",
    include_str!("../../examples/01-tiny-encoder.tfm"),
);

/// What [`front`] did with one input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FrontOutcome {
    /// Diagnostics reported (0 when the spec was accepted).
    pub diagnostics: usize,
    /// Models the front end accepted.
    pub models: usize,
    /// Graphs lowering produced, with and without a key/value cache.
    pub graphs: usize,
}

/// Runs `data` as the text of a spec file through the front end, renders
/// its diagnostics, and lowers every accepted model with and without a
/// key/value cache, verifying each graph. Bytes that are not UTF-8 are
/// skipped: a spec file is read as UTF-8 and such a file is refused before
/// parsing.
///
/// # Panics
///
/// When lowering fails with an internal error or builds a graph that does
/// not verify: both are compiler bugs, not problems of the input.
pub fn front(data: &[u8]) -> FrontOutcome {
    let mut outcome = FrontOutcome::default();
    let Ok(text) = std::str::from_utf8(data) else {
        return outcome;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return outcome;
    };
    let path = dir.path().join("fuzz.tfm");
    let (inc_name, inc_text) = INCLUDABLE;
    if std::fs::write(&path, text).is_err()
        || std::fs::write(dir.path().join(inc_name), inc_text).is_err()
    {
        return outcome;
    }

    let mut sources = SourceMap::new();
    let models = match front::load(&path, &mut sources) {
        Ok(models) => models,
        Err(diags) => {
            let _ = front::render(&diags, &sources, false);
            outcome.diagnostics = diags.len();
            return outcome;
        }
    };
    outcome.models = models.len();

    for model in &models {
        for kv_cache in [false, true] {
            let graphs = match lower::lower_with(model, &LowerOptions { kv_cache }) {
                Ok(graphs) => graphs,
                Err(LowerError::Unsupported { .. }) => continue,
                Err(e @ LowerError::Ir(_)) => {
                    panic!("lowering `{}` (kv_cache {kv_cache}): {e}", model.name)
                }
            };
            for (role, graph) in &graphs {
                if let Err(e) = ir::verify(graph) {
                    panic!("`{}` graph `{role}` does not verify: {e}", model.name);
                }
            }
            outcome.graphs += graphs.len();
        }
    }
    outcome
}

/// Small models, one per weight-map family whose rules transform tensors in
/// different ways: GPT-2 (`split` of a fused projection), BLOOM
/// (`split_heads`, then `transpose`) and LLaMA (`transpose`, grouped
/// key/value heads, an untied LM head).
const TINY_SPECS: &str = r#"
model gpt2_tiny {
  vocab_size = 8, hidden_size = 4, tie_word_embeddings = true
  embeddings { position = learned { max_position_embeddings = 4 } }
  decoder {
    layers = 1, attention { heads = 2 }
    feed_forward { intermediate_size = 8, activation = gelu_tanh }
    norm = layer_norm { eps = 1e-5, position = pre }, final_norm = true
  }
  heads { logits = language_model }
}

model bloom_tiny {
  vocab_size = 8, hidden_size = 4, tie_word_embeddings = true
  embeddings { position = alibi, norm = layer_norm { eps = 1e-5 } }
  decoder {
    layers = 1, attention { heads = 2 }
    feed_forward { intermediate_size = 8, activation = gelu_tanh }
    norm = layer_norm { eps = 1e-5, position = pre }, final_norm = true
  }
  heads { logits = language_model }
}

model llama_tiny {
  vocab_size = 8, hidden_size = 4, tie_word_embeddings = false
  embeddings { position = rotary { theta = 10000 } }
  decoder {
    layers = 1, attention { heads = 2, kv_heads = 1, bias = false }
    feed_forward { intermediate_size = 8, activation = swiglu, bias = false }
    norm = rms_norm { eps = 1e-6, position = pre }, final_norm = true
  }
  heads { logits = language_model }
}
"#;

/// The tiny models, the dtype each is compiled to and the built-in map it
/// loads with. GPT-2 also in fp16, so that f32 checkpoints are narrowed.
const TINY_MODELS: [(&str, FloatType, &str); 4] = [
    ("gpt2_tiny", FloatType::F32, "gpt2"),
    ("gpt2_tiny", FloatType::F16, "gpt2"),
    ("bloom_tiny", FloatType::F32, "bloom"),
    ("llama_tiny", FloatType::F32, "llama"),
];

/// The tiny models, compiled once per process like `tfc build` compiles
/// them (front end, lowering, optimiser).
fn tiny_models() -> &'static [(Compiled, &'static str)] {
    static MODELS: OnceLock<Vec<(Compiled, &'static str)>> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let spec = dir.path().join("tiny.tfm");
        std::fs::write(&spec, TINY_SPECS).expect("the tiny specs written");
        TINY_MODELS
            .iter()
            .map(|(model, dtype, map)| {
                let opts = CompileOptions {
                    model: Some(model.to_string()),
                    dtype: Some(*dtype),
                    ..CompileOptions::default()
                };
                let compiled = driver::compile(&spec, &opts)
                    .unwrap_or_else(|e| panic!("the tiny model `{model}` compiles: {e}"));
                (compiled, *map)
            })
            .collect()
    })
}

/// Writes `data` to a `.safetensors` file and loads it into each tiny model
/// with its family's map, then once more into the first with the map
/// detected from the tensor names, rendering every report and error.
/// Returns the maps whose load succeeded, once per model (`gpt2` twice when
/// both the f32 and the fp16 model took the checkpoint).
pub fn checkpoint(data: &[u8]) -> Vec<&'static str> {
    let models = tiny_models();
    let Ok(dir) = tempfile::tempdir() else {
        return Vec::new();
    };
    let path = dir.path().join("model.safetensors");
    if std::fs::write(&path, data).is_err() {
        return Vec::new();
    }

    let mut loaded = Vec::new();
    for (compiled, map) in models {
        if load(compiled, &path, Some(map)) {
            loaded.push(*map);
        }
    }
    load(&models[0].0, &path, None);
    loaded
}

/// One load into a copy of `compiled`; whether it succeeded.
fn load(compiled: &Compiled, path: &Path, map: Option<&str>) -> bool {
    let mut copy = compiled.clone();
    match driver::load_weights(&mut copy, path, map) {
        Ok(report) => {
            let _ = report.to_string();
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}
