//! Service reports as a customer gets them: PDFs set by the real typesetter, rendered page by
//! page with poppler (pdftoppm, pdftotext) and looked at as pictures and as text.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::harness::*;

/// A contract whose clocks some tickets meet and some miss, with a target and a supplier.
const CONTRACT: &str = r#"
[contracts.pdf]
customer = "cust-1"
title = "Lighting service"
supplier = { en = "Bright Service Ltd", zh-CN = "明亮服务有限公司" }
sla_target = 0.9
starts = "2020-01-01"
[contracts.pdf.tier1]
acknowledge = "2s"
resolve = "4s"
[contracts.pdf.tier2]
acknowledge = "1h"
resolve = "1h"
[contracts.pdf.tier3]
acknowledge = "1h"
resolve = "24h"
"#;

/// Whether poppler's tools are here (`.ci/run` installs them); with AFTERCARE_TEST_REQUIRE_PEERS
/// their absence fails.
fn poppler() -> bool {
    let here =
        Command::new("pdftoppm").arg("-v").output().is_ok() && Command::new("pdftotext").arg("-v").output().is_ok();
    if !here && std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_some() {
        panic!("pdftoppm and pdftotext (poppler-utils) are needed");
    }
    here
}

/// The share of a page's pixels with ink on them, from a gray PGM as pdftoppm writes it.
fn ink(pgm: &Path) -> f64 {
    let (_, _, pixels) = pixels(pgm);
    pixels.iter().filter(|p| **p < 160).count() as f64 / pixels.len() as f64
}

/// The text of page `n`, line by line, without the footer (its last line).
fn page_text(pdf: &Path, n: usize) -> Vec<String> {
    let out = Command::new("pdftotext")
        .args(["-layout", "-f", &n.to_string(), "-l", &n.to_string()])
        .arg(pdf)
        .arg("-")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if n > 1 {
        let footer = lines.pop().unwrap_or_default();
        assert!(footer.replace(' ', "").contains(&format!("{n}/")), "page {n}'s footer: {footer:?}");
    }
    lines
}

/// A change sent again while the API says it comes too fast (429); its answer, which must
/// have `status`.
async fn paced(request: impl Fn() -> reqwest::RequestBuilder, status: u16) -> serde_json::Value {
    for _ in 0..60 {
        let r = request().send().await.unwrap();
        if r.status().as_u16() == 429 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            continue;
        }
        assert_eq!(r.status().as_u16(), status);
        return r.json().await.unwrap();
    }
    panic!("still too fast after 30 s");
}

/// The gray pixels of a PGM (P5) and its width and height.
fn pixels(pgm: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(pgm).unwrap();
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..i]).to_string());
    }
    assert_eq!(fields[0], "P5");
    (fields[1].parse().unwrap(), fields[2].parse().unwrap(), bytes[i + 1..].to_vec())
}

/// The cover and the summary of `pdf` look like the reference pictures in tests/reports/
/// (`NAME-1.pgm`, `NAME-2.pgm`): no more than 0.6 % of their pixels differ by more than a
/// quarter of the gray scale (the day of the period and of the making may differ). With
/// AFTERCARE_BLESS_REPORTS=1 the pictures are written instead.
fn look_alike(pdf: &Path, name: &str, scratch: &Path) {
    let refs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reports");
    let prefix = scratch.join(format!("look-{name}"));
    let st = Command::new("pdftoppm").args(["-gray", "-r", "30", "-f", "1", "-l", "2"]).arg(pdf).arg(&prefix).status();
    assert!(st.unwrap().success());
    for page in 1..=2 {
        let made = scratch.join(format!("look-{name}-{page}.pgm"));
        let reference = refs.join(format!("{name}-{page}.pgm"));
        if std::env::var_os("AFTERCARE_BLESS_REPORTS").is_some() {
            std::fs::create_dir_all(&refs).unwrap();
            std::fs::copy(&made, &reference).unwrap();
            continue;
        }
        let (w1, h1, a) = pixels(&made);
        let (w2, h2, b) = pixels(&reference);
        assert_eq!((w1, h1), (w2, h2), "{name} page {page}: the page's size");
        let differ = a.iter().zip(&b).filter(|(x, y)| x.abs_diff(**y) > 64).count();
        let share = differ as f64 / a.len() as f64;
        assert!(
            share < 0.006,
            "{name} page {page} differs from {} in {:.1} % of its pixels: {}",
            reference.display(),
            share * 100.0,
            made.display()
        );
    }
}

