//! `simulate --report FILE.html`: one self-contained page (inline SVG and CSS, no script, no
//! external files) with the wait CDF per level, queue depth per level over time, the pool's use
//! over time and the text table, for one config or two side by side. Nothing on it depends on
//! when or where it was made, so the same replay gives the same bytes.

use std::fmt::Write as _;

use coordinator_core::pool::Resources;
use coordinator_core::sim::engine::JobOutcome;
use coordinator_core::sim::report::{duration, Report};
use coordinator_core::sim::timeline::Point;
use coordinator_core::sim::Replay;
use coordinator_core::{Priority, LEVELS};
use plotters::style::RGBColor;

use crate::tools::report_charts::{self, Curve, DrawError, Layer, Size, TimeAxis};

/// The colour of each level, in `Priority::ALL` order.
const LEVEL_COLORS: [RGBColor; LEVELS] = [
    RGBColor(200, 54, 54),
    RGBColor(230, 126, 34),
    RGBColor(46, 118, 190),
    RGBColor(39, 160, 96),
    RGBColor(142, 88, 170),
];
const ALL_COLOR: RGBColor = RGBColor(30, 30, 30);
const TRACE_COLOR: RGBColor = RGBColor(160, 160, 160);
const CPU_COLOR: RGBColor = RGBColor(46, 118, 190);
const MEMORY_COLOR: RGBColor = RGBColor(39, 160, 96);
const GPU_COLOR: RGBColor = RGBColor(200, 54, 54);
/// The two configs of a comparison.
const RUN_COLORS: [RGBColor; 2] = [RGBColor(46, 118, 190), RGBColor(214, 96, 20)];

/// Points per CDF curve, spaced evenly on the log axis.
const CDF_POINTS: usize = 240;
const WIDE: Size = (1320, 440);
const HALF: Size = (650, 400);

/// What the page is about.
pub struct Page<'a> {
    /// The workload replayed: the trace's path, or what synthetic workload.
    pub workload: &'a str,
    /// One replay per config, in the command line's order.
    pub runs: &'a [Replay],
    /// The text table, as printed.
    pub table: &'a str,
}

/// The page as HTML.
pub fn render(page: &Page<'_>) -> Result<String, DrawError> {
    let runs = page.runs;
    let size = if runs.len() == 1 { WIDE } else { HALF };
    let mut html = String::new();
    head(&mut html, page);
    cards(&mut html, runs);
    waits(&mut html, runs, size)?;
    let timelines: Vec<Vec<Point>> = runs.iter().map(|r| r.outcome.timeline.points()).collect();
    let origin = runs.iter().map(|r| r.outcome.timeline.start_ms()).min();
    let end = runs.iter().map(|r| r.outcome.timeline.end_ms()).max();
    let axis = TimeAxis::new(origin.unwrap_or(0), end.unwrap_or(0));
    queue_depth(&mut html, runs, &timelines, &axis, size)?;
    utilisation(&mut html, runs, &timelines, &axis, size)?;
    section(
        &mut html,
        "Table",
        "The table <code>simulate</code> prints.",
    );
    let _ = writeln!(
        html,
        "<pre>{}</pre>\n</main>\n</body>\n</html>",
        escape(page.table)
    );
    Ok(html)
}

