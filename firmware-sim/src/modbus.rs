//! The simulator's Modbus face: a device's latest metrics as registers, served
//! over Modbus TCP (a server per device) or as units on an RTU line. The
//! register maps below are the ones config/kinds/ declares for the kinds
//! that have one; aftercare's tests check that the two agree.
//!
//! Faults a Modbus device can show (inject them like any other):
//! `modbus_slow` (answers after 1.5 s), `modbus_exception` (server device
//! failure, 0x04), `modbus_odd_exception` (a non-standard code, 0x0C),
//! `modbus_silent` (never answers) and, over TCP, `modbus_garbage` (frames
//! that are no Modbus).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};

use crate::models::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Coil,
    Discrete,
    Input,
    Holding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Bool,
    U16,
    I16,
    U32,
    F32,
}

/// Word order of 32-bit values: ABCD (high word first) or CDAB (low word first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Abcd,
    Cdab,
}

/// One register (or bit) of a device: `raw = metric / scale` on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reg {
    pub metric: &'static str,
    pub function: Function,
    pub address: u16,
    pub ty: Type,
    pub order: Order,
    pub scale: f64,
}

const fn reg(metric: &'static str, function: Function, address: u16, ty: Type, scale: f64) -> Reg {
    Reg { metric, function, address, ty, order: Order::Abcd, scale }
}

const fn reg_cdab(metric: &'static str, function: Function, address: u16, ty: Type, scale: f64) -> Reg {
    Reg { metric, function, address, ty, order: Order::Cdab, scale }
}

use Function::{Discrete, Input};
use Type::{Bool, F32, I16, U16};

const SOLAR_HEATER: &[Reg] = &[
    reg("irradiance_wm2", Input, 0, U16, 1.0),
    reg("ambient_temp_c", Input, 1, I16, 0.1),
    reg("collector_temp_c", Input, 2, I16, 0.1),
    reg("tank_temp_c", Input, 3, I16, 0.1),
    reg("tank_level_pct", Input, 4, U16, 0.1),
    reg("draw_flow_lpm", Input, 5, U16, 0.01),
    reg("pump_flow_lpm", Input, 6, U16, 0.01),
    reg_cdab("tilt_deg", Input, 8, F32, 1.0),
    reg("sensor_flags", Input, 10, U16, 1.0),
    reg("fill_valve_open", Discrete, 0, Bool, 1.0),
    reg("pump_on", Discrete, 1, Bool, 1.0),
    reg("heater_on", Discrete, 2, Bool, 1.0),
];

const LIGHTING: &[Reg] = &[
    reg("scheduled_on", Discrete, 0, Bool, 1.0),
    reg("circuits_total", Input, 0, U16, 1.0),
    reg("circuits_lit", Input, 1, U16, 1.0),
    reg("total_current_a", Input, 2, F32, 1.0),
    reg("rated_current_a", Input, 4, F32, 1.0),
    reg("leakage_ma", Input, 6, U16, 0.1),
    reg("voltage_v", Input, 7, U16, 0.1),
];

/// The register map of a kind, if it speaks Modbus.
pub fn map(kind: Kind) -> Option<&'static [Reg]> {
    match kind {
        Kind::SolarHeater => Some(SOLAR_HEATER),
        Kind::Lighting => Some(LIGHTING),
        _ => None,
    }
}

/// The Modbus faults, which any Modbus device can show.
pub const FAULTS: &[&str] =
    &["modbus_slow", "modbus_exception", "modbus_odd_exception", "modbus_silent", "modbus_garbage"];

fn width(t: Type) -> u16 {
    match t {
        Bool | U16 | I16 => 1,
        Type::U32 | F32 => 2,
    }
}

/// The words of one register's value.
fn encode(r: &Reg, v: f64) -> [u16; 2] {
    let raw = v / r.scale;
    let bits: u32 = match r.ty {
        Bool => (v != 0.0) as u32,
        U16 => raw.round().clamp(0.0, 65535.0) as u32,
        I16 => raw.round().clamp(-32768.0, 32767.0) as i16 as u16 as u32,
        Type::U32 => raw.round().clamp(0.0, u32::MAX as f64) as u32,
        F32 => (raw as f32).to_bits(),
    };
    match (width(r.ty), r.order) {
        (1, _) => [bits as u16, 0],
        (_, Order::Abcd) => [(bits >> 16) as u16, bits as u16],
        (_, Order::Cdab) => [bits as u16, (bits >> 16) as u16],
    }
}

fn number(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Bool(b)) => *b as u8 as f64,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// What a device shows on the wire now: its latest metrics and its Modbus fault.
#[derive(Debug, Default)]
pub struct Face {
    pub metrics: Map<String, Value>,
    pub fault: Option<String>,
}

pub type Shared = Arc<Mutex<Face>>;

/// Past the last mapped address of a function, reads are refused with 0x02.
const SPAN: u16 = 64;

