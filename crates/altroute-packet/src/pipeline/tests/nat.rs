//! Translation both ways through the full path: TCP, UDP and echo out and back, inbound ICMP
//! errors, port forwards, hairpinning, VLAN tags, "checksum not ready" frames, and batches
//! against single frames.

use super::*;

#[test]
fn nat_out_and_back() {
    let mut c = ctx((1, 0), None);
    let syn = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    let (v, out) = run(&mut c, &syn, 0);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(1),
            len: syn.len()
        }
    );
    assert_eq!(&out[0..6], &G1_MAC.0);
    assert_eq!(&out[6..12], &W1_MAC.0);
    assert_eq!(ips(&out), (EXT1, SRV, 63));
    assert_eq!(ports(&out), (40000, 443));
    assert_checksums(&out);
    // The answer comes back to the host.
    let synack = tcp_frame(G1_MAC, W1_MAC, SRV, EXT1, 443, 40000, SYN | ACK, 50);
    let (v, back) = run(&mut c, &synack, 1);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(0),
            len: synack.len()
        }
    );
    assert_eq!(&back[0..6], &H_MAC.0);
    assert_eq!(&back[6..12], &LAN_MAC.0);
    assert_eq!(ips(&back), (SRV, HOST, 49));
    assert_eq!(ports(&back), (443, 40000));
    assert_checksums(&back);
    assert_eq!(c.counters.gw_out[0].0, 1);
    assert_eq!(c.counters.gw_in[0].0, 1);
}

#[test]
fn udp_translated_and_zero_checksum_stays_zero() {
    let mut c = ctx((0, 1), None);
    let f = udp_frame(H_MAC, LAN_MAC, HOST, SRV, 5353, 53);
    let (v, out) = run(&mut c, &f, 0);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(2),
            len: f.len()
        }
    );
    assert_eq!(ips(&out).0, EXT2);
    assert_checksums(&out);
    let mut z = udp_frame(H_MAC, LAN_MAC, HOST, SRV, 5354, 53);
    z[14 + 20 + 6] = 0;
    z[14 + 20 + 7] = 0;
    let (_, out) = run(&mut c, &z, 0);
    assert_eq!(&out[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
}

#[test]
fn echo_out_and_back_uses_the_id() {
    let mut c = ctx((1, 0), None);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(H_MAC.0, LAN_MAC.0)
        .ipv4(HOST, SRV, 64)
        .icmpv4_echo_request(5, 1)
        .write(&mut f, b"ping")
        .unwrap();
    let out = forwarded(&mut c, &f, 0, 1);
    assert_checksums(&out);
    let id = u16::from_be_bytes([out[38], out[39]]);
    assert!(
        id >= 1024,
        "NAT ids come from the pool, above the probe range: {id}"
    );
    let mut r = Vec::new();
    PacketBuilder::ethernet2(G1_MAC.0, W1_MAC.0)
        .ipv4(SRV, EXT1, 60)
        .icmpv4_echo_reply(id, 1)
        .write(&mut r, b"ping")
        .unwrap();
    let back = forwarded(&mut c, &r, 1, 0);
    assert_eq!(u16::from_be_bytes([back[38], back[39]]), 5);
    assert_eq!(ips(&back).1, HOST);
    assert_checksums(&back);
}

#[test]
fn icmp_error_is_translated_back() {
    let mut c = ctx((1, 0), None);
    let f = udp_frame(H_MAC, LAN_MAC, HOST, SRV, 5353, 53);
    let (_, out) = run(&mut c, &f, 0);
    // The server answers with port unreachable, quoting the translated datagram.
    let quoted = &out[14..];
    let mut e = Vec::new();
    PacketBuilder::ethernet2(G1_MAC.0, W1_MAC.0)
        .ipv4(SRV, EXT1, 60)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut e, quoted)
        .unwrap();
    let back = forwarded(&mut c, &e, 1, 0);
    assert_eq!(ips(&back).1, HOST);
    // The quoted datagram is the host's original again.
    let q = &back[14 + 20 + 8..];
    assert_eq!(&q[12..16], &HOST);
    assert_eq!(u16::from_be_bytes([q[20], q[21]]), 5353);
    assert_checksums(&back);
}

