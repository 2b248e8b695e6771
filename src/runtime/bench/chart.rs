//! A plain SVG line chart of a benchmark: median latency against sequence length, one
//! line per batch size, with labelled axes and a legend. Written by hand so that no plotting
//! library is needed; the output is a self-contained SVG 1.1 document.

use std::fmt::Write;

use super::BenchReport;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// Line colours, cycled through by batch size.
const COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The report's p50 latency against sequence length as an SVG document.
pub fn svg(report: &BenchReport) -> String {
    let mut batches: Vec<usize> = report.points.iter().map(|p| p.batch).collect();
    batches.sort_unstable();
    batches.dedup();
    let sequences = report.points.iter().map(|p| p.sequence as f64);
    let x_max = sequences.clone().fold(0.0, f64::max);
    let x_min = sequences.fold(x_max, f64::min);
    let y_max = report
        .points
        .iter()
        .map(|p| p.latency.p50_ms)
        .fold(0.0, f64::max);

    // Axis ranges: x spans the sequences asked for, y starts at zero.
    let (x_lo, x_hi) = if x_max > x_min {
        (x_min, x_max)
    } else {
        (x_min - 1.0, x_max + 1.0)
    };
    let y_step = nice_step(if y_max > 0.0 { y_max } else { 1.0 } / 5.0);
    let y_hi = (y_max / y_step).ceil().max(1.0) * y_step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_at = |x: f64| LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w;
    let y_at = |y: f64| TOP + plot_h - y / y_hi * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" "#,
            r#"viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        ),
        w = WIDTH,
        h = HEIGHT
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let name = report
        .model_name
        .clone()
        .unwrap_or_else(|| report.model_path.display().to_string());
    let _ = writeln!(
        out,
        concat!(
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15">"#,
            "{} — p50 latency on {}</text>"
        ),
        LEFT + plot_w / 2.0,
        escape(&name),
        report.provider
    );

    // Grid lines and tick labels.
    let mut y = 0.0;
    while y <= y_hi + y_step / 2.0 {
        let py = y_at(y);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e0e0e0"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            py + 4.0,
            tick_label(y, y_step)
        );
        y += y_step;
    }
    let mut ticks: Vec<usize> = report.points.iter().map(|p| p.sequence).collect();
    ticks.sort_unstable();
    ticks.dedup();
    for tick in ticks {
        let px = x_at(tick as f64);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#f0f0f0"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            out,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{tick}</text>"#,
            TOP + plot_h + 18.0
        );
    }

    // Axes and their labels.
    let _ = writeln!(
        out,
        concat!(
            r#"<polyline points="{l},{t} {l},{b:.1} {r:.1},{b:.1}" "#,
            r#"fill="none" stroke="black"/>"#
        ),
        l = LEFT,
        t = TOP,
        b = TOP + plot_h,
        r = LEFT + plot_w
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">sequence length (tokens)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 16.0
    );
    let _ = writeln!(
        out,
        concat!(
            r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">"#,
            "latency p50 (ms)</text>"
        ),
        TOP + plot_h / 2.0
    );

    // One line per batch size, with a legend entry.
    for (i, batch) in batches.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut line: Vec<(f64, f64)> = report
            .points
            .iter()
            .filter(|p| p.batch == *batch)
            .map(|p| (x_at(p.sequence as f64), y_at(p.latency.p50_ms)))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        let coords: Vec<String> = line.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            coords.join(" ")
        );
        for (x, y) in &line {
            let _ = writeln!(
                out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"/>"#
            );
        }
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = LEFT + plot_w + 20.0;
        let _ = writeln!(
            out,
            concat!(
                r#"<line x1="{x1:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" "#,
                r#"stroke="{colour}" stroke-width="2"/>"#
            ),
            x1 = lx,
            x2 = lx + 20.0,
            y = ly,
            colour = colour
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">batch {batch}</text>"#,
            lx + 26.0,
            ly + 4.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A step of 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.log10().floor());
    let fraction = raw / power;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// A tick value with as many decimals as the step needs.
fn tick_label(value: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{value:.decimals$}")
}

/// Escapes text for an SVG text node.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bench::{BenchPoint, Latency};
    use crate::runtime::Provider;

    fn point(batch: usize, sequence: usize, ms: f64) -> BenchPoint {
        let latency = Latency {
            mean_ms: ms,
            p50_ms: ms,
            p90_ms: ms,
            p99_ms: ms,
            min_ms: ms,
            max_ms: ms,
        };
        BenchPoint {
            batch,
            sequence,
            latency,
            tokens_per_s: 1.0,
            sequences_per_s: 1.0,
            peak_rss_bytes: None,
        }
    }

    #[test]
    fn one_line_per_batch_with_labelled_axes() {
        let report = BenchReport {
            model_path: "a<b>.tfm".into(),
            model_name: None,
            target: None,
            provider: Provider::Cpu,
            fallback: None,
            weights: None,
            inputs: vec![],
            threads: None,
            warmup: 1,
            runs: 1,
            compile_ms: None,
            load_ms: 1.0,
            points: vec![
                point(1, 8, 0.2),
                point(1, 32, 0.5),
                point(4, 8, 0.7),
                point(4, 32, 1.9),
            ],
        };
        let svg = svg(&report);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("stroke-width=\"2\"/>").count(),
            4,
            "2 lines + 2 keys"
        );
        assert!(svg.contains("sequence length (tokens)"));
        assert!(svg.contains("latency p50 (ms)"));
        assert!(svg.contains("batch 4"));
        assert!(svg.contains("a&lt;b&gt;.tfm"));
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(0.37), 0.5);
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(nice_step(70.0), 100.0);
        assert_eq!(tick_label(0.25, 0.05), "0.25");
    }
}
