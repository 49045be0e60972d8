//! A report as one HTML page, its charts inline.

use super::*;

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
        "<h1>{}</h1><p>{}: {}<br>{}: {}<br>{}: {} – {}",
        w.title,
        w.customer,
        esc(&customer),
        w.sites,
        esc(&r.sites.join(", ")),
        w.period,
        r.first_day,
        r.last_day,
    );
    if let Some(sup) = &r.supplier {
        let _ = write!(s, "<br>{}: {}", w.supplier, esc(sup));
    }
    let _ = write!(
        s,
        "<br>{}: {}<br>{}</p>",
        w.made,
        local_time(r, r.made_at),
        w.local_times.replace("{offset}", &r.utc_offset.to_string())
    );
    if let Some(day) = r.watched_since {
        let _ = write!(s, "<p><em>{}</em></p>", esc(&w.watched.replace("{day}", &day.to_string())));
    }
    let _ = write!(s, "<h2>{} {}</h2>", w.availability, pct(r.availability));
    s.push_str(&bars(&worst(r, 30), 100.0, "%", None, w));
    s.push_str(&html_table(&device_table(r, w)));
    let _ = write!(s, "<h2>{}</h2>", w.faults);
    s.push_str(&html_table(&fault_table(r, w)));
    let _ = write!(s, "<h3>{}</h3>{}", w.faults_over_time, weekly(&r.faults_by_week, w));
    let _ = write!(s, "<h2>{}</h2>", w.sla);
    s.push_str(&bars(&sla_bars(r, w), 100.0, "%", Some(r.sla_target * 100.0), w));
    s.push_str(&html_table(&sla_table(r, w)));
    let _ = write!(s, "<h2>{}</h2>", w.desk);
    if r.desk.reported.is_empty() {
        let _ = write!(s, "<p>{}</p>", w.no_desk);
    } else {
        s.push_str(&html_table(&desk_table(r, w)));
    }
    for line in desk_lines(r, w) {
        let _ = write!(s, "<p>{}</p>", esc(&line));
    }
    if !r.desk.satisfaction_by_engineer.is_empty() {
        s.push_str(&html_table(&engineer_table(r, w)));
    }
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
            let _ = write!(s, "<li>{}</li>", esc(&recurring_line(r, x, w)));
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
                format!("{} – {} ×{}", esc(&subject), esc(r.say(&format!("code:{}", x.code), &x.code)), x.times)
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
