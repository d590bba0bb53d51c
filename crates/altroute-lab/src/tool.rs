//! Traffic tools for the lab, std networking only: a "whoami" server that answers every TCP
//! connection and UDP datagram with the peer address it sees (so a test can tell which ISP's NAT
//! address a connection came from), a client that opens N connections and tallies the
//! addresses seen and the failures, and a bulk-transfer pair (`source`/`sink`) that sends a
//! deterministic pseudo-random byte stream and hashes it on both ends ([`StreamHash`]). The
//! `altroute lab-tool` command is argument parsing over [`serve`], [`client`], [`accept_within`],
//! [`connect`], [`send_stream`] and [`receive_stream`].

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Serves TCP: each connection gets `"<peer ip>:<peer port>\n"` and is closed. Runs forever.
pub fn serve_tcp(listener: TcpListener) -> std::io::Result<()> {
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        thread::spawn(move || {
            if let Ok(peer) = s.peer_addr() {
                let _ = s.write_all(format!("{peer}\n").as_bytes());
            }
            let _ = s.shutdown(Shutdown::Write);
            // Drain whatever the client sends so the close is clean.
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut sink = [0u8; 512];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        });
    }
    Ok(())
}

/// Serves UDP: each datagram is answered with `"<peer ip>:<peer port>\n"`. Runs forever.
pub fn serve_udp(sock: UdpSocket) -> std::io::Result<()> {
    let mut buf = [0u8; 2048];
    loop {
        let (_, peer) = sock.recv_from(&mut buf)?;
        let _ = sock.send_to(format!("{peer}\n").as_bytes(), peer);
    }
}

/// Serves every TCP listener ([`serve_tcp`]) and UDP socket ([`serve_udp`]) on a thread of its
/// own. Runs until one of them fails.
pub fn serve(tcp: Vec<TcpListener>, udp: Vec<UdpSocket>) -> std::io::Result<()> {
    let mut handles = Vec::new();
    for l in tcp {
        handles.push(thread::spawn(move || serve_tcp(l)));
    }
    for s in udp {
        handles.push(thread::spawn(move || serve_udp(s)));
    }
    for h in handles {
        h.join()
            .map_err(|_| std::io::Error::other("server thread panicked"))??;
    }
    Ok(())
}

/// Why [`accept_within`] returned no connection.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// Nobody connected in time.
    #[error("nobody connected to {addr} within {wait:?}")]
    Timeout {
        /// The listening address.
        addr: SocketAddr,
        /// How long it waited.
        wait: Duration,
    },
    /// The listener failed.
    #[error("accept")]
    Io(#[source] std::io::Error),
}

/// Accepts one connection on `listener` within `wait`; the stream returned is blocking.
pub fn accept_within(listener: &TcpListener, wait: Duration) -> Result<TcpStream, AcceptError> {
    let addr = listener.local_addr().map_err(AcceptError::Io)?;
    listener.set_nonblocking(true).map_err(AcceptError::Io)?;
    let deadline = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(AcceptError::Io)?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(AcceptError::Timeout { addr, wait });
                }
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(AcceptError::Io(e)),
        }
    }
}

/// What a client run talks to: a whoami server over TCP or over UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Connect to this TCP address.
    Tcp(SocketAddr),
    /// Send datagrams to this UDP address.
    Udp(SocketAddr),
}

/// Runs `count` attempts against `target`, `parallel` at a time, each waiting at most `timeout`,
/// from the local address `bind` when given (port chosen by the kernel), and tallies the
/// addresses the server saw.
pub fn client(
    target: Target,
    bind: Option<IpAddr>,
    count: usize,
    parallel: usize,
    timeout: Duration,
) -> Tally {
    match target {
        Target::Tcp(dest) => match bind {
            Some(ip) => run_many(count, parallel, || tcp_once_from(dest, ip, timeout)),
            None => run_many(count, parallel, || tcp_once(dest, timeout)),
        },
        Target::Udp(dest) => {
            let ip = bind.unwrap_or(if dest.is_ipv4() {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                Ipv6Addr::UNSPECIFIED.into()
            });
            let local = SocketAddr::new(ip, 0);
            run_many(count, parallel, || udp_once(dest, local, timeout))
        }
    }
}

/// The outcome of a client run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Peer IP address the server saw → number of successful connections.
    pub seen: BTreeMap<String, usize>,
    /// Connections that failed.
    pub failed: usize,
    /// Failure kind → count (`timeout`, `refused`, `reset`, `unreachable`, `other`).
    pub errors: BTreeMap<String, usize>,
}

impl Tally {
    /// Successful connections.
    pub fn ok(&self) -> usize {
        self.seen.values().sum()
    }

    /// Count for one address.
    pub fn count(&self, ip: &str) -> usize {
        self.seen.get(ip).copied().unwrap_or(0)
    }

