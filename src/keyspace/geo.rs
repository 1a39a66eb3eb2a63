//! Redis's geospatial index arithmetic: points live in sorted sets with a
//! 52-bit interleaved geohash (26 bits of latitude over
//! [-85.05112878, 85.05112878], 26 of longitude over [-180, 180]) as the
//! score, so scores, positions and distances equal Redis's for the same
//! input. A search covers the shape with the geohash cell of a step
//! estimated from the radius and its eight neighbours (Redis's
//! `geohashCalculateAreasByShapeWGS84`), each cell a score range.

pub const LONG_MIN: f64 = -180.0;
pub const LONG_MAX: f64 = 180.0;
pub const LAT_MIN: f64 = -85.05112878;
pub const LAT_MAX: f64 = 85.05112878;
const STEP_MAX: u32 = 26;
const EARTH_RADIUS_M: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;
const D_R: f64 = std::f64::consts::PI / 180.0;

fn deg_rad(a: f64) -> f64 {
    a * D_R
}

fn rad_deg(a: f64) -> f64 {
    a / D_R
}

/// A geohash cell: `bits` over `2·step` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub bits: u64,
    pub step: u32,
}

/// Spreads the low 32 bits of `x` to the even positions of the result.
fn spread(x: u64) -> u64 {
    let mut x = x & 0xffff_ffff;
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// The even bits of `x`, packed.
fn squash(x: u64) -> u64 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | (x >> 4)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x >> 8)) & 0x0000_ffff_0000_ffff;
    (x | (x >> 16)) & 0x0000_0000_ffff_ffff
}

/// Whether a longitude/latitude pair can be indexed.
pub fn valid(lon: f64, lat: f64) -> bool {
    (LONG_MIN..=LONG_MAX).contains(&lon) && (LAT_MIN..=LAT_MAX).contains(&lat)
}

/// The cell of `step` holding the point, in the given latitude range
/// (Redis's own, or the standard [-90, 90] for GEOHASH strings).
fn encode_in(lon: f64, lat: f64, step: u32, lat_range: (f64, f64)) -> Cell {
    let lat_offset = (lat - lat_range.0) / (lat_range.1 - lat_range.0);
    let lon_offset = (lon - LONG_MIN) / (LONG_MAX - LONG_MIN);
    let scale = (1u64 << step) as f64;
    // As C's conversion to uint32: truncation.
    let ilat = (lat_offset * scale) as u32 as u64;
    let ilon = (lon_offset * scale) as u32 as u64;
    Cell {
        bits: spread(ilat) | (spread(ilon) << 1),
        step,
    }
}

pub fn encode(lon: f64, lat: f64, step: u32) -> Cell {
    encode_in(lon, lat, step, (LAT_MIN, LAT_MAX))
}

/// The score GEOADD stores for a point.
pub fn score(lon: f64, lat: f64) -> f64 {
    encode(lon, lat, STEP_MAX).bits as f64
}

/// A cell's bounds: (lon_min, lon_max, lat_min, lat_max).
fn bounds(cell: Cell) -> (f64, f64, f64, f64) {
    let ilat = squash(cell.bits) as f64;
    let ilon = squash(cell.bits >> 1) as f64;
    let scale = (1u64 << cell.step) as f64;
    let (lat_span, lon_span) = (LAT_MAX - LAT_MIN, LONG_MAX - LONG_MIN);
    (
        LONG_MIN + (ilon / scale) * lon_span,
        LONG_MIN + ((ilon + 1.0) / scale) * lon_span,
        LAT_MIN + (ilat / scale) * lat_span,
        LAT_MIN + ((ilat + 1.0) / scale) * lat_span,
    )
}

/// The point a score stands for (the centre of its cell), as
/// (longitude, latitude).
pub fn decode(score: f64) -> (f64, f64) {
    let (lo0, lo1, la0, la1) = bounds(Cell {
        bits: score as u64,
        step: STEP_MAX,
    });
    (
        ((lo0 + lo1) / 2.0).clamp(LONG_MIN, LONG_MAX),
        ((la0 + la1) / 2.0).clamp(LAT_MIN, LAT_MAX),
    )
}

