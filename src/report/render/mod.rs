//! Reports as JSON, CSV (one row per device) or HTML with SVG charts, in
//! English or Chinese.

use std::fmt::Write as _;

use super::{Lang, Report};

mod charts;
mod csv;
mod html;
mod pdf;
mod words;

use charts::*;
pub use csv::*;
pub use html::*;
pub use pdf::*;
use words::*;

/// Recommendations drawn from the figures.
pub fn recommendations(r: &Report, lang: Lang) -> Vec<String> {
    let zh = lang == Lang::Zh;
    let mut out = Vec::new();
    for d in r.devices.iter().filter(|d| d.availability < 0.99) {
        out.push(if zh {
            format!(
                "设备 {} 可用率为 {:.1}%，低于 99%：检查供电与通信，安排现场巡检。",
                d.device,
                d.availability * 100.0
            )
        } else {
            format!(
                "{} was available {:.1} % of the time, under 99 %: check its power and link, and visit it.",
                d.device,
                d.availability * 100.0
            )
        });
    }
    for x in r.recurring.iter().take(5) {
        out.push(match (zh, x.by_model) {
            (true, false) => {
                format!(
                    "设备 {} 的故障“{}”重复发生 {} 次：请技术部分析根本原因。",
                    x.subject,
                    r.say(&format!("code:{}", x.code), &x.code),
                    x.times
                )
            }
            (true, true) => {
                format!(
                    "型号 {} 的多台设备出现故障“{}”共 {} 次：请评估批次问题。",
                    x.subject,
                    r.say(&format!("code:{}", x.code), &x.code),
                    x.times
                )
            }
            (false, false) => format!(
                "{} on {} came back {} times: have the technical department find the root cause.",
                x.code, x.subject, x.times
            ),
            (false, true) => format!(
                "{} struck several units of model {} ({} times): look into the batch.",
                x.code, x.subject, x.times
            ),
        });
    }
    let missed: u32 = r.sla.iter().flat_map(|t| t.clocks().map(|(_, c)| c.missed)).sum();
    if missed > 0 {
        out.push(if zh {
            format!("有 {missed} 项时限超时：复核排班与备件库存。")
        } else {
            format!("{missed} contract clocks were missed: review the duty roster and the spare parts stock.")
        });
    }
    if let Some(s) = r.satisfaction.as_ref().filter(|s| !s.low.is_empty()) {
        let who = s.low.join(", ");
        out.push(if zh {
            format!("{who} 的满意度回访评分不高于 2 分：请回访客户并跟进整改。")
        } else {
            format!("The satisfaction survey for {who} scored 2 or less: call the customer back and follow up.")
        });
    }
    if r.visits.missed > 0 {
        out.push(if zh {
            format!("有 {} 次计划巡检或回访未完成：尽快补做。", r.visits.missed)
        } else {
            format!("{} planned visits were missed: make them up soon.", r.visits.missed)
        });
    }
    if !r.warranties_expiring.is_empty() {
        out.push(if zh {
            format!("{} 项保修将在 90 天内到期：与客户商议延保。", r.warranties_expiring.len())
        } else {
            format!("{} warranties end within 90 days: offer the customer an extension.", r.warranties_expiring.len())
        });
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A time at the report's site, as its people read it; the column's heading names the offset.
fn local_time(r: &Report, t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&r.utc_offset).format("%Y-%m-%d %H:%M").to_string()
}

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{:.1}%", v * 100.0))
}

/// A table as both renderings show it: a header and rows of cells.
struct Table<'a> {
    head: Vec<&'a str>,
    rows: Vec<Vec<String>>,
}

/// Devices, the least available first (then by id): a cut table keeps the ones that matter.
fn device_table<'a>(r: &Report, w: &'a Words) -> Table<'a> {
    let mut devices: Vec<_> = r.devices.iter().collect();
    devices.sort_by(|a, b| a.availability.total_cmp(&b.availability).then_with(|| a.device.cmp(&b.device)));
    Table {
        head: vec![w.device, w.kind, w.site, w.availability, w.downtime_h, w.outages, w.faults],
        rows: devices
            .into_iter()
            .map(|d| {
                vec![
                    d.device.clone(),
                    r.say(&format!("kind:{}", d.kind), &d.kind).to_string(),
                    d.site.clone(),
                    format!("{:.2}%", d.availability * 100.0),
                    format!("{:.2}", d.downtime_hours),
                    d.outages.to_string(),
                    d.faults.to_string(),
                ]
            })
            .collect(),
    }
}

