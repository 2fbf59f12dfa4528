//! SVG plots of a run (plotters): dev scores per generation, best score against evaluations spent,
//! and operator success rates.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::analysis::{GenerationStats, OperatorStats};
use crate::error::{Error, Result};

/// Size of every SVG plot (pixels).
pub(crate) const SIZE: (u32, u32) = (720, 420);

/// The drawing error plots report; `?` turns plotters' errors into it.
pub(crate) type PlotError = Box<dyn std::error::Error>;

/// An x-y chart with f64 axes.
pub(crate) type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one chart into the SVG at `path`: white canvas, `caption`, x over `x`, y from `y_lo`
/// (clamped at 0) to 1; `draw` configures the mesh and draws the series; with `legend`, the
/// labelled series get a legend in the lower right corner. Errors name the file.
pub(crate) fn accuracy_chart(
    path: &Path,
    caption: &str,
    x: std::ops::Range<f64>,
    y_lo: f64,
    legend: bool,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> std::result::Result<(), PlotError>,
) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let plot = || -> std::result::Result<(), PlotError> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(x, y_lo.max(0.0)..1.0)?;
        draw(&mut chart)?;
        if legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    plot().map_err(|e| plot_err(path, e))
}

/// Most x-axis labels on the generations plot (a run of 4 billion generations must not ask
/// plotters for 4 billion key points).
const MAX_X_LABELS: usize = 25;

/// A line of the generations plot: its legend, colour and value.
type Line = (&'static str, RGBColor, fn(&GenerationStats) -> f64);

/// A drawing error as a write error naming the file.
pub(crate) fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::write(path, std::io::Error::other(e.to_string()))
}

/// Best, median and worst dev accuracy of each generation's new candidates, and the best so far.
pub fn generations(path: &Path, stats: &[GenerationStats]) -> Result<()> {
    let last = stats.last().map_or(1, |s| s.generation.max(1));
    let lo = stats.iter().map(|s| s.worst).fold(1.0, f64::min);
    let caption = "Dev accuracy per generation (new candidates)";
    accuracy_chart(path, caption, 0f64..last as f64, lo - 0.02, true, |chart| {
        chart
            .configure_mesh()
            .x_desc("generation")
            .y_desc("dev accuracy")
            // One label per generation, but never thousands (plotters computes each key point).
            .x_labels((last + 1).min(MAX_X_LABELS))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        let series: [Line; 4] = [
            ("best so far", BLACK, |s| s.best_so_far),
            ("best", GREEN, |s| s.best),
            ("median", BLUE, |s| s.median),
            ("worst", RED, |s| s.worst),
        ];
        for (name, color, f) in series {
            chart
                .draw_series(LineSeries::new(
                    stats.iter().map(|s| (s.generation as f64, f(s))),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(
                stats
                    .iter()
                    .map(|s| Circle::new((s.generation as f64, f(s)), 3, color.filled())),
            )?;
        }
        Ok(())
    })
}

/// Best dev accuracy so far against example forward passes spent.
pub fn progress(path: &Path, points: &[(u64, f64)]) -> Result<()> {
    let max_x = points.last().map_or(1, |p| p.0.max(1)) as f64;
    let lo = points.first().map_or(0.0, |p| p.1);
    let caption = "Best dev accuracy vs evaluations spent";
    accuracy_chart(path, caption, 0f64..max_x, lo - 0.02, false, |chart| {
        chart
            .configure_mesh()
            .x_desc("example forward passes")
            .y_desc("best dev accuracy")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        // A step function: the best only changes when a better candidate is scored.
        let mut steps = Vec::with_capacity(points.len() * 2);
        for (i, &(x, y)) in points.iter().enumerate() {
            if i > 0 {
                steps.push((x as f64, points[i - 1].1));
            }
            steps.push((x as f64, y));
        }
        chart.draw_series(LineSeries::new(steps, BLUE.stroke_width(2)))?;
        Ok(())
    })
}

/// Share of each operator's children that beat their best parent, as bars.
pub fn operators(path: &Path, stats: &[OperatorStats]) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    if stats.is_empty() {
        // No children yet (a run of zero generations): an empty canvas keeps the report's links valid.
        return root.present().map_err(|e| plot_err(path, e));
    }
    let n = stats.len();
    let names: Vec<String> = stats
        .iter()
        .map(|s| format!("{} ({})", s.operator, s.applied))
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Operator success rate (child beat its best parent)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..1.0)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("operator (children)")
        .y_desc("success rate")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(stats.iter().enumerate().map(|(i, s)| {
            let rate = s.improved as f64 / s.applied.max(1) as f64;
            Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), rate),
                ],
                BLUE.mix(0.6).filled(),
            )
        }))
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}