    /// Human lines followed by one JSON line (what `lab-tool client` prints).
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (ip, n) in &self.seen {
            s.push_str(&format!("seen {ip} {n}\n"));
        }
        s.push_str(&format!("failed {}\n", self.failed));
        for (k, n) in &self.errors {
            s.push_str(&format!("error {k} {n}\n"));
        }
        s.push_str(&serde_json::to_string(self).unwrap_or_default());
        s.push('\n');
        s
    }

    /// Parses the output of [`Tally::render`] (its last JSON line).
    pub fn parse(output: &str) -> Option<Tally> {
        output
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
    }
}

fn classify(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => "timeout",
        K::ConnectionRefused => "refused",
        K::ConnectionReset | K::ConnectionAborted => "reset",
        K::HostUnreachable | K::NetworkUnreachable => "unreachable",
        _ => "other",
    }
}

/// One TCP attempt: connect with a timeout, read the server's line, return the peer IP it saw.
pub fn tcp_once(dest: SocketAddr, timeout: Duration) -> Result<String, &'static str> {
    let s = TcpStream::connect_timeout(&dest, timeout).map_err(|e| classify(&e))?;
    read_whoami(s, timeout)
}

/// Opens a TCP connection to `dest`, from the local address `from` when given (bound before
/// connecting, which `std` cannot do).
pub fn connect(
    dest: SocketAddr,
    from: Option<IpAddr>,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let Some(ip) = from else {
        return TcpStream::connect_timeout(&dest, timeout);
    };
    let sock = Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP))?;
    sock.bind(&SocketAddr::new(ip, 0).into())?;
    sock.connect_timeout(&dest.into(), timeout)?;
    Ok(sock.into())
}

/// Like [`tcp_once`], from the local address `bind` (port chosen by the kernel): the socket is
/// bound before it connects, which `std` cannot do.
pub fn tcp_once_from(
    dest: SocketAddr,
    bind: IpAddr,
    timeout: Duration,
) -> Result<String, &'static str> {
    let s = connect(dest, Some(bind), timeout).map_err(|e| classify(&e))?;
    read_whoami(s, timeout)
}

fn read_whoami(mut s: TcpStream, timeout: Duration) -> Result<String, &'static str> {
    s.set_read_timeout(Some(timeout))
        .map_err(|e| classify(&e))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 128];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                if buf.contains(&b'\n') || buf.len() > 256 {
                    break;
                }
            }
            Err(e) => return Err(classify(&e)),
        }
    }
    peer_ip(&buf).ok_or("other")
}

/// One UDP exchange from `bind` (e.g. `10.0.0.5:0`).
pub fn udp_once(
    dest: SocketAddr,
    bind: SocketAddr,
    timeout: Duration,
) -> Result<String, &'static str> {
    let s = UdpSocket::bind(bind).map_err(|e| classify(&e))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| classify(&e))?;
    s.send_to(b"whoami?", dest).map_err(|e| classify(&e))?;
    let mut buf = [0u8; 256];
    let (n, _) = s.recv_from(&mut buf).map_err(|e| classify(&e))?;
    peer_ip(buf.get(..n).unwrap_or_default()).ok_or("other")
}

fn peer_ip(reply: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(reply).ok()?.trim();
    let addr: SocketAddr = text.parse().ok()?;
    Some(addr.ip().to_string())
}

/// Runs `n` attempts of `attempt` on `parallel` threads and tallies them.
pub fn run_many<F>(n: usize, parallel: usize, attempt: F) -> Tally
where
    F: Fn() -> Result<String, &'static str> + Sync,
{
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, 256) {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let r = attempt();
                    let Ok(mut t) = tally.lock() else { return };
                    match r {
                        Ok(ip) => *t.seen.entry(ip).or_default() += 1,
                        Err(kind) => {
                            t.failed += 1;
                            *t.errors.entry(kind.to_string()).or_default() += 1;
                        }
                    }
                }
            });
        }
    });
    tally.into_inner().unwrap_or_default()
}

/// A deterministic pseudo-random byte stream (xorshift64*, little-endian words): the same seed
/// always gives the same bytes, so both ends of a transfer can agree on what was sent.
#[derive(Debug, Clone)]
pub struct PseudoRandom {
    state: u64,
}

impl PseudoRandom {
    /// A generator for `seed` (0 is mapped to a fixed non-zero state).
    pub fn new(seed: u64) -> Self {
        PseudoRandom {
            state: if seed == 0 {
                0x853c_49e6_748f_ea9b
            } else {
                seed
            },
        }
    }

    /// The next 64-bit word.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fills `buf` with the next bytes of the stream (`buf.len()` must be a multiple of 8 for the
    /// stream to continue seamlessly into the next call; a shorter tail is only used at the end).
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let w = self.next_u64().to_le_bytes();
            for (d, s) in tail.iter_mut().zip(w) {
                *d = s;
            }
        }
    }
}

