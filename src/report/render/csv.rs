//! A report as CSV: one row per device.

use super::*;

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
