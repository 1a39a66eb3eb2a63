//! Reply encoding for RESP2 and RESP3.

use super::frame::{Frame, Protocol};
use bytes::{BufMut, BytesMut};

/// Appends the wire form of `frame` for `proto` to `out`.
pub fn encode(frame: &Frame, proto: Protocol, out: &mut BytesMut) {
    match frame {
        Frame::Simple(s) => line(out, b'+', s.as_bytes()),
        Frame::Error(e) => line(out, b'-', e.as_bytes()),
        Frame::Integer(n) => line(out, b':', itoa::Buffer::new().format(*n).as_bytes()),
        Frame::Bulk(b) => bulk(out, b),
        Frame::Null => match proto {
            Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
            Protocol::Resp3 => out.put_slice(b"_\r\n"),
        },
        Frame::NullArray => match proto {
            Protocol::Resp2 => out.put_slice(b"*-1\r\n"),
            Protocol::Resp3 => out.put_slice(b"_\r\n"),
        },
        Frame::Array(items) => aggregate(out, b'*', items, proto),
        Frame::Set(items) => aggregate(
            out,
            if proto == Protocol::Resp3 { b'~' } else { b'*' },
            items,
            proto,
        ),
        Frame::Push(items) => aggregate(
            out,
            if proto == Protocol::Resp3 { b'>' } else { b'*' },
            items,
            proto,
        ),
        Frame::Map(pairs) => {
            match proto {
                Protocol::Resp3 => header(out, b'%', pairs.len()),
                Protocol::Resp2 => header(out, b'*', pairs.len() * 2),
            }
            for (k, v) in pairs {
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        Frame::Double(d) => match proto {
            Protocol::Resp3 => line(out, b',', format_double(*d).as_bytes()),
            Protocol::Resp2 => bulk(out, format_double(*d).as_bytes()),
        },
        Frame::Boolean(b) => match proto {
            Protocol::Resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Protocol::Resp2 => out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
        },
        Frame::Verbatim(text) => match proto {
            Protocol::Resp3 => {
                header(out, b'=', text.len() + 4);
                out.put_slice(b"txt:");
                out.put_slice(text.as_bytes());
                out.put_slice(b"\r\n");
            }
            Protocol::Resp2 => bulk(out, text.as_bytes()),
        },
        Frame::BigNumber(n) => match proto {
            Protocol::Resp3 => line(out, b'(', n.as_bytes()),
            Protocol::Resp2 => bulk(out, n.as_bytes()),
        },
        Frame::Attribute(pairs) => {
            if proto == Protocol::Resp3 {
                header(out, b'|', pairs.len());
                for (k, v) in pairs {
                    encode(k, proto, out);
                    encode(v, proto, out);
                }
            }
        }
        Frame::Multiple(frames) => {
            for f in frames {
                encode(f, proto, out);
            }
        }
        Frame::NoReply => {}
    }
}

/// A one-line reply. A status or error text that holds a line break
/// (a script's error, say) has it written as a space, as Redis does, so
/// the reply stays one frame.
fn line(out: &mut BytesMut, prefix: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(prefix);
    if body.iter().any(|b| *b == b'\r' || *b == b'\n') {
        out.extend(body.iter().map(|b| match b {
            b'\r' | b'\n' => b' ',
            other => *other,
        }));
    } else {
        out.put_slice(body);
    }
    out.put_slice(b"\r\n");
}

fn header(out: &mut BytesMut, prefix: u8, len: usize) {
    line(out, prefix, itoa::Buffer::new().format(len).as_bytes());
}

fn bulk(out: &mut BytesMut, body: &[u8]) {
    header(out, b'$', body.len());
    out.reserve(body.len() + 2);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn aggregate(out: &mut BytesMut, prefix: u8, items: &[Frame], proto: Protocol) {
    header(out, prefix, items.len());
    for item in items {
        encode(item, proto, out);
    }
}

/// Formats a double the way Redis 7.2+ does: the shortest text that reads
/// back to the same value, integers without a fraction, `inf`/`-inf`.
pub fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d.is_nan() {
        return "nan".into();
    }
    if d == d.trunc() && d.abs() < 1e17 {
        return format!("{}", d as i64);
    }
    let abs = d.abs();
    if !(1e-5..1e17).contains(&abs) {
        let s = format!("{:e}", d);
        // Rust writes `1e300`/`1e-7`; Redis writes `1e+300`/`1e-07`.
        if let Some((mantissa, exp)) = s.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            return format!("{mantissa}e{sign}{digits:0>2}");
        }
        return s;
    }
    format!("{}", d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn enc(f: Frame, p: Protocol) -> String {
        let mut out = BytesMut::new();
        encode(&f, p, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn resp2_downgrades_resp3_types() {
        let map = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1))]);
        assert_eq!(enc(map.clone(), Protocol::Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(map, Protocol::Resp3), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(Frame::Null, Protocol::Resp2), "$-1\r\n");
        assert_eq!(enc(Frame::NullArray, Protocol::Resp3), "_\r\n");
        assert_eq!(enc(Frame::Double(1.5), Protocol::Resp2), "$3\r\n1.5\r\n");
        assert_eq!(enc(Frame::Double(1.5), Protocol::Resp3), ",1.5\r\n");
        assert_eq!(enc(Frame::Boolean(true), Protocol::Resp2), ":1\r\n");
        assert_eq!(
            enc(
                Frame::Push(vec![Frame::Bulk(Bytes::from("x"))]),
                Protocol::Resp3
            ),
            ">1\r\n$1\r\nx\r\n"
        );
    }

    #[test]
    fn line_breaks_in_errors_stay_one_frame() {
        assert_eq!(
            enc(
                Frame::error_owned("ERR a\nstack\r\n".into()),
                Protocol::Resp2
            ),
            "-ERR a stack  \r\n"
        );
    }

    #[test]
    fn doubles_like_redis() {
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(10.6), "10.6");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(1e300), "1e+300");
        assert_eq!(format_double(-2.5e-7), "-2.5e-07");
    }
}
