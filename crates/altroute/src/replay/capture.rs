//! Reading pcap and pcapng captures into frames, and writing Ethernet pcap files.
//!
//! The whole file is read into memory and parsed as a slice with `pcap-file`'s parsers, so a
//! record that claims more bytes than the file holds is reported (file name and packet number)
//! instead of being allocated or read past. Classic pcap: the link type's upper 16 bits (FCS
//! length flags) are ignored, as libpcap does; the low 16 must be 1 (Ethernet). pcapng: every
//! interface must be Ethernet; timestamps honour `if_tsresol`; simple packet blocks take the
//! previous packet's time.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapParser, PcapWriter};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

/// The snap length written into output files (large enough for any frame the pipeline emits).
pub const OUT_SNAPLEN: u32 = 262_144;

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

fn describe(e: &PcapError) -> String {
    match e {
        PcapError::IncompleteBuffer => {
            "record cut short: the file ends inside it (truncated capture?)".to_string()
        }
        other => other.to_string(),
    }
}

/// Reads a pcap or pcapng file.
pub fn read_capture(path: &Path) -> Result<Vec<CapFrame>, CaptureError> {
    let file = path.display().to_string();
    let data = std::fs::read(path).map_err(|err| CaptureError::Io {
        file: file.clone(),
        err,
    })?;
    parse_capture(&file, &data)
}

/// Parses capture bytes; `file` names it in errors. Never panics: a panic inside the capture
/// library is reported as a damaged file.
pub fn parse_capture(file: &str, data: &[u8]) -> Result<Vec<CapFrame>, CaptureError> {
    let magic = data.get(..4).map(|m| [m[0], m[1], m[2], m[3]]);
    let run = || match magic {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => parse_pcapng(file, data),
        Some(_) => parse_pcap(file, data),
        None => Err(CaptureError::Format {
            file: file.to_string(),
            why: format!("{} bytes: shorter than any capture header", data.len()),
        }),
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        Err(CaptureError::Format {
            file: file.to_string(),
            why: "the capture parser failed on damaged data".to_string(),
        })
    })
}

fn parse_pcap(file: &str, data: &[u8]) -> Result<Vec<CapFrame>, CaptureError> {
    let (mut rest, parser) = PcapParser::new(data).map_err(|e| CaptureError::Format {
        file: file.to_string(),
        why: describe(&e),
    })?;
    let header = parser.header();
    let link = u32::from(header.datalink);
    if link & 0xffff != 1 {
        return Err(CaptureError::LinkType {
            file: file.to_string(),
            link,
        });
    }
    let nanos = header.ts_resolution == TsResolution::NanoSecond;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let number = out.len() + 1;
        let (r, p) = parser
            .next_raw_packet(rest)
            .map_err(|e| CaptureError::Packet {
                file: file.to_string(),
                packet: number,
                why: describe(&e),
            })?;
        rest = r;
        let frac = if nanos {
            u64::from(p.ts_frac)
        } else {
            u64::from(p.ts_frac).saturating_mul(1000)
        };
        out.push(CapFrame {
            number,
            ts_ns: u64::from(p.ts_sec)
                .saturating_mul(1_000_000_000)
                .saturating_add(frac),
            orig_len: p.orig_len,
            data: p.data.into_owned(),
        });
    }
    Ok(out)
}

/// Nanoseconds per unit of an `if_tsresol` value (default 6: microseconds).
fn tsresol_scale(r: u8) -> (u128, u128) {
    // (multiply, divide) turning raw units into nanoseconds.
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

fn parse_pcapng(file: &str, data: &[u8]) -> Result<Vec<CapFrame>, CaptureError> {
    let (mut rest, mut parser) = PcapNgParser::new(data).map_err(|e| CaptureError::Format {
        file: file.to_string(),
        why: describe(&e),
    })?;
    let mut out = Vec::new();
    let mut last_ts = 0u64;
    while !rest.is_empty() {
        let number = out.len() + 1;
        let perr = |why: String| CaptureError::Packet {
            file: file.to_string(),
            packet: number,
            why,
        };
        let (r, block) = parser.next_block(rest).map_err(|e| perr(describe(&e)))?;
        rest = r;
        let (iface, ts_raw, orig_len, bytes): (u32, Option<u64>, u32, Cow<'_, [u8]>) = match block {
            Block::EnhancedPacket(p) => (
                p.interface_id,
                Some(u64::try_from(p.timestamp.as_nanos()).unwrap_or(u64::MAX)),
                p.original_len,
                p.data,
            ),
            Block::SimplePacket(p) => (0, None, p.original_len, p.data),
            Block::Packet(p) => (
                u32::from(p.interface_id),
                Some(p.timestamp),
                p.original_len,
                p.data,
            ),
            _ => continue,
        };
        let Some(idb) = parser.interfaces().get(iface as usize) else {
            return Err(perr(format!(
                "refers to interface {iface}, which no interface description block declares"
            )));
        };
        let link = u32::from(idb.linktype);
        if link & 0xffff != 1 {
            return Err(CaptureError::LinkType {
                file: file.to_string(),
                link,
            });
        }
        let ts_ns = match ts_raw {
            Some(raw) => {
                let res = idb
                    .options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                        _ => None,
                    })
                    .unwrap_or(6);
                let (mul, div) = tsresol_scale(res);
                u64::try_from(u128::from(raw) * mul / div).unwrap_or(u64::MAX)
            }
            None => last_ts,
        };
        last_ts = ts_ns;
        out.push(CapFrame {
            number,
            ts_ns,
            orig_len,
            data: bytes.into_owned(),
        });
    }
    Ok(out)
}

/// The bytes of an Ethernet pcap file (microsecond timestamps, little-endian, snaplen
/// [`OUT_SNAPLEN`]) holding `frames` as (time in ns since the epoch, bytes).
pub fn pcap_bytes<'a>(
    frames: impl IntoIterator<Item = (u64, &'a [u8])>,
) -> Result<Vec<u8>, PcapError> {
    let header = PcapHeader {
        snaplen: OUT_SNAPLEN,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(Vec::new(), header)?;
    for (ts, data) in frames {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        // Whole microseconds: what the file can hold.
        let ts = Duration::from_nanos(ts / 1000 * 1000);
        w.write_packet(&PcapPacket::new(ts, len, data))?;
    }
    Ok(w.into_writer())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors_name_the_packet() {
        let f1 = [1u8; 60];
        let f2 = [2u8; 70];
        let bytes = pcap_bytes([(1_000_000_000, &f1[..]), (1_001_000_000, &f2[..])]).unwrap();
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

    #[test]
    fn pcap_link_type_upper_bits_are_ignored() {
        let f = [0u8; 60];
        let mut bytes = pcap_bytes([(0, &f[..])]).unwrap();
        // Network field at offset 20, little-endian: set FCS-length bits.
        bytes[23] = 0x30;
        assert_eq!(parse_capture("fcs.pcap", &bytes).unwrap().len(), 1);
        bytes[20] = 105; // 802.11
        let e = parse_capture("wifi.pcap", &bytes).unwrap_err();
        assert!(e.to_string().contains("not Ethernet"), "{e}");
    }

    #[test]
    fn tsresol() {
        assert_eq!(tsresol_scale(6), (1000, 1));
        assert_eq!(tsresol_scale(9), (1, 1));
        assert_eq!(tsresol_scale(0x80 | 10), (1_000_000_000, 1024));
    }
}
