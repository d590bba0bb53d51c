//! Traffic tools for the lab, std networking only: a "whoami" server that answers every TCP
//! connection and UDP datagram with the peer address it sees (so a test can tell which ISP's NAT
//! address a connection came from), and a client that opens N connections and tallies the
//! addresses seen and the failures.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

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
    let mut s = TcpStream::connect_timeout(&dest, timeout).map_err(|e| classify(&e))?;
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
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let t = run_many(5, 2, || udp_once(uaddr, bind, Duration::from_secs(2)));
        assert_eq!(t.count("127.0.0.1"), 5, "{t:?}");
        let back = Tally::parse(&t.render()).unwrap();
        assert_eq!(back, t);
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
}