#[test]
fn port_forward_and_source_aware_reply() {
    let mut c = ctx((1, 0), None);
    // Learn the server's MAC first (it talks once).
    run(&mut c, &udp_frame(H2_MAC, LAN_MAC, HOST2, SRV, 1, 53), 0);
    // A connection arrives on wan2 (weight 0 for new outbound flows!) to its port 8080.
    let syn = tcp_frame(
        G2_MAC,
        W2_MAC,
        [203, 0, 113, 99],
        EXT2,
        55555,
        8080,
        SYN,
        50,
    );
    let inb = forwarded(&mut c, &syn, 2, 0);
    assert_eq!(ips(&inb).1, HOST2);
    assert_eq!(ports(&inb), (55555, 80));
    assert_checksums(&inb);
    // The answer leaves by wan2 with wan2's address, whatever the policy says.
    let synack = tcp_frame(
        H2_MAC,
        LAN_MAC,
        HOST2,
        [203, 0, 113, 99],
        80,
        55555,
        SYN | ACK,
        64,
    );
    let out = forwarded(&mut c, &synack, 0, 2);
    assert_eq!(ips(&out).0, EXT2);
    assert_eq!(ports(&out), (8080, 55555));
    assert_checksums(&out);
}

#[test]
fn hairpin_reaches_the_forwarded_host() {
    let mut c = ctx((1, 0), None);
    run(&mut c, &udp_frame(H2_MAC, LAN_MAC, HOST2, SRV, 1, 53), 0);
    let syn = tcp_frame(H_MAC, LAN_MAC, HOST, EXT1, 40000, 8080, SYN, 64);
    let out = forwarded(&mut c, &syn, 0, 0);
    assert_eq!(&out[0..6], &H2_MAC.0);
    assert_eq!(ips(&out), (EXT1, HOST2, 63));
    let (sp, dp) = ports(&out);
    assert_eq!(dp, 80);
    assert_checksums(&out);
    // And back: the forwarded host answers the external address; the sender sees EXT1:8080.
    let synack = tcp_frame(H2_MAC, LAN_MAC, HOST2, EXT1, 80, sp, SYN | ACK, 64);
    let back = forwarded(&mut c, &synack, 0, 0);
    assert_eq!(&back[0..6], &H_MAC.0);
    assert_eq!(ips(&back), (EXT1, HOST, 63));
    assert_eq!(ports(&back), (8080, 40000));
    assert_checksums(&back);
}

#[test]
fn vlan_lan_port_pops_and_pushes_the_tag() {
    let mut c = ctx((1, 0), Some(10));
    let plain = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    // Untagged on the VLAN port's link: no such port.
    assert_eq!(
        run(&mut c, &plain, 0).0,
        Verdict::Drop(DropReason::WrongVlan)
    );
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 10]);
    tagged.extend_from_slice(&plain[12..]);
    let (v, out) = run(&mut c, &tagged, 0);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(1),
            len: plain.len()
        }
    );
    assert_eq!(
        &out[12..14],
        &[0x08, 0x00],
        "tag removed towards the untagged WAN"
    );
    assert_checksums(&out);
    let synack = tcp_frame(G1_MAC, W1_MAC, SRV, EXT1, 443, 40000, SYN | ACK, 50);
    let (v, back) = run(&mut c, &synack, 1);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(0),
            len: synack.len() + 4
        }
    );
    assert_eq!(&back[12..16], &[0x81, 0x00, 0x00, 10]);
    assert_checksums(&back);
}