/// The wait CDFs: per level for each run, and with two runs first both runs' on one chart.
fn waits(html: &mut String, runs: &[Replay], size: Size) -> Result<(), DrawError> {
    let waits: Vec<RunWaits> = runs.iter().map(RunWaits::of).collect();
    let x_max = waits
        .iter()
        .flat_map(|w| w.levels.iter().chain([&w.all, &w.trace]))
        .filter_map(|w| w.last())
        .max()
        .map_or(10.0, |&ms| (ms as f64 / 1000.0 * 1.25).max(10.0));
    let logged = waits.iter().find(|w| !w.trace.is_empty());
    let mut note = "Share of the jobs that started within a given wait, by the level they were \
                    submitted at. Waits under a second count as 1 s."
        .to_owned();
    if logged.is_some() {
        note.push_str(" <em>trace</em> is the wait the logged system gave the same jobs.");
    }
    section(html, "Waits", &note);

    if runs.len() > 1 {
        let mut curves: Vec<Curve> = runs
            .iter()
            .zip(&waits)
            .zip(RUN_COLORS.iter().cycle())
            .map(|((run, w), &color)| curve(&run_name(&run.report), color, 3, cdf(&w.all, x_max)))
            .collect();
        if let Some(w) = logged {
            curves.push(curve(
                "trace (logged)",
                TRACE_COLOR,
                2,
                cdf(&w.trace, x_max),
            ));
        }
        let legend: Vec<(RGBColor, String)> =
            curves.iter().map(|c| (c.color, c.label.clone())).collect();
        legend_html(html, &legend);
        let svg = report_charts::wait_cdf("Wait CDF of all jobs", &curves, x_max, WIDE)?;
        figure(html, &[svg]);
    }

    let mut legend = level_legend();
    legend.push((ALL_COLOR, "all jobs".to_owned()));
    if logged.is_some() {
        legend.push((TRACE_COLOR, "trace (logged)".to_owned()));
    }
    legend_html(html, &legend);
    let mut svgs = Vec::new();
    for (run, w) in runs.iter().zip(&waits) {
        let mut curves = Vec::new();
        if !w.trace.is_empty() {
            curves.push(curve("trace", TRACE_COLOR, 2, cdf(&w.trace, x_max)));
        }
        for (level, waits) in Priority::ALL.iter().zip(&w.levels) {
            let color = LEVEL_COLORS[level.index()];
            curves.push(curve(level.name(), color, 2, cdf(waits, x_max)));
        }
        curves.push(curve("all", ALL_COLOR, 3, cdf(&w.all, x_max)));
        let title = format!("Wait CDF per level · {}", run_name(&run.report));
        svgs.push(report_charts::wait_cdf(&title, &curves, x_max, size)?);
    }
    figure(html, &svgs);
    Ok(())
}

/// Queue depth over time, stacked by level, one chart per run on the same axes.
fn queue_depth(
    html: &mut String,
    runs: &[Replay],
    timelines: &[Vec<Point>],
    axis: &TimeAxis,
    size: Size,
) -> Result<(), DrawError> {
    section(
        html,
        "Queue depth",
        "Executions queued, stacked by the level they are queued at (after demotions), as means \
         over equal intervals of the replay.",
    );
    legend_html(html, &level_legend());
    let peak = timelines
        .iter()
        .flatten()
        .map(|p| p.queued.iter().sum::<f64>())
        .fold(0.0, f64::max);
    let y_max = if peak > 0.0 { peak * 1.08 } else { 1.0 };
    let mut svgs = Vec::new();
    for (run, points) in runs.iter().zip(timelines) {
        let x: Vec<f64> = points.iter().map(|p| mid(axis, p)).collect();
        let layers: Vec<Layer> = Priority::ALL
            .iter()
            .map(|level| Layer {
                color: LEVEL_COLORS[level.index()],
                values: points.iter().map(|p| p.queued[level.index()]).collect(),
            })
            .collect();
        let title = format!("Queued executions · {}", run_name(&run.report));
        svgs.push(report_charts::stacked(
            &title, "queued", axis, &x, &layers, y_max, size,
        )?);
    }
    figure(html, &svgs);
    Ok(())
}

