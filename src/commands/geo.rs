//! Geospatial commands over sorted sets (`keyspace::geo` has the geohash
//! arithmetic): GEOADD, GEOPOS, GEODIST, GEOHASH, GEOSEARCH[STORE] and
//! the GEORADIUS family, with Redis's options, replies and errors.

use super::args::*;
use super::flags::*;
use super::typed::read_zset;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::geo::{self, Search, Shape};
use crate::keyspace::zset::ScoreBound;
use crate::keyspace::{Value, ZSet};
use crate::resp::{Frame, Protocol};
use bytes::Bytes;
use std::sync::Arc;

const G: &str = "geo";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!("geoadd", -5, WRITE | DENYOOM, (1, 1, 1), "Adds one or more members to a geospatial index. The key is created if it doesn't exist.", "key [NX | XX] [CH] longitude latitude member [longitude latitude member ...]", geoadd),
    spec!("geodist", -4, READONLY, (1, 1, 1), "Returns the distance between two members of a geospatial index.", "key member1 member2 [M | KM | FT | MI]", geodist),
    spec!("geohash", -2, READONLY, (1, 1, 1), "Returns members from a geospatial index as geohash strings.", "key [member [member ...]]", geohash),
    spec!("geopos", -2, READONLY, (1, 1, 1), "Returns the longitude and latitude of members from a geospatial index.", "key [member [member ...]]", geopos),
    spec!(
        "georadius",
        -6,
        WRITE | DENYOOM | MOVABLE_KEYS,
        (1, 1, 1),
        "Queries a geospatial index for members within a distance from a coordinate, optionally stores the result.",
        "key longitude latitude radius M | KM | FT | MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC] [STORE key | STOREDIST key]",
        georadius
    ),
    spec!("georadius_ro", -6, READONLY, (1, 1, 1), "Returns members from a geospatial index that are within a distance from a coordinate.", "key longitude latitude radius M | KM | FT | MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC]", georadius_ro),
    spec!(
        "georadiusbymember",
        -5,
        WRITE | DENYOOM | MOVABLE_KEYS,
        (1, 1, 1),
        "Queries a geospatial index for members within a distance from a member, optionally stores the result.",
        "key member radius M | KM | FT | MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC] [STORE key | STOREDIST key]",
        georadiusbymember
    ),
    spec!("georadiusbymember_ro", -5, READONLY, (1, 1, 1), "Returns members from a geospatial index that are within a distance from a member.", "key member radius M | KM | FT | MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC]", georadiusbymember_ro),
    spec!(
        "geosearch",
        -7,
        READONLY,
        (1, 1, 1),
        "Queries a geospatial index for members inside an area of a box or a circle.",
        "key FROMMEMBER member | FROMLONLAT longitude latitude BYRADIUS radius M | KM | FT | MI | BYBOX width height M | KM | FT | MI [ASC | DESC] [COUNT count [ANY]] [WITHCOORD] [WITHDIST] [WITHHASH]",
        geosearch
    ),
    spec!(
        "geosearchstore",
        -8,
        WRITE | DENYOOM,
        (1, 2, 1),
        "Queries a geospatial index for members inside an area of a box or a circle, optionally stores the result.",
        "destination source FROMMEMBER member | FROMLONLAT longitude latitude BYRADIUS radius M | KM | FT | MI | BYBOX width height M | KM | FT | MI [ASC | DESC] [COUNT count [ANY]] [STOREDIST]",
        geosearchstore
    ),
];

const ERR_MEMBER: Frame = Frame::error("ERR could not decode requested zset member");