/// Who the report is for: the customer's name and id, the site, or all customers.
fn customer_of(r: &Report, w: &Words) -> String {
    let who = match (&r.customer, &r.customer_name) {
        (Some(id), Some(name)) => format!("{name} ({id})"),
        (Some(id), None) => id.clone(),
        (None, _) => w.all.to_string(),
    };
    match &r.site {
        Some(site) => format!("{who}, {} {site}", w.site),
        None => who,
    }
}

/// "Customer satisfaction: 4.5 / 5 (12 surveys)".
fn satisfaction_line(r: &Report, w: &Words) -> Option<String> {
    let s = r.satisfaction.as_ref()?;
    Some(format!("{}: {:.1} / 5 ({} {})", w.satisfaction, s.mean, s.surveys, w.surveys))
}

/// The visits done, with every checklist answer (a measured one marked).
fn visit_table<'a>(r: &Report, w: &'a Words) -> Table<'a> {
    Table {
        head: vec![w.done, w.device, w.visit, w.by, w.checklist],
        rows: r
            .work_orders
            .iter()
            .filter(|o| o.state == crate::domain::VisitState::Done)
            .map(|o| {
                let answers = o.answers.as_ref().and_then(|a| a.as_object());
                let word = |x: &str| r.say(&format!("plan:{}:{}:{x}", o.contract, o.plan), x).to_string();
                let items: Vec<String> = o
                    .checklist
                    .iter()
                    .map(|i| {
                        let a = answers.and_then(|a| a.get(i)).map_or("–".into(), |v| answer_text(v, w.measured));
                        format!("{}: {a}", word(i))
                    })
                    .collect();
                vec![
                    o.completed_at.map_or_else(|| o.due_on.to_string(), |c| local_time(r, c)),
                    o.device.clone(),
                    word(&o.plan),
                    match &o.signed_by {
                        Some(signer) => {
                            format!("{} · {} {signer}", o.completed_by.as_deref().unwrap_or_default(), w.signed_by)
                        }
                        None => o.completed_by.clone().unwrap_or_default(),
                    },
                    {
                        let mut text = items.join("; ");
                        for d in &o.defects {
                            let task = d.ticket.map(|t| format!(" → #{t}")).unwrap_or_default();
                            text.push_str(&format!("; {}: {}{task}", w.defect, d.text));
                        }
                        text
                    },
                ]
            })
            .collect(),
    }
}

/// A checklist answer as text: a measured one shows its value and that it was measured.
pub fn answer_text(v: &serde_json::Value, measured: &str) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) if o.contains_key("value") => {
            let value = o.get("value").map(|v| answer_text(v, measured)).unwrap_or_default();
            if o.get("measured").and_then(|m| m.as_bool()) == Some(true) {
                format!("{value} ({measured})")
            } else {
                value
            }
        }
        other => other.to_string(),
    }
}

fn fault_table<'a>(r: &Report, w: &'a Words) -> Table<'a> {
    Table {
        head: vec![w.tier, w.kind, w.code, w.tickets, w.occurrences],
        rows: r
            .faults
            .iter()
            .map(|f| {
                vec![
                    f.tier.to_string(),
                    r.say(&format!("kind:{}", f.kind), &f.kind).to_string(),
                    format!("{} ({})", f.title, f.code),
                    f.tickets.to_string(),
                    f.occurrences.to_string(),
                ]
            })
            .collect(),
    }
}

fn sla_table<'a>(r: &Report, w: &'a Words) -> Table<'a> {
    let c = |c: &crate::tickets::sla::ClockCompliance| format!("{} {} / {} {}", c.met, w.met, c.missed, w.missed);
    let shown = crate::tickets::sla::shown(&r.sla);
    let mut head = vec![w.tier, w.tickets];
    head.extend(shown.iter().map(|i| w.clocks[*i]));
    Table {
        head,
        rows: r
            .sla
            .iter()
            .map(|t| {
                let clocks = t.clocks();
                let mut row = vec![t.tier.to_string(), t.tickets.to_string()];
                row.extend(shown.iter().map(|i| c(clocks[*i].1)));
                row
            })
            .collect(),
    }
}

