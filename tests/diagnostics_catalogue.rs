//! `docs/DIAGNOSTICS.md` is generated from the inputs in `tests/diagnostics/`:
//! for every code in `tfc::front::codes` the first input that produces it,
//! and the rendered diagnostic. This test fails when a code has no example
//! or the document is out of date; `TFC_BLESS=1` rewrites it.
//!
//! Inputs in `tests/diagnostics/select/` start with `# select: NAME` (or
//! `last`) and are loaded as `tfc build -m NAME` would load them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tfc::front::{self, Diagnostic, SourceMap};
use tfc::weights::Problem;

const DOC: &str = "docs/DIAGNOSTICS.md";

/// Every code of `tfc::front::codes`, with its constant's name and doc line,
/// read from the module's source so that a new code cannot be missed.
fn declared_codes() -> Vec<(String, String, String)> {
    let src = std::fs::read_to_string("src/front/diag.rs").expect("diag.rs");
    let start = src.find("pub mod codes").expect("codes module");
    let mut out = Vec::new();
    let mut doc = String::new();
    for line in src[start..].lines().skip(1) {
        let line = line.trim();
        if line == "}" {
            break;
        }
        if let Some(d) = line.strip_prefix("///") {
            doc.push_str(d.trim());
            doc.push(' ');
        } else if let Some(rest) = line.strip_prefix("pub const ") {
            let name = rest.split(':').next().unwrap_or_default().to_string();
            let code = rest.split('"').nth(1).expect("a quoted code").to_string();
            out.push((code, name, doc.trim().to_string()));
            doc.clear();
        }
    }
    out
}

/// The inputs, sorted: plain files first, then the `select/` ones.
fn inputs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["tests/diagnostics", "tests/diagnostics/select"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("inputs")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "tfm"))
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// The diagnostics of one input and the source map to render them with.
fn diagnose(path: &Path) -> (Vec<Diagnostic>, SourceMap) {
    let mut sources = SourceMap::new();
    let text = std::fs::read_to_string(path).expect("input");
    let select = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# select: "))
        .map(str::trim);
    let diags = match select {
        None => front::load(path, &mut sources).err(),
        Some("last") => front::load_model(path, None, &mut sources).err(),
        Some(name) => front::load_model(path, Some(name), &mut sources).err(),
    };
    (diags.unwrap_or_default(), sources)
}

/// One example of each checkpoint problem, in declaration order.
fn problem_examples() -> Vec<Problem> {
    let s = |x: &str| x.to_string();
    let all = vec![
        Problem::File {
            path: PathBuf::from("model.safetensors"),
            reason: s("header too large"),
        },
        Problem::Shard {
            path: PathBuf::from("model-00002-of-00002.safetensors"),
            tensors: 12,
            reason: s("No such file or directory (os error 2)"),
        },
        Problem::Missing {
            target: s("decoder.final_norm.weight"),
            expected: vec![32],
            looked_for: vec![s("model.norm.weight")],
        },
        Problem::Unmapped {
            target: s("heads.logits.classifier.weight"),
            expected: vec![32, 2],
        },
        Problem::Shape {
            target: s("decoder.layers.0.attention.q_proj.weight"),
            expected: vec![32, 32],
            found: vec![32, 64],
            source: s("model.layers.0.self_attn.q_proj.weight"),
        },
        Problem::Transform {
            target: s("decoder.layers.0.attention.q_proj.weight"),
            source: s("transformer.h.0.attn.c_attn.weight"),
            shape: vec![32, 95],
            reason: s("split into 3 along axis 1 needs a multiple of 3"),
        },
        Problem::Dtype {
            source: s("model.embed_tokens.weight"),
            dtype: s("I32"),
            target_dtype: s("f32"),
        },
        Problem::NonFinite {
            source: s("model.norm.weight"),
            nan: 2,
            inf: 1,
        },
        Problem::Range {
            source: s("lm_head.weight"),
            target_dtype: s("f16"),
            count: 3,
            largest: 1.0e6,
        },
        Problem::Untied {
            source: s("lm_head.weight"),
            same_as: s("model.embed_tokens.weight"),
            target: s("embeddings.word_embeddings.weight"),
        },
        Problem::Ambiguous {
            source: s("model.norm.weight"),
            targets: vec![s("a.weight"), s("b.weight")],
        },
        Problem::Variable {
            target: s("decoder.layers.0.attention.q_proj.weight"),
            name: s("heads"),
        },
        Problem::Unexpected {
            name: s("model.layers.0.self_attn.rotary_emb.inv_freq"),
            shape: vec![4],
        },
    ];
    // Naming every variant here makes a new one a compile error until it
    // has an example above.
    for p in &all {
        match p {
            Problem::File { .. }
            | Problem::Shard { .. }
            | Problem::Missing { .. }
            | Problem::Unmapped { .. }
            | Problem::Shape { .. }
            | Problem::Transform { .. }
            | Problem::Dtype { .. }
            | Problem::NonFinite { .. }
            | Problem::Range { .. }
            | Problem::Untied { .. }
            | Problem::Ambiguous { .. }
            | Problem::Variable { .. }
            | Problem::Unexpected { .. } => {}
        }
    }
    all
}

