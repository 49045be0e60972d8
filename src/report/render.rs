//! Reports as JSON, CSV (one row per device) or HTML with SVG charts, in
//! English or Chinese.

use std::fmt::Write as _;

use super::{Lang, Report};

/// The words of a report, per language.
struct Words {
    title: &'static str,
    period: &'static str,
    customer: &'static str,
    all: &'static str,
    availability: &'static str,
    device: &'static str,
    kind: &'static str,
    site: &'static str,
    downtime_h: &'static str,
    outages: &'static str,
    faults: &'static str,
    tier: &'static str,
    code: &'static str,
    tickets: &'static str,
    occurrences: &'static str,
    faults_over_time: &'static str,
    sla: &'static str,
    acknowledge: &'static str,
    on_site: &'static str,
    resolve: &'static str,
    met: &'static str,
    missed: &'static str,
    mtta: &'static str,
    mttr: &'static str,
    open_tickets: &'static str,
    state: &'static str,
    opened: &'static str,
    /// "All times are … (UTC{offset})".
    local_times: &'static str,
    recurring: &'static str,
    model: &'static str,
    times: &'static str,
    visits: &'static str,
    due: &'static str,
    done: &'static str,
    open: &'static str,
    checklist: &'static str,
    warranties: &'static str,
    class: &'static str,
    until: &'static str,
    recommendations: &'static str,
    none: &'static str,
    windows: [&'static str; 3],
    visit: &'static str,
    by: &'static str,
    satisfaction: &'static str,
    surveys: &'static str,
    /// The sign-off block: its heading, the three roles, and the columns to fill in.
    /// "Watched since {day}: …"
    watched: &'static str,
    sign_off: &'static str,
    roles: [&'static str; 3],
    name_sign_date: [&'static str; 3],
    measured: &'static str,
    /// "{shown} of {all} rows shown…"
    cut: &'static str,
}

const EN: Words = Words {
    title: "After-sales service report",
    period: "Period",
    customer: "Customer",
    all: "all customers",
    availability: "Availability",
    device: "Device",
    kind: "Kind",
    site: "Site",
    downtime_h: "Downtime (h)",
    outages: "Outages",
    faults: "Faults",
    tier: "Tier",
    code: "Fault",
    tickets: "Tickets",
    occurrences: "Occurrences",
    faults_over_time: "Faults per week",
    sla: "Response and resolution against the contract",
    acknowledge: "Acknowledge",
    on_site: "On site",
    resolve: "Resolve",
    met: "met",
    missed: "missed",
    mtta: "Mean time to acknowledge (min)",
    mttr: "Mean time to resolve (h)",
    open_tickets: "Open tickets",
    state: "State",
    opened: "Opened (site time)",
    local_times: "Times are the site's local time (UTC{offset}).",
    recurring: "Recurring problems",
    model: "model",
    times: "Times",
    visits: "Visits",
    due: "Due",
    done: "Done",
    open: "Open",
    checklist: "Checklist",
    warranties: "Warranties ending in the next 90 days",
    class: "Component",
    until: "Until",
    recommendations: "Recommendations",
    none: "None",
    windows: ["Last month", "Last quarter", "Last year"],
    visit: "Visit",
    by: "By",
    satisfaction: "Customer satisfaction",
    surveys: "surveys",
    watched: "aftercare has watched these devices since {day}. It knows nothing of them before that day: no faults are counted there, and the time is counted as available.",
    sign_off: "Sign-off",
    roles: ["Prepared by (service engineer)", "Approved by (service manager)", "Received by (customer)"],
    name_sign_date: ["Name", "Signature", "Date"],
    measured: "measured",
    cut: "{shown} of {all} rows shown, the first in the order above; the CSV and JSON renderings carry them all.",
};

const ZH: Words = Words {
    title: "售后服务报告",
    period: "报告期间",
    customer: "客户",
    all: "全部客户",
    availability: "设备可用率",
    device: "设备",
    kind: "类型",
    site: "站点",
    downtime_h: "停机时长（小时）",
    outages: "停机次数",
    faults: "故障统计",
    tier: "等级",
    code: "故障",
    tickets: "工单数",
    occurrences: "发生次数",
    faults_over_time: "每周故障",
    sla: "响应与修复时限达标情况",
    acknowledge: "响应",
    on_site: "到场",
    resolve: "修复",
    met: "达标",
    missed: "超时",
    mtta: "平均响应时间（分钟）",
    mttr: "平均修复时间（小时）",
    open_tickets: "未结工单",
    state: "状态",
    opened: "开单时间（当地）",
    local_times: "文中时间均为站点当地时间（UTC{offset}）。",
    recurring: "重复故障",
    model: "型号",
    times: "次数",
    visits: "巡检与回访",
    due: "应做",
    done: "已完成",
    open: "待完成",
    checklist: "检查项",
    warranties: "90天内到期的保修",
    class: "部件",
    until: "截止日期",
    recommendations: "建议",
    none: "无",
    windows: ["近一个月", "近一个季度", "近一年"],
    visit: "服务项目",
    by: "执行人",
    satisfaction: "客户满意度",
    surveys: "份回访",
    watched: "aftercare 自 {day} 起监测这些设备。此前情况未知：该段时间未计入故障，并按可用计算。",
    sign_off: "签字确认",
    roles: ["编制（服务工程师）", "审核（服务经理）", "客户确认"],
    name_sign_date: ["姓名", "签字", "日期"],
    measured: "实测",
    cut: "共 {all} 行，此处按上表顺序列出前 {shown} 行；CSV 与 JSON 版本列出全部。",
};

fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    }
}

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
                format!("设备 {} 的故障 {} 重复发生 {} 次：请技术部分析根本原因。", x.subject, x.code, x.times)
            }
            (true, true) => {
                format!("型号 {} 的多台设备出现故障 {} 共 {} 次：请评估批次问题。", x.subject, x.code, x.times)
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
    let missed: u32 = r.sla.iter().map(|t| t.acknowledge.missed + t.on_site.missed + t.resolve.missed).sum();
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

/// One CSV row per device.
pub fn csv(r: &Report) -> String {
    let mut out = String::from("device,name,kind,site,model,availability,downtime_hours,outages,faults\n");
    let q = |s: &str| {
        if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
    };
    for d in &r.devices {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.6},{:.3},{},{}",
            q(&d.device),
            q(&d.name),
            q(&d.kind),
            q(&d.site),
            q(&d.model),
            d.availability,
            d.downtime_hours,
            d.outages,
            d.faults
        );
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

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
                    d.kind.clone(),
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
                let items: Vec<String> = o
                    .checklist
                    .iter()
                    .map(|i| {
                        let a = answers.and_then(|a| a.get(i)).map_or("–".into(), |v| answer_text(v, w.measured));
                        format!("{i}: {a}")
                    })
                    .collect();
                vec![
                    o.completed_at.map_or_else(|| o.due_on.to_string(), |c| local_time(r, c)),
                    o.device.clone(),
                    o.plan.clone(),
                    o.completed_by.clone().unwrap_or_default(),
                    items.join("; "),
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
                    f.kind.clone(),
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
    Table {
        head: vec![w.tier, w.tickets, w.acknowledge, w.on_site, w.resolve],
        rows: r
            .sla
            .iter()
            .map(|t| vec![t.tier.to_string(), t.tickets.to_string(), c(&t.acknowledge), c(&t.on_site), c(&t.resolve)])
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
                    t.code.clone(),
                    t.tier.to_string(),
                    t.state.clone(),
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
fn worst(r: &Report, n: usize) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = r.devices.iter().map(|d| (d.device.clone(), d.availability * 100.0)).collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1));
    v.truncate(n);
    v
}

