//! UDP coalescing at transmit: consecutive small datagrams of one flow, leaving on one vnet link
//! in one batch, are sent as a single UDP GSO frame (`VIRTIO_NET_HDR_GSO_UDP_L4`) that the
//! kernel segments back into the same datagrams at the last moment (at the receiving socket, or
//! before a device without UDP segmentation). One `packet_sendmsg`, one skb and one pass through
//! the next hops' forwarding per group instead of per datagram.
//!
//! Only atomic datagrams are merged (RFC 6864: DF set, not a fragment), so the one field the
//! segments do not keep, the IPv4 identification (the kernel numbers them from the first one),
//! carries no meaning. Everything else is required to be identical: MACs, TOS, TTL, addresses,
//! ports and the payload length (every segment has the same size). The payloads are copied into
//! the tail room of the group's first frame (its RX ring slot), so a group is bounded by that
//! room and by [`MAX_SEGMENTS`].

use altroute_io::VnetHdr;

/// Largest UDP payload that is coalesced (small datagrams are the point).
pub const MAX_PAYLOAD: usize = 512;
/// Most datagrams in one GSO frame (the kernel accepts up to `UDP_MAX_SEGMENTS`, 64 or more).
pub const MAX_SEGMENTS: u32 = 64;
/// Ethernet + IPv4 (no options) + UDP.
pub const HDR_LEN: usize = 14 + 20 + 8;

/// The UDP payload length of a frame that may be coalesced: Ethernet (no tag), IPv4 without
/// options, DF set, not a fragment, UDP, and lengths that match the frame exactly (no padding).
pub fn candidate(frame: &[u8]) -> Option<usize> {
    let h = frame.get(..HDR_LEN)?;
    if h[12..14] != [0x08, 0x00] || h[14] != 0x45 || h[23] != 17 {
        return None;
    }
    let tot = usize::from(u16::from_be_bytes([h[16], h[17]]));
    let frag = u16::from_be_bytes([h[20], h[21]]);
    // DF set, MF clear, offset zero.
    if frag != 0x4000 || tot + 14 != frame.len() {
        return None;
    }
    let udp_len = usize::from(u16::from_be_bytes([h[38], h[39]]));
    if udp_len + 20 != tot {
        return None;
    }
    let payload = udp_len - 8;
    (1..=MAX_PAYLOAD).contains(&payload).then_some(payload)
}

/// Whether `b` continues the group whose first frame's headers were `key`: everything but the
/// IPv4 identification and the checksums is equal (the total length too, so the payload size).
pub fn same_flow(key: &[u8; HDR_LEN], b: &[u8]) -> bool {
    let Some(b) = b.get(..HDR_LEN) else {
        return false;
    };
    // MACs + ethertype + version/IHL + TOS + total length.
    key[..18] == b[..18]
        // flags/fragment offset, TTL, protocol
        && key[20..24] == b[20..24]
        // addresses, ports, UDP length
        && key[26..40] == b[26..40]
}

/// Turns a group's first frame, with the other payloads appended, into one UDP GSO frame of
/// `seg_payload`-byte segments: IPv4 total length and header checksum, UDP length, and the UDP
/// checksum field as the pseudo-header sum only (the kernel finishes each segment's checksum).
/// Returns its vnet header, or `None` if the frame is not a plausible group; every check comes
/// before the first write, so `None` leaves the frame untouched.
pub fn finish_gso(frame: &mut [u8], seg_payload: usize) -> Option<VnetHdr> {
    let n = frame.len();
    if n < HDR_LEN + seg_payload || seg_payload == 0 {
        return None;
    }
    let tot = u16::try_from(n - 14).ok()?;
    let udp_len = u16::try_from(n - 34).ok()?;
    let gso_size = u16::try_from(seg_payload).ok()?;
    frame[16..18].copy_from_slice(&tot.to_be_bytes());
    frame[24..26].copy_from_slice(&[0, 0]);
    let ip_sum = !fold(sum16(&frame[14..34]));
    frame[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    frame[38..40].copy_from_slice(&udp_len.to_be_bytes());
    let pseudo = fold(sum16(&frame[26..34]) + 17 + u32::from(udp_len));
    frame[40..42].copy_from_slice(&pseudo.to_be_bytes());
    Some(VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: VnetHdr::GSO_UDP_L4,
        hdr_len: HDR_LEN as u16,
        gso_size,
        csum_start: 34,
        csum_offset: 6,
    })
}

fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(id: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; HDR_LEN];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        let tot = (20 + 8 + payload.len()) as u16;
        f[16..18].copy_from_slice(&tot.to_be_bytes());
        f[18..20].copy_from_slice(&id.to_be_bytes());
        f[20..22].copy_from_slice(&0x4000u16.to_be_bytes());
        f[22] = 63;
        f[23] = 17;
        f[26..30].copy_from_slice(&[192, 0, 2, 1]);
        f[30..34].copy_from_slice(&[203, 0, 113, 10]);
        f[34..36].copy_from_slice(&40000u16.to_be_bytes());
        f[36..38].copy_from_slice(&5201u16.to_be_bytes());
        f[38..40].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f[40..42].copy_from_slice(&[0x12, 0x34]);
        f.extend_from_slice(payload);
        let s = !fold(sum16(&f[14..34]));
        f[24..26].copy_from_slice(&s.to_be_bytes());
        f
    }

    #[test]
    fn only_atomic_unpadded_udp_is_a_candidate() {
        let f = datagram(1, &[7; 64]);
        assert_eq!(candidate(&f), Some(64));
        let mut g = f.clone();
        g[20] = 0; // DF clear: IDs matter for reassembly
        assert_eq!(candidate(&g), None);
        let mut g = f.clone();
        g[20] = 0x60; // DF + MF
        assert_eq!(candidate(&g), None);
        let mut g = f.clone();
        g.push(0); // trailing padding
        assert_eq!(candidate(&g), None);
        let mut g = f.clone();
        g[23] = 6;
        assert_eq!(candidate(&g), None);
        let mut g = f.clone();
        g[14] = 0x46;
        assert_eq!(candidate(&g), None);
        assert_eq!(candidate(&datagram(1, &[1; MAX_PAYLOAD + 1])), None);
        assert_eq!(candidate(&f[..30]), None);
    }

    #[test]
    fn same_flow_ignores_id_and_checksums_only() {
        let a = datagram(1, &[7; 64]);
        let key: [u8; HDR_LEN] = a[..HDR_LEN].try_into().unwrap();
        let mut b = datagram(2, &[9; 64]);
        b[40] ^= 0xff;
        assert!(same_flow(&key, &b));
        for (off, v) in [(0, 9u8), (15, 4), (22, 1), (29, 7), (35, 1), (37, 2)] {
            let mut c = b.clone();
            c[off] ^= v;
            assert!(!same_flow(&key, &c), "byte {off}");
        }
        assert!(!same_flow(&key, &datagram(2, &[9; 65])));
    }

    #[test]
    fn gso_frame_headers_are_consistent() {
        let mut f = datagram(100, &[1; 64]);
        for k in 2..=4u8 {
            f.extend_from_slice(&[k; 64]);
        }
        let v = finish_gso(&mut f, 64).unwrap();
        assert_eq!(f.len(), HDR_LEN + 4 * 64);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, f.len() - 14);
        assert_eq!(
            fold(sum16(&f[14..34])),
            0xffff,
            "IPv4 header checksum verifies"
        );
        assert_eq!(u16::from_be_bytes([f[38], f[39]]) as usize, f.len() - 34);
        // The UDP field is the folded pseudo-header sum (src, dst, proto, UDP length).
        let want = fold(0xc000 + 0x0201 + 0xcb00 + 0x710a + 17 + (f.len() as u32 - 34));
        assert_eq!(u16::from_be_bytes([f[40], f[41]]), want);
        assert_eq!(
            (
                v.gso_type,
                v.gso_size,
                v.hdr_len,
                v.csum_start,
                v.csum_offset
            ),
            (VnetHdr::GSO_UDP_L4, 64, 42, 34, 6)
        );
        assert!(v.needs_csum());
        assert!(finish_gso(&mut f[..HDR_LEN + 10], 64).is_none());
    }
}
