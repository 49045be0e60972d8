//! `aftercare-pdf --font FILE…`: reads a report as Typst markup on standard input and writes
//! it as PDF to standard output, set in the fonts named. The daemon runs it as a child
//! process: Typst, a typesetting system of its own, is most of what it would take to build
//! the daemon, and a document it chokes on takes this process down, never the daemon.
//! Exit status 1 with the reason on standard error when the markup or a font is bad.

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aftercare-pdf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut fonts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--font" => {
                let path = args.next().ok_or("--font needs a file")?;
                fonts.push(std::fs::read(&path).map_err(|e| format!("font {path}: {e}"))?);
            }
            "--version" => {
                println!("aftercare-pdf {}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: aftercare-pdf --font FILE… < report.typ > report.pdf"
                ));
            }
        }
    }
    let mut markup = String::new();
    std::io::stdin().read_to_string(&mut markup).map_err(|e| format!("reading the markup: {e}"))?;
    let engine = typst_as_lib::TypstEngine::builder().main_file(markup).fonts(fonts).build();
    let doc: typst_layout::PagedDocument =
        engine.compile().output.map_err(|e| format!("setting the PDF failed: {e:?}"))?;
    let pdf = typst_pdf::pdf(&doc, &Default::default()).map_err(|e| format!("writing the PDF failed: {e:?}"))?;
    std::io::stdout().write_all(&pdf).map_err(|e| format!("writing the PDF out: {e}"))
}