fn lon_lat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64), Frame> {
    let (lon, lat) = (float(lon)?, float(lat)?);
    if !geo::valid(lon, lat) {
        return Err(Frame::error_owned(format!(
            "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

fn unit(arg: &[u8]) -> Result<f64, Frame> {
    Ok(match arg.to_ascii_lowercase().as_slice() {
        b"m" => 1.0,
        b"km" => 1000.0,
        b"ft" => 0.3048,
        b"mi" => 1609.34,
        _ => {
            return Err(Frame::error(
                "ERR unsupported unit provided. please use M, KM, FT, MI",
            ))
        }
    })
}

fn non_negative(arg: &[u8], what: &'static str, negative: &'static str) -> Result<f64, Frame> {
    let v = parse_f64(arg).ok_or(Frame::error(what))?;
    if v < 0.0 {
        return Err(Frame::error(negative));
    }
    Ok(v)
}

fn distance_reply(meters: f64) -> Frame {
    Frame::bulk(format!("{meters:.4}"))
}

fn coordinate(x: f64, proto: Protocol) -> Frame {
    match proto {
        Protocol::Resp2 => Frame::bulk(geo::human(x)),
        Protocol::Resp3 => Frame::Double(x),
    }
}

/// GEOADD: ZADD of each point's geohash score.
fn geoadd(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let mut first = 2;
    let (mut nx, mut xx) = (false, false);
    while first < args.len() {
        let a = &args[first];
        if is(a, "nx") {
            nx = true;
        } else if is(a, "xx") {
            xx = true;
        } else if !is(a, "ch") {
            break;
        }
        first += 1;
    }
    let points = &args[first..];
    if points.is_empty() || !points.len().is_multiple_of(3) || (nx && xx) {
        return Err(ERR_SYNTAX);
    }
    let mut zadd: Vec<Bytes> = vec![Bytes::from_static(b"zadd")];
    zadd.extend_from_slice(&args[1..first]);
    for p in points.chunks(3) {
        let (lon, lat) = lon_lat(&p[0], &p[1])?;
        zadd.push(Bytes::from((geo::score(lon, lat) as u64).to_string()));
        zadd.push(p[2].clone());
    }
    super::zset::zadd(ctx, &zadd)
}

fn score_of(z: Option<&ZSet>, member: &[u8]) -> Option<f64> {
    z.and_then(|z| z.score(member))
}

fn geopos(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let proto = ctx.session.proto;
    let z = read_zset(ctx, &args[1])?;
    Ok(Frame::Array(
        args[2..]
            .iter()
            .map(|m| match score_of(z, m) {
                Some(s) => {
                    let (lon, lat) = geo::decode(s);
                    Frame::Array(vec![coordinate(lon, proto), coordinate(lat, proto)])
                }
                None => Frame::NullArray,
            })
            .collect(),
    ))
}

fn geohash(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let z = read_zset(ctx, &args[1])?;
    Ok(Frame::Array(
        args[2..]
            .iter()
            .map(|m| match score_of(z, m) {
                Some(s) => Frame::bulk(geo::hash_string(s)),
                None => Frame::Null,
            })
            .collect(),
    ))
}

fn geodist(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let to_meter = match args.len() {
        4 => 1.0,
        5 => unit(&args[4])?,
        _ => return Err(ERR_SYNTAX),
    };
    let z = read_zset(ctx, &args[1])?;
    match (score_of(z, &args[2]), score_of(z, &args[3])) {
        (Some(a), Some(b)) => {
            let ((lon1, lat1), (lon2, lat2)) = (geo::decode(a), geo::decode(b));
            Ok(distance_reply(
                geo::distance(lon1, lat1, lon2, lat2) / to_meter,
            ))
        }
        _ => Ok(Frame::Null),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    /// GEORADIUS[_RO]: key lon lat radius unit.
    Coords { store: bool },
    /// GEORADIUSBYMEMBER[_RO]: key member radius unit.
    Member { store: bool },
    /// GEOSEARCH / GEOSEARCHSTORE: FROM... and BY... options.
    Search { store: bool },
}

fn georadius(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Variant::Coords { store: true })
}

fn georadius_ro(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Variant::Coords { store: false })
}

fn georadiusbymember(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Variant::Member { store: true })
}

fn georadiusbymember_ro(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Variant::Member { store: false })
}

fn geosearch(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Variant::Search { store: false })
}

fn geosearchstore(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Variant::Search { store: true })
}

struct Found {
    member: crate::keyspace::Blob,
    dist: f64,
    score: f64,
    lon: f64,
    lat: f64,
}

