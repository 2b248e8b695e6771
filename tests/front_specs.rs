//! Every spec and example loads without diagnostics, and means what it says.

use std::path::Path;

use tfc::front::{self, SourceMap};
use tfc::model::*;

fn load(path: &str) -> Vec<Model> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let mut sources = SourceMap::new();
    match front::load(&path, &mut sources) {
        Ok(models) => models,
        Err(diags) => panic!("{}", front::render(&diags, &sources, false)),
    }
}

fn model(path: &str, name: &str) -> Model {
    let found = load(path).into_iter().find(|m| m.name == name);
    found.unwrap_or_else(|| panic!("no model {name} in {path}"))
}

#[test]
fn every_spec_and_example_loads() {
    for dir in ["specs", "examples"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&root)
            .expect("folder exists")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "tfm"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no .tfm files in {dir}");
        for file in files {
            let rel = format!("{dir}/{}", file.file_name().unwrap().to_string_lossy());
            let models = load(&rel);
            assert!(!models.is_empty(), "{rel} defines no model");
        }
    }
}

/// One line per part of the model, without spans: readable in a snapshot.
fn dump(m: &Model) -> String {
    let mut m = m.clone();
    let mut out = format!(
        "model {}: vocab_size {}, hidden_size {}, dtype {:?}, pad_token_id {:?}, \
         tie_word_embeddings {}, shared_embeddings {}\n",
        m.name,
        m.vocab_size,
        m.hidden_size,
        m.dtype,
        m.pad_token_id,
        m.tie_word_embeddings,
        m.shared_embeddings
    );
    out += &format!("  embeddings: {:?}\n", m.embeddings);
    for (name, stack) in [("encoder", &mut m.encoder), ("decoder", &mut m.decoder)] {
        let Some(s) = stack else { continue };
        out += &format!(
            "  {name}: layers {}, {:?}, parallel_residual {}\n",
            s.layers, s.norm_position, s.parallel_residual
        );
        out += &format!("    attention: {:?}\n", s.attention);
        if let Some(c) = &s.cross_attention {
            out += &format!("    cross_attention: {c:?}\n");
        }
        out += &format!("    feed_forward: {:?}\n", s.feed_forward);
        out += &format!("    norm: {:?}, final_norm: {:?}\n", s.norm, s.final_norm);
        out += &format!("    position: {:?}\n", s.position);
        out += &format!("    embedding_norm: {:?}\n", s.embedding_norm);
    }
    for h in &m.heads {
        out += &format!(
            "  head {}: {:?} -> {:?}\n",
            h.name,
            h.kind,
            h.output_names(m.heads.len())
        );
    }
    out += &format!("  inputs: {:?}\n  dims: {:?}\n", m.inputs, m.dims);
    out
}

fn dump_file(path: &str) -> String {
    load(path).iter().map(dump).collect::<Vec<_>>().join("\n")
}

#[test]
fn snapshot_bert_base() {
    insta::assert_snapshot!(dump_file("specs/bert-base.tfm"));
}

#[test]
fn snapshot_t5_small() {
    insta::assert_snapshot!(dump_file("specs/t5-small.tfm"));
}

#[test]
fn snapshot_llama() {
    insta::assert_snapshot!(dump_file("specs/llama.tfm"));
}

#[test]
fn bert_base_values() {
    let m = model("specs/bert-base.tfm", "bert_base");
    let enc = m.encoder.as_ref().expect("encoder");
    assert_eq!(enc.attention.head_dim, 64);
    assert_eq!(enc.attention.kv_heads, 12);
    assert_eq!(enc.feed_forward.intermediate_size, 3072);
    assert_eq!(enc.norm_position, NormPosition::Post);
    assert_eq!(enc.embedding_norm.map(|n| n.eps), Some(1e-12));
    assert!(m.inputs.token_type_ids);
    assert_eq!(m.heads.len(), 2);
    assert_eq!(m.heads[0].kind, HeadKind::Hidden);
    assert_eq!(
        m.heads[1].kind,
        HeadKind::Embedding {
            pooling: tfc::model::Pooling::Cls,
            pooler: true,
            normalize: false
        }
    );

    let ner = model("specs/bert-base.tfm", "bert_base_ner");
    assert_eq!(
        ner.heads[0].kind,
        HeadKind::TokenClassification { num_labels: 9 }
    );
    assert_eq!(ner.encoder, m.encoder);
}

