//! Idle timeouts per protocol and state, with the RFC floors enforced.

use crate::ConfigError;

/// Idle timeouts in seconds. The defaults are the RFC values:
/// TCP established 7440 s and transitory 240 s (RFC 5382 REQ-5), UDP 300 s (RFC 4787 REQ-5, which
/// forbids less than 120 s), ICMP query 60 s (RFC 5508 REQ-1), and an unsolicited inbound SYN held
/// 6 s (RFC 5382 REQ-4).
///
/// **Embryonic flows** — opened from the inside and never answered (a SYN without SYN/ACK, UDP
/// without a reply) — expire sooner, like Linux conntrack's (`nf_conntrack_tcp_timeout_syn_sent`
/// 120 s, `nf_conntrack_udp_timeout` 30 s for an unreplied UDP flow): they hold a slot and a NAT
/// port for nothing, and a host flooding them is the common way a table fills.
/// - `tcp_embryonic` 120 s: RFC 5382 REQ-5 asks 4 minutes of every transitory state, but RFC 7857
///   (§2.1) lets a NAT configure the partially open timeout below that. 120 s outlasts the longest
///   gap between a client's SYN retransmissions (Linux retries after 1, 2, 4, 8, 16 and 32 s and
///   gives up 64 s after the last), so a client still retrying keeps its flow, its SYN count
///   (SYN-retry failover) and its mapping. Floor 10 s: past a SYN's first retransmissions (RFC
///   6298's 1 s initial timeout, doubled each time).
/// - `udp_embryonic` 30 s, also for other protocols with no ICMP or TCP state: RFC 4787 REQ-5's
///   2 minutes protect a mapping in use, which an application keeps alive by sending — and every
///   packet it sends restarts this timer too. What expires is a flow that sent once and heard
///   nothing for 30 s (a DNS query to a dead server, a DHT probe; carrier NATs use 15 s for it).
///   Floor 10 s, past a resolver's retry interval (5 s in glibc).
///
/// ICMP queries keep `icmp` (60 s is RFC 5508's floor already). Under table pressure unanswered
/// flows go sooner still: a full table drops them early ([`Limits`](crate::Limits)).
///
/// ```
/// use altroute_flow::Timeouts;
/// let t = Timeouts { udp: 60, ..Timeouts::default() };
/// assert!(t.validate().unwrap_err().to_string().contains("udp"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// An established TCP connection.
    pub tcp_established: u32,
    /// A TCP connection opening, closing, closed or reset (RFC 5382 "transitory").
    pub tcp_transitory: u32,
    /// A TCP connection opened from outside (port forward) that has not been answered yet.
    pub tcp_syn_inbound: u32,
    /// A UDP flow.
    pub udp: u32,
    /// An ICMP query (echo) flow.
    pub icmp: u32,
    /// Any other protocol.
    pub other: u32,
    /// How long a flow whose gateway went down is kept to reject its next packet.
    pub reject_hold: u32,
    /// A TCP connection opened from the inside and never answered (no SYN/ACK, nor anything else
    /// from the remote side). Applies while it is shorter than the state's own timeout.
    pub tcp_embryonic: u32,
    /// A UDP (or other non-TCP, non-ICMP) flow opened from the inside and never answered.
    pub udp_embryonic: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: 7440,
            tcp_transitory: 240,
            tcp_syn_inbound: 6,
            udp: 300,
            icmp: 60,
            other: 300,
            reject_hold: 30,
            tcp_embryonic: 120,
            udp_embryonic: 30,
        }
    }
}

impl Timeouts {
    /// Checks the RFC floors; the error names the field, the value and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let floors: [(&'static str, u32, u32, &'static str); 8] = [
            (
                "tcp_established",
                self.tcp_established,
                7440,
                "RFC 5382 REQ-5",
            ),
            ("tcp_transitory", self.tcp_transitory, 240, "RFC 5382 REQ-5"),
            ("tcp_syn_inbound", self.tcp_syn_inbound, 6, "RFC 5382 REQ-4"),
            ("udp", self.udp, 120, "RFC 4787 REQ-5"),
            ("icmp", self.icmp, 60, "RFC 5508 REQ-1"),
            ("reject_hold", self.reject_hold, 1, "at least one second"),
            (
                "tcp_embryonic",
                self.tcp_embryonic,
                10,
                "past a SYN's first retransmissions",
            ),
            (
                "udp_embryonic",
                self.udp_embryonic,
                10,
                "past a resolver's retry interval",
            ),
        ];
        for (field, value, min, rule) in floors {
            if value < min {
                return Err(ConfigError::TimeoutTooShort {
                    field,
                    value,
                    min,
                    rule,
                });
            }
        }
        if self.other == 0 {
            return Err(ConfigError::TimeoutTooShort {
                field: "other",
                value: 0,
                min: 1,
                rule: "at least one second",
            });
        }
        Ok(())
    }

    /// The longest timeout, which bounds how far ahead the expiry wheel must look.
    pub fn max(&self) -> u32 {
        [
            self.tcp_established,
            self.tcp_transitory,
            self.tcp_syn_inbound,
            self.udp,
            self.icmp,
            self.other,
            self.reject_hold,
            self.tcp_embryonic,
            self.udp_embryonic,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_floors_hold() {
        Timeouts::default().validate().unwrap();
        for bad in [
            Timeouts {
                udp: 119,
                ..Default::default()
            },
            Timeouts {
                icmp: 59,
                ..Default::default()
            },
            Timeouts {
                tcp_established: 7439,
                ..Default::default()
            },
            Timeouts {
                tcp_transitory: 100,
                ..Default::default()
            },
            Timeouts {
                tcp_syn_inbound: 5,
                ..Default::default()
            },
            Timeouts {
                tcp_embryonic: 9,
                ..Default::default()
            },
            Timeouts {
                udp_embryonic: 9,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let e = Timeouts {
            udp: 60,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "timeout udp = 60 s is below the minimum of 120 s (RFC 4787 REQ-5)"
        );
    }
}
