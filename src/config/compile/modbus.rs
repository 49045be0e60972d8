//! Modbus: a kind's register map and a device's endpoint.

use std::collections::HashMap;
use std::time::Duration;

use super::{Report, list};
use crate::config::raw::{RawModbusDevice, RawModbusMap};
use crate::modbus::RegisterMap;
use crate::rules::{MetricDef, MetricType};

/// A kind's register map: every point checked, overlaps refused, requests planned.
pub(super) fn register_map(
    kind: &str,
    m: &RawModbusMap,
    metric_index: &HashMap<String, u16>,
    metrics: &[MetricDef],
    r: &mut Report<'_>,
) -> Option<RegisterMap> {
    use crate::modbus::{DataType, Function, Order, Point};
    let before = r.problems.len();
    let mut points = Vec::new();
    let mut spans = Vec::new();
    for sp in &m.points {
        let p = sp.get_ref();
        let at = sp.span();
        let Some(&metric) = metric_index.get(p.metric.get_ref()) else {
            let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
            r.at(
                p.metric.span(),
                format!("kind `{kind}` has no metric `{}`; it has: {}", p.metric.get_ref(), list(&names)),
            );
            continue;
        };
        let named = match &p.function {
            None => None,
            Some(f) => match f.get_ref().as_str() {
                "coil" | "coils" => Some(Function::Coil),
                "discrete" | "discrete_input" | "discrete_inputs" => Some(Function::Discrete),
                "input" | "input_register" | "input_registers" => Some(Function::Input),
                "holding" | "holding_register" | "holding_registers" => Some(Function::Holding),
                other => {
                    r.at(f.span(), format!("function `{other}`: write coil, discrete, input or holding"));
                    continue;
                }
            },
        };
        let (function, address) = match (&p.address, &p.reference) {
            (Some(_), Some(rf)) => {
                r.at(
                    rf.span(),
                    "give either address (0-based, as on the wire) or ref (1-based Modicon reference such as 40001), not both",
                );
                continue;
            }
            (None, None) => {
                r.at(
                    at,
                    "a point needs address = N (0-based protocol address) or ref = 40001 (1-based Modicon reference)",
                );
                continue;
            }
            (Some(a), None) => {
                let Some(f) = named else {
                    r.at(a.span(), "with address, name the function: coil, discrete, input or holding");
                    continue;
                };
                match u16::try_from(*a.get_ref()) {
                    Ok(a) => (f, a),
                    Err(_) => {
                        r.at(a.span(), format!("address {} is past 65535, the last Modbus address", a.get_ref()));
                        continue;
                    }
                }
            }
            (None, Some(rf)) => match Function::from_reference(*rf.get_ref()) {
                Some((f, a)) if named.is_none_or(|n| n == f) => (f, a),
                Some((f, _)) => {
                    r.at(
                        rf.span(),
                        format!(
                            "ref {} is a {} address, but function says otherwise; drop one",
                            rf.get_ref(),
                            f.name()
                        ),
                    );
                    continue;
                }
                None => {
                    r.at(
                        rf.span(),
                        format!(
                            "ref {} is not a Modicon reference: 1–9999 coils, 10001– discrete inputs, 30001– input \
                             registers, 40001– holding registers (or six digits: 400001–465536)",
                            rf.get_ref()
                        ),
                    );
                    continue;
                }
            },
        };
        let ty_name = p.ty.as_ref().map(|t| t.get_ref().to_ascii_lowercase());
        let ty = match (ty_name.as_deref(), &p.bit) {
            (None, None) if function.is_bits() => DataType::Bool,
            (None, None) => DataType::U16,
            (Some("bit") | None, Some(b)) if *b.get_ref() < 16 => DataType::Bit(*b.get_ref()),
            (Some("bit") | None, Some(b)) => {
                r.at(b.span(), format!("bit {} is past 15, the last bit of a register", b.get_ref()));
                continue;
            }
            (Some("bit"), None) => {
                r.at(at, "type = \"bit\" needs bit = N, 0 the least significant bit");
                continue;
            }
            (Some(t), None) => match t {
                "bool" => DataType::Bool,
                "u16" | "uint16" => DataType::U16,
                "i16" | "int16" => DataType::I16,
                "u32" | "uint32" => DataType::U32,
                "i32" | "int32" => DataType::I32,
                "u64" | "uint64" => DataType::U64,
                "i64" | "int64" => DataType::I64,
                "f32" | "float32" => DataType::F32,
                "f64" | "float64" => DataType::F64,
                other => {
                    let span = p.ty.as_ref().map_or(at.clone(), |t| t.span());
                    r.at(span, format!("type `{other}`: write bool, bit, u16, i16, u32, i32, u64, i64, f32 or f64"));
                    continue;
                }
            },
            (Some(_), Some(b)) => {
                r.at(b.span(), "bit = N goes with type = \"bit\"");
                continue;
            }
        };
        if function.is_bits() != (ty == DataType::Bool) {
            let msg = if function.is_bits() {
                format!("a {} is one bit: its type is bool", function.name())
            } else {
                format!("a {} register holds numbers; read one bit of it with type = \"bit\", bit = N", function.name())
            };
            r.at(p.ty.as_ref().map_or(at.clone(), |t| t.span()), msg);
            continue;
        }
        let metric_is_bool = metrics[metric as usize].ty == MetricType::Bool;
        if metrics[metric as usize].ty == MetricType::Text || metric_is_bool != ty.is_bool() {
            r.at(
                p.metric.span(),
                format!(
                    "metric `{}` is {:?}, but this point reads a {}",
                    p.metric.get_ref(),
                    metrics[metric as usize].ty,
                    if ty.is_bool() { "bit" } else { "number" }
                ),
            );
            continue;
        }
        let point = Point {
            metric,
            function,
            address,
            ty,
            order: match &p.order {
                None => Order::Abcd,
                Some(o) => match Order::parse(o.get_ref()) {
                    Some(o) => o,
                    None => {
                        r.at(o.span(), format!("order `{}`: write ABCD, DCBA, BADC or CDAB", o.get_ref()));
                        continue;
                    }
                },
            },
            scale: p.scale.unwrap_or(1.0),
            offset: p.offset.unwrap_or(0.0),
        };
        if point.end() > 65536 {
            r.at(at, format!("a {:?} at address {address} runs past 65535, the last Modbus address", ty));
            continue;
        }
        points.push(point);
        spans.push(at);
    }
    for (i, j) in crate::modbus::plan::overlaps(&points) {
        r.at(
            spans[j].clone(),
            format!(
                "this point overlaps the one on line {} ({} address {}); each register feeds one point, or distinct bits",
                r.src.line_col(spans[i].start).0,
                points[i].function.name(),
                points[i].address
            ),
        );
    }
    (r.problems.len() == before).then(|| RegisterMap::new(points, m.gap.unwrap_or(8)))
}