#[test]
fn partial_checksum_stays_a_valid_pseudo_header_sum() {
    let mut c = ctx((1, 0), None);
    let mut f = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    // Make it a "checksum not ready" frame: the field holds the folded pseudo-header sum.
    let l4_len = (f.len() - 34) as u32;
    let mut s = 0u32;
    for w in f[26..34].chunks(2) {
        s += u32::from(w[0]) << 8 | u32::from(w[1]);
    }
    s += 6 + l4_len;
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    f[50..52].copy_from_slice(&(s as u16).to_be_bytes());
    let mut buf = f.clone();
    let mut meta = TxOffload {
        partial: Some(PartialChecksum {
            start: 34,
            offset: 16,
        }),
        gso: None,
    };
    let v = c.process(&mut buf, f.len(), 0, &mut meta, T);
    assert!(matches!(v, Verdict::Forward { .. }));
    // Finish it the way a NIC would and check the full sum.
    crate::checksum::complete_partial(&mut buf, 34, 16).unwrap();
    assert_checksums(&buf);
}

#[test]
fn batch_agrees_with_single() {
    let mut a = ctx((3, 1), None);
    let mut b = ctx((3, 1), None);
    let frames: Vec<Vec<u8>> = (0..100u16)
        .map(|i| tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 30000 + i % 40, 443, SYN, 64))
        .collect();
    let batch: Vec<(Vec<u8>, u8)> = frames.iter().map(|f| (f.clone(), 0)).collect();
    let (verdicts, _) = run_batch(&mut a, &batch, T);
    for (f, v) in frames.iter().zip(&verdicts) {
        let (single, _) = run(&mut b, f, 0);
        assert_eq!(*v, single);
    }
}

/// A connection's retransmitted SYN in the same batch as its first SYN: the batch's lookups were
/// done before the first created the flow, so later frames must look up again (they used to miss
/// and be refused as duplicates).
#[test]
fn batch_sees_flows_created_earlier_in_the_batch() {
    let mut a = ctx((3, 1), None);
    let mut b = ctx((3, 1), None);
    let frames: Vec<(Vec<u8>, u8)> = (0..32u16)
        .map(|i| {
            let f = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 30000 + i % 5, 443, SYN, 64);
            (f, 0)
        })
        .collect();
    let (verdicts, outs) = run_batch(&mut a, &frames, T);
    assert!(
        verdicts
            .iter()
            .all(|v| matches!(v, Verdict::Forward { .. })),
        "{verdicts:?}"
    );
    assert_eq!(a.table.len(), 5);
    for (((f, _), v), got) in frames.iter().zip(&verdicts).zip(&outs) {
        let (single, out) = run(&mut b, f, 0);
        assert_eq!(*v, single);
        assert_eq!(got, &out);
    }
}

/// An ICMP error as a host builds it: from `src` to `dst`, type `t`/`code`, quoting `quoted` (an
/// IPv4 packet).
fn icmp_error_frame(
    macs: (MacAddr, MacAddr),
    src: [u8; 4],
    dst: [u8; 4],
    t: u8,
    code: u8,
    quoted: &[u8],
) -> Vec<u8> {
    let mut e = Vec::new();
    PacketBuilder::ethernet2(macs.0.0, macs.1.0)
        .ipv4(src, dst, 64)
        .icmpv4_raw(t, code, [0; 4])
        .write(&mut e, quoted)
        .unwrap();
    e
}

/// The quoted datagram of an ICMP error frame (untagged, no outer options): source and
/// destination address and port.
fn quoted(f: &[u8]) -> ([u8; 4], [u8; 4], u16, u16) {
    let q = &f[14 + 20 + 8..];
    let ihl = usize::from(q[0] & 15) * 4;
    (
        q[12..16].try_into().unwrap(),
        q[16..20].try_into().unwrap(),
        u16::from_be_bytes([q[ihl], q[ihl + 1]]),
        u16::from_be_bytes([q[ihl + 2], q[ihl + 3]]),
    )
}

