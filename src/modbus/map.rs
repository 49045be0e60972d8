//! Register maps: what a point is, and how its registers decode. Pure.
//!
//! Addresses here are protocol addresses, 0-based, as they go on the wire.
//! The config also accepts 1-based Modicon references (`ref = 40001` is
//! holding register 0), which say their function themselves.

use crate::domain::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Function {
    /// 0x01, read/write bits (Modicon 0xxxx).
    Coil,
    /// 0x02, read-only bits (1xxxx).
    Discrete,
    /// 0x04, read-only registers (3xxxx).
    Input,
    /// 0x03, read/write registers (4xxxx).
    Holding,
}

impl Function {
    pub fn is_bits(self) -> bool {
        matches!(self, Function::Coil | Function::Discrete)
    }

    /// The most one read request may ask for (Modbus Application Protocol 1.1b3, 6.1–6.4).
    pub fn max_per_request(self) -> u16 {
        if self.is_bits() { 2000 } else { 125 }
    }

    pub fn name(self) -> &'static str {
        match self {
            Function::Coil => "coil",
            Function::Discrete => "discrete",
            Function::Input => "input",
            Function::Holding => "holding",
        }
    }

    /// A Modicon reference (1-based, the function in its leading digit), five or six digits.
    pub fn from_reference(r: u32) -> Option<(Function, u16)> {
        let (f, n) = match r {
            1..=9_999 => (Function::Coil, r),
            10_001..=19_999 => (Function::Discrete, r - 10_000),
            30_001..=39_999 => (Function::Input, r - 30_000),
            40_001..=49_999 => (Function::Holding, r - 40_000),
            100_001..=165_536 => (Function::Discrete, r - 100_000),
            300_001..=365_536 => (Function::Input, r - 300_000),
            400_001..=465_536 => (Function::Holding, r - 400_000),
            _ => return None,
        };
        Some((f, u16::try_from(n - 1).ok()?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// A coil or discrete input.
    Bool,
    /// One bit of a register, 0 the least significant.
    Bit(u8),
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl DataType {
    /// Registers (or bits, for `Bool`) the point spans.
    pub fn width(self) -> u16 {
        match self {
            DataType::Bool | DataType::Bit(_) | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }

    pub fn is_bool(self) -> bool {
        matches!(self, DataType::Bool | DataType::Bit(_))
    }
}

/// Byte and word order, in the vocabulary of Telegraf and most device manuals:
/// the bytes of a 32-bit value A B C D (A most significant) as they arrive.
/// Longer values extend the same rule word by word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Big-endian words, big-endian bytes (the Modbus default).
    #[default]
    Abcd,
    /// Little-endian throughout.
    Dcba,
    /// Big-endian words, bytes swapped in each.
    Badc,
    /// Words swapped (least significant first), bytes big-endian.
    Cdab,
}

impl Order {
    pub fn parse(s: &str) -> Option<Order> {
        match s.to_ascii_uppercase().as_str() {
            "ABCD" | "AB" | "ABCDEFGH" => Some(Order::Abcd),
            "DCBA" | "BA" | "HGFEDCBA" => Some(Order::Dcba),
            "BADC" | "BADCFEHG" => Some(Order::Badc),
            "CDAB" | "GHEFCDAB" => Some(Order::Cdab),
            _ => None,
        }
    }
    fn words_swapped(self) -> bool {
        matches!(self, Order::Dcba | Order::Cdab)
    }
    fn bytes_swapped(self) -> bool {
        matches!(self, Order::Dcba | Order::Badc)
    }
}

/// One point of a register map, feeding one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Index of the metric in the kind's profile.
    pub metric: u16,
    pub function: Function,
    pub address: u16,
    pub ty: DataType,
    pub order: Order,
    pub scale: f64,
    pub offset: f64,
}

impl Point {
    /// The first address after the point.
    pub fn end(&self) -> u32 {
        self.address as u32 + self.ty.width() as u32
    }
}

/// The raw integer or float of a register value, before scale and offset.
pub fn decode_words(words: &[u16], ty: DataType, order: Order) -> Option<f64> {
    let n = ty.width() as usize;
    if words.len() < n {
        return None;
    }
    if let DataType::Bit(b) = ty {
        return Some(((words[0] >> b) & 1) as f64);
    }
    let mut w = [0u16; 4];
    w[..n].copy_from_slice(&words[..n]);
    let w = &mut w[..n];
    if order.words_swapped() {
        w.reverse();
    }
    if order.bytes_swapped() {
        for x in w.iter_mut() {
            *x = x.swap_bytes();
        }
    }
    let bits = w.iter().fold(0u64, |acc, x| (acc << 16) | *x as u64);
    Some(match ty {
        DataType::Bool => (bits != 0) as u8 as f64,
        DataType::Bit(_) => unreachable_bit(),
        DataType::U16 => bits as u16 as f64,
        DataType::I16 => bits as u16 as i16 as f64,
        DataType::U32 => bits as u32 as f64,
        DataType::I32 => bits as u32 as i32 as f64,
        DataType::U64 => bits as f64,
        DataType::I64 => bits as i64 as f64,
        DataType::F32 => f32::from_bits(bits as u32) as f64,
        DataType::F64 => f64::from_bits(bits),
    })
}

/// Bits return early above; kept out of line so the match stays total without a panic.
fn unreachable_bit() -> f64 {
    f64::NAN
}

/// The encoding of a value into registers, the inverse of [`decode_words`] (the simulator's side).
pub fn encode_words(value: f64, ty: DataType, order: Order) -> Vec<u16> {
    let n = ty.width() as usize;
    let bits: u64 = match ty {
        DataType::Bool | DataType::Bit(_) => (value != 0.0) as u64,
        DataType::U16 => value.round().clamp(0.0, u16::MAX as f64) as u16 as u64,
        DataType::I16 => value.round().clamp(i16::MIN as f64, i16::MAX as f64) as i16 as u16 as u64,
        DataType::U32 => value.round().clamp(0.0, u32::MAX as f64) as u32 as u64,
        DataType::I32 => value.round().clamp(i32::MIN as f64, i32::MAX as f64) as i32 as u32 as u64,
        DataType::U64 => value.round().max(0.0) as u64,
        DataType::I64 => value.round() as i64 as u64,
        DataType::F32 => (value as f32).to_bits() as u64,
        DataType::F64 => value.to_bits(),
    };
    let mut w: Vec<u16> = (0..n).rev().map(|i| (bits >> (16 * i)) as u16).collect();
    if order.bytes_swapped() {
        for x in w.iter_mut() {
            *x = x.swap_bytes();
        }
    }
    if order.words_swapped() {
        w.reverse();
    }
    w
}

/// A point's value from the words (or bits) of its request, scaled.
pub fn value(p: &Point, words: &[u16], bits: &[bool]) -> Option<Value> {
    match p.ty {
        DataType::Bool => bits.first().map(|b| Value::Bool(*b)),
        DataType::Bit(_) => decode_words(words, p.ty, p.order).map(|v| Value::Bool(v != 0.0)),
        ty => decode_words(words, ty, p.order).map(|raw| Value::Num(raw * p.scale + p.offset)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (type, order, registers as they arrive, value)
    const VECTORS: &[(DataType, Order, &[u16], f64)] = &[
        (DataType::U16, Order::Abcd, &[0x1234], 4660.0),
        (DataType::U16, Order::Dcba, &[0x3412], 4660.0),
        (DataType::U16, Order::Badc, &[0x3412], 4660.0),
        (DataType::U16, Order::Cdab, &[0x1234], 4660.0),
        (DataType::I16, Order::Abcd, &[0xFFFE], -2.0),
        (DataType::I16, Order::Dcba, &[0xFEFF], -2.0),
        (DataType::U32, Order::Abcd, &[0x0001, 0x0002], 65538.0),
        (DataType::U32, Order::Cdab, &[0x0002, 0x0001], 65538.0),
        (DataType::U32, Order::Badc, &[0x0100, 0x0200], 65538.0),
        (DataType::U32, Order::Dcba, &[0x0200, 0x0100], 65538.0),
        (DataType::I32, Order::Abcd, &[0xFFFF, 0xFFFE], -2.0),
        (DataType::I32, Order::Cdab, &[0xFFFE, 0xFFFF], -2.0),
        // 123.456f32 is 0x42F6E979.
        (DataType::F32, Order::Abcd, &[0x42F6, 0xE979], 123.456_001_281_738_28),
        (DataType::F32, Order::Cdab, &[0xE979, 0x42F6], 123.456_001_281_738_28),
        (DataType::F32, Order::Badc, &[0xF642, 0x79E9], 123.456_001_281_738_28),
        (DataType::F32, Order::Dcba, &[0x79E9, 0xF642], 123.456_001_281_738_28),
        (DataType::U64, Order::Abcd, &[0x0000, 0x0001, 0x0000, 0x0002], 4_294_967_298.0),
        (DataType::U64, Order::Cdab, &[0x0002, 0x0000, 0x0001, 0x0000], 4_294_967_298.0),
        (DataType::U64, Order::Badc, &[0x0000, 0x0100, 0x0000, 0x0200], 4_294_967_298.0),
        (DataType::U64, Order::Dcba, &[0x0200, 0x0000, 0x0100, 0x0000], 4_294_967_298.0),
        (DataType::I64, Order::Abcd, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], -2.0),
        // 1.5f64 is 0x3FF8_0000_0000_0000.
        (DataType::F64, Order::Abcd, &[0x3FF8, 0, 0, 0], 1.5),
        (DataType::F64, Order::Cdab, &[0, 0, 0, 0x3FF8], 1.5),
        (DataType::F64, Order::Badc, &[0xF83F, 0, 0, 0], 1.5),
        (DataType::F64, Order::Dcba, &[0, 0, 0, 0xF83F], 1.5),
        (DataType::Bit(0), Order::Abcd, &[0b1010], 0.0),
        (DataType::Bit(1), Order::Abcd, &[0b1010], 1.0),
        (DataType::Bit(15), Order::Abcd, &[0x8000], 1.0),
    ];

    #[test]
    fn every_type_and_order_decodes_known_bytes() {
        for (ty, order, words, want) in VECTORS {
            assert_eq!(decode_words(words, *ty, *order), Some(*want), "{ty:?} {order:?} {words:04X?}");
        }
    }

    #[test]
    fn encoding_is_the_inverse_of_decoding() {
        for (ty, order, words, want) in VECTORS {
            if matches!(ty, DataType::Bit(_)) {
                continue;
            }
            assert_eq!(encode_words(*want, *ty, *order), *words, "{ty:?} {order:?}");
        }
    }

    #[test]
    fn too_few_registers_decode_to_nothing() {
        assert_eq!(decode_words(&[0x42F6], DataType::F32, Order::Abcd), None);
        assert_eq!(decode_words(&[], DataType::U16, Order::Abcd), None);
    }

    #[test]
    fn scale_and_offset_apply_to_numbers() {
        let p = Point {
            metric: 0,
            function: Function::Input,
            address: 0,
            ty: DataType::I16,
            order: Order::Abcd,
            scale: 0.1,
            offset: -40.0,
        };
        let Some(Value::Num(v)) = value(&p, &[655], &[]) else { panic!() };
        assert!((v - 25.5).abs() < 1e-9, "{v}");
    }

    #[test]
    fn modicon_references_name_their_function() {
        assert_eq!(Function::from_reference(40001), Some((Function::Holding, 0)));
        assert_eq!(Function::from_reference(30010), Some((Function::Input, 9)));
        assert_eq!(Function::from_reference(10001), Some((Function::Discrete, 0)));
        assert_eq!(Function::from_reference(1), Some((Function::Coil, 0)));
        assert_eq!(Function::from_reference(465536), Some((Function::Holding, 65535)));
        assert_eq!(Function::from_reference(20001), None, "2xxxx is no function");
        assert_eq!(Function::from_reference(0), None);
        assert_eq!(Order::parse("cdab"), Some(Order::Cdab));
        assert_eq!(Order::parse("ACBD"), None);
    }
}
