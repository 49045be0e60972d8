//! The SVG charts of a report.

use super::*;

/// Horizontal bars, one per label, for values between 0 and `max`.
pub(crate) fn bars(rows: &[(String, f64)], max: f64, unit: &str) -> String {
    let h = 22 * rows.len().max(1) + 10;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"{h}\" font-size=\"12\">");
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 5 + 22 * i;
        let w = if max > 0.0 { (v / max).clamp(0.0, 1.0) * 400.0 } else { 0.0 };
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"170\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"#3b7dd8\"/>\
             <text x=\"{:.1}\" y=\"{}\">{v:.1}{unit}</text>",
            y + 13,
            esc(label),
            175.0 + w,
            y + 13
        );
    }
    s.push_str("</svg>");
    s
}

/// Stacked columns per week: tier 1, 2, 3.
pub(crate) fn weekly(weeks: &[(chrono::NaiveDate, [u32; 3])]) -> String {
    let max = weeks.iter().map(|(_, t)| t.iter().sum::<u32>()).max().unwrap_or(0).max(1) as f64;
    let colors = ["#c0392b", "#e67e22", "#f1c40f"];
    let w = (weeks.len() * 34).max(100) + 20;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"190\" font-size=\"10\">");
    for (i, (monday, tiers)) in weeks.iter().enumerate() {
        let x = 10 + 34 * i;
        let mut y = 160.0;
        for (t, n) in tiers.iter().enumerate() {
            let h = *n as f64 / max * 140.0;
            y -= h;
            let _ = write!(s, "<rect x=\"{x}\" y=\"{y:.1}\" width=\"26\" height=\"{h:.1}\" fill=\"{}\"/>", colors[t]);
        }
        let _ = write!(s, "<text x=\"{x}\" y=\"175\">{}</text>", monday.format("%m-%d"));
    }
    s.push_str("</svg>");
    s
}
