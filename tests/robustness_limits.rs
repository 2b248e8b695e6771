//! Hostile specs: absurd sizes, deep nesting and cycles each end in one
//! clear diagnostic, quickly and in bounded memory (the limits are listed in
//! `docs/LIMITS.md`; `benches/limits.sh` times these inputs).

use std::fmt::Write as _;

use tfc::front::{self, codes, SourceMap};

/// The codes of the diagnostics of a spec that must not load.
fn codes_of(text: &str) -> Vec<&'static str> {
    let mut sources = SourceMap::new();
    match front::load_model_str("hostile.tfm", text, None, &mut sources) {
        Ok(m) => panic!("loaded model `{}` from a hostile spec", m.name),
        Err(diags) => {
            // Rendering must cope as well.
            let rendered = front::render(&diags, &sources, false);
            assert!(!rendered.is_empty());
            diags.iter().map(|d| d.code).collect()
        }
    }
}

/// A decoder-only model around `decoder` and a given width.
fn model(hidden: &str, decoder: &str) -> String {
    format!(
        "model m {{\n  vocab_size = 1000\n  hidden_size = {hidden}\n  decoder {{\n    \
         position = alibi\n    {decoder}\n    norm = layer_norm {{ position = pre }}\n  }}\n}}\n"
    )
}

#[test]
fn a_quadrillion_parameters_is_too_large() {
    // Each matrix is within the per-weight limit; the total is 6.6e15.
    let text = model(
        "1048576",
        "layers = 1000\n attention { heads = 8192 }\n \
         feed_forward { intermediate_size = 1048576, activation = gelu }",
    );
    assert_eq!(codes_of(&text), [codes::TOO_LARGE]);
}

#[test]
fn a_single_weight_of_10_to_the_15_is_too_large() {
    let text = model(
        "1024",
        "layers = 1\n attention { heads = 8 }\n \
         feed_forward { intermediate_size = 1_000_000_000_000, activation = gelu }",
    );
    // Both feed-forward projections are reported.
    let got = codes_of(&text);
    assert!(
        !got.is_empty() && got.iter().all(|c| *c == codes::TOO_LARGE),
        "{got:?}"
    );
}

#[test]
fn a_billion_layers_is_too_many() {
    let text = model(
        "64",
        "layers = 1_000_000_000\n attention { heads = 4 }\n \
         feed_forward { intermediate_size = 128, activation = gelu }",
    );
    assert_eq!(codes_of(&text), [codes::TOO_LARGE]);
}

#[test]
fn a_hundred_thousand_layers_is_too_many_to_lower() {
    let text = model(
        "8",
        "layers = 100_000\n attention { heads = 2 }\n \
         feed_forward { intermediate_size = 16, activation = gelu }",
    );
    assert_eq!(codes_of(&text), [codes::TOO_LARGE]);
}

#[test]
fn deeply_nested_blocks_are_rejected() {
    let depth = 100_000;
    let text = format!(
        "model m {{ {} {} }}",
        "a { ".repeat(depth),
        "} ".repeat(depth)
    );
    assert_eq!(codes_of(&text), [codes::TOO_DEEP]);
}