/// Redis's `georadiusGeneric`: options parsed in its order and with its
/// errors, the shape's cells scanned, matches sorted, replied or stored.
fn search(ctx: &mut ExecCtx, args: &[Bytes], variant: Variant) -> CmdResult {
    let src = if variant == (Variant::Search { store: true }) {
        2
    } else {
        1
    };
    let exists = read_zset(ctx, &args[src])?.is_some();
    let member_centre = |ctx: &mut ExecCtx, m: &[u8]| -> Result<(f64, f64), Frame> {
        let z = read_zset(ctx, &args[src])?;
        score_of(z, m).map(geo::decode).ok_or(ERR_MEMBER)
    };
    let mut centre = None;
    let mut shape = None;
    let mut conversion = 1.0;
    let (base, mut store_key, may_store) = match variant {
        Variant::Coords { store } => {
            centre = Some(lon_lat(&args[2], &args[3])?);
            let r = non_negative(
                &args[4],
                "ERR need numeric radius",
                "ERR radius cannot be negative",
            )?;
            conversion = unit(&args[5])?;
            shape = Some(Shape::Radius(r));
            (6, None, store)
        }
        Variant::Member { store } => {
            if exists {
                centre = Some(member_centre(ctx, &args[2])?);
                let r = non_negative(
                    &args[3],
                    "ERR need numeric radius",
                    "ERR radius cannot be negative",
                )?;
                conversion = unit(&args[4])?;
                shape = Some(Shape::Radius(r));
            }
            (5, None, store)
        }
        Variant::Search { store: true } => (3, Some(args[1].clone()), false),
        Variant::Search { store: false } => (2, None, false),
    };
    let searching = matches!(variant, Variant::Search { .. });
    let (mut withdist, mut withhash, mut withcoord, mut any) = (false, false, false, false);
    let (mut asc, mut desc, mut storedist) = (false, false, false);
    let mut count: usize = 0;
    let (mut from_member, mut from_lonlat, mut by_radius, mut by_box) =
        (false, false, false, false);
    let mut i = base;
    while i < args.len() {
        let a = &args[i];
        let left = args.len() - 1 - i;
        if is(a, "withdist") {
            withdist = true;
        } else if is(a, "withhash") {
            withhash = true;
        } else if is(a, "withcoord") {
            withcoord = true;
        } else if is(a, "any") {
            any = true;
        } else if is(a, "asc") {
            (asc, desc) = (true, false);
        } else if is(a, "desc") {
            (asc, desc) = (false, true);
        } else if is(a, "count") && left >= 1 {
            let n = int(&args[i + 1])?;
            if n <= 0 {
                return Err(Frame::error("ERR COUNT must be > 0"));
            }
            count = n as usize;
            i += 1;
        } else if (is(a, "store") || is(a, "storedist")) && left >= 1 && may_store {
            store_key = Some(args[i + 1].clone());
            storedist = is(a, "storedist");
            i += 1;
        } else if is(a, "storedist") && variant == (Variant::Search { store: true }) {
            storedist = true;
        } else if is(a, "frommember") && left >= 1 && searching && !from_lonlat {
            if exists {
                centre = Some(member_centre(ctx, &args[i + 1])?);
            }
            from_member = true;
            i += 1;
        } else if is(a, "fromlonlat") && left >= 2 && searching && !from_member {
            centre = Some(lon_lat(&args[i + 1], &args[i + 2])?);
            from_lonlat = true;
            i += 2;
        } else if is(a, "byradius") && left >= 2 && searching && !by_box {
            let r = non_negative(
                &args[i + 1],
                "ERR need numeric radius",
                "ERR radius cannot be negative",
            )?;
            conversion = unit(&args[i + 2])?;
            shape = Some(Shape::Radius(r));
            by_radius = true;
            i += 2;
        } else if is(a, "bybox") && left >= 3 && searching && !by_radius {
            let w = parse_f64(&args[i + 1]).ok_or(Frame::error("ERR need numeric width"))?;
            let h = parse_f64(&args[i + 2]).ok_or(Frame::error("ERR need numeric height"))?;
            if w < 0.0 || h < 0.0 {
                return Err(Frame::error("ERR height or width cannot be negative"));
            }
            conversion = unit(&args[i + 3])?;
            shape = Some(Shape::Box {
                width: w,
                height: h,
            });
            by_box = true;
            i += 3;
        } else {
            return Err(ERR_SYNTAX);
        }
        i += 1;
    }
    if store_key.is_some() && (withdist || withhash || withcoord) {
        return Err(Frame::error_owned(format!(
            "ERR {} is not compatible with WITHDIST, WITHHASH and WITHCOORD options",
            if searching {
                "GEOSEARCHSTORE"
            } else {
                "STORE option in GEORADIUS"
            }
        )));
    }
    let name = String::from_utf8_lossy(&args[0]).into_owned();
    if searching && !(from_member || from_lonlat) {
        return Err(Frame::error_owned(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if searching && !(by_radius || by_box) {
        return Err(Frame::error_owned(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if any && count == 0 {
        return Err(Frame::error("ERR the ANY argument requires COUNT argument"));
    }
    let (Some((lon, lat)), Some(shape), true) = (centre, shape, exists) else {
        return Ok(match store_key {
            Some(dst) => {
                let deleted = ctx.db().remove(&dst).is_some();
                if deleted {
                    ctx.modified(&dst, 1);
                }
                Frame::Integer(0)
            }
            None => Frame::Array(Vec::new()),
        });
    };
    if count > 0 && !asc && !desc && !any {
        asc = true;
    }
    let meters = match shape {
        Shape::Radius(r) => Shape::Radius(r * conversion),
        Shape::Box { width, height } => Shape::Box {
            width: width * conversion,
            height: height * conversion,
        },
    };
    let query = Search {
        lon,
        lat,
        shape: meters,
    };
    let limit = if any { count } else { 0 };
    let mut found = Vec::new();
    if let Some(z) = read_zset(ctx, &args[src])? {
        'cells: for (min, max) in query.ranges() {
            if limit > 0 && found.len() >= limit {
                break;
            }
            let start = z.first_rank_by_score(ScoreBound {
                value: min,
                exclusive: false,
            });
            for (member, score) in z.iter_from_rank(start) {
                if score >= max {
                    break;
                }
                let (plon, plat) = geo::decode(score);
                if let Some(dist) = query.admits(plon, plat) {
                    found.push(Found {
                        member: member.clone(),
                        dist,
                        score,
                        lon: plon,
                        lat: plat,
                    });
                    if limit > 0 && found.len() >= limit {
                        break 'cells;
                    }
                }
            }
        }
    }
    if asc {
        found.sort_by(|a, b| a.dist.total_cmp(&b.dist));
    } else if desc {
        found.sort_by(|a, b| b.dist.total_cmp(&a.dist));
    }
    if count > 0 {
        found.truncate(count);
    }
    if let Some(dst) = store_key {
        let n = found.len();
        if n == 0 {
            if ctx.db().remove(&dst).is_some() {
                ctx.modified(&dst, 1);
            }
            return Ok(Frame::Integer(0));
        }
        let mut z = ZSet::new();
        for f in &found {
            z.insert(
                &f.member,
                if storedist {
                    f.dist / conversion
                } else {
                    f.score
                },
            );
        }
        ctx.db().set(&dst, Value::ZSet(Arc::new(z)), false);
        ctx.modified(&dst, n as u64);
        return Ok(Frame::Integer(n as i64));
    }
    let proto = ctx.session.proto;
    let options = withdist || withhash || withcoord;
    Ok(Frame::Array(
        found
            .into_iter()
            .map(|f| {
                let member = Frame::Bulk(f.member.to_bytes());
                if !options {
                    return member;
                }
                let mut item = vec![member];
                if withdist {
                    item.push(distance_reply(f.dist / conversion));
                }
                if withhash {
                    item.push(Frame::Integer(f.score as i64));
                }
                if withcoord {
                    item.push(Frame::Array(vec![
                        coordinate(f.lon, proto),
                        coordinate(f.lat, proto),
                    ]));
                }
                Frame::Array(item)
            })
            .collect(),
    ))
}
