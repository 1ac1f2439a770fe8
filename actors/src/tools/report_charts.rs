//! The charts of the simulator's HTML report, drawn by plotters as SVG text: wait CDFs on a
//! logarithmic time axis, queue depth per level stacked over time, and the pool's use over
//! time. Legends are left to the page, so they never cover a curve.

use plotters::coord::Shift;
use plotters::prelude::*;

/// A chart's size in SVG pixels; the page scales it to its column.
pub type Size = (u32, u32);

/// One line of a chart.
pub struct Curve {
    /// What the page's legend calls it.
    pub label: String,
    /// Its colour.
    pub color: RGBColor,
    /// Its stroke width in pixels.
    pub width: u32,
    /// Its points, x ascending.
    pub points: Vec<(f64, f64)>,
}

/// One layer of a stacked area chart: its own value at each x, stacked on the layers before it.
pub struct Layer {
    /// Its colour.
    pub color: RGBColor,
    /// Its own value at each x.
    pub values: Vec<f64>,
}

/// A time axis: where it starts and the unit its numbers count.
#[derive(Debug, Clone, Copy)]
pub struct TimeAxis {
    /// Milliseconds on the replay's clock at 0.
    pub origin_ms: u64,
    /// The axis ends here, in `unit`s.
    pub span: f64,
    /// Milliseconds per unit.
    pub unit_ms: f64,
    /// The unit's name in the axis title, plural.
    pub unit: &'static str,
}

impl TimeAxis {
    /// An axis from `origin_ms` to `end_ms` in the largest unit that still gives a few ticks.
    pub fn new(origin_ms: u64, end_ms: u64) -> TimeAxis {
        let span_ms = end_ms.saturating_sub(origin_ms).max(1) as f64;
        let (unit_ms, unit) = [
            (86_400_000.0, "days"),
            (3_600_000.0, "hours"),
            (60_000.0, "minutes"),
        ]
        .into_iter()
        .find(|(unit_ms, _)| span_ms >= 3.0 * unit_ms)
        .unwrap_or((1000.0, "seconds"));
        TimeAxis {
            origin_ms,
            span: span_ms / unit_ms,
            unit_ms,
            unit,
        }
    }

    /// Where `ms` on the replay's clock falls on the axis.
    pub fn at(&self, ms: f64) -> f64 {
        (ms - self.origin_ms as f64) / self.unit_ms
    }
}

/// Named durations for the ticks of a logarithmic wait axis, in seconds.
const WAIT_TICKS: [(f64, &str); 11] = [
    (1.0, "1 s"),
    (10.0, "10 s"),
    (60.0, "1 min"),
    (600.0, "10 min"),
    (3_600.0, "1 h"),
    (21_600.0, "6 h"),
    (86_400.0, "1 d"),
    (604_800.0, "1 wk"),
    (2_592_000.0, "30 d"),
    (8_640_000.0, "100 d"),
    (31_536_000.0, "1 yr"),
];

const GRID: RGBColor = RGBColor(226, 229, 234);
const AXIS: RGBColor = RGBColor(120, 126, 136);
const FONT: &str = "sans-serif";

/// A chart failed to draw (the SVG backend writes to a string, so this is a plotters error).
#[derive(Debug)]
pub struct DrawError(pub String);

fn drawn<E: std::fmt::Display>(e: E) -> DrawError {
    DrawError(e.to_string())
}

/// Draws into an SVG string of `size` with a white background.
fn svg(
    size: Size,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), DrawError>,
) -> Result<String, DrawError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(drawn)?;
        draw(&root)?;
        root.present().map_err(drawn)?;
    }
    Ok(out)
}

/// Cumulative distributions of waits, x in seconds from 1 s to `x_max` on a log axis, y the
/// share of jobs from 0 to 1.
pub fn wait_cdf(
    title: &str,
    curves: &[Curve],
    x_max: f64,
    size: Size,
) -> Result<String, DrawError> {
    svg(size, |root| {
        let ticks: Vec<f64> = WAIT_TICKS
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| *s <= x_max)
            .collect();
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 19))
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(62)
            .build_cartesian_2d((1f64..x_max).log_scale().with_key_points(ticks), 0f64..1.02)
            .map_err(drawn)?;
        chart
            .configure_mesh()
            .x_desc("wait (log scale)")
            .y_desc("jobs started within that wait")
            .x_label_formatter(&|x| wait_tick(*x))
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .y_labels(6)
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .axis_style(AXIS)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(drawn)?;
        for c in curves {
            chart
                .draw_series(LineSeries::new(
                    c.points.iter().copied(),
                    c.color.stroke_width(c.width),
                ))
                .map_err(drawn)?;
        }
        Ok(())
    })
}

