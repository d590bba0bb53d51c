//! A simplified TCP state machine for a NAT (after RFC 5382 and RFC 7857), driven by the flags of
//! the segments the router forwards.
//!
//! "Opener" is the side that sent the first SYN: the LAN host for outbound connections, the remote
//! host for port-forwarded ones. "Answerer" is the other side.
//!
//! ```text
//!             opener SYN
//!   (new) ─────────────────▶ SynSent ◀──┐ opener SYN again: retry (counted for SYN-retry failover)
//!                              │   └─────┘
//!            answerer SYN(+ACK)│
//!                              ▼
//!                         SynReceived
//!                              │ opener ACK
//!                              ▼
//!                         Established
//!                              │ FIN (either side)
//!                              ▼
//!                           Closing
//!                              │ FIN from the other side
//!                              ▼
//!                           TimeWait
//!
//!   RST from either side, in any state ─────────▶ Closed
//!   opener SYN (no ACK) in TimeWait or Closed ──▶ SynSent (the 4-tuple is reused)
//! ```
//!
//! Timeouts: `Established` uses the established timeout; every other state is transitory
//! (RFC 5382 REQ-5). Per RFC 7857 §2.2 a reset connection is held for the transitory timeout rather
//! than deleted at once, so late segments still translate.

/// TCP connection state as seen by the NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    /// Not a TCP flow.
    None = 0,
    /// The opener's SYN was seen, nothing from the answerer yet.
    SynSent = 1,
    /// The answerer replied with SYN (+ACK).
    SynReceived = 2,
    /// The three-way handshake completed.
    Established = 3,
    /// One side sent FIN.
    Closing = 4,
    /// Both sides sent FIN.
    TimeWait = 5,
    /// A RST was seen.
    Closed = 6,
}

/// TCP flag bits as they appear in byte 13 of the TCP header.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

impl TcpState {
    pub(crate) fn from_bits(b: u8) -> TcpState {
        match b & 7 {
            1 => TcpState::SynSent,
            2 => TcpState::SynReceived,
            3 => TcpState::Established,
            4 => TcpState::Closing,
            5 => TcpState::TimeWait,
            6 => TcpState::Closed,
            _ => TcpState::None,
        }
    }

    /// Whether the connection has not completed its handshake yet.
    pub fn is_opening(self) -> bool {
        matches!(self, TcpState::SynSent | TcpState::SynReceived)
    }

    /// The next state after a segment with `tcp_flags` from the opener (`from_opener`) or the
    /// answerer. `fin_other` says whether the other side already sent a FIN (for `Closing`).
    pub fn next(self, from_opener: bool, tcp_flags: u8, fin_other: bool) -> TcpState {
        use TcpState::*;
        use flags::*;
        if tcp_flags & RST != 0 {
            return Closed;
        }
        let syn = tcp_flags & SYN != 0;
        let ack = tcp_flags & ACK != 0;
        let fin = tcp_flags & FIN != 0;
        match self {
            None => {
                if syn && !ack {
                    SynSent
                } else {
                    // Picked up mid-stream (loose tracking, e.g. after a router restart).
                    Established
                }
            }
            SynSent => {
                if !from_opener && syn {
                    SynReceived
                } else {
                    SynSent
                }
            }
            SynReceived => {
                if from_opener && ack && !syn {
                    if fin { Closing } else { Established }
                } else {
                    SynReceived
                }
            }
            Established => {
                if fin {
                    Closing
                } else {
                    Established
                }
            }
            Closing => {
                if fin && fin_other {
                    TimeWait
                } else {
                    Closing
                }
            }
            TimeWait | Closed => {
                if from_opener && syn && !ack {
                    SynSent
                } else {
                    self
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TcpState::*;
    use super::flags::*;
    use super::*;

    #[test]
    fn handshake_data_close() {
        let s = None.next(true, SYN, false);
        assert_eq!(s, SynSent);
        assert_eq!(s.next(true, SYN, false), SynSent, "retry stays");
        let s = s.next(false, SYN | ACK, false);
        assert_eq!(s, SynReceived);
        let s = s.next(true, ACK, false);
        assert_eq!(s, Established);
        let s = s.next(false, FIN | ACK, false);
        assert_eq!(s, Closing);
        assert_eq!(s.next(false, ACK, true), Closing);
        let s = s.next(true, FIN | ACK, true);
        assert_eq!(s, TimeWait);
        assert_eq!(s.next(true, SYN, false), SynSent, "port reuse");
    }

    #[test]
    fn rst_closes_from_anywhere() {
        for s in [SynSent, SynReceived, Established, Closing, TimeWait] {
            assert_eq!(s.next(false, RST | ACK, false), Closed);
            assert_eq!(s.next(true, RST, false), Closed);
        }
    }

    #[test]
    fn answerer_cannot_establish_alone() {
        assert_eq!(SynSent.next(false, ACK, false), SynSent);
        assert_eq!(SynReceived.next(false, ACK, false), SynReceived);
        assert_eq!(None.next(true, ACK, false), Established, "loose pickup");
    }

    #[test]
    fn bits_round_trip() {
        for s in [
            None,
            SynSent,
            SynReceived,
            Established,
            Closing,
            TimeWait,
            Closed,
        ] {
            assert_eq!(TcpState::from_bits(s as u8), s);
        }
    }
}