/// A fast, order-sensitive 64-bit hash of a byte stream, independent of how the stream is cut
/// into reads (not cryptographic: it detects corruption, loss, duplication and reordering).
#[derive(Debug, Clone)]
pub struct StreamHash {
    h: u64,
    len: u64,
    pending: [u8; 8],
    npending: usize,
}

impl Default for StreamHash {
    fn default() -> Self {
        Self::new()
    }
}

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xff51_afd7_ed55_8ccd;

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(K2);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

impl StreamHash {
    /// An empty hash.
    pub fn new() -> Self {
        StreamHash {
            h: 0x6a09_e667_f3bc_c908,
            len: 0,
            pending: [0; 8],
            npending: 0,
        }
    }

    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w.wrapping_mul(K1))
            .rotate_left(29)
            .wrapping_mul(K2)
            ^ (self.h >> 31);
    }

    /// Adds bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u64);
        if self.npending > 0 {
            while self.npending < 8 {
                let Some((&b, rest)) = data.split_first() else {
                    return;
                };
                if let Some(slot) = self.pending.get_mut(self.npending) {
                    *slot = b;
                }
                self.npending += 1;
                data = rest;
            }
            self.npending = 0;
            self.word(u64::from_le_bytes(self.pending));
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            if let Some(slot) = self.pending.get_mut(self.npending) {
                *slot = b;
            }
            self.npending += 1;
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The hash of everything added so far.
    pub fn finish(&self) -> u64 {
        let mut s = self.clone();
        if s.npending > 0 {
            let mut w = [0u8; 8];
            for (d, b) in w.iter_mut().zip(s.pending.iter().take(s.npending)) {
                *d = *b;
            }
            s.word(u64::from_le_bytes(w));
        }
        s.word(s.len);
        fmix64(s.h)
    }
}

/// What one end of a bulk transfer reports (one JSON line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferReport {
    /// `source` or `sink`.
    pub role: String,
    /// Bytes sent or received.
    pub bytes: u64,
    /// [`StreamHash`] of those bytes, as 16 hex digits.
    pub hash: String,
    /// Seconds from the first to the last byte (sink) or from accept to close (source).
    pub secs: f64,
    /// Throughput in Mbit/s over `secs`.
    pub mbit_s: f64,
}

impl TransferReport {
    fn new(role: &str, bytes: u64, hash: u64, secs: f64) -> Self {
        TransferReport {
            role: role.into(),
            bytes,
            hash: format!("{hash:016x}"),
            secs,
            mbit_s: if secs > 0.0 {
                bytes as f64 * 8.0 / secs / 1e6
            } else {
                0.0
            },
        }
    }

    /// Parses the last JSON line of a `lab-tool source`/`sink` output.
    pub fn parse(output: &str) -> Option<TransferReport> {
        output
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
    }

    /// One JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Sends `bytes` bytes of the [`PseudoRandom`] stream for `seed` to `s`, then closes the sending
/// side and waits for the peer to close.
pub fn send_stream(s: &mut TcpStream, bytes: u64, seed: u64) -> std::io::Result<TransferReport> {
    let start = Instant::now();
    let mut rng = PseudoRandom::new(seed);
    let mut hash = StreamHash::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf.get_mut(..n).unwrap_or_default();
        rng.fill(chunk);
        s.write_all(chunk)?;
        hash.update(chunk);
        left -= n as u64;
    }
    s.shutdown(Shutdown::Write)?;
    // The peer closes once it has read everything: wait for that so `secs` covers delivery.
    let mut b = [0u8; 64];
    while matches!(s.read(&mut b), Ok(n) if n > 0) {}
    Ok(TransferReport::new(
        "source",
        bytes,
        hash.finish(),
        start.elapsed().as_secs_f64(),
    ))
}