/// The standard 11-character geohash of a score (GEOHASH).
pub fn hash_string(score: f64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (lon, lat) = decode(score);
    let bits = encode_in(lon, lat, STEP_MAX, (-90.0, 90.0)).bits;
    (0..11)
        .map(|i| {
            // 52 bits make ten characters; the eleventh is always '0'.
            let idx = if i == 10 {
                0
            } else {
                (bits >> (52 - (i + 1) * 5)) & 0x1f
            };
            ALPHABET[idx as usize] as char
        })
        .collect()
}

/// Great-circle distance in meters (Redis's haversine, same radius).
pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let v = ((deg_rad(lon2) - deg_rad(lon1)) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let (lat1r, lat2r) = (deg_rad(lat1), deg_rad(lat2));
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_M * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// What to search: a circle, or a box (width, height), in meters.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Radius(f64),
    Box { width: f64, height: f64 },
}

/// A search around (lon, lat).
#[derive(Debug, Clone, Copy)]
pub struct Search {
    pub lon: f64,
    pub lat: f64,
    pub shape: Shape,
}

impl Search {
    /// The distance of a point from the centre when it is inside the
    /// shape.
    pub fn admits(&self, lon: f64, lat: f64) -> Option<f64> {
        match self.shape {
            Shape::Radius(r) => {
                let d = distance(self.lon, self.lat, lon, lat);
                (d <= r).then_some(d)
            }
            Shape::Box { width, height } => {
                if lat_distance(lat, self.lat) > height / 2.0
                    || distance(lon, lat, self.lon, lat) > width / 2.0
                {
                    return None;
                }
                Some(distance(self.lon, self.lat, lon, lat))
            }
        }
    }

    /// (lon_min, lat_min, lon_max, lat_max) of the shape.
    fn bounding_box(&self) -> (f64, f64, f64, f64) {
        let (half_h, half_w) = match self.shape {
            Shape::Radius(r) => (r, r),
            Shape::Box { width, height } => (height / 2.0, width / 2.0),
        };
        let lat_delta = rad_deg(half_h / EARTH_RADIUS_M);
        let top = rad_deg(half_w / EARTH_RADIUS_M / deg_rad(self.lat + lat_delta).cos());
        let bottom = rad_deg(half_w / EARTH_RADIUS_M / deg_rad(self.lat - lat_delta).cos());
        let delta = if self.lat < 0.0 { bottom } else { top };
        (
            self.lon - delta,
            self.lat - lat_delta,
            self.lon + delta,
            self.lat + lat_delta,
        )
    }

    /// The score ranges `[min, max)` to scan, in Redis's order (centre,
    /// N, S, E, W, NE, NW, SE, SW; cells that cannot hold a match and
    /// repeats of the previous one left out).
    pub fn ranges(&self) -> Vec<(f64, f64)> {
        let radius = match self.shape {
            Shape::Radius(r) => r,
            Shape::Box { width, height } => ((width / 2.0).powi(2) + (height / 2.0).powi(2)).sqrt(),
        };
        let (min_lon, min_lat, max_lon, max_lat) = self.bounding_box();
        let mut step = estimate_step(radius, self.lat);
        let mut centre = encode(self.lon, self.lat, step);
        let mut n = neighbours(centre);
        let out_n = bounds(n[0]).3 < max_lat;
        let out_s = bounds(n[1]).2 > min_lat;
        let out_e = bounds(n[2]).1 < max_lon;
        let out_w = bounds(n[3]).0 > min_lon;
        if step > 1 && (out_n || out_s || out_e || out_w) {
            step -= 1;
            centre = encode(self.lon, self.lat, step);
            n = neighbours(centre);
        }
        let [north, south, east, west, ne, nw, se, sw] = n;
        let mut cells = [
            Some(centre),
            Some(north),
            Some(south),
            Some(east),
            Some(west),
            Some(ne),
            Some(nw),
            Some(se),
            Some(sw),
        ];
        if step >= 2 {
            let (lo0, lo1, la0, la1) = bounds(centre);
            let drop = |cells: &mut [Option<Cell>; 9], idx: [usize; 3]| {
                for i in idx {
                    cells[i] = None;
                }
            };
            if la0 < min_lat {
                drop(&mut cells, [2, 8, 7]);
            }
            if la1 > max_lat {
                drop(&mut cells, [1, 5, 6]);
            }
            if lo0 < min_lon {
                drop(&mut cells, [4, 8, 6]);
            }
            if lo1 > max_lon {
                drop(&mut cells, [3, 7, 5]);
            }
        }
        let mut out = Vec::new();
        let mut last: Option<Cell> = None;
        for cell in cells.into_iter().flatten() {
            if last == Some(cell) {
                continue;
            }
            let shift = 52 - cell.step * 2;
            out.push((
                (cell.bits << shift) as f64,
                ((cell.bits + 1) << shift) as f64,
            ));
            last = Some(cell);
        }
        out
    }
}

