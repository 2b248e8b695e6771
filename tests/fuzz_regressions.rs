//! Replays saved fuzzing inputs through the fuzz targets' own code.
//!
//! `fuzz/src/lib.rs` holds what the `front` and `checkpoint` targets run;
//! it is included here as a module, so every file of
//! `fuzz/regressions/{front,checkpoint}/` (inputs that once crashed a
//! target) and of `fuzz/seeds/` goes through exactly the same calls
//! without cargo-fuzz or a nightly toolchain. Each must end in a result,
//! accepted or an error, never a panic. The valid checkpoint seeds must
//! also load, so the harness is known to reach the loader's success path.

use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `folder`, sorted; none when it does not exist.
fn inputs(folder: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root().join(folder)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !is_hidden_or_script(p))
        .collect();
    files.sort();
    files
}

fn is_hidden_or_script(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with('.') || name.ends_with(".py") || name.ends_with(".md")
}

/// Runs `target` on every file of `folders`, naming the file of a panic.
fn replay<T>(folders: &[&str], target: impl Fn(&[u8]) -> T) -> usize {
    let mut count = 0;
    for folder in folders {
        for path in inputs(folder) {
            let data = std::fs::read(&path).unwrap();
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&data)));
            assert!(run.is_ok(), "{} panicked", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn front_inputs_never_panic() {
    let n = replay(
        &["fuzz/regressions/front", "fuzz/seeds/front"],
        harness::front,
    );
    assert!(n > 0, "no front inputs found");
}

#[test]
fn checkpoint_inputs_never_panic() {
    let folders = ["fuzz/regressions/checkpoint", "fuzz/seeds/checkpoint"];
    let n = replay(&folders, harness::checkpoint);
    assert!(n > 0, "no checkpoint inputs found");
}

#[test]
fn front_seeds_reach_lowering() {
    let spec = std::fs::read(root().join("fuzz/seeds/front/example_01-tiny-encoder.tfm")).unwrap();
    let outcome = harness::front(&spec);
    assert_eq!((outcome.diagnostics, outcome.models), (0, 1));
    assert!(outcome.graphs >= 1, "{outcome:?}");
    let include = std::fs::read(root().join("fuzz/seeds/front/example_02-derive-and-include.tfm"));
    let outcome = harness::front(&include.unwrap());
    assert_eq!(outcome.diagnostics, 0, "the include resolves: {outcome:?}");
}

#[test]
fn valid_checkpoint_seeds_load() {
    let seed = |name: &str| std::fs::read(root().join("fuzz/seeds/checkpoint").join(name)).unwrap();
    let cases: [(&str, &[&str]); 6] = [
        ("valid_gpt2.safetensors", &["gpt2", "gpt2"]),
        ("valid_gpt2_f16.safetensors", &["gpt2", "gpt2"]),
        ("valid_gpt2_tied_head.safetensors", &["gpt2", "gpt2"]),
        ("valid_bloom.safetensors", &["bloom"]),
        ("valid_llama.safetensors", &["llama"]),
        ("values_beyond_f16.safetensors", &["gpt2"]),
    ];
    for (name, loaded) in cases {
        assert_eq!(harness::checkpoint(&seed(name)), loaded, "{name}");
    }
    assert!(harness::checkpoint(&seed("truncated_data.safetensors")).is_empty());
}
