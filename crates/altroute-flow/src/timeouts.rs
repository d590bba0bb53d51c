//! Idle timeouts per protocol and state, with the RFC floors enforced.

use crate::ConfigError;

/// Idle timeouts in seconds. The defaults are the RFC values:
/// TCP established 7440 s and transitory 240 s (RFC 5382 REQ-5), UDP 300 s (RFC 4787 REQ-5, which
/// forbids less than 120 s), ICMP query 60 s (RFC 5508 REQ-1), and an unsolicited inbound SYN held
/// 6 s (RFC 5382 REQ-4).
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
        }
    }
}

impl Timeouts {
    /// Checks the RFC floors; the error names the field, the value and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let floors: [(&'static str, u32, u32, &'static str); 6] = [
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