fn estimate_step(mut range_m: f64, lat: f64) -> u32 {
    if range_m == 0.0 {
        return STEP_MAX;
    }
    let mut step: i32 = 1;
    while range_m < MERCATOR_MAX {
        range_m *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, STEP_MAX as i32) as u32
}

/// The neighbouring cell along one axis (`d` = ±1): longitude bits are
/// the odd positions (`0xaa..`), latitude bits the even ones (`0x55..`),
/// as Redis's `geohash_move_x` / `geohash_move_y`.
fn step_axis(cell: Cell, d: i8, axis_mask: u64) -> Cell {
    let other_mask = !axis_mask;
    let (axis, other) = (cell.bits & axis_mask, cell.bits & other_mask);
    let zz = other_mask >> (64 - cell.step * 2);
    let axis = if d > 0 {
        axis.wrapping_add(zz + 1)
    } else {
        (axis | zz).wrapping_sub(zz + 1)
    };
    Cell {
        bits: (axis & (axis_mask >> (64 - cell.step * 2))) | other,
        step: cell.step,
    }
}

fn move_x(cell: Cell, d: i8) -> Cell {
    step_axis(cell, d, 0xaaaa_aaaa_aaaa_aaaa)
}

fn move_y(cell: Cell, d: i8) -> Cell {
    step_axis(cell, d, 0x5555_5555_5555_5555)
}

/// N, S, E, W, NE, NW, SE, SW of a cell (wrapping at the edges, as Redis).
fn neighbours(c: Cell) -> [Cell; 8] {
    [
        move_y(c, 1),
        move_y(c, -1),
        move_x(c, 1),
        move_x(c, -1),
        move_y(move_x(c, 1), 1),
        move_y(move_x(c, -1), 1),
        move_y(move_x(c, 1), -1),
        move_y(move_x(c, -1), -1),
    ]
}

/// A coordinate as Redis prints positions: 17 decimals, trailing zeros
/// cut (`%.17Lf`, LD_STR_HUMAN).
pub fn human(x: f64) -> String {
    let mut s = format!("{x:.17}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palermo_and_catania_as_redis() {
        // GEOADD Sicily 13.361389 38.115556 "Palermo" 15.087269 37.502669 "Catania"
        // on redis-server 7.0: ZSCORE, GEOPOS, GEODIST, GEOHASH.
        let p = score(13.361389, 38.115556);
        let c = score(15.087269, 37.502669);
        assert_eq!(p, 3479099956230698.0);
        assert_eq!(c, 3479447370796909.0);
        let (lon, lat) = decode(p);
        assert_eq!(human(lon), "13.36138933897018433");
        assert_eq!(human(lat), "38.11555639549629859");
        let (clon, clat) = decode(c);
        assert_eq!(
            format!("{:.4}", distance(lon, lat, clon, clat)),
            "166274.1516"
        );
        assert_eq!(hash_string(p), "sqc8b49rny0");
        assert_eq!(hash_string(c), "sqdtr74hyu0");
    }

    #[test]
    fn search_cells_cover_the_radius() {
        let s = Search {
            lon: 15.0,
            lat: 37.0,
            shape: Shape::Radius(200_000.0),
        };
        let ranges = s.ranges();
        assert!(!ranges.is_empty() && ranges.len() <= 9);
        for (lon, lat) in [(13.361389, 38.115556), (15.087269, 37.502669)] {
            let sc = score(lon, lat);
            assert!(ranges.iter().any(|(a, b)| *a <= sc && sc < *b));
        }
    }
}