/// Answers one read from a device's face.
pub fn answer(kind: Kind, face: &Face, req: &Request<'_>) -> Result<Response, ExceptionCode> {
    let regs = map(kind).unwrap_or_default();
    let (function, addr, cnt) = match req {
        Request::ReadCoils(a, c) => (Function::Coil, *a, *c),
        Request::ReadDiscreteInputs(a, c) => (Function::Discrete, *a, *c),
        Request::ReadInputRegisters(a, c) => (Function::Input, *a, *c),
        Request::ReadHoldingRegisters(a, c) => (Function::Holding, *a, *c),
        _ => return Err(ExceptionCode::IllegalFunction),
    };
    let bits = matches!(function, Function::Coil | Function::Discrete);
    let max = if bits { 2000 } else { 125 };
    if cnt == 0 || cnt > max {
        return Err(ExceptionCode::IllegalDataValue);
    }
    if addr as u32 + cnt as u32 > SPAN as u32 {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    let mut words = vec![0u16; cnt as usize];
    for r in regs.iter().filter(|r| r.function == function) {
        let w = encode(r, number(face.metrics.get(r.metric)));
        for i in 0..width(r.ty) {
            let a = r.address + i;
            if a >= addr && a < addr + cnt {
                words[(a - addr) as usize] = w[i as usize];
            }
        }
    }
    Ok(match function {
        Function::Coil => Response::ReadCoils(words.iter().map(|w| *w != 0).collect()),
        Function::Discrete => Response::ReadDiscreteInputs(words.iter().map(|w| *w != 0).collect()),
        Function::Input => Response::ReadInputRegisters(words),
        Function::Holding => Response::ReadHoldingRegisters(words),
    })
}

type Answer = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

/// Serves what a face shows, with its fault.
fn serve(kind: Kind, face: &Shared, req: &Request<'_>) -> Answer {
    let (fault, result) = {
        let f = face.lock().unwrap_or_else(|p| p.into_inner());
        (f.fault.clone(), answer(kind, &f, req))
    };
    Box::pin(async move {
        match fault.as_deref() {
            Some("modbus_silent") => Ok(None),
            Some("modbus_exception") => Err(ExceptionCode::ServerDeviceFailure),
            Some("modbus_odd_exception") => Err(ExceptionCode::Custom(0x0C)),
            Some("modbus_slow") => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                result.map(Some)
            }
            _ => result.map(Some),
        }
    })
}

/// One device behind its own TCP server.
#[derive(Clone)]
pub struct TcpDevice {
    pub kind: Kind,
    pub face: Shared,
}

impl tokio_modbus::server::Service for TcpDevice {
    type Request = Request<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Answer;

    fn call(&self, req: Self::Request) -> Self::Future {
        serve(self.kind, &self.face, &req)
    }
}

/// The units on one RTU line, by unit id.
#[derive(Clone)]
pub struct RtuLine {
    pub units: Arc<Vec<(u8, Kind, Shared)>>,
}

impl tokio_modbus::server::Service for RtuLine {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Answer;

    fn call(&self, req: Self::Request) -> Self::Future {
        match self.units.iter().find(|(u, _, _)| *u == req.slave) {
            Some((_, kind, face)) => serve(*kind, face, &req.request),
            // Another unit's request: stay off the line.
            None => Box::pin(async { Ok(None) }),
        }
    }
}

/// A device's TCP stream that garbles what it sends while the device shows
/// `modbus_garbage`: the frame keeps its length, but its protocol id and
/// function code are no longer Modbus.
pub struct Garbling<S> {
    pub inner: S,
    pub face: Shared,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Garbling<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Garbling<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let garble = self.face.lock().unwrap_or_else(|p| p.into_inner()).fault.as_deref() == Some("modbus_garbage");
        if !garble {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        let mut bad = buf.to_vec();
        for (i, b) in bad.iter_mut().enumerate() {
            // Protocol id (bytes 2–3) and function code (byte 7) of the MBAP frame.
            if i == 2 || i == 3 || i == 7 {
                *b ^= 0xA5;
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, &bad)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metrics_read_back_as_registers() {
        let mut face = Face::default();
        face.metrics.insert("tank_temp_c".into(), json!(61.5));
        face.metrics.insert("ambient_temp_c".into(), json!(-3.2));
        face.metrics.insert("tilt_deg".into(), json!(45.0));
        face.metrics.insert("pump_on".into(), json!(true));
        let r = answer(Kind::SolarHeater, &face, &Request::ReadInputRegisters(0, 11)).unwrap();
        let Response::ReadInputRegisters(w) = r else { panic!("{r:?}") };
        assert_eq!(w[3], 615);
        assert_eq!(w[1] as i16, -32);
        // 45.0f32 is 0x4234_0000, low word first.
        assert_eq!((w[8], w[9]), (0x0000, 0x4234));
        let r = answer(Kind::SolarHeater, &face, &Request::ReadDiscreteInputs(0, 3)).unwrap();
        assert_eq!(r, Response::ReadDiscreteInputs(vec![false, true, false]));
        assert_eq!(
            answer(Kind::SolarHeater, &face, &Request::ReadInputRegisters(60, 10)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            answer(Kind::SolarHeater, &face, &Request::ReadInputRegisters(0, 126)),
            Err(ExceptionCode::IllegalDataValue)
        );
    }
}
