//! The SVG charts of a report, at fixed sizes: each with its axis and unit, its counts, a
//! legend, and where the contract sets one, the target as a line with the bars coloured
//! against it. The HTML shows them as they are; the PDF places them at their own size.

use super::*;

/// The fonts a chart's text is set in (the PDF's, then a browser's).
const FONTS: &str = "DejaVu Sans, Droid Sans Fallback, Noto Sans CJK SC, WenQuanYi Micro Hei, sans-serif";

const BLUE: &str = "#3b7dd8";
const GREEN: &str = "#2e7d32";
const RED: &str = "#c62828";

/// One bar: its label, its value, and what to write beside it (`97.5% (39/40)`).
pub(super) struct Bar {
    pub label: String,
    pub value: f64,
    pub note: String,
}

/// Horizontal bars for values from 0 to `max` in `unit`, with a scale under them. With a
/// `target` (in the same unit) a dashed line marks it and each bar is green at or above it,
/// red below; a legend says so.
pub(super) fn bars(rows: &[Bar], max: f64, unit: &str, target: Option<f64>, w: &Words) -> String {
    const LEFT: f64 = 170.0;
    const PLOT: f64 = 360.0;
    let top = if target.is_some() { 26 } else { 6 };
    let h = top + 22 * rows.len().max(1) + 34;
    let x = |v: f64| LEFT + if max > 0.0 { (v / max).clamp(0.0, 1.0) * PLOT } else { 0.0 };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"{h}\" font-size=\"11\" font-family=\"{FONTS}\">"
    );
    if let Some(t) = target {
        let _ = write!(
            s,
            "<rect x=\"{LEFT}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{GREEN}\"/><text x=\"{}\" y=\"13\">{}</text>\
             <rect x=\"{}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{RED}\"/><text x=\"{}\" y=\"13\">{}</text>\
             <line x1=\"{}\" y1=\"9\" x2=\"{}\" y2=\"9\" stroke=\"#000\" stroke-dasharray=\"4 3\"/><text x=\"{}\" y=\"13\">{} {}{unit}</text>",
            LEFT + 14.0,
            esc(w.at_target),
            LEFT + 150.0,
            LEFT + 164.0,
            esc(w.below_target),
            LEFT + 270.0,
            LEFT + 292.0,
            LEFT + 296.0,
            esc(w.target),
            num(t)
        );
    }
    for (i, b) in rows.iter().enumerate() {
        let y = top + 22 * i;
        let fill = match target {
            Some(t) if b.value + 1e-9 >= t => GREEN,
            Some(_) => RED,
            None => BLUE,
        };
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{LEFT}\" y=\"{y}\" width=\"{:.1}\" height=\"16\" fill=\"{fill}\"/>\
             <text x=\"{:.1}\" y=\"{}\">{}</text>",
            y + 13,
            esc(&clip(&b.label, 26)),
            x(b.value) - LEFT,
            x(b.value) + 4.0,
            y + 13,
            esc(&b.note)
        );
    }
    // The scale: the axis, a tick and a figure every quarter, the unit at its end.
    let base = top + 22 * rows.len().max(1) + 2;
    let _ = write!(s, "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#555\"/>", LEFT + PLOT);
    for q in 0..=4 {
        let v = max * f64::from(q) / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{base}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#555\"/><text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\">{3}</text>",
            x(v),
            base + 4,
            base + 16,
            num(v)
        );
    }
    let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"end\">{}</text>", LEFT + PLOT, base + 30, esc(unit));
    if let Some(t) = target {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{base}\" stroke=\"#000\" stroke-dasharray=\"4 3\"/>",
            x(t),
            top - 2
        );
    }
    s.push_str("</svg>");
    s
}

/// A number as a scale shows it: `95`, `2.5`.
fn num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{v:.0}") } else { format!("{v:.1}") }
}

/// At most `n` characters, an ellipsis for the rest.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).chain(['…']).collect() }
}

/// Stacked columns per week (tier 1, 2, 3), the week's count on top, a scale of tickets on
/// the left and the weeks' Mondays under them, and a legend of the tiers.
pub(super) fn weekly(weeks: &[(chrono::NaiveDate, [u32; 3])], w: &Words) -> String {
    const LEFT: f64 = 40.0;
    const TOP: f64 = 30.0;
    const PLOT_H: f64 = 120.0;
    let most = weeks.iter().map(|(_, t)| t.iter().sum::<u32>()).max().unwrap_or(0).max(1);
    // A scale of whole tickets: 1, 2, 5, 10… a step.
    let step = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].into_iter().find(|s| most.div_ceil(*s) <= 5).unwrap_or(1000);
    let top_value = most.div_ceil(step) * step;
    let colors = ["#c0392b", "#e67e22", "#f1c40f"];
    let width = (LEFT as usize + weeks.len() * 34 + 20).clamp(260, 640);
    let col = ((width as f64 - LEFT - 10.0) / weeks.len().max(1) as f64).min(34.0);
    let y = |v: f64| TOP + PLOT_H - v / f64::from(top_value) * PLOT_H;
    // A label is some 30 px wide: one every `every` weeks.
    let every = (30.0 / col).ceil().max(1.0) as usize;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" font-size=\"10\" font-family=\"{FONTS}\">",
        TOP + PLOT_H + 34.0
    );
    for (t, c) in colors.iter().enumerate() {
        let lx = LEFT + 80.0 * t as f64;
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{c}\"/><text x=\"{}\" y=\"13\">{}</text>",
            lx + 14.0,
            esc(&w.tier_n.replace("{n}", &(t + 1).to_string()))
        );
    }
    let mut v = 0;
    while v <= top_value {
        let yy = y(f64::from(v));
        let _ = write!(
            s,
            "<line x1=\"{}\" y1=\"{yy:.1}\" x2=\"{}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            LEFT,
            width as f64 - 10.0,
            LEFT - 4.0,
            yy + 3.0
        );
        v += step;
    }
    let _ = write!(s, "<text x=\"2\" y=\"{}\">{}</text>", TOP - 6.0, esc(w.tickets_unit));
    for (i, (monday, tiers)) in weeks.iter().enumerate() {
        let x = LEFT + 4.0 + col * i as f64;
        let bar = (col - 8.0).max(1.0);
        let mut acc = 0.0;
        for (t, n) in tiers.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let (y0, y1) = (y(acc), y(acc + f64::from(*n)));
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y1:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
                bar,
                y0 - y1,
                colors[t]
            );
            acc += f64::from(*n);
        }
        let total: u32 = tiers.iter().sum();
        // Counts and dates where there is room for them: every k-th week on a long period.
        if i % every == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{total}</text><text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                y(acc) - 3.0,
                x + bar / 2.0,
                TOP + PLOT_H + 14.0,
                monday.format("%m-%d")
            );
        }
    }
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#555\"/><text x=\"{1}\" y=\"{2}\" text-anchor=\"end\">{3}</text>",
        TOP + PLOT_H,
        width as f64 - 10.0,
        TOP + PLOT_H + 28.0,
        esc(w.week_of)
    );
    s.push_str("</svg>");
    s
}