fn open_table<'a>(r: &Report, w: &'a Words) -> Table<'a> {
    Table {
        head: vec!["#", w.device, w.code, w.tier, w.state, w.opened],
        rows: r
            .open_tickets
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.device.clone(),
                    r.say(&format!("code:{}", t.code), &t.code).to_string(),
                    t.tier.to_string(),
                    r.say(&format!("state:{}", t.state), &t.state).to_string(),
                    local_time(r, t.opened_at),
                ]
            })
            .collect(),
    }
}

fn warranty_table<'a>(r: &Report, w: &'a Words) -> Table<'a> {
    Table {
        head: vec![w.device, w.class, w.until],
        rows: r
            .warranties_expiring
            .iter()
            .map(|e| vec![e.device.clone(), e.class.clone(), e.until.to_string()])
            .collect(),
    }
}

/// The least available devices, for the availability chart.
fn worst(r: &Report, n: usize) -> Vec<Bar> {
    let mut v: Vec<&super::DeviceAvailability> = r.devices.iter().collect();
    v.sort_by(|a, b| a.availability.total_cmp(&b.availability).then_with(|| a.device.cmp(&b.device)));
    v.into_iter()
        .take(n)
        .map(|d| Bar {
            label: d.device.clone(),
            value: d.availability * 100.0,
            note: format!("{:.1}%", d.availability * 100.0),
        })
        .collect()
}

/// One bar per tier and clock that had a moment come, with its count: `97.5% (39/40)`.
fn sla_bars(r: &Report, w: &Words) -> Vec<Bar> {
    let mut rows = Vec::new();
    for t in &r.sla {
        for (i, (_, c)) in t.clocks().into_iter().enumerate() {
            let name = w.clocks[i];
            if let Some(sh) = c.share {
                rows.push(Bar {
                    label: format!("{} · {name}", w.tier_n.replace("{n}", &t.tier.to_string())),
                    value: sh * 100.0,
                    note: format!("{:.1}% ({}/{})", sh * 100.0, c.met, c.met + c.missed),
                });
            }
        }
    }
    rows
}

/// What people reported to the desk, by category and channel.
fn desk_table<'a>(r: &Report, w: &'a Words) -> Table<'a> {
    Table {
        head: vec![w.category, w.channel, w.tickets],
        rows: r
            .desk
            .reported
            .iter()
            .map(|x| {
                vec![
                    r.say(&format!("category:{}", x.category), &x.category).to_string(),
                    r.say(&format!("channel:{}", x.channel), &x.channel).to_string(),
                    x.tickets.to_string(),
                ]
            })
            .collect(),
    }
}

/// The satisfaction surveys answered, by engineer.
fn engineer_table<'a>(r: &Report, w: &'a Words) -> Table<'a> {
    Table {
        head: vec![w.engineer, w.mean_score, w.surveys],
        rows: r
            .desk
            .satisfaction_by_engineer
            .iter()
            .map(|e| vec![e.engineer.clone(), format!("{:.1}", e.mean), e.surveys.to_string()])
            .collect(),
    }
}

/// The desk's lines: complaints by grade, and the contacts answered in time.
fn desk_lines(r: &Report, w: &Words) -> Vec<String> {
    let d = &r.desk;
    let mut out = Vec::new();
    if !d.complaints.is_empty() {
        let grades: Vec<String> =
            d.complaints.iter().map(|(g, n)| format!("{} {n}", r.say(&format!("grade:{g}"), g))).collect();
        out.push(format!("{}: {}", w.complaints, grades.join(" · ")));
    }
    if d.contacts_counted {
        out.push(
            w.contacts_line
                .replace("{all}", &d.contacts.to_string())
                .replace("{in_time}", &d.contacts_answered_in_time.to_string())
                .replace("{open}", &d.contacts_open.to_string()),
        );
    }
    out
}

fn recurring_line(r: &Report, x: &super::Recurring, w: &Words) -> String {
    let subject = if x.by_model { format!("{} {}", w.model, x.subject) } else { x.subject.clone() };
    format!("{subject} – {}: {} {}", r.say(&format!("code:{}", x.code), &x.code), x.times, w.times_unit)
}