/// The share of the pool in use over time: cpu always, memory and GPUs when anything holds them.
fn utilisation(
    html: &mut String,
    runs: &[Replay],
    timelines: &[Vec<Point>],
    axis: &TimeAxis,
    size: Size,
) -> Result<(), DrawError> {
    section(
        html,
        "Pool utilisation",
        "Share of the pool's capacity held by running executions, as means over the same \
         intervals; the dashed line is the mean over the whole replay. Memory and GPUs appear \
         when some execution holds them.",
    );
    let held = |f: fn(&Point) -> f64| timelines.iter().flatten().any(|p| f(p) > 0.0);
    let mut kinds = vec![Kind {
        name: "cpu",
        color: CPU_COLOR,
        used: |p| p.cpu_millis,
        total: |r| r.cpu_millis,
    }];
    if held(|p| p.memory_mib) {
        kinds.push(Kind {
            name: "memory",
            color: MEMORY_COLOR,
            used: |p| p.memory_mib,
            total: |r| r.memory_mib,
        });
    }
    if held(|p| p.gpu) {
        kinds.push(Kind {
            name: "gpu",
            color: GPU_COLOR,
            used: |p| p.gpu,
            total: |r| r.gpu,
        });
    }
    let legend: Vec<(RGBColor, String)> =
        kinds.iter().map(|k| (k.color, k.name.to_owned())).collect();
    legend_html(html, &legend);
    let mut svgs = Vec::new();
    for (run, points) in runs.iter().zip(timelines) {
        let curves: Vec<Curve> = kinds
            .iter()
            .map(|k| {
                let total = (k.total)(&run.outcome.capacity) as f64;
                let share = points
                    .iter()
                    .map(|p| {
                        let pct = if total > 0.0 {
                            (k.used)(p) / total * 100.0
                        } else {
                            0.0
                        };
                        (mid(axis, p), pct)
                    })
                    .collect();
                // The cpu line is drawn over its own fill: thin, so its detail shows.
                let width = if k.name == "cpu" { 1 } else { 2 };
                curve(k.name, k.color, width, share)
            })
            .collect();
        let y_max = curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.1))
            .fold(100.0, f64::max);
        let mean = run.report.utilisation * 100.0;
        let title = format!(
            "Pool in use · {} · cpu mean {mean:.1}%",
            run_name(&run.report)
        );
        svgs.push(report_charts::percent_over_time(
            &title,
            axis,
            &curves,
            Some(mean),
            y_max,
            size,
        )?);
    }
    figure(html, &svgs);
    Ok(())
}

/// A resource on the utilisation chart: how much a point holds and how much the pool has.
struct Kind {
    name: &'static str,
    color: RGBColor,
    used: fn(&Point) -> f64,
    total: fn(&Resources) -> u64,
}

/// The waits of one replay in milliseconds, each list sorted.
struct RunWaits {
    levels: [Vec<u64>; LEVELS],
    all: Vec<u64>,
    trace: Vec<u64>,
}

impl RunWaits {
    fn of(run: &Replay) -> RunWaits {
        let mut levels: [Vec<u64>; LEVELS] = Default::default();
        let mut trace = Vec::new();
        for (job, outcome) in run.jobs.iter().zip(&run.outcome.jobs) {
            if let JobOutcome::Started { start, .. } = outcome {
                levels[job.priority.index()].push(start.saturating_sub(job.submit_ms));
            }
            if let Some(w) = job.recorded_wait_ms {
                trace.push(w);
            }
        }
        let mut all: Vec<u64> = levels.iter().flatten().copied().collect();
        for w in levels.iter_mut().chain([&mut all, &mut trace]) {
            w.sort_unstable();
        }
        RunWaits { levels, all, trace }
    }
}

/// The share of `sorted` waits (ms) within x, at points evenly spaced on a log axis from 1 s to
/// `x_max` seconds.
fn cdf(sorted: &[u64], x_max: f64) -> Vec<(f64, f64)> {
    if sorted.is_empty() {
        return Vec::new();
    }
    let n = sorted.len() as f64;
    let top = x_max.log10();
    (0..=CDF_POINTS)
        .map(|i| {
            let x = 10f64.powf(top * i as f64 / CDF_POINTS as f64);
            let within = sorted.partition_point(|&w| w as f64 <= x * 1000.0);
            (x, within as f64 / n)
        })
        .collect()
}

fn curve(label: &str, color: RGBColor, width: u32, points: Vec<(f64, f64)>) -> Curve {
    Curve {
        label: label.to_owned(),
        color,
        width,
        points,
    }
}

fn mid(axis: &TimeAxis, p: &Point) -> f64 {
    axis.at((p.start_ms as f64 + p.end_ms as f64) / 2.0)
}

fn run_name(report: &Report) -> String {
    format!("{} · policy {}", report.label, report.policy)
}

fn level_legend() -> Vec<(RGBColor, String)> {
    Priority::ALL
        .iter()
        .map(|l| (LEVEL_COLORS[l.index()], l.name().to_owned()))
        .collect()
}

