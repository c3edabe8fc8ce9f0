//! Charts of the backend comparison, as SVG and PNG, drawn with plotters: session start and
//! call latency per backend (log scale), and throughput by concurrent sessions.
//!
//! Text needs a font: `DejaVu Sans` (Debian's `fonts-dejavu-core`) is looked up in the usual
//! places. Without one, no chart is drawn and the caller is told why.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "chart coordinates are small indices and display values"
)]

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

/// Latency figures of one backend, medians in milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct LatencyRow {
    pub(crate) backend: String,
    pub(crate) cold_ms: f64,
    pub(crate) pool_ms: f64,
    pub(crate) warm_ms: f64,
}

/// Throughput of one backend: (sessions at once, calls per second).
#[derive(Debug, Clone)]
pub(crate) struct ThroughputRow {
    pub(crate) backend: String,
    pub(crate) points: Vec<(usize, f64)>,
}

const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
const SIZE: (u32, u32) = (900, 480);
const SERIES_COLOURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// Register a sans-serif font once; `Err` says why there is none.
fn font() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = FONT_PATHS
                .iter()
                .find_map(|path| std::fs::read(path).ok())
                .ok_or("no DejaVu Sans font found (install fonts-dejavu-core) to draw charts")?;
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes.leak())
                .map_err(|_| "the DejaVu Sans font could not be read".to_string())
        })
        .clone()
}

/// Draw both charts as SVG and PNG into `dir`; returns the files written.
pub(crate) fn write(
    dir: &Path,
    latency: &[LatencyRow],
    throughput: &[ThroughputRow],
) -> Result<Vec<PathBuf>, String> {
    font()?;
    let mut written = Vec::new();
    if !latency.is_empty() {
        let svg = dir.join("latency.svg");
        draw_latency(&SVGBackend::new(&svg, SIZE).into_drawing_area(), latency)?;
        let png = dir.join("latency.png");
        draw_latency(&BitMapBackend::new(&png, SIZE).into_drawing_area(), latency)?;
        written.extend([svg, png]);
    }
    if throughput.iter().any(|row| !row.points.is_empty()) {
        let svg = dir.join("throughput.svg");
        draw_throughput(&SVGBackend::new(&svg, SIZE).into_drawing_area(), throughput)?;
        let png = dir.join("throughput.png");
        draw_throughput(
            &BitMapBackend::new(&png, SIZE).into_drawing_area(),
            throughput,
        )?;
        written.extend([svg, png]);
    }
    Ok(written)
}

fn failed(e: impl std::fmt::Display) -> String {
    format!("drawing a chart failed: {e}")
}

/// Draw the legend and write the chart out.
fn finish<'a, DB: DrawingBackend + 'a, X: Ranged, Y: Ranged>(
    root: &DrawingArea<DB, Shift>,
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(failed)?;
    root.present().map_err(failed)
}

/// A bar series: its label and how to read its value.
type Series = (&'static str, fn(&LatencyRow) -> f64);

/// Grouped bars per backend: cold session, session from the pool, warm call (log scale).
fn draw_latency<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[LatencyRow],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(failed)?;
    let groups = rows.len();
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Median latency through MCP (ms, log scale; lower is better)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..groups as f64, (0.05_f64..1000.0).log_scale())
        .map_err(failed)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ms")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(failed)?;
    // One name under the middle of each group.
    let name_style = TextStyle::from(("sans-serif", 16).into_font()).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Top,
        ),
    );
    for (g, row) in rows.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.05));
        root.draw(&Text::new(
            row.backend.clone(),
            (x, y + 8),
            name_style.clone(),
        ))
        .map_err(failed)?;
    }
    let series: [Series; 3] = [
        ("cold session", |r| r.cold_ms),
        ("session from pool", |r| r.pool_ms),
        ("warm call", |r| r.warm_ms),
    ];
    for (s, (label, value)) in series.iter().enumerate() {
        let colour = SERIES_COLOURS[s];
        let bars = rows.iter().enumerate().map(|(g, row)| {
            let left = g as f64 + 0.15 + 0.23 * s as f64;
            Rectangle::new(
                [(left, 0.05), (left + 0.21, value(row).max(0.05))],
                colour.filled(),
            )
        });
        chart
            .draw_series(bars)
            .map_err(failed)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], colour.filled()));
    }
    finish(root, &mut chart)
}

/// Calls per second by sessions called at once, one line per backend.
fn draw_throughput<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[ThroughputRow],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(failed)?;
    let levels: Vec<usize> = rows
        .iter()
        .flat_map(|r| r.points.iter().map(|(n, _)| *n))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let top = rows
        .iter()
        .flat_map(|r| r.points.iter().map(|(_, v)| *v))
        .fold(1.0_f64, f64::max);
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Throughput by sessions called at once (calls/s; higher is better)",
            ("sans-serif", 22),
        )
        .margin(16)
        .margin_right(40)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0.0..(levels.len().max(1) - 1).max(1) as f64,
            0.0..top * 1.15,
        )
        .map_err(failed)?;
    chart
        .configure_mesh()
        .x_labels(levels.len().max(2))
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() > 1e-6 {
                return String::new();
            }
            levels
                .get(x.round() as usize)
                .map(ToString::to_string)
                .unwrap_or_default()
        })
        .x_desc("sessions called at once")
        .y_desc("calls/s")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(failed)?;
    for (i, row) in rows.iter().enumerate() {
        let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()];
        let points: Vec<(f64, f64)> = row
            .points
            .iter()
            .filter_map(|(n, v)| Some((levels.iter().position(|l| l == n)? as f64, *v)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(3)))
            .map_err(failed)?
            .label(row.backend.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(3))
            });
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, colour.filled())))
            .map_err(failed)?;
    }
    finish(root, &mut chart)
}
