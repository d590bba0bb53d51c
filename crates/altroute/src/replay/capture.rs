//! Reading pcap and pcapng captures into frames, and writing Ethernet pcap files.
//!
//! The reader is this module's own, over the whole file read into memory: every length is checked
//! against the bytes that are there, so a damaged or cut record is reported (file name and packet
//! number) and never read past or allocated, and nothing in it can panic. (It replaced
//! `pcap-file` 2.0, whose pcapng parser refused valid files whose options end without the
//! optional `opt_endofopt`, and which could panic on damaged input; its last release is from
//! 2022.)
//!
//! - **Classic pcap**: micro- and nanosecond magics, either byte order. The link type's upper
//!   16 bits (FCS length flags) are ignored, as libpcap does; the low 16 must be 1 (Ethernet).
//! - **pcapng**: sections in either byte order (each section header says), interface
//!   descriptions, enhanced, simple and (obsolete) packet blocks; other blocks are skipped.
//!   Options may end without `opt_endofopt`. Every interface a packet uses must be Ethernet;
//!   timestamps honour `if_tsresol` and `if_tsoffset`; simple packet blocks (which carry no
//!   time) take the previous packet's time.
//! - **Writing** ([`pcap_bytes`]): little-endian classic pcap, microseconds, Ethernet. Classic
//!   pcap holds seconds in 32 bits: a time past 2106-02-07 06:28:15 UTC (captures crafted to test
//!   that overflow) is written as that last second, with its microseconds kept — clamped rather
//!   than written as another format, so every output stays the `<port>.pcap` that tcpdump and the
//!   golden tests read; only the stamp, never the frame, is changed.

use std::path::Path;

/// The snap length written into output files (large enough for any frame the pipeline emits).
pub const OUT_SNAPLEN: u32 = 262_144;

/// The last second a classic pcap record can hold (2106-02-07 06:28:15 UTC).
pub const PCAP_MAX_SECS: u64 = u32::MAX as u64;

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapFrame {
    /// 1-based position in its file (the number Wireshark and tcpdump show).
    pub number: usize,
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length on the wire; larger than `data.len()` when the capture's snaplen cut the frame.
    pub orig_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

impl CapFrame {
    /// Whether the capture cut this frame short (caplen < wire length).
    pub fn is_truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.orig_len)
    }
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be read.
    #[error("{file}: cannot read: {err}")]
    Io {
        /// File name.
        file: String,
        /// The I/O error.
        err: std::io::Error,
    },
    /// Not a pcap or pcapng file, or its file header is damaged.
    #[error("{file}: not a readable pcap or pcapng capture: {why}")]
    Format {
        /// File name.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// Not Ethernet.
    #[error("{file}: link type {link} is not Ethernet (1): only Ethernet captures can be replayed")]
    LinkType {
        /// File name.
        file: String,
        /// The link type found.
        link: u32,
    },
    /// A damaged or cut record.
    #[error("{file}: packet {packet}: {why}")]
    Packet {
        /// File name.
        file: String,
        /// 1-based number of the record that could not be read.
        packet: usize,
        /// What is wrong.
        why: String,
    },
}

/// What a cut record is called in errors.
const CUT: &str = "record cut short: the file ends inside it (truncated capture?)";

/// Reads a pcap or pcapng file.
pub fn read_capture(path: &Path) -> Result<Vec<CapFrame>, CaptureError> {
    let file = path.display().to_string();
    let data = std::fs::read(path).map_err(|err| CaptureError::Io {
        file: file.clone(),
        err,
    })?;
    parse_capture(&file, &data)
}

/// Parses capture bytes (pcap or pcapng, told apart by the first four bytes); `file` names it in
/// errors.
pub fn parse_capture(file: &str, data: &[u8]) -> Result<Vec<CapFrame>, CaptureError> {
    match data.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => parse_pcapng(file, data),
        Some(_) => parse_pcap(file, data),
        None => Err(CaptureError::Format {
            file: file.to_string(),
            why: format!("{} bytes: shorter than any capture header", data.len()),
        }),
    }
}

/// Byte order of a file or section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Little,
    Big,
}

fn u16_at(b: &[u8], at: usize, o: Order) -> Option<u16> {
    let v: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(match o {
        Order::Little => u16::from_le_bytes(v),
        Order::Big => u16::from_be_bytes(v),
    })
}