const STYLE: &str = "\
body{margin:0;background:#f4f5f7;color:#1d2129;font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif}
main{max-width:1360px;margin:0 auto;padding:24px 20px 40px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:30px 0 2px}
.sub{color:#4a5160;margin:0 0 18px}
.note{color:#5b6270;margin:0 0 8px;max-width:960px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:12px 16px}
.card h3{font-size:15px;margin:0 0 8px;color:#2b303a;word-break:break-all}
.stats{display:flex;flex-wrap:wrap;gap:6px 26px}
.stat b{display:block;font-size:22px;font-weight:600}
.stat span{font-size:12px;color:#5b6270;text-transform:uppercase;letter-spacing:.04em}
.legend{display:flex;flex-wrap:wrap;gap:4px 18px;margin:6px 0 8px;font-size:14px}
.legend i{display:inline-block;width:22px;height:10px;border-radius:2px;margin-right:6px;vertical-align:middle}
.row{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px;margin-bottom:8px}
figure{margin:0;background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);overflow:hidden}
figure svg{display:block;width:100%;height:auto}
pre{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:14px 16px;overflow-x:auto;font:13px/1.4 ui-monospace,'DejaVu Sans Mono',monospace}
";

fn head(html: &mut String, page: &Page<'_>) {
    let jobs = page.runs.first().map_or(0, |r| r.report.jobs);
    let configs: Vec<String> = page.runs.iter().map(|r| run_name(&r.report)).collect();
    let configs = configs.join(" vs ");
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Replay of {w} · {c}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>Replay of {w}</h1>\n<p class=\"sub\">{jobs} jobs · {c}</p>\n",
        w = escape(page.workload),
        c = escape(&configs),
    );
}

fn cards(html: &mut String, runs: &[Replay]) {
    html.push_str("<div class=\"cards\">\n");
    for run in runs {
        let r = &run.report;
        let all = r.levels.iter().find(|l| l.level == "all");
        let stat = |value: String, name: &str| {
            format!("<div class=\"stat\"><b>{value}</b><span>{name}</span></div>")
        };
        let mut stats = vec![stat(
            format!("{:.1}%", r.utilisation * 100.0),
            "cpu utilisation",
        )];
        if let Some(all) = all {
            stats.push(stat(duration(all.wait.p50), "median wait"));
            stats.push(stat(duration(all.wait.p90), "p90 wait"));
            stats.push(stat(duration(all.wait.p99), "p99 wait"));
            stats.push(stat(
                format!("{:.1}", all.bounded_slowdown),
                "bounded slowdown",
            ));
        }
        stats.push(stat(format!("{:.2}", r.jain_user_wait), "Jain (users)"));
        stats.push(stat(r.demotions.to_string(), "demotions"));
        let _ = writeln!(
            html,
            "<div class=\"card\"><h3>{}</h3><div class=\"stats\">{}</div></div>",
            escape(&run_name(r)),
            stats.concat()
        );
    }
    html.push_str("</div>\n");
}

fn section(html: &mut String, title: &str, note: &str) {
    let _ = write!(html, "<h2>{title}</h2>\n<p class=\"note\">{note}</p>\n");
}

fn legend_html(html: &mut String, entries: &[(RGBColor, String)]) {
    html.push_str("<div class=\"legend\">");
    for (RGBColor(r, g, b), label) in entries {
        let _ = write!(
            html,
            "<span><i style=\"background:#{r:02x}{g:02x}{b:02x}\"></i>{}</span>",
            escape(label)
        );
    }
    html.push_str("</div>\n");
}

fn figure(html: &mut String, svgs: &[String]) {
    html.push_str("<div class=\"row\">\n");
    for svg in svgs {
        let _ = writeln!(html, "<figure>{svg}</figure>");
    }
    html.push_str("</div>\n");
}

/// `text` with the characters HTML gives a meaning escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_reads() {
        assert_eq!(escape("a<b & \"c\"'"), "a&lt;b &amp; &quot;c&quot;&#39;");
    }

    #[test]
    fn a_cdf_counts_zero_waits_at_one_second_and_ends_at_all() {
        let points = cdf(&[0, 0, 5_000, 100_000], 1000.0);
        assert_eq!(points.first(), Some(&(1.0, 0.5)));
        assert_eq!(points.last().map(|p| p.1), Some(1.0));
        assert!(points
            .windows(2)
            .all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
    }
}