/// A LAN host answering a connection forwarded to it with an ICMP error (here port unreachable,
/// quoting the whole segment): it leaves through the gateway the connection came in on, from the
/// external address, quoting the segment as the outside host sent it (every checksum valid).
#[test]
fn icmp_error_from_a_forwarded_host_goes_out_translated() {
    let mut c = ctx((1, 0), None);
    run(&mut c, &udp_frame(H2_MAC, LAN_MAC, HOST2, SRV, 1, 53), 0);
    let client = [203, 0, 113, 99];
    let syn = tcp_frame(G2_MAC, W2_MAC, client, EXT2, 55555, 8080, SYN, 50);
    let inb = forwarded(&mut c, &syn, 2, 0);
    let e = icmp_error_frame((H2_MAC, LAN_MAC), HOST2, client, 3, 3, &inb[14..]);
    let out = forwarded(&mut c, &e, 0, 2);
    assert_eq!(&out[0..6], &G2_MAC.0);
    assert_eq!(&out[6..12], &W2_MAC.0);
    assert_eq!(ips(&out), (EXT2, client, 63));
    assert_eq!(quoted(&out), (client, EXT2, 55555, 8080));
    assert_checksums(&out);
    // The quote is the segment as the client sent it, but for the TTL (one less) and so the IP
    // header checksum.
    let q = &out[14 + 28..];
    let sent = &syn[14..];
    assert_eq!(
        (&q[..8], q[9], &q[12..]),
        (&sent[..8], sent[9], &sent[12..])
    );
    assert_eq!(q[8], sent[8] - 1);
    assert_eq!(c.counters.gw_out[1].0, 1);
}

/// A LAN host's ICMP error about a reply of its own connection (a late DNS answer to a closed
/// port) goes back to the server from the external address and port.
#[test]
fn icmp_error_about_a_reply_goes_out_translated() {
    let mut c = ctx((1, 0), None);
    let q = udp_frame(H_MAC, LAN_MAC, HOST, SRV, 5353, 53);
    let (_, out) = run(&mut c, &q, 0);
    let (ext, _, _) = ips(&out);
    let (ext_port, _) = ports(&out);
    let answer = udp_frame(G1_MAC, W1_MAC, SRV, ext, 53, ext_port);
    let back = forwarded(&mut c, &answer, 1, 0);
    let e = icmp_error_frame((H_MAC, LAN_MAC), HOST, SRV, 3, 3, &back[14..]);
    let err = forwarded(&mut c, &e, 0, 1);
    assert_eq!(ips(&err), (ext, SRV, 63));
    assert_eq!(quoted(&err), (SRV, ext, 53, ext_port));
    assert_checksums(&err);
    // Quoting only the first 8 bytes of the datagram's UDP header works the same.
    let short = &back[14..14 + 28];
    let e = icmp_error_frame((H_MAC, LAN_MAC), HOST, SRV, 3, 3, short);
    let err = forwarded(&mut c, &e, 0, 1);
    assert_eq!(quoted(&err), (SRV, ext, 53, ext_port));
    assert_checksums(&err);
}

/// An inside host's ICMP error that belongs to no flow, or sent to one of the router's own
/// addresses, or to someone other than the quoted sender, is dropped and counted.
#[test]
fn icmp_errors_from_the_lan_without_a_flow_are_dropped() {
    let mut c = ctx((1, 0), None);
    let stray = udp_frame(G1_MAC, W1_MAC, SRV, HOST, 53, 5353);
    let e = icmp_error_frame((H_MAC, LAN_MAC), HOST, SRV, 3, 3, &stray[14..]);
    assert_eq!(
        run(&mut c, &e, 0).0,
        Verdict::Drop(DropReason::IcmpErrorNoFlow)
    );
    let (_, out) = run(&mut c, &udp_frame(H_MAC, LAN_MAC, HOST, SRV, 5353, 53), 0);
    let back = forwarded(
        &mut c,
        &udp_frame(G1_MAC, W1_MAC, SRV, ips(&out).0, 53, 5353),
        1,
        0,
    );
    let other = icmp_error_frame(
        (H_MAC, LAN_MAC),
        HOST,
        [198, 51, 100, 77],
        3,
        3,
        &back[14..],
    );
    assert_eq!(
        run(&mut c, &other, 0).0,
        Verdict::Drop(DropReason::IcmpErrorNoFlow)
    );
    let to_router = icmp_error_frame((H_MAC, LAN_MAC), HOST, EXT1, 3, 3, &back[14..]);
    assert_eq!(
        run(&mut c, &to_router, 0).0,
        Verdict::Drop(DropReason::HairpinUnsupported)
    );
}