fn u32_at(b: &[u8], at: usize, o: Order) -> Option<u32> {
    let v: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(match o {
        Order::Little => u32::from_le_bytes(v),
        Order::Big => u32::from_be_bytes(v),
    })
}

fn u64_at(b: &[u8], at: usize, o: Order) -> Option<u64> {
    let v: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(match o {
        Order::Little => u64::from_le_bytes(v),
        Order::Big => u64::from_be_bytes(v),
    })
}

fn parse_pcap(file: &str, data: &[u8]) -> Result<Vec<CapFrame>, CaptureError> {
    let format = |why: String| CaptureError::Format {
        file: file.to_string(),
        why,
    };
    // (byte order, nanosecond timestamps) by magic number, read as little-endian.
    let magic = u32_at(data, 0, Order::Little).unwrap_or(0);
    let (order, nanos) = match magic {
        0xa1b2_c3d4 => (Order::Little, false),
        0xa1b2_3c4d => (Order::Little, true),
        0xd4c3_b2a1 => (Order::Big, false),
        0x4d3c_b2a1 => (Order::Big, true),
        m => {
            return Err(format(format!(
                "magic number {m:#010x} is neither pcap's nor pcapng's"
            )));
        }
    };
    let Some(link) = u32_at(data, 20, order) else {
        return Err(format(format!(
            "{} bytes: shorter than the 24-byte pcap file header",
            data.len()
        )));
    };
    if link & 0xffff != 1 {
        return Err(CaptureError::LinkType {
            file: file.to_string(),
            link,
        });
    }
    let mut out = Vec::new();
    let mut pos = 24usize;
    while pos < data.len() {
        let number = out.len() + 1;
        let perr = |why: &str| CaptureError::Packet {
            file: file.to_string(),
            packet: number,
            why: why.to_string(),
        };
        let field = |k: usize| u32_at(data, pos + 4 * k, order).ok_or_else(|| perr(CUT));
        let (ts_sec, ts_frac, incl_len, orig_len) = (field(0)?, field(1)?, field(2)?, field(3)?);
        let start = pos + 16;
        let bytes = usize::try_from(incl_len)
            .ok()
            .and_then(|n| data.get(start..start.checked_add(n)?))
            .ok_or_else(|| perr(CUT))?;
        pos = start + bytes.len();
        let frac = if nanos {
            u64::from(ts_frac)
        } else {
            u64::from(ts_frac).saturating_mul(1000)
        };
        out.push(CapFrame {
            number,
            ts_ns: u64::from(ts_sec)
                .saturating_mul(1_000_000_000)
                .saturating_add(frac),
            orig_len,
            data: bytes.to_vec(),
        });
    }
    Ok(out)
}

/// Nanoseconds per unit of an `if_tsresol` value (default 6: microseconds), as (multiply,
/// divide).
fn tsresol_scale(r: u8) -> (u128, u128) {
    if r & 0x80 == 0 {
        let e = u32::from(r);
        if e <= 9 {
            (10u128.pow(9 - e), 1)
        } else {
            (1, 10u128.pow((e - 9).min(30)))
        }
    } else {
        let e = u32::from(r & 0x7f).min(120);
        (1_000_000_000, 1u128 << e)
    }
}

/// What a pcapng interface description says that the reader uses.
#[derive(Clone, Copy, Debug)]
struct Iface {
    link: u32,
    snaplen: u32,
    /// (multiply, divide) turning timestamp units into nanoseconds.
    scale: (u128, u128),
    /// `if_tsoffset`: seconds added to every timestamp.
    offset_secs: i64,
}

impl Iface {
    fn ns(&self, raw: u64) -> u64 {
        let (mul, div) = self.scale;
        let t = i128::try_from(u128::from(raw) * mul / div).unwrap_or(i128::MAX);
        let t = t.saturating_add(i128::from(self.offset_secs) * 1_000_000_000);
        u64::try_from(t.max(0)).unwrap_or(u64::MAX)
    }
}

/// pcapng block types the reader uses.
const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const PB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;

