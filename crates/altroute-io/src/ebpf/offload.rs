//! The established-flow offload: the tc (tcx ingress) program `altroute_tc` that forwards a
//! flow's frames in the kernel, the socket filter `altroute_sock` that keeps those frames out of
//! an `ETH_P_ALL` tap's ring (a tap gets every frame before tc ingress; sockets bound to an
//! EtherType get frames after it, so the ones the tc program redirects never reach them and need
//! no filter), and the map `altroute_flows` that both read and user space writes (one entry per
//! flow and direction). What the programs match and do is written in their C source,
//! `crates/altroute-io/ebpf/offload.bpf.c`; this module embeds the compiled object, loads it
//! with [`aya`] and writes the map in the layout that source declares (`struct flow_key`, 20
//! bytes; `struct flow_action`, 72 bytes, the last 24 the counters the tc program keeps).

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::{HashMap, IterableMap, Map, MapData, MapError};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{
    LinkOrder, Program, ProgramError, SchedClassifier, SocketFilter, TcAttachType, TestRun,
    TestRunOptions,
};

use super::EbpfError;

/// The compiled programs (`ebpf/build.sh` makes it from `ebpf/offload.bpf.c`).
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../ebpf/offload.bpf.o");

/// Key size in bytes (`struct flow_key`).
pub const KEY_SIZE: usize = 20;
/// Value size in bytes (`struct flow_action`).
pub const VALUE_SIZE: usize = 72;

/// The names in the object.
const MAP: &str = "altroute_flows";
const TC: &str = "altroute_tc";
const FILTER: &str = "altroute_sock";

// Where the counters are in a value.
const V_LAST_SEEN: usize = 48;
const V_PACKETS: usize = 56;
const V_BYTES: usize = 64;

/// `TC_ACT_REDIRECT`: what the tc program returns for a frame it forwards.
pub const TC_ACT_REDIRECT: u32 = 7;

/// `BPF_ANY`: create or replace.
const BPF_ANY: u64 = 0;

/// The map as aya sees it; aya checks the sizes against the object's when it takes the map.
type FlowHash = HashMap<MapData, [u8; KEY_SIZE], [u8; VALUE_SIZE]>;

/// A frame as it arrives: the map key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OffloadKey {
    /// Interface the frame arrives on.
    pub ifindex: u32,
    /// IPv4 source.
    pub saddr: Ipv4Addr,
    /// IPv4 destination.
    pub daddr: Ipv4Addr,
    /// L4 source port.
    pub sport: u16,
    /// L4 destination port.
    pub dport: u16,
    /// IP protocol (6: TCP, 17: UDP).
    pub proto: u8,
}

impl OffloadKey {
    /// The map's byte layout.
    pub fn to_bytes(&self) -> [u8; KEY_SIZE] {
        let mut b = [0u8; KEY_SIZE];
        b[0..4].copy_from_slice(&self.ifindex.to_ne_bytes());
        b[4..8].copy_from_slice(&self.saddr.octets());
        b[8..12].copy_from_slice(&self.daddr.octets());
        b[12..14].copy_from_slice(&self.sport.to_be_bytes());
        b[14..16].copy_from_slice(&self.dport.to_be_bytes());
        b[16] = self.proto;
        b
    }

    /// Parses the map's byte layout.
    pub fn from_bytes(b: &[u8; KEY_SIZE]) -> OffloadKey {
        let [
            i0,
            i1,
            i2,
            i3,
            s0,
            s1,
            s2,
            s3,
            d0,
            d1,
            d2,
            d3,
            p0,
            p1,
            q0,
            q1,
            proto,
            ..,
        ] = *b;
        OffloadKey {
            ifindex: u32::from_ne_bytes([i0, i1, i2, i3]),
            saddr: Ipv4Addr::new(s0, s1, s2, s3),
            daddr: Ipv4Addr::new(d0, d1, d2, d3),
            sport: u16::from_be_bytes([p0, p1]),
            dport: u16::from_be_bytes([q0, q1]),
            proto,
        }
    }
}

