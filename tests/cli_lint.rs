//! `tfc lint` as a user meets it: the report per consumer, its exit status,
//! and that `portable` output passes every consumer.

mod common;

use common::{models_in, tfc};

#[test]
fn fused_ort_output_is_reported_per_consumer() {
    let out = tfc(&[
        "lint",
        "specs/bert-base.tfm",
        "-m",
        "bert_base",
        "--target",
        "ort",
    ]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("4 of 5 consumers would reject this model"),
        "{err}"
    );

    let out = tfc(&[
        "lint",
        "specs/llama.tfm",
        "--target",
        "ort",
        "--consumer",
        "onnxruntime",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn portable_output_passes_every_consumer() {
    for (file, name) in models_in("specs") {
        let out = tfc(&["lint", file.to_str().unwrap(), "-m", &name, "--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {stdout}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(report
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["accepted"] == true));
    }
}

#[test]
fn an_unknown_consumer_lists_the_known_ones() {
    let out = tfc(&["lint", "examples/01-tiny-encoder.tfm", "--consumer", "trt"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown consumer `trt` (known: onnx-reference, onnxruntime, openvino, tensorrt, tract)"), "{err}");
}