/// How a device is polled: the transport, the unit and the timing.
pub(super) fn modbus_endpoint(m: &RawModbusDevice, r: &mut Report<'_>) -> Option<crate::modbus::Endpoint> {
    use crate::modbus::{Endpoint, Line, Parity, Transport};
    let before = r.problems.len();
    let transport = match (&m.tcp, &m.rtu) {
        (Some(t), None) => {
            let a = t.get_ref();
            if a.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
                r.at(t.span(), format!("tcp = `{a}`: write host:port, such as \"10.0.0.5:502\""));
            }
            Transport::Tcp(a.clone())
        }
        (None, Some(path)) => {
            let parity = match m.parity.as_ref().map(|p| p.get_ref().to_ascii_lowercase()) {
                None => Parity::None,
                Some(p) => match p.as_str() {
                    "none" | "n" => Parity::None,
                    "even" | "e" => Parity::Even,
                    "odd" | "o" => Parity::Odd,
                    _ => {
                        r.at(m.parity.as_ref().map_or(0..0, |p| p.span()), "parity: write none, even or odd");
                        Parity::None
                    }
                },
            };
            let data_bits = m.data_bits.as_ref().map_or(8, |d| *d.get_ref());
            if !(5..=8).contains(&data_bits) {
                r.at(m.data_bits.as_ref().map_or(0..0, |d| d.span()), "data_bits is 5, 6, 7 or 8 (Modbus RTU uses 8)");
            }
            let stop_bits = m.stop_bits.as_ref().map_or(1, |d| *d.get_ref());
            if !(1..=2).contains(&stop_bits) {
                r.at(m.stop_bits.as_ref().map_or(0..0, |d| d.span()), "stop_bits is 1 or 2");
            }
            Transport::Rtu(Line {
                path: path.get_ref().clone(),
                baud: m.baud.unwrap_or(9600),
                parity,
                data_bits,
                stop_bits,
            })
        }
        (Some(t), Some(_)) => {
            r.at(t.span(), "a device is on tcp = \"host:port\" or on rtu = \"/dev/ttyUSB0\", not both");
            return None;
        }
        (None, None) => {
            r.at(0..0, "modbus needs tcp = \"host:port\" or rtu = \"/dev/ttyUSB0\"");
            return None;
        }
    };
    let rtu = matches!(transport, Transport::Rtu(_));
    let unit = m.unit.as_ref().map_or(1, |u| *u.get_ref());
    let max_unit = if rtu { 247 } else { 255 };
    if unit > max_unit || (rtu && unit == 0) {
        r.at(
            m.unit.as_ref().map_or(0..0, |u| u.span()),
            format!("unit {unit}: an RTU unit is 1–247, a TCP unit 0–255"),
        );
    }
    let timeout = m.timeout.map_or(Duration::from_secs(1), |d| d.0);
    let ep = Endpoint {
        transport,
        unit: unit.min(255) as u8,
        poll: m.poll.map_or(Duration::from_secs(5), |d| d.0).max(Duration::from_millis(10)),
        timeout: timeout.max(Duration::from_millis(10)),
        retries: m.retries.unwrap_or(1).min(10),
        pause: m.pause.map_or(if rtu { Duration::from_millis(5) } else { Duration::ZERO }, |d| d.0),
        offline_after: m.offline_after.unwrap_or(3).max(1),
    };
    (r.problems.len() == before).then_some(ep)
}