/// What to do with a matching frame. Checksum diffs are 32-bit one's-complement partial sums
/// over 16-bit words in **network byte order** (as RFC 1624 writes them); the encoding converts
/// them to the kernel's native-load domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OffloadAction {
    /// New IPv4 source.
    pub saddr: Ipv4Addr,
    /// New IPv4 destination.
    pub daddr: Ipv4Addr,
    /// New source port.
    pub sport: u16,
    /// New destination port.
    pub dport: u16,
    /// Egress interface.
    pub out_ifindex: u32,
    /// Destination MAC (the next hop).
    pub dst_mac: [u8; 6],
    /// Source MAC (the out port's).
    pub src_mac: [u8; 6],
    /// IPv4 header checksum diff (addresses and the TTL decrement).
    pub l3_diff: u32,
    /// L4 checksum diff of the addresses (the pseudo-header).
    pub l4_addr_diff: u32,
    /// L4 checksum diff of the ports.
    pub l4_port_diff: u32,
    /// Longest IPv4 total length of a non-GSO frame the out link takes (its MTU).
    pub max_len: u32,
}

/// Folds a 32-bit one's-complement partial sum to 16 bits.
pub fn fold16(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A network-order partial sum as the kernel's helpers see it (16-bit words loaded natively).
fn native_diff(d: u32) -> u32 {
    u32::from(u16::from_ne_bytes(fold16(d).to_be_bytes()))
}

impl OffloadAction {
    /// The map's byte layout (counters zero).
    pub fn to_bytes(&self) -> [u8; VALUE_SIZE] {
        let mut b = [0u8; VALUE_SIZE];
        b[0..4].copy_from_slice(&self.saddr.octets());
        b[4..8].copy_from_slice(&self.daddr.octets());
        b[8..10].copy_from_slice(&self.sport.to_be_bytes());
        b[10..12].copy_from_slice(&self.dport.to_be_bytes());
        b[12..16].copy_from_slice(&self.out_ifindex.to_ne_bytes());
        b[16..22].copy_from_slice(&self.dst_mac);
        b[22..28].copy_from_slice(&self.src_mac);
        b[28..32].copy_from_slice(&native_diff(self.l3_diff).to_ne_bytes());
        b[32..36].copy_from_slice(&native_diff(self.l4_addr_diff).to_ne_bytes());
        b[36..40].copy_from_slice(&native_diff(self.l4_port_diff).to_ne_bytes());
        b[40..44].copy_from_slice(&self.max_len.to_ne_bytes());
        b
    }
}

/// The counters the tc program keeps in an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// `bpf_ktime_get_ns()` of the last frame (0: none yet).
    pub last_seen_ns: u64,
    /// Frames forwarded (a GSO super-frame counts once).
    pub packets: u64,
    /// IPv4 bytes forwarded (total length as in the header).
    pub bytes: u64,
}

impl OffloadStats {
    fn from_value(b: &[u8; VALUE_SIZE]) -> OffloadStats {
        let u = |at: usize| {
            let mut w = [0u8; 8];
            if let Some(s) = b.get(at..at + 8) {
                w.copy_from_slice(s);
            }
            u64::from_ne_bytes(w)
        };
        OffloadStats {
            last_seen_ns: u(V_LAST_SEEN),
            packets: u(V_PACKETS),
            bytes: u(V_BYTES),
        }
    }
}

/// The flow map: one entry per offloaded flow and direction.
#[derive(Debug)]
pub struct OffloadMap {
    map: FlowHash,
}

