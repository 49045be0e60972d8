//! The request plan of a register map: points merged into as few reads as
//! the protocol's limits allow, bridging gaps of up to `gap` unused
//! addresses. Computed once per kind at start. Pure.

use super::map::{DataType, Function, Point};

/// One read request and the points it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub function: Function,
    pub start: u16,
    pub count: u16,
    /// (index of the point in the map, its offset in the answer).
    pub points: Vec<(usize, u16)>,
}

/// Merges the points into requests, in address order per function.
pub fn plan(points: &[Point], gap: u16) -> Vec<Request> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i].function, points[i].address));
    let mut out: Vec<Request> = Vec::new();
    for i in order {
        let p = &points[i];
        let (start, end) = (p.address as u32, p.end());
        if let Some(r) = out.last_mut() {
            let r_end = r.start as u32 + r.count as u32;
            let new_end = r_end.max(end);
            if r.function == p.function
                && start <= r_end + gap as u32
                && new_end - r.start as u32 <= p.function.max_per_request() as u32
            {
                r.count = (new_end - r.start as u32) as u16;
                r.points.push((i, p.address - r.start));
                continue;
            }
        }
        out.push(Request { function: p.function, start: p.address, count: p.ty.width(), points: vec![(i, 0)] });
    }
    out
}

/// Pairs of points that claim the same address of the same function (two bits
/// of one register may share it, if they are different bits).
pub fn overlaps(points: &[Point]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, a) in points.iter().enumerate() {
        for (j, b) in points.iter().enumerate().skip(i + 1) {
            if a.function != b.function || a.end() <= b.address as u32 || b.end() <= a.address as u32 {
                continue;
            }
            let bits_apart =
                matches!((a.ty, b.ty), (DataType::Bit(x), DataType::Bit(y)) if x != y && a.address == b.address);
            if !bits_apart {
                out.push((i, j));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::map::Order;

    fn pt(function: Function, address: u16, ty: DataType) -> Point {
        Point { metric: 0, function, address, ty, order: Order::Abcd, scale: 1.0, offset: 0.0 }
    }

    #[test]
    fn adjacent_and_nearby_points_share_a_request() {
        let points = [
            pt(Function::Holding, 10, DataType::F32),
            pt(Function::Holding, 0, DataType::U16),
            pt(Function::Holding, 1, DataType::U16),
            pt(Function::Holding, 4, DataType::U32), // a gap of 2 after register 1
            pt(Function::Input, 0, DataType::I16),
            pt(Function::Coil, 3, DataType::Bool),
            pt(Function::Coil, 0, DataType::Bool),
        ];
        let p = plan(&points, 4);
        let shape: Vec<(Function, u16, u16)> = p.iter().map(|r| (r.function, r.start, r.count)).collect();
        assert_eq!(shape, [(Function::Coil, 0, 4), (Function::Input, 0, 1), (Function::Holding, 0, 12)]);
        assert_eq!(p[2].points, [(1, 0), (2, 1), (3, 4), (0, 10)]);
        // With no gap allowed, the holding points split where they are not adjacent.
        let p = plan(&points, 0);
        let holding: Vec<(u16, u16)> =
            p.iter().filter(|r| r.function == Function::Holding).map(|r| (r.start, r.count)).collect();
        assert_eq!(holding, [(0, 2), (4, 2), (10, 2)]);
    }

    #[test]
    fn requests_stay_within_the_protocol_limits() {
        let regs: Vec<Point> = (0..200).map(|i| pt(Function::Input, i * 2, DataType::U32)).collect();
        let p = plan(&regs, 0);
        assert!(p.iter().all(|r| r.count <= 125), "{:?}", p.iter().map(|r| r.count).collect::<Vec<_>>());
        assert_eq!(p.iter().map(|r| r.points.len()).sum::<usize>(), 200);
        assert_eq!(p.len(), 4, "400 registers in reads of at most 124 (a u32 is never split)");
        let coils: Vec<Point> = (0..4500).map(|i| pt(Function::Coil, i, DataType::Bool)).collect();
        let p = plan(&coils, 0);
        assert_eq!(p.iter().map(|r| r.count).collect::<Vec<_>>(), [2000, 2000, 500]);
    }

    #[test]
    fn overlapping_points_are_found_but_distinct_bits_may_share() {
        let points = [
            pt(Function::Holding, 0, DataType::U32),
            pt(Function::Holding, 1, DataType::U16), // inside the u32
            pt(Function::Input, 1, DataType::U16),   // another function: fine
            pt(Function::Holding, 5, DataType::Bit(0)),
            pt(Function::Holding, 5, DataType::Bit(3)),
            pt(Function::Holding, 5, DataType::Bit(3)), // the same bit twice
        ];
        assert_eq!(overlaps(&points), [(0, 1), (4, 5)]);
    }
}