/// The headings of the report's sections, in both languages.
const HEADINGS: &[&str] = &[
    "Summary",
    "Details",
    "Open items",
    "Recommendations",
    "Faults",
    "Recurring problems",
    "Visits",
    "Sign-off",
    "Response and resolution against the contract",
    "The least available devices",
    "Faults per week",
    "Service desk",
    "摘要",
    "详细情况",
    "待办事项",
    "建议",
    "故障统计",
    "重复故障",
    "巡检与回访",
    "签字确认",
    "响应与修复时限达标情况",
    "可用率最低的设备",
    "每周故障",
    "服务台",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdf_reports_have_a_cover_a_summary_and_no_blank_page_or_lone_heading_in_either_language() {
    if !poppler() {
        return;
    }
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-pages");
    std::fs::create_dir_all(&out_dir).unwrap();
    for devices in [1usize, 30, 500] {
        let ids: Vec<String> = (0..devices).map(|i| format!("lit-{i:03}:lighting")).collect();
        let fleet: Vec<&str> = ids.iter().map(String::as_str).collect();
        let broker = Broker::Embedded;
        let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", &broker);
        let path = dir.path().join("aftercare.toml");
        std::fs::write(&path, std::fs::read_to_string(&path).unwrap() + CONTRACT).unwrap();
        let d = Daemon::start(dir, &prefix, &broker);
        // Tickets on up to 60 devices, a third of each tier; every other one acknowledged at
        // once, so that some clocks are met and some missed.
        for i in 0..devices.min(60) {
            let call = json!({"channel": "phone", "category": "fault", "customer": "cust-1",
                "device": format!("lit-{i:03}"), "tier": i % 3 + 1, "problem": format!("lamp {i} out")});
            let t = paced(|| api().post(d.url("/api/v1/tickets")).json(&call), 201).await;
            if i % 2 == 0 {
                let url = d.url(&format!("/api/v1/tickets/{}/transition", t["id"]));
                paced(|| api().post(&url).json(&json!({"to": "acknowledged"})), 200).await;
            }
        }
        // The tier 1 clocks run out (2 s) before the report is made.
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        for lang in ["en", "zh-CN"] {
            let url = d.url(&format!("/api/v1/reports?customer=cust-1&format=pdf&lang={lang}"));
            let r = api().get(url).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
            assert!(r.headers()["content-disposition"].to_str().unwrap().contains("report-cust-1-"));
            let pdf = out_dir.join(format!("report-{devices}-{lang}.pdf"));
            std::fs::write(&pdf, r.bytes().await.unwrap()).unwrap();
            let prefix = out_dir.join(format!("report-{devices}-{lang}"));
            for old in std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().path()) {
                let name = old.file_name().unwrap().to_string_lossy().to_string();
                if name.starts_with(&format!("report-{devices}-{lang}-")) {
                    std::fs::remove_file(&old).unwrap();
                }
            }
            let st = Command::new("pdftoppm").args(["-gray", "-r", "40"]).arg(&pdf).arg(&prefix).status().unwrap();
            assert!(st.success());
            let mut pages: Vec<PathBuf> = std::fs::read_dir(&out_dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().to_string();
                    name.starts_with(&format!("report-{devices}-{lang}-")) && name.ends_with(".pgm")
                })
                .collect();
            pages.sort();
            assert!(pages.len() >= 3, "{devices} devices, {lang}: a cover, a summary and the details: {pages:?}");
            let what = format!("{devices} devices, {lang}");
            for (i, page) in pages.iter().enumerate() {
                let n = i + 1;
                let share = ink(page);
                assert!(share > 0.002, "{what}: page {n} is (nearly) blank: {share:.4} of it inked");
                let lines = page_text(&pdf, n);
                let last = lines.last().cloned().unwrap_or_default();
                assert!(
                    !HEADINGS.iter().any(|h| last.starts_with(h)) || n == pages.len(),
                    "{what}: page {n} ends with the heading {last:?}"
                );
                assert!(!lines.is_empty(), "{what}: page {n} has no text");
            }
            // The cover: who, where, when and by whom, and nothing of the details.
            let cover = page_text(&pdf, 1).join("\n");
            let (supplier, title) = if lang == "en" {
                ("Bright Service Ltd", "After-sales service report")
            } else {
                ("明亮服务有限公司", "售后服务报告")
            };
            assert!(cover.contains(title) && cover.contains(supplier) && cover.contains("cust-1"), "{cover}");
            assert!(cover.contains("site-a"), "{cover}");
            // The summary is page 2: compliance against the target.
            let summary = page_text(&pdf, 2).join("\n");
            assert!(summary.contains(if lang == "en" { "target 90%" } else { "目标 90%" }), "{summary}");
            if devices == 30 {
                look_alike(&pdf, &format!("{devices}-{lang}"), &out_dir);
            }
            // What people reported to the desk: the calls, by category and channel.
            let all: String = (1..=pages.len()).map(|n| page_text(&pdf, n).join("\n")).collect::<Vec<_>>().join("\n");
            let calls = devices.min(60).to_string();
            let desk =
                if lang == "en" { ["Service desk", "fault", "phone"] } else { ["服务台", "故障", "电话"] };
            assert!(
                desk.iter().all(|x| all.contains(x)) && all.lines().any(|l| l.contains(desk[2]) && l.ends_with(&calls)),
                "{what}: the desk's {calls} calls: {all}"
            );
            if lang == "zh-CN" {
                // No English left: only ids, units, codes and names in Latin letters.
                let all: String =
                    (1..=pages.len()).map(|n| page_text(&pdf, n).join("\n")).collect::<Vec<_>>().join("\n");
                let allowed = ["cust", "site", "lit", "UTC", "aftercare"];
                let mut latin: Vec<String> = Vec::new();
                let mut word = String::new();
                for c in all.chars().chain([' ']) {
                    if c.is_ascii_alphabetic() {
                        word.push(c);
                    } else if !word.is_empty() {
                        if word.len() > 1 && !allowed.contains(&word.as_str()) {
                            latin.push(std::mem::take(&mut word));
                        }
                        word.clear();
                    }
                }
                latin.sort();
                latin.dedup();
                assert!(latin.is_empty(), "{what}: English left in the Chinese report: {latin:?}");
            }
        }
        drop(d);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_reports_are_mailed_once_as_pdfs_in_the_languages_the_contract_names() {
    let Some(python) = crate::email::python() else { return };
    let sink = crate::email::Sink::start(&python, "plain", None);
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&["lit-a:lighting"], "30s", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    let (k, _) = monthly_inspection("");
    let cfg = std::fs::read_to_string(&path).unwrap()
        + &k
        + "[contracts.k.report_mail]\nto = [\"Facilities <facilities@example.net>\", \"boss@example.net\"]\n\
           langs = [\"zh-CN\"]\nchannel = \"mail\"\n"
        + &format!(
            "[notify.channels.mail]\ncarries = [\"email\"]\n\
             email = {{ server = \"smtp://127.0.0.1:{}\", from = \"aftercare <aftercare@example.net>\", timeout = \"20s\" }}\n",
            sink.port
        );
    std::fs::write(&path, cfg).unwrap();
    let d = Daemon::start(dir, &prefix, &broker);
    let open = get(&d.url("/api/v1/work-orders?state=open")).await;
    let visit = open.as_array().unwrap().first().expect("an open inspection")["id"].as_i64().unwrap();
    let r = api()
        .post(d.url(&format!("/api/v1/work-orders/{visit}/complete")))
        .json(&json!({"answers": {"lamps": "all lit"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    // The inspection's report is kept in both languages; the contract mails the Chinese one
    // to each of its two addresses.
    let mails = wait_for("two mails", 90, || async {
        let m = sink.mails.lock().unwrap().clone();
        (m.len() >= 2).then_some(m)
    })
    .await;
    let mut to: Vec<String> = mails.iter().map(|(_, m)| crate::email::header(m, "To")).collect();
    to.sort();
    assert_eq!(to, ["Facilities <facilities@example.net>", "boss@example.net"], "{to:?}");
    for (_, m) in &mails {
        assert!(m.contains("Content-Type: application/pdf"), "a PDF attached: {m}");
        assert!(m.contains("\"report-cust-1-") && m.contains("-zh-CN.pdf\""), "the file named: {m}");
        // The attachment, decoded, is a PDF.
        let part = m.split("Content-Type: application/pdf").nth(1).unwrap();
        // Past the part's headers and the blank line after them.
        let b64: String = part
            .lines()
            .skip(1)
            .skip_while(|l| !l.trim().is_empty())
            .skip(1)
            .take_while(|l| !l.trim().is_empty() && !l.starts_with("--"))
            .collect();
        let pdf = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.trim()).unwrap();
        assert!(pdf.starts_with(b"%PDF-") && pdf.len() > 5_000, "{} bytes", pdf.len());
    }
    // Once: nothing more comes.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(sink.mails.lock().unwrap().len(), 2);
    // The kept reports give their PDF too.
    let kept = get(&d.url("/api/v1/reports/kept")).await;
    let ids: Vec<i64> = kept.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{kept}");
    let r = api().get(d.url(&format!("/api/v1/reports/kept/{}?format=pdf", ids[0]))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.unwrap().starts_with(b"%PDF-"));
}