/// One bar per tier and clock that had a moment come.
fn sla_bars(r: &Report, w: &Words) -> Vec<(String, f64)> {
    let mut rows = Vec::new();
    for t in &r.sla {
        for (name, c) in [(w.acknowledge, &t.acknowledge), (w.on_site, &t.on_site), (w.resolve, &t.resolve)] {
            if let Some(sh) = c.share {
                rows.push((format!("{} {} {}", w.tier, t.tier, name), sh * 100.0));
            }
        }
    }
    rows
}

fn recurring_line(x: &super::Recurring, w: &Words) -> String {
    let subject = if x.by_model { format!("{} {}", w.model, x.subject) } else { x.subject.clone() };
    format!("{subject} – {}: {} {}", x.code, x.times, w.times)
}

fn html_table(t: &Table<'_>) -> String {
    let mut s = String::from("<table><tr>");
    for h in &t.head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for r in &t.rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// The report as one self-contained HTML page.
pub fn html(r: &Report, lang: Lang) -> String {
    let w = words(lang);
    let mut s = String::new();
    let customer = customer_of(r, w);
    let _ = write!(
        s,
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{} – {}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}</style></head><body>",
        if lang == Lang::Zh { "zh-CN" } else { "en" },
        w.title,
        esc(&customer)
    );
    let _ = write!(
        s,
        "<h1>{}</h1><p>{}: {}<br>{}: {} – {}<br>{}</p>",
        w.title,
        w.customer,
        esc(&customer),
        w.period,
        r.first_day,
        r.last_day,
        w.local_times.replace("{offset}", &r.utc_offset.to_string())
    );
    if let Some(day) = r.watched_since {
        let _ = write!(s, "<p><em>{}</em></p>", esc(&w.watched.replace("{day}", &day.to_string())));
    }
    let _ = write!(s, "<h2>{} {}</h2>", w.availability, pct(r.availability));
    s.push_str(&bars(&worst(r, 30), 100.0, "%"));
    s.push_str(&html_table(&device_table(r, w)));
    let _ = write!(s, "<h2>{}</h2>", w.faults);
    s.push_str(&html_table(&fault_table(r, w)));
    let _ = write!(s, "<h3>{}</h3>{}", w.faults_over_time, weekly(&r.faults_by_week));
    let _ = write!(s, "<h2>{}</h2>", w.sla);
    s.push_str(&bars(&sla_bars(r, w), 100.0, "%"));
    s.push_str(&html_table(&sla_table(r, w)));
    let num = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.1}"));
    let _ = write!(s, "<p>{}: {}<br>{}: {}</p>", w.mtta, num(r.mtta_minutes), w.mttr, num(r.mttr_hours));
    let _ = write!(s, "<h2>{} ({})</h2>", w.open_tickets, r.open_tickets.len());
    if !r.open_tickets.is_empty() {
        s.push_str(&html_table(&open_table(r, w)));
    }
    let _ = write!(s, "<h2>{}</h2>", w.recurring);
    if r.recurring.is_empty() {
        let _ = write!(s, "<p>{}</p>", w.none);
    } else {
        s.push_str("<ul>");
        for x in &r.recurring {
            let _ = write!(s, "<li>{}</li>", esc(&recurring_line(x, w)));
        }
        s.push_str("</ul>");
    }
    for (i, win) in r.recurring_windows.iter().enumerate() {
        let label = w.windows.get(i).copied().unwrap_or("");
        let items: Vec<String> = win
            .recurring
            .iter()
            .take(10)
            .map(|x| {
                let subject = if x.by_model { format!("{} {}", w.model, x.subject) } else { x.subject.clone() };
                format!("{} – {} ×{}", esc(&subject), esc(&x.code), x.times)
            })
            .collect();
        let list = if items.is_empty() { w.none.to_string() } else { items.join("; ") };
        let _ = write!(s, "<p>{label} ({}): {list}</p>", win.recurring.len());
    }
    let v = &r.visits;
    let _ = write!(
        s,
        "<h2>{}</h2><p>{}: {} · {}: {} · {}: {} · {}: {}</p>",
        w.visits, w.due, v.due, w.done, v.done, w.missed, v.missed, w.open, v.open
    );
    if let Some(line) = satisfaction_line(r, w) {
        let _ = write!(s, "<p>{}</p>", esc(&line));
    }
    let visits = visit_table(r, w);
    if !visits.rows.is_empty() {
        s.push_str(&html_table(&visits));
    }
    let _ = write!(s, "<h2>{}</h2>", w.warranties);
    if r.warranties_expiring.is_empty() {
        let _ = write!(s, "<p>{}</p>", w.none);
    } else {
        s.push_str(&html_table(&warranty_table(r, w)));
    }
    let _ = write!(s, "<h2>{}</h2>", w.recommendations);
    if r.recommendations.is_empty() {
        let _ = write!(s, "<p>{}</p>", w.none);
    } else {
        s.push_str("<ul>");
        for x in &r.recommendations {
            let _ = write!(s, "<li>{}</li>", esc(x));
        }
        s.push_str("</ul>");
    }
    let _ = write!(s, "<h2>{}</h2><table><tr><th></th>", w.sign_off);
    for h in w.name_sign_date {
        let _ = write!(s, "<th>{h}</th>");
    }
    s.push_str("</tr>");
    for role in w.roles {
        let _ = write!(
            s,
            "<tr><td>{role}</td><td style=\"width:10em;height:2.5em\"></td><td style=\"width:12em\"></td><td style=\"width:7em\"></td></tr>"
        );
    }
    s.push_str("</table>");
    s.push_str("</body></html>");
    s
}