#[test]
fn derived_models_follow_overrides() {
    let wider = model("examples/02-derive-and-include.tfm", "wider");
    let enc = wider.encoder.as_ref().expect("encoder");
    assert_eq!(wider.hidden_size, 96);
    assert_eq!(
        enc.feed_forward.intermediate_size, 384,
        "4 * hidden_size follows the override"
    );
    assert_eq!(enc.attention.head_dim, 16);
    assert_eq!(enc.norm_position, NormPosition::Pre);
    assert_eq!(enc.norm.eps, 1e-12, "same variant keeps the base's options");
    assert_eq!(enc.layers, 2);

    let rms = model("examples/02-derive-and-include.tfm", "rms");
    let enc = rms.encoder.as_ref().expect("encoder");
    assert_eq!(
        enc.norm,
        Norm {
            kind: NormKind::RmsNorm,
            eps: 1e-6
        }
    );
    assert_eq!(enc.final_norm, Some(enc.norm));
    assert_eq!(rms.hidden_size, 96);

    let names: Vec<String> = load("examples/02-derive-and-include.tfm")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        names,
        ["deeper", "wider", "rms"],
        "included models are not the file's own"
    );
}

#[test]
fn llama_values() {
    let small = model("specs/llama.tfm", "llama_3_2_1b");
    let dec = small.decoder.as_ref().expect("decoder");
    assert_eq!(
        (
            dec.attention.heads,
            dec.attention.kv_heads,
            dec.attention.head_dim
        ),
        (32, 8, 64)
    );
    assert_eq!(
        dec.position,
        Position::Rotary(Rotary {
            theta: 500000.0,
            dim: 64,
            layout: RotaryLayout::RotateHalf
        })
    );
    assert!(small.tie_word_embeddings);

    let big = model("specs/llama.tfm", "llama_2_7b");
    let dec = big.decoder.as_ref().expect("decoder");
    assert_eq!(
        (
            dec.attention.heads,
            dec.attention.kv_heads,
            dec.attention.head_dim
        ),
        (32, 32, 128)
    );
    assert_eq!(
        dec.position,
        Position::Rotary(Rotary {
            theta: 10000.0,
            dim: 128,
            layout: RotaryLayout::RotateHalf
        })
    );
    assert_eq!(dec.feed_forward.intermediate_size, 11008);
    assert!(!dec.feed_forward.bias && !dec.attention.qkv_bias && !dec.attention.out_bias);
    assert!(!big.tie_word_embeddings);

    let mut sources = SourceMap::new();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/llama.tfm");
    let last = front::load_model(&path, None, &mut sources).expect("loads");
    assert_eq!(
        last.name, "llama_2_7b",
        "the last model of the file is the default"
    );
}

#[test]
fn t5_and_seq2seq_values() {
    let t5 = model("specs/t5-small.tfm", "t5_small");
    assert!(t5.is_encoder_decoder() && t5.shared_embeddings);
    let (enc, dec) = (
        t5.encoder.as_ref().expect("enc"),
        t5.decoder.as_ref().expect("dec"),
    );
    let bias = Position::RelativeBias {
        num_buckets: 32,
        max_distance: 128,
    };
    assert_eq!((&enc.position, &dec.position), (&bias, &bias));
    assert_eq!(enc.attention.scale, Some(1.0));
    let cross = dec.cross_attention.as_ref().expect("cross-attention");
    assert_eq!(
        (cross.heads, cross.head_dim, cross.qkv_bias, cross.scale),
        (8, 64, false, Some(1.0))
    );
    let HeadKind::LanguageModel { scale: Some(s), .. } = t5.heads[0].kind else {
        panic!("LM head with a scale expected");
    };
    assert!((s - 512f64.powf(-0.5)).abs() < 1e-12);

    let base = model("specs/transformer-base.tfm", "transformer_base");
    assert_eq!(base.embeddings.scale, Some(512f64.sqrt()));
    assert!(base.shared_embeddings && base.tie_word_embeddings);

    let tiny = model("examples/04-encoder-decoder.tfm", "tiny_seq2seq");
    let dec = tiny.decoder.as_ref().expect("dec");
    assert_eq!(
        dec.position,
        Position::Learned {
            max_position_embeddings: 64,
            offset: 2
        }
    );
    assert!(matches!(
        tiny.encoder.as_ref().expect("enc").position,
        Position::Sinusoidal { .. }
    ));
    assert!(
        tiny.shared_embeddings,
        "defaults to true for encoder-decoder"
    );
    assert_eq!(tiny.dims.sequence, "source");
}