/// Layers stacked over time, the first at the bottom; y from 0 to `y_max`. A layer that is 0
/// throughout is left out rather than drawn as a line along the axis.
pub fn stacked(
    title: &str,
    y_desc: &str,
    axis: &TimeAxis,
    x: &[f64],
    layers: &[Layer],
    y_max: f64,
    size: Size,
) -> Result<String, DrawError> {
    svg(size, |root| {
        let mut chart = time_chart(root, title, axis, y_max)?;
        chart
            .configure_mesh()
            .x_desc(format!("{} since the first submission", axis.unit))
            .y_desc(y_desc)
            .x_label_formatter(&|x| plain(*x))
            .y_label_formatter(&|y| count(*y))
            .disable_x_mesh()
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .axis_style(AXIS)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(drawn)?;
        // Each layer is drawn down to 0 as the sum of itself and the layers under it, top
        // first, so the one under it covers its lower part.
        let mut tops: Vec<Vec<f64>> = Vec::with_capacity(layers.len());
        for layer in layers {
            let top = match tops.last() {
                Some(below) => below
                    .iter()
                    .zip(&layer.values)
                    .map(|(b, v)| b + v)
                    .collect(),
                None => layer.values.clone(),
            };
            tops.push(top);
        }
        for (layer, top) in layers.iter().zip(&tops).rev() {
            if layer.values.iter().all(|v| *v == 0.0) {
                continue;
            }
            chart
                .draw_series(AreaSeries::new(
                    x.iter().copied().zip(top.iter().copied()),
                    0.0,
                    tint(layer.color),
                ))
                .map_err(drawn)?;
        }
        Ok(())
    })
}

/// Percentages over time, y from 0 to `y_max`; the first curve is filled beneath. `mean`, when
/// given, is drawn as a dashed level line.
pub fn percent_over_time(
    title: &str,
    axis: &TimeAxis,
    curves: &[Curve],
    mean: Option<f64>,
    y_max: f64,
    size: Size,
) -> Result<String, DrawError> {
    svg(size, |root| {
        let mut chart = time_chart(root, title, axis, y_max)?;
        chart
            .configure_mesh()
            .x_desc(format!("{} since the first submission", axis.unit))
            .y_desc("in use")
            .x_label_formatter(&|x| plain(*x))
            .y_label_formatter(&|y| format!("{y:.0}%"))
            .disable_x_mesh()
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .axis_style(AXIS)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(drawn)?;
        if let Some(first) = curves.first() {
            chart
                .draw_series(AreaSeries::new(
                    first.points.iter().copied(),
                    0.0,
                    tint(first.color),
                ))
                .map_err(drawn)?;
        }
        for c in curves {
            chart
                .draw_series(LineSeries::new(
                    c.points.iter().copied(),
                    c.color.stroke_width(c.width),
                ))
                .map_err(drawn)?;
        }
        if let Some(mean) = mean {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, mean), (axis.span, mean)],
                    10,
                    6,
                    BLACK.mix(0.75).stroke_width(2),
                ))
                .map_err(drawn)?;
        }
        Ok(())
    })
}

type TimeChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn time_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    axis: &TimeAxis,
    y_max: f64,
) -> Result<TimeChart<'a, 'b>, DrawError> {
    ChartBuilder::on(root)
        .caption(title, (FONT, 19))
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(62)
        .build_cartesian_2d(0f64..axis.span, 0f64..y_max)
        .map_err(drawn)
}

/// `color` lightened towards white: an opaque fill that still reads as its colour.
fn tint(color: RGBColor) -> RGBColor {
    let mix = |c: u8| c + ((255 - c) as f64 * 0.3) as u8;
    RGBColor(mix(color.0), mix(color.1), mix(color.2))
}

fn wait_tick(seconds: f64) -> String {
    WAIT_TICKS
        .iter()
        .find(|(s, _)| (seconds - s).abs() <= s * 1e-9)
        .map_or_else(
            || coordinator_core::sim::report::duration(seconds),
            |(_, name)| (*name).to_owned(),
        )
}

/// A number on an axis without a needless `.0`.
fn plain(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A count on an axis: `12`, `2.5k`, `1.2M`.
fn count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else if n >= 1e3 {
        format!("{}k", plain(n / 1e3))
    } else {
        plain(n)
    }
}
