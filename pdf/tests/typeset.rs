//! The typesetter as the daemon runs it: markup in, PDF out, and a clear no.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], markup: &str) -> (bool, Vec<u8>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aftercare-pdf"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(markup.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn markup_becomes_a_pdf_and_bad_markup_a_reason() {
    // Typst's own fonts set Latin text without any font given.
    let (ok, pdf, err) = run(&[], "= Report\nAvailability 99.5 %\n");
    assert!(ok, "{err}");
    assert!(pdf.starts_with(b"%PDF-"), "{:?}", &pdf[..pdf.len().min(16)]);
    let (ok, pdf, err) = run(&[], "#unknown-function()\n");
    assert!(!ok && pdf.is_empty());
    assert!(err.contains("setting the PDF failed") && err.contains("unknown"), "{err}");
    let (ok, _, err) = run(&["--font", "/nonexistent.ttf"], "x");
    assert!(!ok && err.contains("/nonexistent.ttf"), "{err}");
}