/// A Typst string literal: the text, escaped, on one line.
fn lit(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A table in Typst, at most `max` rows: a header row and rows of cells, every cell a string.
/// Rows a PDF table holds: a service manager reads the worst first; the CSV and JSON hold all.
const PDF_ROWS: usize = 500;

/// A table set by Typst, cut at `max` rows with a note that says so.
fn typst_table(t: &Table<'_>, max: usize, w: &Words) -> String {
    let mut s = format!("#table(columns: {}, fill: (_, y) => if y == 0 {{ luma(230) }},", t.head.len());
    for h in &t.head {
        let _ = write!(s, " [*#{}*],", lit(h));
    }
    for r in t.rows.iter().take(max) {
        for c in r {
            let _ = write!(s, " {},", lit(c));
        }
    }
    s.push_str(")\n");
    if t.rows.len() > max {
        let note = w.cut.replace("{shown}", &max.to_string()).replace("{all}", &t.rows.len().to_string());
        let _ = writeln!(s, "#emph({})\n", lit(&note));
    }
    s
}

/// The width of the page's text on A4 with the margins below, in points.
const TEXT_WIDTH_PT: f64 = 500.0;

/// An SVG chart at its own size (a pixel is 0.75 pt), never wider than the text: a chart of one
/// bar stays one bar high instead of being scaled up to fill a page.
fn image(svg: &str) -> String {
    let attr = |name: &str| {
        svg.split(&format!(" {name}=\"")).nth(1).and_then(|r| r.split('"').next()).and_then(|v| v.parse::<f64>().ok())
    };
    let width = (attr("width").unwrap_or(640.0) * 0.75).min(TEXT_WIDTH_PT);
    format!("#image(bytes({}), format: \"svg\", width: {width:.0}pt)\n", lit(svg))
}

/// A heading with its chart, on one page.
fn charted(level: usize, heading: &str, svg: &str) -> String {
    format!("#block(breakable: false)[\n{} #{}\n{}]\n", "=".repeat(level), lit(heading), image(svg))
}

/// The fonts a PDF report is set in: a Latin face and one with Chinese glyphs. Font files come
/// from AFTERCARE_REPORT_FONTS (colon-separated), else from where Debian's fonts-dejavu-core and
/// fonts-droid-fallback (or fonts-noto-cjk, fonts-wqy-microhei) put them.
pub fn fonts() -> Result<Vec<std::path::PathBuf>, String> {
    use std::path::PathBuf;
    if let Some(v) =
        std::env::var("AFTERCARE_REPORT_FONTS").ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    {
        let files: Vec<PathBuf> = v.split(':').map(PathBuf::from).collect();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(format!("AFTERCARE_REPORT_FONTS: {} is not a file", missing.display()));
        }
        return Ok(files);
    }
    const CJK: [&str; 3] = [
        "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    ];
    let cjk = CJK.iter().map(PathBuf::from).find(|p| p.is_file()).ok_or_else(|| {
        "no font with Chinese glyphs for the PDF: install fonts-droid-fallback (or fonts-noto-cjk), \
         or name font files in AFTERCARE_REPORT_FONTS"
            .to_string()
    })?;
    let mut out: Vec<PathBuf> = Some(PathBuf::from("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
        .filter(|p| p.is_file())
        .into_iter()
        .collect();
    out.push(cjk);
    Ok(out)
}

/// The program that sets Typst markup as PDF: AFTERCARE_PDF, else `aftercare-pdf` beside this
/// program (or a folder up, for a test binary in `target/*/deps`), else on the PATH.
fn typesetter() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("AFTERCARE_PDF").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let name = format!("aftercare-pdf{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().ok();
    let dirs = exe.iter().flat_map(|e| e.ancestors().skip(1).take(2));
    dirs.map(|d| d.join(&name)).find(|p| p.is_file()).unwrap_or_else(|| name.into())
}

/// A PDF set takes this long at most (a 500-device report takes well under a second).
const TYPESET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Sets Typst markup as PDF in the fonts given, in a child process (`aftercare-pdf`).
pub async fn typeset(markup: String, fonts: &[std::path::PathBuf]) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncWriteExt;
    let tool = typesetter();
    let mut cmd = tokio::process::Command::new(&tool);
    for f in fonts {
        cmd.arg("--font").arg(f);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "PDF reports need the program {} ({e}); build it with `cargo build --release -p aftercare-pdf` \
                 and keep it beside aftercare, or name it in AFTERCARE_PDF",
                tool.display()
            )
        })?;
    let mut stdin = child.stdin.take().ok_or("no pipe to the typesetter")?;
    let feed = async move {
        let r = stdin.write_all(markup.as_bytes()).await;
        drop(stdin);
        r
    };
    let run = async {
        let (fed, out) = tokio::join!(feed, child.wait_with_output());
        let out = out.map_err(|e| format!("the typesetter failed: {e}"))?;
        if !out.status.success() {
            return Err(format!("the typesetter failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        fed.map_err(|e| format!("feeding the typesetter: {e}"))?;
        Ok(out.stdout)
    };
    tokio::time::timeout(TYPESET_TIMEOUT, run)
        .await
        .map_err(|_| "the typesetter took more than 2 minutes".to_string())?
}

/// The report as a PDF, set with Typst in the given fonts; the charts are the HTML's SVG.
pub async fn pdf(r: &Report, lang: Lang, fonts: &[std::path::PathBuf]) -> Result<Vec<u8>, String> {
    typeset(markup(r, lang), fonts).await
}

/// The report as Typst markup.
pub fn markup(r: &Report, lang: Lang) -> String {
    let w = words(lang);
    let customer = customer_of(r, w);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "#set page(paper: \"a4\", margin: 1.6cm)\n#set text(font: (\"DejaVu Sans\", \"Droid Sans Fallback\", \"Noto Sans CJK SC\", \"WenQuanYi Micro Hei\"), size: 9pt, lang: \"{}\")",
        if lang == Lang::Zh { "zh" } else { "en" }
    );
    let _ = writeln!(s, "= #{}", lit(w.title));
    let _ = writeln!(
        s,
        "#{}\n\n#{}\n\n#{}\n",
        lit(&format!("{}: {customer}", w.customer)),
        lit(&format!("{}: {} – {}", w.period, r.first_day, r.last_day)),
        lit(&w.local_times.replace("{offset}", &r.utc_offset.to_string()))
    );
    if let Some(day) = r.watched_since {
        let _ = writeln!(s, "#emph({})\n", lit(&w.watched.replace("{day}", &day.to_string())));
    }
    s.push_str(&charted(2, &format!("{} {}", w.availability, pct(r.availability)), &bars(&worst(r, 20), 100.0, "%")));
    s.push_str(&typst_table(&device_table(r, w), PDF_ROWS, w));
    let _ = writeln!(s, "== #{}", lit(w.faults));
    s.push_str(&typst_table(&fault_table(r, w), PDF_ROWS, w));
    if !r.faults_by_week.is_empty() {
        s.push_str(&charted(3, w.faults_over_time, &weekly(&r.faults_by_week)));
    }
    let clocks = sla_bars(r, w);
    if clocks.is_empty() {
        let _ = writeln!(s, "== #{}", lit(w.sla));
    } else {
        s.push_str(&charted(2, w.sla, &bars(&clocks, 100.0, "%")));
    }
    s.push_str(&typst_table(&sla_table(r, w), PDF_ROWS, w));
    let num = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.1}"));
    let _ = writeln!(
        s,
        "#{}\n\n#{}\n",
        lit(&format!("{}: {}", w.mtta, num(r.mtta_minutes))),
        lit(&format!("{}: {}", w.mttr, num(r.mttr_hours)))
    );
    let _ = writeln!(s, "== #{}", lit(&format!("{} ({})", w.open_tickets, r.open_tickets.len())));
    if !r.open_tickets.is_empty() {
        s.push_str(&typst_table(&open_table(r, w), PDF_ROWS, w));
    }
    let _ = writeln!(s, "== #{}", lit(w.recurring));
    let items: Vec<String> = r.recurring.iter().take(30).map(|x| recurring_line(x, w)).collect();
    if items.is_empty() {
        let _ = writeln!(s, "#{}\n", lit(w.none));
    }
    for i in items {
        let _ = writeln!(s, "- #{}", lit(&i));
    }
    let v = &r.visits;
    let _ = writeln!(
        s,
        "== #{}\n#{}\n",
        lit(w.visits),
        lit(&format!(
            "{}: {} · {}: {} · {}: {} · {}: {}",
            w.due, v.due, w.done, v.done, w.missed, v.missed, w.open, v.open
        ))
    );
    if let Some(line) = satisfaction_line(r, w) {
        let _ = writeln!(s, "#{}\n", lit(&line));
    }
    let visits = visit_table(r, w);
    if !visits.rows.is_empty() {
        s.push_str(&typst_table(&visits, PDF_ROWS, w));
    }
    let _ = writeln!(s, "== #{}", lit(w.warranties));
    if r.warranties_expiring.is_empty() {
        let _ = writeln!(s, "#{}\n", lit(w.none));
    } else {
        s.push_str(&typst_table(&warranty_table(r, w), PDF_ROWS, w));
    }
    let _ = writeln!(s, "== #{}", lit(w.recommendations));
    if r.recommendations.is_empty() {
        let _ = writeln!(s, "#{}\n", lit(w.none));
    }
    for x in &r.recommendations {
        let _ = writeln!(s, "- #{}", lit(x));
    }
    let _ = writeln!(s, "== #{}", lit(w.sign_off));
    let _ = write!(s, "#table(columns: (auto, 1fr, 1.4fr, 0.8fr), rows: (auto, 2.2em, 2.2em, 2.2em), [],");
    for h in w.name_sign_date {
        let _ = write!(s, " [*#{}*],", lit(h));
    }
    for role in w.roles {
        let _ = write!(s, " {}, [], [], [],", lit(role));
    }
    s.push_str(")\n");
    s
}
