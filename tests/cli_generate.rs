//! `tfc generate` end to end, through the built binary: tokens are printed with a timing
//! line on stderr, `--json` parses and agrees with the streamed ids, beam search prints its
//! sequences with scores, the strategies' flags are checked, and mistakes exit non-zero
//! without a panic.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tfc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tfc"))
        .arg("generate")
        .args(args)
        .current_dir(root())
        .output()
        .expect("the tfc binary runs")
}

fn ok(args: &[&str]) -> (String, String) {
    let output = tfc(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "tfc generate {args:?} failed:\n{stderr}"
    );
    (stdout, stderr)
}

fn err(args: &[&str]) -> String {
    let output = tfc(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "tfc generate {args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    assert!(stderr.contains("error"), "{args:?}:\n{stderr}");
    stderr
}

const SPEC: &str = "examples/03-decoder-rope-gqa.tfm";

#[test]
fn greedy_prints_five_tokens_and_the_timing_line() {
    let (stdout, stderr) = ok(&[SPEC, "--ids", "1 2 3", "--max-new-tokens", "5"]);
    let tokens: Vec<i64> = stdout
        .split_whitespace()
        .map(|t| t.parse().expect("an id"))
        .collect();
    assert_eq!(tokens.len(), 5, "{stdout}");
    assert!(tokens.iter().all(|&t| (0..512).contains(&t)), "{tokens:?}");
    assert!(stderr.contains("time to first token"), "{stderr}");
    assert!(stderr.contains("tokens/s"), "{stderr}");

    // --json holds the same tokens, after the prompt.
    let (stdout, _) = ok(&[SPEC, "--ids", "1 2 3", "--max-new-tokens", "5", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    let generated: Vec<i64> = json["generated"][0]
        .as_array()
        .expect("generated")
        .iter()
        .filter_map(serde_json::Value::as_i64)
        .collect();
    assert_eq!(generated, tokens);
    let sequence: Vec<i64> = json["sequences"][0]
        .as_array()
        .expect("sequences")
        .iter()
        .filter_map(serde_json::Value::as_i64)
        .collect();
    assert_eq!(sequence[..3], [1, 2, 3]);
    assert_eq!(sequence[3..], tokens[..]);
    assert_eq!(json["timing_ms"]["steps"].as_array().map(Vec::len), Some(5));
    assert!(json["timing_ms"]["first_token"].as_f64().is_some());
}

#[test]
fn beam_search_and_sampling_from_the_command_line() {
    let (stdout, _) = ok(&[
        SPEC,
        "--ids",
        "5 6 7",
        "--ids",
        "8",
        "--strategy",
        "beam",
        "--num-beams",
        "3",
        "--num-return-sequences",
        "2",
        "--max-new-tokens",
        "4",
    ]);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with('[')).count(),
        4,
        "{stdout}"
    );
    assert!(stdout.contains("score"), "{stdout}");

    let sample = |seed: &str| {
        ok(&[
            SPEC,
            "--ids",
            "1 2",
            "--strategy",
            "sample",
            "--top-k",
            "20",
            "--seed",
            seed,
            "--json",
        ])
        .0
    };
    let a: serde_json::Value = serde_json::from_str(&sample("3")).unwrap();
    let b: serde_json::Value = serde_json::from_str(&sample("3")).unwrap();
    assert_eq!(
        a["sequences"], b["sequences"],
        "a seed reproduces the tokens"
    );
}

#[test]
fn mistakes_are_errors() {
    let message = err(&[SPEC, "--ids", "1 2", "--num-beams", "2"]);
    assert!(
        message.contains("--num-beams applies to --strategy beam"),
        "{message}"
    );
    let message = err(&[SPEC, "--ids", "1 999"]);
    assert!(message.contains("999"), "{message}");
    let message = err(&[SPEC, "--ids", "1", "--max-new-tokens", "0"]);
    assert!(message.contains("max_new_tokens"), "{message}");
    let message = err(&[SPEC, "--ids", "1", "--strategy", "sample", "--top-p", "2"]);
    assert!(message.contains("top_p"), "{message}");
    err(&["examples/01-tiny-encoder.tfm", "--ids", "1 2"]);
}