#[test]
fn deeply_nested_parentheses_are_rejected() {
    let depth = 100_000;
    let text = format!(
        "model m {{ vocab_size = {}1{} }}",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    assert_eq!(codes_of(&text), [codes::TOO_DEEP]);
}

#[test]
fn long_operator_chains_and_unary_minus_towers_are_rejected() {
    // 100 000 operators: the parser must neither build nor drop a tree
    // that deep (this runs on a test thread's 2 MiB stack).
    let n = 100_000;
    let chain = format!("model m {{ vocab_size = 1{} }}", " + 1".repeat(n));
    assert!(codes_of(&chain).contains(&codes::TOO_DEEP));
    let power = format!("model m {{ vocab_size = 2{} }}", " ** 2".repeat(n));
    assert!(codes_of(&power).contains(&codes::TOO_DEEP));
    let minus = format!("model m {{ vocab_size = {}1 }}", "-".repeat(n));
    assert!(codes_of(&minus).contains(&codes::TOO_DEEP));
}

#[test]
fn a_model_deriving_from_itself_is_a_cycle() {
    assert_eq!(codes_of("model a = a { }"), [codes::DERIVATION_CYCLE]);
    let text = "model a = c { }\nmodel b = a { }\nmodel c = b { }\n";
    assert!(codes_of(text).contains(&codes::DERIVATION_CYCLE));
}

#[test]
fn a_long_derivation_chain_is_rejected() {
    let mut text = String::from("model m0 { vocab_size = 1 }\n");
    for i in 1..10_000 {
        let _ = writeln!(text, "model m{i} = m{} {{ }}", i - 1);
    }
    assert_eq!(codes_of(&text), [codes::TOO_DEEP]);
}

#[test]
fn values_that_refer_to_themselves_are_cycles() {
    let text = model(
        "hidden_size",
        "layers = 1\n attention { heads = 1 }\n \
         feed_forward { intermediate_size = 4, activation = gelu }",
    );
    assert!(codes_of(&text).contains(&codes::CYCLIC_VALUE));
    let lets = format!("let a = b\nlet b = a\n{}", model("a", "layers = 1"));
    assert!(codes_of(&lets).contains(&codes::CYCLIC_VALUE));
}

#[test]
fn long_chains_of_constants_are_rejected() {
    let mut text = String::from("let c0 = 1\n");
    for i in 1..10_000 {
        let _ = writeln!(text, "let c{i} = c{} + 0", i - 1);
    }
    text.push_str("model m { vocab_size = c9999 }\n");
    assert!(codes_of(&text).contains(&codes::TOO_DEEP));
}

#[test]
fn constants_that_double_do_not_explode() {
    // Each constant uses the previous one twice: evaluated naively this is
    // 2^60 steps; the evaluator must remember values or refuse.
    let mut text = String::from("let c0 = 1\n");
    for i in 1..=60 {
        let _ = writeln!(text, "let c{i} = c{} + c{} - c{}", i - 1, i - 1, i - 1);
    }
    text.push_str("model m { vocab_size = c60 }\n");
    let codes = codes_of(&text);
    assert!(!codes.is_empty());
}

#[test]
fn include_cycles_are_reported() {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::write(dir.path().join("a.tfm"), "include \"b.tfm\"\nmodel a { }\n").expect("a");
    std::fs::write(dir.path().join("b.tfm"), "include \"a.tfm\"\n").expect("b");
    std::fs::write(dir.path().join("self.tfm"), "include \"self.tfm\"\n").expect("self");
    for top in ["a.tfm", "self.tfm"] {
        let mut sources = SourceMap::new();
        let err = front::load(&dir.path().join(top), &mut sources).expect_err("a cycle");
        let got: Vec<&str> = err.iter().map(|d| d.code).collect();
        assert_eq!(got, [codes::INCLUDE_CYCLE], "{top}");
    }
}

#[test]
fn a_long_include_chain_is_rejected() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let n = 200;
    for i in 0..n {
        let text = if i + 1 < n {
            format!("include \"f{}.tfm\"\n", i + 1)
        } else {
            String::new()
        };
        std::fs::write(dir.path().join(format!("f{i}.tfm")), text).expect("write");
    }
    let mut sources = SourceMap::new();
    let err = front::load(&dir.path().join("f0.tfm"), &mut sources).expect_err("too deep");
    assert!(err.iter().any(|d| d.code == codes::TOO_DEEP));
}

#[test]
fn a_megabyte_of_garbage_is_one_syntax_error() {
    let text = "model m { vocab_size = ] }\n".repeat(50_000);
    assert_eq!(codes_of(&text), [codes::SYNTAX]);
}

#[test]
fn the_largest_accepted_layer_count_lowers() {
    let text = model(
        "8",
        &format!(
            "layers = {}\n attention {{ heads = 2 }}\n \
             feed_forward {{ intermediate_size = 16, activation = gelu }}",
            tfc::front::MAX_LAYERS
        ),
    );
    let mut sources = SourceMap::new();
    let m = front::load_model_str("deep.tfm", &text, None, &mut sources).expect("valid");
    let graph = tfc::lower::lower(&m).expect("lowers");
    tfc::ir::verify(&graph).expect("verifies");
}
