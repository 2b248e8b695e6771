//! `tfc bench` as a user meets it: the shape of its JSON and CSV, the SVG chart, and the
//! flags and sequence lengths it refuses. No test here depends on how fast anything runs.

mod common;

use std::process::Output;

use common::tfc;

const SPEC: &str = "examples/01-tiny-encoder.tfm";
const GRID: [&str; 8] = [
    "--batch",
    "1,2",
    "--sequence",
    "4,8",
    "--runs",
    "3",
    "--warmup",
    "1",
];

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn bench(extra: &[&str]) -> Output {
    let mut args = vec!["bench", SPEC];
    args.extend(GRID);
    args.extend(extra);
    tfc(&args)
}

#[test]
fn json_has_every_grid_point_with_ordered_percentiles_and_throughput() {
    let out = bench(&["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(report["model_name"], "tiny_encoder");
    assert_eq!(report["runs"], 3);
    assert!(report["timing_ms"]["load"]
        .as_f64()
        .is_some_and(|ms| ms >= 0.0));

    let points = report["points"].as_array().expect("points");
    let grid: Vec<(u64, u64)> = points
        .iter()
        .map(|p| {
            (
                p["batch"].as_u64().unwrap(),
                p["sequence"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(grid, [(1, 4), (1, 8), (2, 4), (2, 8)]);
    for p in points {
        let f = |key: &str| p[key].as_f64().unwrap_or_else(|| panic!("{key} in {p}"));
        assert!(
            f("p50_ms") <= f("p90_ms") && f("p90_ms") <= f("p99_ms"),
            "{p}"
        );
        assert!(f("mean_ms") > 0.0, "{p}");
        let tokens = f("batch") * f("sequence");
        let expected = tokens / (f("mean_ms") / 1e3);
        assert!(f("tokens_per_s") > 0.0);
        assert!(
            (f("tokens_per_s") - expected).abs() <= expected * 1e-9,
            "{p}"
        );
        let sequences = f("batch") / (f("mean_ms") / 1e3);
        assert!(
            (f("sequences_per_s") - sequences).abs() <= sequences * 1e-9,
            "{p}"
        );
        if cfg!(target_os = "linux") {
            assert!(p["peak_rss_bytes"].as_u64().is_some_and(|b| b > 0), "{p}");
        }
    }
}

#[test]
fn csv_has_a_header_and_one_row_per_point() {
    let out = bench(&["--csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(&header[..4], ["batch", "sequence", "mean_ms", "p50_ms"]);
    for row in &lines[1..] {
        assert_eq!(row.split(',').count(), header.len(), "{row}");
    }
    assert!(lines[4].starts_with("2,8,"), "{text}");
}

#[test]
fn table_and_svg_chart() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("latency.svg");
    let out = bench(&["--svg", svg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("p99 ms") && table.contains("tokens/s"),
        "{table}"
    );
    assert!(table.contains("session load"), "{table}");
    assert!(
        stderr(&out).is_empty(),
        "no progress bar when piped: {}",
        stderr(&out)
    );
    let chart = std::fs::read_to_string(&svg).expect("the chart is written");
    assert!(chart.starts_with("<svg"), "{chart}");
    assert!(chart.contains("batch 2") && chart.contains("sequence length"));
}

#[test]
fn onnx_files_refuse_target_flags() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("tiny.onnx");
    let out = tfc(&["build", SPEC, "-o", onnx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tfc(&["bench", onnx.to_str().unwrap(), "--target", "ort"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--target applies to specs"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());

    // Without them the file is benchmarked, its inputs taken from the session.
    let out = tfc(&[
        "bench",
        onnx.to_str().unwrap(),
        "--sequence",
        "4",
        "--runs",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("tiny.onnx"));
}

#[test]
fn sequences_beyond_the_position_table_are_refused() {
    let out = tfc(&["bench", SPEC, "--sequence", "8,129", "--runs", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("sequence length 129"), "{err}");
    assert!(err.contains("128 positions"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn empty_grids_and_weightless_models_are_refused() {
    let out = tfc(&["bench", SPEC, "--batch", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = tfc(&["bench", SPEC, "--runs", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = tfc(&["bench", SPEC, "--weights", "none"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--weights none"), "{}", stderr(&out));
}