/// An interface description block's body (after type and length, before the trailing length).
fn parse_idb(body: &[u8], o: Order) -> Result<Iface, String> {
    let (Some(link), Some(snaplen)) = (u16_at(body, 0, o), u32_at(body, 4, o)) else {
        return Err(format!(
            "interface description of {} bytes: shorter than its 8 fixed bytes",
            body.len()
        ));
    };
    let mut iface = Iface {
        link: u32::from(link),
        snaplen,
        scale: tsresol_scale(6),
        offset_secs: 0,
    };
    // Options: (code, length, value padded to 4 bytes)...; `opt_endofopt` (code 0) may be
    // missing at the end of the block.
    let mut at = 8usize;
    while let (Some(code), Some(len)) = (u16_at(body, at, o), u16_at(body, at + 2, o)) {
        if code == 0 {
            break;
        }
        let len = usize::from(len);
        let value = body.get(at + 4..at + 4 + len).ok_or_else(|| {
            format!("interface description option {code} of {len} bytes runs past its block")
        })?;
        match (code, value) {
            (9, [r, ..]) => iface.scale = tsresol_scale(*r),
            (14, _) => {
                if let Some(v) = u64_at(value, 0, o) {
                    iface.offset_secs = v as i64;
                }
            }
            _ => {}
        }
        at += 4 + len.next_multiple_of(4);
    }
    Ok(iface)
}

fn parse_pcapng(file: &str, data: &[u8]) -> Result<Vec<CapFrame>, CaptureError> {
    let mut out = Vec::new();
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut order = Order::Little;
    let mut last_ts = 0u64;
    let mut pos = 0usize;
    while pos < data.len() {
        let number = out.len() + 1;
        let perr = |why: String| CaptureError::Packet {
            file: file.to_string(),
            packet: number,
            why,
        };
        let kind = u32_at(data, pos, order).ok_or_else(|| perr(CUT.into()))?;
        if kind == SHB {
            // The byte-order magic says how this section (its header's length included) reads.
            order = match data.get(pos + 8..pos + 12) {
                Some([0x4d, 0x3c, 0x2b, 0x1a]) => Order::Little,
                Some([0x1a, 0x2b, 0x3c, 0x4d]) => Order::Big,
                Some(m) => {
                    let why = format!("section header with byte-order magic {m:02x?}");
                    return Err(if pos == 0 {
                        CaptureError::Format {
                            file: file.to_string(),
                            why,
                        }
                    } else {
                        perr(why)
                    });
                }
                None => {
                    return Err(CaptureError::Format {
                        file: file.to_string(),
                        why: format!("{CUT} (a section header)"),
                    });
                }
            };
            ifaces.clear();
        }
        let total = u32_at(data, pos + 4, order).ok_or_else(|| perr(CUT.into()))?;
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        if total < 12 || total % 4 != 0 {
            return Err(perr(format!(
                "block of type {kind:#x} claims {total} bytes (at least 12, a multiple of 4)"
            )));
        }
        let block = pos
            .checked_add(total)
            .and_then(|end| data.get(pos..end))
            .ok_or_else(|| perr(format!("{CUT} (a block of type {kind:#x}, {total} bytes)")))?;
        if u32_at(block, total - 4, order) != Some(total as u32) {
            return Err(perr(format!(
                "block of type {kind:#x}: its trailing length differs from its leading {total}"
            )));
        }
        pos += total;
        let body = block.get(8..total - 4).unwrap_or_default();
        // (interface, raw timestamp, wire length, captured bytes) of a packet block.
        let (iface, ts_raw, orig_len, bytes) = match kind {
            IDB => {
                ifaces.push(parse_idb(body, order).map_err(perr)?);
                continue;
            }
            EPB | PB => {
                let f = |at: usize| u32_at(body, at, order);
                // The obsolete packet block has a 16-bit interface and a drop count where the
                // enhanced one has a 32-bit interface; the rest is laid out alike.
                let iface = if kind == EPB {
                    f(0)
                } else {
                    u16_at(body, 0, order).map(u32::from)
                };
                const FIXED: usize = 20;
                let (Some(iface), Some(hi), Some(lo), Some(cap), Some(orig)) =
                    (iface, f(4), f(8), f(12), f(16))
                else {
                    return Err(perr(format!(
                        "packet block of {} bytes: shorter than its fixed fields",
                        body.len()
                    )));
                };
                let bytes = usize::try_from(cap)
                    .ok()
                    .and_then(|n| body.get(FIXED..FIXED.checked_add(n)?))
                    .ok_or_else(|| perr(format!("captured length {cap} runs past its block")))?;
                (
                    iface,
                    Some((u64::from(hi) << 32) | u64::from(lo)),
                    orig,
                    bytes,
                )
            }
            SPB => {
                let Some(orig) = u32_at(body, 0, order) else {
                    return Err(perr("simple packet block without its length".into()));
                };
                // Captured: the wire length, cut by the block and interface 0's snaplen.
                let snap = ifaces.first().map_or(0, |i| i.snaplen);
                let mut n = u64::from(orig).min(body.len().saturating_sub(4) as u64);
                if snap != 0 {
                    n = n.min(u64::from(snap));
                }
                let bytes = body.get(4..4 + n as usize).unwrap_or_default();
                (0, None, orig, bytes)
            }
            _ => continue,
        };
        let Some(idb) = ifaces.get(iface as usize) else {
            return Err(perr(format!(
                "refers to interface {iface}, which no interface description block declares"
            )));
        };
        if idb.link != 1 {
            return Err(CaptureError::LinkType {
                file: file.to_string(),
                link: idb.link,
            });
        }
        let ts_ns = ts_raw.map_or(last_ts, |raw| idb.ns(raw));
        last_ts = ts_ns;
        out.push(CapFrame {
            number,
            ts_ns,
            orig_len,
            data: bytes.to_vec(),
        });
    }
    Ok(out)
}