/// Whether a map error is "no such key".
fn absent(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

impl OffloadMap {
    fn new(map: Map) -> Result<OffloadMap, EbpfError> {
        Ok(OffloadMap {
            map: FlowHash::try_from(map)?,
        })
    }

    /// Another handle on the same map (for another worker thread).
    pub fn try_clone(&self) -> Result<OffloadMap, EbpfError> {
        let fd = self
            .map
            .map()
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| {
                MapError::SyscallError(aya::sys::SyscallError {
                    call: "dup",
                    io_error: e,
                })
            })?;
        OffloadMap::new(Map::HashMap(MapData::from_fd(fd)?))
    }

    /// Installs (or replaces, counters reset) one direction.
    pub fn insert(&mut self, key: &OffloadKey, action: &OffloadAction) -> Result<(), EbpfError> {
        Ok(self
            .map
            .insert(key.to_bytes(), action.to_bytes(), BPF_ANY)?)
    }

    /// Removes one direction; `false` if it was not there.
    pub fn remove(&mut self, key: &OffloadKey) -> Result<bool, EbpfError> {
        match self.map.remove(&key.to_bytes()) {
            Ok(()) => Ok(true),
            Err(e) if absent(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The counters of one direction; `None` if absent.
    pub fn stats(&self, key: &OffloadKey) -> Result<Option<OffloadStats>, EbpfError> {
        match self.map.get(&key.to_bytes(), 0) {
            Ok(v) => Ok(Some(OffloadStats::from_value(&v))),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every key in the map (a snapshot; entries may change while it runs).
    pub fn keys(&self) -> Result<Vec<OffloadKey>, EbpfError> {
        let mut out = Vec::new();
        for k in self.map.keys() {
            out.push(OffloadKey::from_bytes(&k?));
        }
        Ok(out)
    }

    /// Removes every entry; returns how many were removed.
    pub fn clear(&mut self) -> Result<usize, EbpfError> {
        let mut n = 0;
        for k in self.keys()? {
            if self.remove(&k)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The `struct __sk_buff` of a test run: only the fields the kernel lets a test set may be
/// non-zero.
fn test_ctx(gso_size: u32) -> [u8; 192] {
    let mut ctx = [0u8; 192];
    ctx[176..180].copy_from_slice(&gso_size.to_ne_bytes());
    ctx
}

/// One test run on `data` with the context `ctx`, the frame as the program leaves it to `out`.
fn test_opts<'a>(data: &'a [u8], out: Option<&'a mut [u8]>, ctx: &'a [u8]) -> TestRunOptions<'a> {
    TestRunOptions {
        data_in: Some(data),
        data_out: out,
        ctx_in: Some(ctx),
        ..TestRunOptions::new()
    }
}

/// The tc program's attachment to one interface's tcx ingress; dropping it detaches the program.
#[derive(Debug)]
pub struct TcxLink {
    _link: SchedClassifierLink,
}

/// The loaded offload: the map and both programs.
#[derive(Debug)]
pub struct Offload {
    /// The flow map.
    pub map: OffloadMap,
    /// The object's programs.
    ebpf: aya::Ebpf,
}

impl Offload {
    /// Creates the map (`max_entries`) and loads both programs; the error carries the verifier
    /// log when a program is refused.
    pub fn load(max_entries: u32) -> Result<Offload, EbpfError> {
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries(MAP, max_entries.max(2))
            .load(OBJECT)
            .map_err(|e| EbpfError::Object(Box::new(e)))?;
        let mut this = Offload {
            map: OffloadMap::new(ebpf.take_map(MAP).ok_or(EbpfError::Missing(MAP))?)?,
            ebpf,
        };
        this.program_mut::<SchedClassifier>(TC)?
            .load()
            .map_err(EbpfError::program(TC))?;
        this.program_mut::<SocketFilter>(FILTER)?
            .load()
            .map_err(EbpfError::program(FILTER))?;
        Ok(this)
    }

    /// The object's program `name`, as a `P` (a [`SchedClassifier`] or a [`SocketFilter`]).
    fn program<'a, P>(&'a self, name: &'static str) -> Result<&'a P, EbpfError>
    where
        &'a P: TryFrom<&'a Program, Error = ProgramError>,
    {
        let p = self.ebpf.program(name).ok_or(EbpfError::Missing(name))?;
        p.try_into().map_err(EbpfError::program(name))
    }

    /// [`Offload::program`], to load or attach it.
    fn program_mut<'a, P>(&'a mut self, name: &'static str) -> Result<&'a mut P, EbpfError>
    where
        &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
    {
        let p = self
            .ebpf
            .program_mut(name)
            .ok_or(EbpfError::Missing(name))?;
        p.try_into().map_err(EbpfError::program(name))
    }

    /// Attaches the tc program to tcx ingress (Linux 6.6+; there is no fallback to the older
    /// clsact qdisc) of `interface` in the calling thread's network namespace, after any
    /// programs already there. It stays attached while the returned link lives.
    pub fn attach_tc(&mut self, interface: &str) -> Result<TcxLink, EbpfError> {
        let tc = self.program_mut::<SchedClassifier>(TC)?;
        let id = tc
            .attach_with_options(
                interface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(EbpfError::program(TC))?;
        Ok(TcxLink {
            _link: tc.take_link(id).map_err(EbpfError::program(TC))?,
        })
    }

    /// `setsockopt(SO_ATTACH_BPF)`: runs the socket filter on every frame `sock` receives
    /// (replacing any filter it had) until the socket is closed.
    pub fn attach_filter(&self, sock: BorrowedFd<'_>) -> Result<(), EbpfError> {
        self.program::<SocketFilter>(FILTER)?
            .attach(sock)
            .map_err(EbpfError::program(FILTER))
    }

    /// Runs the tc program once on `frame` (`BPF_PROG_TEST_RUN`: a test skb received on the
    /// loopback device of the calling thread's network namespace, so the key's ifindex is 1 and
    /// `pkt_type` is host only for the destination MAC `00:00:00:00:00:00`; `CHECKSUM_NONE`;
    /// `gso_size` as given; nothing is redirected). Returns the verdict (`TC_ACT_OK`,
    /// [`TC_ACT_REDIRECT`] ...) and the frame as the program left it.
    pub fn test_run_tc(&self, frame: &[u8], gso_size: u32) -> Result<(u32, Vec<u8>), EbpfError> {
        let ctx = test_ctx(gso_size);
        let mut out = vec![0u8; frame.len() + 256];
        let r = self
            .program::<SchedClassifier>(TC)?
            .test_run(test_opts(frame, Some(&mut out), &ctx))
            .map_err(EbpfError::program(TC))?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    /// Runs the socket filter once on `frame` as a packet socket would (`BPF_PROG_TEST_RUN`,
    /// conditions as for [`Offload::test_run_tc`]): returns how many bytes the socket would get
    /// (0: none).
    pub fn test_run_filter(&self, frame: &[u8], gso_size: u32) -> Result<u32, EbpfError> {
        // The kernel starts a socket filter's test skb after the Ethernet header, which it takes
        // off (and sets `pkt_type` by); a packet socket's filter sees the frame from the MAC
        // header on. So the header goes in twice.
        let mut data = frame.get(..14).unwrap_or_default().to_vec();
        data.extend_from_slice(frame);
        let ctx = test_ctx(gso_size);
        let r = self
            .program::<SocketFilter>(FILTER)?
            .test_run(test_opts(&data, None, &ctx))
            .map_err(EbpfError::program(FILTER))?;
        Ok(r.return_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips() {
        let k = OffloadKey {
            ifindex: 7,
            saddr: Ipv4Addr::new(10, 0, 0, 2),
            daddr: Ipv4Addr::new(203, 0, 113, 10),
            sport: 40000,
            dport: 5201,
            proto: 6,
        };
        let b = k.to_bytes();
        assert_eq!(&b[4..8], &[10, 0, 0, 2]);
        assert_eq!(&b[12..14], &40000u16.to_be_bytes());
        assert_eq!(&b[16..20], &[6, 0, 0, 0]);
        assert_eq!(OffloadKey::from_bytes(&b), k);
    }

    #[test]
    fn diffs_are_folded_into_the_native_domain() {
        assert_eq!(fold16(0x1_fffe), 0xffff);
        assert_eq!(fold16(0x0001_0001), 2);
        // A network-order diff of 0x1234 is the word [0x12, 0x34] loaded natively.
        assert_eq!(
            native_diff(0x1234),
            u32::from(u16::from_ne_bytes([0x12, 0x34]))
        );
    }
}