#[test]
fn examples_values() {
    let neox = model("examples/03-decoder-rope-gqa.tfm", "tiny_neox");
    let dec = neox.decoder.as_ref().expect("dec");
    assert_eq!(
        dec.position,
        Position::Rotary(Rotary {
            theta: 10000.0,
            dim: 8,
            layout: RotaryLayout::Interleaved
        })
    );
    assert!(dec.parallel_residual);

    let heads = model("examples/05-heads.tfm", "tiny_multitask");
    assert_eq!(heads.heads.len(), 6);
    assert!(heads.inputs.position_ids && heads.inputs.token_type_ids);

    let expr = model("examples/07-expressions.tfm", "tiny_expressions");
    let enc = expr.encoder.as_ref().expect("enc");
    assert_eq!((expr.vocab_size, expr.hidden_size), (512, 64));
    assert_eq!(enc.feed_forward.intermediate_size, 176);
    assert_eq!(enc.attention.head_dim, 16);
    assert_eq!(
        enc.position,
        Position::Learned {
            max_position_embeddings: 64,
            offset: 0
        }
    );
    assert_eq!(expr.embeddings.scale, Some(0.125));
}

#[test]
fn one_line_blocks_and_brief_forms_parse() {
    let text = r#"
model llama_like {
  vocab_size = 1000, hidden_size = 64, tie_word_embeddings = true
  embeddings { position = rotary { theta = 500000 } }
  decoder { layers = 2  attention { heads = 8, kv_heads = 2, bias = false }  feed_forward { intermediate_size = 128, activation = swiglu, bias = false }  norm = rms_norm { eps = 1e-5, position = pre }  final_norm = true }
  heads { logits = language_model }
}
"#;
    let mut sources = SourceMap::new();
    let m = front::load_model_str("brief.tfm", text, None, &mut sources)
        .unwrap_or_else(|d| panic!("{}", front::render(&d, &sources, false)));
    let dec = m.decoder.expect("decoder");
    assert_eq!((dec.attention.kv_heads, dec.attention.head_dim), (2, 8));
    assert_eq!(
        dec.final_norm,
        Some(Norm {
            kind: NormKind::RmsNorm,
            eps: 1e-5
        })
    );
}

#[test]
fn a_model_can_be_picked_from_an_included_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/02-derive-and-include.tfm");
    let mut sources = SourceMap::new();
    let m = front::load_model(&path, Some("tiny_encoder"), &mut sources).expect("loads");
    assert_eq!(m.hidden_size, 64);
    // A second load into the same source map reads the includes again.
    let again = front::load(&path, &mut sources).expect("loads again");
    assert_eq!(again.len(), 3);
}

/// The value of `vocab_size = <expr>` in an otherwise minimal model.
fn vocab_of(expr: &str) -> u64 {
    let text = format!(
        "let k = 3\nmodel m {{\n  vocab_size = {expr}\n  hidden_size = 8\n  \
         embeddings {{ position = none }}\n  decoder {{ layers = 1, attention {{ heads = 2 }}, \
         feed_forward {{ intermediate_size = 8, activation = relu }}, \
         norm = rms_norm {{ position = pre }} }}\n}}\n"
    );
    let mut sources = SourceMap::new();
    let m = front::load_model_str("expr.tfm", &text, None, &mut sources)
        .unwrap_or_else(|d| panic!("{expr}: {}", front::render(&d, &sources, false)));
    m.vocab_size
}

#[test]
fn operator_precedence_and_functions() {
    let cases = [
        ("-2 ** 2 + 8", 4),
        ("2 ** 3 ** 2", 512),
        ("10 - 2 - 3", 5),
        ("2 * 3 + 4", 10),
        ("2 + 3 * 4", 14),
        ("(1 + 1) * 3", 6),
        ("100 / 4 / 5", 5),
        ("7 % k", 1),
        ("k * -k + 10", 1),
        ("max(2, k, 1)", 3),
        ("round(sqrt(16)) + ceil(1 / 3)", 5),
        ("floor(7 / 2)", 3),
        ("1_000", 1000),
        ("(\n  2 +\n  3\n)", 5),
    ];
    for (expr, want) in cases {
        assert_eq!(vocab_of(expr), want, "{expr}");
    }
}
