//! A report as Typst markup, set as PDF by the `aftercare-pdf` child process.

use super::*;

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
    let mut s = format!("#table(columns: {}, fill: (_, y) => if y == 0 {{ luma(230) }}, table.header(", t.head.len());
    for h in &t.head {
        let _ = write!(s, " [*#{}*],", lit(h));
    }
    s.push_str("),");
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

/// The report as Typst markup: a cover (who, where, when, by whom), a one-page summary (the
/// figures against the contract's targets, the open items, the recommendations), then the
/// details, each heading kept with what follows it and each table's header repeated on the
/// pages it runs over; a footer with the page's number on every page but the cover.
pub fn markup(r: &Report, lang: Lang) -> String {
    let w = words(lang);
    let customer = customer_of(r, w);
    let period = format!("{} – {}", r.first_day, r.last_day);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "#set text(font: (\"DejaVu Sans\", \"Droid Sans Fallback\", \"Noto Sans CJK SC\", \"WenQuanYi Micro Hei\"), size: 9pt, lang: \"{}\")",
        if lang == Lang::Zh { "zh" } else { "en" }
    );
    let _ = writeln!(
        s,
        "#set page(paper: \"a4\", margin: (x: 1.6cm, top: 1.6cm, bottom: 2cm), footer: context [#set text(size: 7.5pt, fill: luma(100)); #{} #h(1fr) #counter(page).display(\"1 / 1\", both: true)])",
        lit(&format!("{} · {customer} · {period}", w.title))
    );
    s.push_str(
        "#show heading: set block(sticky: true, above: 1.4em, below: 0.7em)\n\
         #show heading.where(level: 1): set text(size: 15pt)\n\
         #show heading.where(level: 2): set text(size: 11.5pt)\n\
         #set table(stroke: 0.5pt + luma(170), inset: 4pt)\n\
         #set par(justify: false)\n",
    );
    // The cover.
    let mut facts = vec![(w.customer, customer.clone())];
    if !r.sites.is_empty() {
        facts.push((w.sites, r.sites.join(", ")));
    }
    facts.push((w.period, period.clone()));
    if let Some(sup) = &r.supplier {
        facts.push((w.supplier, sup.clone()));
    }
    facts.push((w.made, local_time(r, r.made_at)));
    let _ =
        write!(s, "#page(footer: none)[\n#v(6cm)\n#text(size: 24pt, weight: \"bold\")[#{}]\n#v(1.2cm)\n", lit(w.title));
    s.push_str("#grid(columns: (auto, 1fr), column-gutter: 1.2em, row-gutter: 0.9em,");
    for (k, v) in &facts {
        let _ = write!(s, " text(fill: luma(90))[#{}], text(size: 11pt)[#{}],", lit(k), lit(v));
    }
    s.push_str(")\n#v(1fr)\n");
    let _ = writeln!(
        s,
        "#text(size: 8pt, fill: luma(90))[#{}]\n]",
        lit(&w.local_times.replace("{offset}", &r.utc_offset.to_string()))
    );

    // The summary, on a page of its own.
    let _ = writeln!(s, "= #{}", lit(w.summary));
    if let Some(day) = r.watched_since {
        let _ = writeln!(s, "#text(size: 8pt)[#emph({})]\n", lit(&w.watched.replace("{day}", &day.to_string())));
    }
    let by_tier: Vec<u32> = r.sla.iter().map(|t| t.tickets).collect();
    let every = || r.sla.iter().flat_map(|t| t.clocks().map(|(_, c)| c));
    let missed: u32 = every().map(|c| c.missed).sum();
    let judged: u32 = every().map(|c| c.met).sum::<u32>() + missed;
    let share = (judged > 0).then(|| f64::from(judged - missed) / f64::from(judged));
    let ok = share.is_none_or(|x| x + 1e-9 >= r.sla_target);
    let tiles = [
        (
            w.availability.to_string(),
            pct(r.availability),
            format!("{} {}", r.devices.len(), w.devices_unit),
            "luma(40)",
        ),
        (
            w.faults_by_tier.to_string(),
            by_tier.iter().map(u32::to_string).collect::<Vec<_>>().join(" / "),
            [1, 2, 3].map(|n| w.tier_n.replace("{n}", &n.to_string())).join(" / "),
            "luma(40)",
        ),
        (
            w.share_met.to_string(),
            pct(share),
            format!("{} {:.0}%", w.target, r.sla_target * 100.0),
            if ok { "rgb(\"#2e7d32\")" } else { "rgb(\"#c62828\")" },
        ),
        (
            w.open_tickets.to_string(),
            r.open_tickets.len().to_string(),
            format!("{} {}", w.open_visits, r.visits.open),
            "luma(40)",
        ),
    ];
    s.push_str("#grid(columns: (1fr, 1fr, 1fr, 1fr), column-gutter: 8pt,");
    for (label, value, sub, colour) in &tiles {
        let _ = write!(
            s,
            " block(width: 100%, inset: 8pt, radius: 3pt, stroke: 0.5pt + luma(170))[#text(size: 8pt, fill: luma(90))[#{}] \\ #text(size: 16pt, weight: \"bold\", fill: {colour})[#{}] \\ #text(size: 7.5pt)[#{}]],",
            lit(label),
            lit(value),
            lit(sub)
        );
    }
    s.push_str(")\n");
    let clocks = sla_bars(r, w);
    if !clocks.is_empty() {
        s.push_str(&charted(2, w.sla, &bars(&clocks, 100.0, "%", Some(r.sla_target * 100.0), w)));
    }
    let _ = writeln!(s, "== #{}", lit(w.open_items));
    let num = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.1}"));
    for line in [
        format!("{}: {}", w.open_tickets, r.open_tickets.len()),
        format!("{}: {} · {}: {}", w.missed_visits, r.visits.missed, w.open_visits, r.visits.open),
        format!("{}: {}", w.warranties, r.warranties_expiring.len()),
        format!("{}: {} · {}: {}", w.mtta, num(r.mtta_minutes), w.mttr, num(r.mttr_hours)),
    ] {
        let _ = writeln!(s, "- #{}", lit(&line));
    }
    if let Some(line) = satisfaction_line(r, w) {
        let _ = writeln!(s, "- #{}", lit(&line));
    }
    let _ = writeln!(s, "== #{}", lit(w.recommendations));
    if r.recommendations.is_empty() {
        let _ = writeln!(s, "#{}\n", lit(w.none));
    }
    for x in r.recommendations.iter().take(12) {
        let _ = writeln!(s, "- #{}", lit(x));
    }
    s.push_str("#pagebreak(weak: true)\n");

    // The details.
    let _ = writeln!(s, "= #{}", lit(w.details));
    let _ = writeln!(s, "== #{}", lit(&format!("{} {}", w.availability, pct(r.availability))));
    s.push_str(&charted(3, w.least_available, &bars(&worst(r, 20), 100.0, "%", None, w)));
    s.push_str(&typst_table(&device_table(r, w), PDF_ROWS, w));
    let _ = writeln!(s, "== #{}", lit(w.faults));
    s.push_str(&typst_table(&fault_table(r, w), PDF_ROWS, w));
    if !r.faults_by_week.is_empty() {
        s.push_str(&charted(3, w.faults_over_time, &weekly(&r.faults_by_week, w)));
    }
    let _ = writeln!(s, "== #{}", lit(w.sla));
    s.push_str(&typst_table(&sla_table(r, w), PDF_ROWS, w));
    let _ = writeln!(s, "== #{}", lit(w.desk));
    if r.desk.reported.is_empty() {
        let _ = writeln!(s, "#{}\n", lit(w.no_desk));
    } else {
        s.push_str(&typst_table(&desk_table(r, w), PDF_ROWS, w));
    }
    for line in desk_lines(r, w) {
        let _ = writeln!(s, "#{}\n", lit(&line));
    }
    if !r.desk.satisfaction_by_engineer.is_empty() {
        s.push_str(&typst_table(&engineer_table(r, w), PDF_ROWS, w));
    }
    let _ = writeln!(s, "== #{}", lit(&format!("{} ({})", w.open_tickets, r.open_tickets.len())));
    if r.open_tickets.is_empty() {
        let _ = writeln!(s, "#{}\n", lit(w.none));
    } else {
        s.push_str(&typst_table(&open_table(r, w), PDF_ROWS, w));
    }
    let _ = writeln!(s, "== #{}", lit(w.recurring));
    let items: Vec<String> = r.recurring.iter().take(30).map(|x| recurring_line(r, x, w)).collect();
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
    // The sign-off, whole on one page.
    let _ = write!(s, "#block(breakable: false)[\n== #{}\n", lit(w.sign_off));
    let _ = write!(s, "#table(columns: (auto, 1fr, 1.4fr, 0.8fr), rows: (auto, 2.4em, 2.4em, 2.4em), [],");
    for h in w.name_sign_date {
        let _ = write!(s, " [*#{}*],", lit(h));
    }
    for role in w.roles {
        let _ = write!(s, " {}, [], [], [],", lit(role));
    }
    s.push_str(")\n]\n");
    s
}