fn generate() -> Result<String, Vec<String>> {
    let codes = declared_codes();

    // The first input that produces each code, with that diagnostic rendered.
    let mut examples: BTreeMap<&'static str, (PathBuf, String)> = BTreeMap::new();
    for path in inputs() {
        let (diags, sources) = diagnose(&path);
        for d in diags {
            if examples.contains_key(d.code) {
                continue;
            }
            let rendered = front::render(std::slice::from_ref(&d), &sources, false);
            examples.insert(d.code, (path.clone(), rendered));
        }
    }
    let missing: Vec<String> = codes
        .iter()
        .filter(|(code, ..)| !examples.contains_key(code.as_str()))
        .map(|(code, name, _)| format!("{code} ({name}) has no example in tests/diagnostics/"))
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }

    let mut doc = String::from(
        "# Diagnostics\n\n\
         Every error tfc reports about a spec has a stable code. This file is\n\
         generated by `tests/diagnostics_catalogue.rs` from the inputs in\n\
         `tests/diagnostics/` (regenerate with\n\
         `TFC_BLESS=1 cargo test --test diagnostics_catalogue`); each example is\n\
         the first input that produces the code, rendered as `tfc check` prints it.\n\n\
         `E00xx` are about files and syntax, `E01xx` about the structure of\n\
         blocks, `E02xx` about expressions, `E03xx` about models and\n\
         derivation, `E04xx` about sizes and options. Limits behind `E0004`\n\
         and `E0402` are listed in [LIMITS.md](LIMITS.md).\n\n\
         | code | constant | meaning |\n|---|---|---|\n",
    );
    for (code, name, meaning) in &codes {
        let _ = writeln!(
            doc,
            "| [{code}](#{}) | `{name}` | {meaning} |",
            code.to_lowercase()
        );
    }
    for (code, name, meaning) in &codes {
        let (path, rendered) = &examples[code.as_str()];
        let _ = write!(
            doc,
            "\n## {code}\n\n`{name}`: {meaning}\n\nFrom `{}`:\n\n```text\n{rendered}```\n",
            path.display()
        );
    }

    doc.push_str(
        "\n# Checkpoint problems\n\n\
         Loading a checkpoint (`--weights PATH`) is strict: every problem of\n\
         every tensor is collected and reported together, one line each,\n\
         opened by its kind, and nothing is loaded. The kinds, each with an\n\
         example line:\n\n| kind | example |\n|---|---|\n",
    );
    for p in problem_examples() {
        let line = p.to_string().replace('|', "\\|");
        let _ = writeln!(doc, "| `{}` | {line} |", p.kind());
    }
    doc.push_str(
        "\n# Run-time errors\n\n\
         Errors of `tfc run` and of `tfc::runtime` carry no code; each names the\n\
         model file, and for input and output problems the tensor, its element\n\
         type and shape (`tfc::runtime::RuntimeError`). The process exits with\n\
         status 1; an interrupted `tfc build` exits with 130.\n",
    );
    Ok(doc)
}

#[test]
fn the_catalogue_covers_every_code_and_is_up_to_date() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("crate folder");
    let doc = match generate() {
        Ok(doc) => doc,
        Err(missing) => panic!("codes without an example:\n{}", missing.join("\n")),
    };
    if std::env::var_os("TFC_BLESS").is_some() {
        std::fs::write(DOC, &doc).expect("write the catalogue");
        return;
    }
    let current = std::fs::read_to_string(DOC).unwrap_or_default();
    assert!(
        current == doc,
        "{DOC} is out of date; regenerate it with \
         `TFC_BLESS=1 cargo test --test diagnostics_catalogue`"
    );
}
