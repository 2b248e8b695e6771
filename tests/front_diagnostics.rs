//! Diagnostics of the front end: one input per kind of mistake in
//! `tests/diagnostics/`, each rendered without colour and snapshotted.

use std::path::Path;

use tfc::front::{self, codes, Diagnostic, SourceMap};

/// Loads a file by its path relative to the crate (so snapshots show
/// relative paths) and returns its diagnostics, rendered.
fn diagnose(rel: &str) -> (Vec<Diagnostic>, String) {
    let mut sources = SourceMap::new();
    match front::load(Path::new(rel), &mut sources) {
        Ok(models) => panic!("{rel} loaded without errors: {} models", models.len()),
        Err(diags) => {
            let text = front::render(&diags, &sources, false);
            (diags, text)
        }
    }
}

#[test]
fn every_input_renders_as_snapshotted() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("crate folder");
    let mut inputs: Vec<String> = std::fs::read_dir("tests/diagnostics")
        .expect("inputs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tfm"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 30);
    for rel in inputs {
        let (diags, text) = diagnose(&rel);
        assert!(!diags.is_empty(), "{rel}: no diagnostics");
        for d in &diags {
            assert!(d.help.is_some(), "{rel}: {} has no help line", d.code);
        }
        let name = Path::new(&rel)
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        insta::with_settings!({ description => format!("{rel}") }, {
            insta::assert_snapshot!(name, text);
        });
    }
}

#[test]
fn three_independent_errors_are_all_reported() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("crate folder");
    let (diags, text) = diagnose("tests/diagnostics/three_errors.tfm");
    let got: Vec<&str> = diags.iter().map(|d| d.code).collect();
    assert_eq!(
        got,
        [
            codes::UNKNOWN_KEY,
            codes::UNKNOWN_VARIANT,
            codes::NOT_POSITIVE
        ],
        "{text}"
    );
}

#[test]
fn an_unknown_model_name_is_a_diagnostic() {
    let mut sources = SourceMap::new();
    let text = "model bert { vocab_size = 1 }\nmodel gpt { vocab_size = 1 }\n";
    let err = front::load_model_str("two.tfm", text, Some("bret"), &mut sources)
        .expect_err("no such model");
    assert_eq!(err[0].code, codes::UNKNOWN_MODEL);
    assert!(front::render(&err, &sources, false).contains("did you mean `bert`?"));
}

#[test]
fn an_empty_file_has_no_models() {
    let mut sources = SourceMap::new();
    let models = front::load_str("empty.tfm", "# nothing\n", &mut sources).expect("no errors");
    assert!(models.is_empty());
    let err = front::load_model_str("empty.tfm", "", None, &mut sources).expect_err("no model");
    assert_eq!(err[0].code, codes::NO_MODEL);
}

#[test]
fn hostile_inputs_give_diagnostics_not_panics() {
    let deep_blocks = format!("model m {}{}", "{ a ".repeat(5000), "}".repeat(5000));
    let long_chain = format!("model m {{ vocab_size = {}1 }}", "1 + ".repeat(20_000));
    let long_power = format!("model m {{ vocab_size = {}2 }}", "2 ** ".repeat(20_000));
    let minus = format!("model m {{ vocab_size = {}1 }}", "-".repeat(20_000));
    let refs: String = (0..1000)
        .map(|i| format!("let x{i} = x{}\n", i + 1))
        .collect();
    let refs = format!("{refs}let x1000 = 1\nmodel m {{ vocab_size = x0 }}");
    let cases = [
        deep_blocks,
        long_chain,
        long_power,
        minus,
        refs,
        "model m { vocab_size = -9223372036854775807 - 1 }".into(),
        "model m { vocab_size = (-9223372036854775807 - 1) / -1 }".into(),
        "model m { vocab_size = (-9223372036854775807 - 1) % -1 }".into(),
        "model m { vocab_size = 1e308 * 10 }".into(),
        "model m { vocab_size = 0.0 ** -1 }".into(),
        "model m { vocab_size = floor(1e300) }".into(),
        "model m { vocab_size = \"\\q\" }".into(),
        "model m = m".into(),
        "\u{feff}model ü { }".into(),
    ];
    for (i, text) in cases.iter().enumerate() {
        let mut sources = SourceMap::new();
        let result = front::load_str(&format!("case{i}.tfm"), text, &mut sources);
        let err = result.expect_err("must be rejected");
        assert!(
            !err.is_empty() || text.is_empty(),
            "case {i}: no diagnostics"
        );
        let _ = front::render(&err, &sources, true);
    }
}
