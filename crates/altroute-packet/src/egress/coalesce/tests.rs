//! Coalescing against a reference segmentation written here: datagrams built with etherparse
//! (checksums computed by it), merged through [`Group`], then cut again as the kernel's UDP GSO
//! does (`__udp_gso_segment`, identifications numbered from the first); checksums recomputed
//! independently of `crate::checksum`.

use super::*;
use crate::testutil::ones;
use etherparse::{IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, PacketBuilder};
use proptest::prelude::*;

/// The headers of a test flow.
#[derive(Clone, Debug)]
struct Flow {
    macs: ([u8; 6], [u8; 6]),
    src: [u8; 4],
    dst: [u8; 4],
    ports: (u16, u16),
    ttl: u8,
}

const FLOW: Flow = Flow {
    macs: ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]),
    src: [192, 0, 2, 1],
    dst: [203, 0, 113, 10],
    ports: (40000, 5201),
    ttl: 63,
};

/// An atomic (DF) UDP datagram of `flow` with identification `id`, checksums filled in.
fn datagram(flow: &Flow, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Ipv4Header::new(0, flow.ttl, IpNumber::UDP, flow.src, flow.dst).unwrap();
    h.identification = id;
    h.dont_fragment = true;
    let mut v = Vec::new();
    PacketBuilder::ethernet2(flow.macs.0, flow.macs.1)
        .ip(IpHeaders::Ipv4(h, Ipv4Extensions::default()))
        .udp(flow.ports.0, flow.ports.1)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn rd16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// The UDP pseudo-header sum of a frame's IPv4 addresses and a UDP length.
fn pseudo(f: &[u8], udp_len: u16) -> u32 {
    u32::from(ones(&f[26..34], 0)) + 17 + u32::from(udp_len)
}

/// Cuts a UDP GSO frame into its datagrams as the kernel does: the headers repeated, `size`
/// payload bytes each (the last may be shorter), identifications counted up from the frame's,
/// lengths and both checksums per segment.
fn segment(gso: &[u8], off: &TxOffload) -> Vec<Vec<u8>> {
    let g = off.gso.unwrap();
    let hdr = usize::from(g.hdr_len);
    let id = rd16(gso, 18);
    gso[hdr..]
        .chunks(usize::from(g.size))
        .enumerate()
        .map(|(i, p)| {
            let mut s = gso[..hdr].to_vec();
            s.extend_from_slice(p);
            let udp_len = (8 + p.len()) as u16;
            s[16..18].copy_from_slice(&(20 + udp_len).to_be_bytes());
            s[18..20].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
            s[24..26].copy_from_slice(&[0, 0]);
            let c = !ones(&s[14..34], 0);
            s[24..26].copy_from_slice(&c.to_be_bytes());
            s[38..40].copy_from_slice(&udp_len.to_be_bytes());
            s[40..42].copy_from_slice(&[0, 0]);
            let c = match !ones(&s[34..], pseudo(&s, udp_len)) {
                0 => 0xffff,
                c => c,
            };
            s[40..42].copy_from_slice(&c.to_be_bytes());
            s
        })
        .collect()
}

/// Merges `frames` through [`Group`] as the worker does, into a buffer of `room` bytes: the GSO
/// frame and its offload metadata, or `None` when the group did not form.
fn merge(frames: &[Vec<u8>], room: usize) -> Option<(Vec<u8>, TxOffload)> {
    let mut head = frames[0].clone();
    head.resize(room.max(head.len()), 0);
    let mut len = frames[0].len();
    let mut g = Group::open(&frames[0])?;
    for f in &frames[1..] {
        let p = g.next_payload(f)?;
        len = g.append(&mut head, len, p)?;
    }
    head.truncate(len);
    let off = g.finish(&mut head)?;
    Some((head, off))
}

#[test]
fn only_atomic_unpadded_udp_is_a_candidate() {
    let f = datagram(&FLOW, 1, &[7; 64]);
    assert_eq!(candidate(&f), Some(64));
    let mut g = f.clone();
    g[20] = 0; // DF clear: IDs matter for reassembly
    assert_eq!(candidate(&g), None);
    let mut g = f.clone();
    g[20] = 0x60; // DF + MF
    assert_eq!(candidate(&g), None);
    let mut g = f.clone();
    g[20] = 0xc0; // DF + the reserved flag
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
    assert_eq!(candidate(&datagram(&FLOW, 1, &[1; MAX_PAYLOAD + 1])), None);
    assert_eq!(candidate(&datagram(&FLOW, 1, &[])), None);
    assert_eq!(candidate(&f[..30]), None);
}

#[test]
fn same_flow_ignores_id_and_checksums_only() {
    let a = datagram(&FLOW, 1, &[7; 64]);
    let key: [u8; HDR_LEN] = a[..HDR_LEN].try_into().unwrap();
    let mut b = datagram(&FLOW, 2, &[9; 64]);
    b[40] ^= 0xff;
    assert!(same_flow(&key, &b));
    for (off, v) in [(0, 9u8), (15, 4), (22, 1), (29, 7), (35, 1), (37, 2)] {
        let mut c = b.clone();
        c[off] ^= v;
        assert!(!same_flow(&key, &c), "byte {off}");
    }
    assert!(!same_flow(&key, &datagram(&FLOW, 2, &[9; 65])));
    assert!(!same_flow(&key, &b[..HDR_LEN - 1]));
}

#[test]
fn gso_frame_headers_are_consistent() {
    let mut f = datagram(&FLOW, 100, &[1; 64]);
    for k in 2..=4u8 {
        f.extend_from_slice(&[k; 64]);
    }
    let v = finish_gso(&mut f, 64).unwrap();
    assert_eq!(f.len(), HDR_LEN + 4 * 64);
    assert_eq!(usize::from(rd16(&f, 16)), f.len() - 14);
    assert_eq!(ones(&f[14..34], 0), 0xffff, "IPv4 header checksum verifies");
    assert_eq!(usize::from(rd16(&f, 38)), f.len() - 34);
    // The UDP field is the folded pseudo-header sum (src, dst, proto, UDP length).
    let want = ones(
        &[],
        0xc000 + 0x0201 + 0xcb00 + 0x710a + 17 + (f.len() as u32 - 34),
    );
    assert_eq!(rd16(&f, 40), want);
    let g = v.gso.unwrap();
    let p = v.partial.unwrap();
    assert_eq!(
        (g.kind, g.size, g.hdr_len, p.start, p.offset),
        (GsoKind::UdpL4, 64, 42, 34, 6)
    );
    let before = f[..HDR_LEN + 10].to_vec();
    assert!(finish_gso(&mut f[..HDR_LEN + 10], 64).is_none());
    assert_eq!(
        f[..HDR_LEN + 10],
        before[..],
        "None leaves the frame untouched"
    );
}

#[test]
fn a_group_stops_at_its_limits() {
    let frames: Vec<Vec<u8>> = (0..MAX_SEGMENTS as u16 + 1)
        .map(|id| datagram(&FLOW, id, &[id as u8; 16]))
        .collect();
    let mut head = frames[0].clone();
    head.resize(8192, 0);
    let mut len = frames[0].len();
    let mut g = Group::open(&frames[0]).unwrap();
    for f in &frames[1..MAX_SEGMENTS as usize] {
        len = g
            .append(&mut head, len, g.next_payload(f).unwrap())
            .unwrap();
    }
    assert_eq!(g.segments(), MAX_SEGMENTS);
    assert_eq!(g.next_payload(&frames[MAX_SEGMENTS as usize]), None);
    assert_eq!(g.append(&mut head, len, &[0; 16]), None);
    // No room left in the head's buffer: nothing changes.
    let mut g = Group::open(&frames[0]).unwrap();
    let short = frames[0].len() + 10;
    assert_eq!(
        g.append(&mut head[..short], frames[0].len(), &[1; 16]),
        None
    );
    assert_eq!(g.segments(), 1);
    // A group of one is no GSO frame.
    assert!(g.finish(&mut head[..frames[0].len()]).is_none());
}

fn flow() -> impl Strategy<Value = Flow> {
    (
        any::<([u8; 6], [u8; 6])>(),
        any::<([u8; 4], [u8; 4])>(),
        any::<(u16, u16)>(),
        1u8..=255,
    )
        .prop_map(|(macs, (src, dst), ports, ttl)| Flow {
            macs,
            src,
            dst,
            ports,
            ttl,
        })
}

proptest! {
    /// Datagrams of one flow merged into a GSO frame: its headers are consistent, and segmenting
    /// it as the kernel does gives back the datagrams, identifications aside (the kernel numbers
    /// them from the first), with valid checksums.
    #[test]
    fn segmenting_a_merged_frame_gives_the_datagrams_back(
        flow in flow(),
        size in 1usize..=MAX_PAYLOAD,
        n in 2usize..=12,
        ids in proptest::collection::vec(any::<u16>(), 12),
        seed in any::<u8>(),
    ) {
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let payload: Vec<u8> = (0..size).map(|k| seed ^ (i * 31 + k) as u8).collect();
                datagram(&flow, ids[i], &payload)
            })
            .collect();
        let (gso, off) = merge(&frames, 70_000).expect("a group forms");
        prop_assert_eq!(gso.len(), HDR_LEN + n * size);
        prop_assert_eq!(usize::from(rd16(&gso, 16)), gso.len() - 14);
        prop_assert_eq!(ones(&gso[14..34], 0), 0xffff);
        prop_assert_eq!(usize::from(rd16(&gso, 38)), gso.len() - 34);
        let udp_len = rd16(&gso, 38);
        prop_assert_eq!(rd16(&gso, 40), ones(&[], pseudo(&gso, udp_len)));
        let segs = segment(&gso, &off);
        prop_assert_eq!(segs.len(), n);
        for (k, (s, f)) in segs.iter().zip(&frames).enumerate() {
            prop_assert_eq!(ones(&s[14..34], 0), 0xffff, "segment {} IPv4 checksum", k);
            prop_assert_eq!(
                ones(&s[34..], pseudo(s, rd16(s, 38))),
                0xffff,
                "segment {} UDP checksum",
                k
            );
            let mut want = f.clone();
            let mut got = s.clone();
            for b in [&mut want, &mut got] {
                b[18..20].fill(0);
                b[24..26].fill(0);
            }
            prop_assert_eq!(got, want, "segment {}", k);
        }
    }

    /// A group never grows past the head's buffer or the IPv4 length limit, and a datagram of
    /// another flow or size never joins it.
    #[test]
    fn a_group_takes_only_its_own_flow_and_what_fits(
        size in 1usize..=MAX_PAYLOAD,
        room in 0usize..4096,
        other in 0u8..4,
    ) {
        let a = datagram(&FLOW, 1, &vec![1; size]);
        let b = match other {
            0 => datagram(&FLOW, 2, &vec![2; size]),
            1 => datagram(&Flow { ttl: 1, ..FLOW }, 2, &vec![2; size]),
            2 => datagram(&Flow { ports: (1, 2), ..FLOW }, 2, &vec![2; size]),
            _ => datagram(&FLOW, 2, &vec![2; size % MAX_PAYLOAD + 1]),
        };
        let g = Group::open(&a).unwrap();
        prop_assert_eq!(g.next_payload(&b).is_some(), other == 0);
        let r = merge(&[a.clone(), b], room);
        let fits = a.len() + size <= room.max(a.len());
        prop_assert_eq!(r.is_some(), other == 0 && fits);
    }
}