/// The bytes of an Ethernet pcap file (microsecond timestamps, little-endian, snaplen
/// [`OUT_SNAPLEN`]) holding `frames` as (time in ns since the epoch, bytes). A time past
/// [`PCAP_MAX_SECS`] is written as that second (see the module documentation); a frame longer
/// than 4 GiB (none is) would be cut to it.
pub fn pcap_bytes<'a>(frames: impl IntoIterator<Item = (u64, &'a [u8])>) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, OUT_SNAPLEN, 1] {
        w.extend_from_slice(&v.to_le_bytes());
    }
    for (ts, data) in frames {
        let secs = (ts / 1_000_000_000).min(PCAP_MAX_SECS) as u32;
        let micros = (ts % 1_000_000_000 / 1000) as u32;
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        for v in [secs, micros, len, len] {
            w.extend_from_slice(&v.to_le_bytes());
        }
        w.extend_from_slice(data.get(..len as usize).unwrap_or(data));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors_name_the_packet() {
        let f1 = [1u8; 60];
        let f2 = [2u8; 70];
        let bytes = pcap_bytes([(1_000_000_000, &f1[..]), (1_001_000_000, &f2[..])]);
        let frames = parse_capture("x.pcap", &bytes).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].data, f2);
        assert_eq!(frames[1].ts_ns, 1_001_000_000);
        assert_eq!(frames[1].number, 2);
        assert!(!frames[0].is_truncated());
        // Cut inside the second record.
        let e = parse_capture("x.pcap", &bytes[..bytes.len() - 5]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("x.pcap") && s.contains("packet 2"), "{s}");
        // Not a capture at all.
        assert!(parse_capture("y", b"hello world, this is not a capture").is_err());
        assert!(parse_capture("y", b"ab").is_err());
        // Every prefix of a valid file: an error or fewer frames, never a panic.
        for n in 0..bytes.len() {
            let _ = parse_capture("z", &bytes[..n]);
        }
    }

    /// The writer's bytes are those of the classic format (what `pcap-file` wrote before it:
    /// the golden files and tcpdump read them).
    #[test]
    fn written_header_and_record_layout() {
        let b = pcap_bytes([(1_700_000_000_123_456_789, &[0xaau8; 3][..])]);
        assert_eq!(
            b[..24],
            [
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0
            ]
        );
        let rec: Vec<u32> = (0..4)
            .map(|k| u32_at(&b, 24 + 4 * k, Order::Little).unwrap())
            .collect();
        assert_eq!(rec, [1_700_000_000, 123_456, 3, 3]);
        assert_eq!(b[40..], [0xaa; 3]);
    }

    #[test]
    fn times_past_2106_are_clamped_when_written() {
        let f = [7u8; 60];
        // 2107 (pcapng's 64-bit stamps hold it; classic pcap's 32-bit seconds do not).
        let late = 4_354_000_000_u64 * 1_000_000_000 + 250_000_000;
        let bytes = pcap_bytes([(1_000_000_000, &f[..]), (late, &f[..]), (u64::MAX, &f[..])]);
        let back = parse_capture("late.pcap", &bytes).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0].ts_ns, 1_000_000_000);
        assert_eq!(back[1].ts_ns, PCAP_MAX_SECS * 1_000_000_000 + 250_000_000);
        assert_eq!(back[2].ts_ns / 1_000_000_000, PCAP_MAX_SECS);
        assert!(back.iter().all(|b| b.data == f));
    }

    #[test]
    fn pcap_link_type_upper_bits_are_ignored() {
        let f = [0u8; 60];
        let mut bytes = pcap_bytes([(0, &f[..])]);
        // Network field at offset 20, little-endian: set FCS-length bits.
        bytes[23] = 0x30;
        assert_eq!(parse_capture("fcs.pcap", &bytes).unwrap().len(), 1);
        bytes[20] = 105; // 802.11
        let e = parse_capture("wifi.pcap", &bytes).unwrap_err();
        assert!(e.to_string().contains("not Ethernet"), "{e}");
    }

    #[test]
    fn pcap_big_endian_and_nanoseconds() {
        let mut b = Vec::new();
        for v in [0xa1b2_3c4du32, 0x0002_0004, 0, 0, 65535, 1, 5, 7, 4, 10] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&[1, 2, 3, 4]);
        let f = parse_capture("be.pcap", &b).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].ts_ns, 5_000_000_007);
        assert_eq!(f[0].data, [1, 2, 3, 4]);
        assert!(f[0].is_truncated());
    }

    /// A pcapng block: type, length, body (padded to 4), length.
    fn block(o: Order, kind: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(4), 0);
        let total = (body.len() + 12) as u32;
        let w = |v: u32| match o {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        };
        let mut b = w(kind).to_vec();
        b.extend_from_slice(&w(total));
        b.extend_from_slice(&body);
        b.extend_from_slice(&w(total));
        b
    }

    fn words(o: Order, ws: &[u32]) -> Vec<u8> {
        ws.iter()
            .flat_map(|&v| match o {
                Order::Little => v.to_le_bytes(),
                Order::Big => v.to_be_bytes(),
            })
            .collect()
    }

    fn shb(o: Order) -> Vec<u8> {
        // Byte-order magic, version 1.0 (two u16), section length -1 (unknown).
        let (major, minor) = match o {
            Order::Little => (1u16.to_le_bytes(), 0u16.to_le_bytes()),
            Order::Big => (1u16.to_be_bytes(), 0u16.to_be_bytes()),
        };
        let mut body = words(o, &[0x1a2b_3c4d]);
        body.extend_from_slice(&major);
        body.extend_from_slice(&minor);
        body.extend(words(o, &[u32::MAX, u32::MAX]));
        block(o, SHB, &body)
    }

    /// An Ethernet interface description with the given raw options (no `opt_endofopt` added).
    fn idb(o: Order, link: u16, options: &[u8]) -> Vec<u8> {
        let mut body = match o {
            Order::Little => [link.to_le_bytes(), [0, 0]].concat(),
            Order::Big => [link.to_be_bytes(), [0, 0]].concat(),
        };
        body.extend_from_slice(&words(o, &[0]));
        body.extend_from_slice(options);
        block(o, IDB, &body)
    }

    fn option(o: Order, code: u16, value: &[u8]) -> Vec<u8> {
        let mut b = match o {
            Order::Little => [code.to_le_bytes(), (value.len() as u16).to_le_bytes()].concat(),
            Order::Big => [code.to_be_bytes(), (value.len() as u16).to_be_bytes()].concat(),
        };
        b.extend_from_slice(value);
        b.resize(b.len().next_multiple_of(4), 0);
        b
    }

    fn epb(o: Order, iface: u32, ts: u64, data: &[u8], orig: u32) -> Vec<u8> {
        let mut body = words(
            o,
            &[iface, (ts >> 32) as u32, ts as u32, data.len() as u32, orig],
        );
        body.extend_from_slice(data);
        block(o, EPB, &body)
    }

    /// The options of the two corpus files that `pcap-file` refused: an interface description
    /// whose options end at the block's end without `opt_endofopt`.
    #[test]
    fn pcapng_options_without_end_marker() {
        for o in [Order::Little, Order::Big] {
            let mut f = shb(o);
            f.extend(idb(o, 1, &option(o, 2, b"eth0")));
            f.extend(epb(o, 0, 1_500_000, &[9u8; 61], 61));
            let frames = parse_capture("noend.pcapng", &f).unwrap();
            assert_eq!(frames.len(), 1, "{o:?}");
            assert_eq!(frames[0].ts_ns, 1_500_000_000, "{o:?}");
            assert_eq!(frames[0].data, [9u8; 61]);
        }
    }

    #[test]
    fn pcapng_tsresol_tsoffset_and_sections() {
        let o = Order::Little;
        let mut f = shb(o);
        // Nanoseconds, offset 100 s.
        let mut opts = option(o, 9, &[9]);
        opts.extend(option(o, 14, &100u64.to_le_bytes()));
        opts.extend(option(o, 0, &[]));
        f.extend(idb(o, 1, &opts));
        f.extend(epb(o, 0, 42, &[1u8; 60], 60));
        // A simple packet block: interface 0, the previous packet's time; cut to what it holds.
        let mut spb = words(o, &[100]);
        spb.extend_from_slice(&[2u8; 60]);
        f.extend(block(o, SPB, &spb));
        // Skipped block types (name resolution, statistics).
        f.extend(block(o, 4, &[0; 8]));
        f.extend(block(o, 5, &[0; 12]));
        // A second section, big-endian, microseconds, 802.1Q-less Ethernet again.
        let b = Order::Big;
        f.extend(shb(b));
        f.extend(idb(b, 1, &[]));
        f.extend(epb(b, 0, 3_000_000, &[3u8; 60], 64));
        let frames = parse_capture("multi.pcapng", &f).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].ts_ns, 100_000_000_042);
        assert_eq!(frames[1].ts_ns, 100_000_000_042);
        assert_eq!(frames[1].data, [2u8; 60]);
        assert_eq!(frames[1].orig_len, 100);
        assert!(frames[1].is_truncated());
        assert_eq!(frames[2].ts_ns, 3_000_000_000);
        assert!(frames[2].is_truncated());
        assert_eq!(frames[2].number, 3);
        // Every prefix: an error or fewer frames, never a panic.
        for n in 0..f.len() {
            if let Ok(fr) = parse_capture("cut.pcapng", &f[..n]) {
                assert!(fr.len() < 3 || n == f.len());
            }
        }
        // A damaged length, a packet on an undeclared interface, a non-Ethernet interface.
        let mut bad = f.clone();
        bad[shb(o).len() + 4] = 13;
        assert!(parse_capture("bad.pcapng", &bad).is_err());
        let mut undeclared = shb(o);
        undeclared.extend(epb(o, 0, 0, &[0; 60], 60));
        let e = parse_capture("u.pcapng", &undeclared).unwrap_err();
        assert!(e.to_string().contains("packet 1"), "{e}");
        let mut wifi = shb(o);
        wifi.extend(idb(o, 105, &[]));
        wifi.extend(epb(o, 0, 0, &[0; 60], 60));
        let e = parse_capture("w.pcapng", &wifi).unwrap_err();
        assert!(e.to_string().contains("not Ethernet"), "{e}");
        // An option that runs past its block, a captured length past its block.
        let mut long = shb(o);
        long.extend(idb(o, 1, &words(o, &[(40 << 16) | 2])));
        assert!(parse_capture("l.pcapng", &long).is_err());
        let mut cap = shb(o);
        cap.extend(idb(o, 1, &[]));
        let mut body = words(o, &[0, 0, 0, 1000, 60]);
        body.extend_from_slice(&[0; 60]);
        cap.extend(block(o, EPB, &body));
        let e = parse_capture("c.pcapng", &cap).unwrap_err();
        assert!(e.to_string().contains("runs past"), "{e}");
    }

    #[test]
    fn tsresol() {
        assert_eq!(tsresol_scale(6), (1000, 1));
        assert_eq!(tsresol_scale(9), (1, 1));
        assert_eq!(tsresol_scale(0x80 | 10), (1_000_000_000, 1024));
    }
}