/// Reads `s` to the end, hashing every byte.
pub fn receive_stream(s: &mut TcpStream) -> std::io::Result<TransferReport> {
    let mut hash = StreamHash::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        last = Instant::now();
        first.get_or_insert(last);
        hash.update(buf.get(..n).unwrap_or_default());
    }
    let _ = s.shutdown(Shutdown::Both);
    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
    Ok(TransferReport::new("sink", hash.len(), hash.finish(), secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whoami_over_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || serve_tcp(l));
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let uaddr = u.local_addr().unwrap();
        thread::spawn(move || serve_udp(u));
        let t = run_many(20, 4, || tcp_once(addr, Duration::from_secs(2)));
        assert_eq!(t.count("127.0.0.1"), 20, "{t:?}");
        assert_eq!(t.failed, 0);
        // Bound to another loopback address: the server sees that one.
        let from = "127.0.0.2".parse().unwrap();
        let t = run_many(3, 1, || tcp_once_from(addr, from, Duration::from_secs(2)));
        assert_eq!(t.count("127.0.0.2"), 3, "{t:?}");
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let t = run_many(5, 2, || udp_once(uaddr, bind, Duration::from_secs(2)));
        assert_eq!(t.count("127.0.0.1"), 5, "{t:?}");
        let back = Tally::parse(&t.render()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn client_targets_and_serve() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = l.local_addr().unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp = u.local_addr().unwrap();
        thread::spawn(move || serve(vec![l], vec![u]));
        let wait = Duration::from_secs(2);
        let t = client(Target::Tcp(tcp), None, 4, 2, wait);
        assert_eq!(t.count("127.0.0.1"), 4, "{t:?}");
        let from = Some("127.0.0.3".parse().unwrap());
        let t = client(Target::Tcp(tcp), from, 2, 1, wait);
        assert_eq!(t.count("127.0.0.3"), 2, "{t:?}");
        let t = client(Target::Udp(udp), from, 3, 3, wait);
        assert_eq!(t.count("127.0.0.3"), 3, "{t:?}");
        let t = client(Target::Udp(udp), None, 1, 1, wait);
        assert_eq!(t.count("127.0.0.1"), 1, "{t:?}");
    }

    #[test]
    fn accept_within_waits_then_gives_up() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = Instant::now();
        let e = accept_within(&l, Duration::from_millis(100)).unwrap_err();
        assert!(
            matches!(e, AcceptError::Timeout { addr: a, .. } if a == addr),
            "{e}"
        );
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(
            e.to_string()
                .starts_with(&format!("nobody connected to {addr} within"))
        );
        let c = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"hi").unwrap();
        });
        let mut s = accept_within(&l, Duration::from_secs(5)).unwrap();
        c.join().unwrap();
        // Blocking again: read_to_end waits for the peer's close instead of failing.
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hi");
    }

    #[test]
    fn failures_are_counted() {
        // A port nobody listens on: refused.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let t = run_many(3, 1, || tcp_once(addr, Duration::from_millis(500)));
        assert_eq!(t.failed, 3);
        assert_eq!(t.errors.get("refused"), Some(&3));
        assert!(t.render().contains("failed 3\n"));
    }

    #[test]
    fn stream_hash_ignores_read_boundaries_and_sees_changes() {
        let mut data = vec![0u8; 100_003];
        PseudoRandom::new(7).fill(&mut data);
        let mut whole = StreamHash::new();
        whole.update(&data);
        for cut in [1usize, 3, 7, 8, 9, 4096, 65_537] {
            let mut h = StreamHash::new();
            for c in data.chunks(cut) {
                h.update(c);
            }
            assert_eq!(h.finish(), whole.finish(), "cut {cut}");
            assert_eq!(h.len(), data.len() as u64);
        }
        // One flipped bit, a swapped pair of words, a missing byte: all different.
        let mut flipped = data.clone();
        flipped[5000] ^= 1;
        let mut swapped = data.clone();
        swapped.swap(16, 24);
        let short = &data[..data.len() - 1];
        for other in [&flipped[..], &swapped[..], short] {
            let mut h = StreamHash::new();
            h.update(other);
            assert_ne!(h.finish(), whole.finish());
        }
        // Zeros of different lengths differ.
        let (mut a, mut b) = (StreamHash::new(), StreamHash::new());
        a.update(&[0; 8]);
        b.update(&[0; 16]);
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn pseudo_random_stream_is_seamless() {
        let mut one = vec![0u8; 1024];
        PseudoRandom::new(42).fill(&mut one);
        let mut g = PseudoRandom::new(42);
        let mut two = vec![0u8; 1024];
        for c in two.chunks_mut(64) {
            g.fill(c);
        }
        assert_eq!(one, two);
        let mut other = vec![0u8; 1024];
        PseudoRandom::new(43).fill(&mut other);
        assert_ne!(one, other);
    }

    #[test]
    fn transfer_over_loopback_hashes_match() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let src = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            send_stream(&mut s, 3_000_001, 9).unwrap()
        });
        let mut c = TcpStream::connect(addr).unwrap();
        let got = receive_stream(&mut c).unwrap();
        let sent = src.join().unwrap();
        assert_eq!(got.bytes, 3_000_001);
        assert_eq!(got.hash, sent.hash);
        // The JSON line carries the same report (the throughput may lose its last float digit).
        let back = TransferReport::parse(&got.to_json()).unwrap();
        assert_eq!(
            (back.role, back.bytes, &back.hash),
            (got.role, got.bytes, &got.hash)
        );
        assert!((back.secs - got.secs).abs() < 1e-6);
        assert!((back.mbit_s - got.mbit_s).abs() < 1e-6 * got.mbit_s.max(1.0));
    }
}
