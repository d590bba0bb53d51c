//! How the worker hands frames on: the pipeline's offload metadata ([`TxOffload`]) from and to
//! the I/O layer's virtio-net header, a verdict turned into a send (with the checksum finished by
//! the packet crate's egress stage when the out link cannot), and the batch bookkeeping of UDP
//! coalescing (which frame heads a group; the packet crate's [`coalesce`] reads and writes every
//! header byte).

use altroute_flow::Time;
use altroute_io::{GsoType, RxBatch, VnetHdr};
use altroute_packet::DropReason;
use altroute_packet::egress::{self, Gso, GsoKind, PartialChecksum, TxOffload, coalesce};
use altroute_packet::pipeline::{Context, Verdict};

use super::{Out, Step};

/// The pipeline's offload metadata of a received frame: from its vnet header, or, on a link
/// without one, from the ring's "checksum not ready" flag (the packet crate finds the field).
/// `None` for a GSO type the pipeline does not know (the kernel hands over no other).
pub(super) fn rx_offload(
    frame: &[u8],
    vnet: Option<VnetHdr>,
    csum_not_ready: bool,
) -> Option<TxOffload> {
    let Some(v) = vnet else {
        return Some(if csum_not_ready {
            TxOffload::checksum_not_ready(frame)
        } else {
            TxOffload::NONE
        });
    };
    let kind = match v.gso() {
        GsoType::None => None,
        GsoType::TcpV4 => Some(GsoKind::TcpV4),
        GsoType::TcpV6 => Some(GsoKind::TcpV6),
        GsoType::UdpL4 => Some(GsoKind::UdpL4),
        GsoType::Udp | GsoType::Other(_) => return None,
    };
    Some(TxOffload {
        partial: v.needs_csum().then_some(PartialChecksum {
            start: v.csum_start,
            offset: v.csum_offset,
        }),
        gso: kind.map(|kind| Gso {
            kind,
            ecn: v.ecn(),
            size: v.gso_size,
            hdr_len: v.hdr_len,
        }),
    })
}

/// The vnet header that hands `o`'s work to the kernel.
fn tx_vnet(o: &TxOffload) -> VnetHdr {
    let (csum_start, csum_offset) = o.partial.map_or((0, 0), |p| (p.start, p.offset));
    let (gso_type, gso_size, hdr_len) = match o.gso {
        None => (VnetHdr::GSO_NONE, 0, 0),
        Some(g) => {
            let t = match g.kind {
                GsoKind::TcpV4 => VnetHdr::GSO_TCPV4,
                GsoKind::TcpV6 => VnetHdr::GSO_TCPV6,
                GsoKind::UdpL4 => VnetHdr::GSO_UDP_L4,
            };
            let ecn = if g.ecn { VnetHdr::GSO_ECN } else { 0 };
            (t | ecn, g.size, g.hdr_len)
        }
    };
    VnetHdr {
        flags: if o.partial.is_some() {
            VnetHdr::F_NEEDS_CSUM
        } else {
            0
        },
        gso_type,
        hdr_len,
        gso_size,
        csum_start,
        csum_offset,
    }
}

/// Turns a pipeline verdict into what to do with the frame: the out link and length, and the
/// offload work for the link — handed to the kernel in a vnet header, or, for a link without
/// one, done here (the checksum finished by the packet crate's egress stage). `buf` is the frame
/// and the room after it.
pub(super) fn finish(
    ctx: &Context,
    vnet_links: &[bool],
    link: u8,
    buf: &mut [u8],
    verdict: Verdict,
    mut offload: TxOffload,
) -> Step {
    let (out_link, new_len) = match verdict {
        Verdict::Forward { port, len } => {
            let out_link = ctx
                .config()
                .ports
                .get(usize::from(port.0))
                .map_or(link, |p| p.link);
            (out_link, len)
        }
        Verdict::Reply { len } => (link, len),
        Verdict::Drop(_) => return Step::Drop,
        Verdict::Control(reason) => return Step::Control(reason),
    };
    let Some(frame) = buf.get_mut(..new_len).filter(|f| !f.is_empty()) else {
        return Step::Drop;
    };
    let out_vnet = vnet_links
        .get(usize::from(out_link))
        .copied()
        .unwrap_or(false);
    if !out_vnet {
        // The out link cannot finish the checksum: it is done here. (A field out of range
        // leaves the frame as it is, as a NIC would.)
        let _ = egress::complete_checksum(frame, &mut offload);
    }
    Step::Send {
        link: out_link,
        len: new_len,
        vnet: out_vnet.then(|| tx_vnet(&offload)),
    }
}

/// Runs one frame through the pipeline: `buf` is the frame and the room after it, `len` the
/// frame's length, `vnet` and `csum_not_ready` its offload state from the I/O layer.
#[allow(clippy::too_many_arguments)]
pub(super) fn handle(
    ctx: &mut Context,
    vnet_links: &[bool],
    link: u8,
    buf: &mut [u8],
    len: usize,
    vnet: Option<VnetHdr>,
    csum_not_ready: bool,
    t: Time,
) -> Step {
    let Some(mut offload) = rx_offload(buf.get(..len).unwrap_or(&[]), vnet, csum_not_ready) else {
        ctx.counters.drops.inc(DropReason::UnsupportedGso);
        return Step::Drop;
    };
    let verdict = ctx.process(buf, len, link, &mut offload, t);
    finish(ctx, vnet_links, link, buf, verdict, offload)
}

/// Merges runs of consecutive small datagrams of one flow bound for `target` into UDP GSO
/// frames (the packet crate's [`coalesce`] reads and writes the headers): the later payloads are
/// copied into the first frame's tail room and the later frames dropped from the batch. Returns
/// how many frames were merged away.
pub(super) fn coalesce_udp(batch: &mut RxBatch<'_>, outs: &mut [Out], target: Out) -> u64 {
    let mut merged = 0;
    // The group being built, with the index of its first frame (the head).
    let mut group: Option<(usize, coalesce::Group)> = None;
    let mut tmp = [0u8; coalesce::MAX_PAYLOAD];
    for i in 0..batch.len() {
        if outs.get(i) != Some(&target) {
            continue;
        }
        let Some(f) = batch.get_mut(i) else {
            continue;
        };
        if f.is_dropped() {
            continue;
        }
        let plain = f.vnet().is_none_or(|v| !v.is_gso());
        // Through `tmp`: the payload and the head live in the same batch.
        let payload = match group.as_ref() {
            Some((_, g)) if plain => g.next_payload(f.data()).and_then(|p| {
                let t = tmp.get_mut(..p.len())?;
                t.copy_from_slice(p);
                Some(p.len())
            }),
            _ => None,
        };
        if let (Some(n), Some((head, g))) = (payload, group.as_mut())
            && append(batch, *head, g, &tmp[..n])
        {
            merged += 1;
            if let Some(mut f) = batch.get_mut(i) {
                f.drop_frame();
            }
            if let Some(o) = outs.get_mut(i) {
                *o = Out::None;
            }
            continue;
        }
        // This frame does not continue the group: close it, maybe open a new one.
        if let Some((head, g)) = group.take() {
            close_group(batch, head, &g);
        }
        group = if plain {
            batch
                .get_mut(i)
                .and_then(|f| coalesce::Group::open(f.data()))
                .map(|g| (i, g))
        } else {
            None
        };
    }
    if let Some((head, g)) = group.take() {
        close_group(batch, head, &g);
    }
    merged
}

/// Appends `payload` to the group `g` headed by frame `head`. `false`, with the group and the
/// head unchanged, when it does not fit.
fn append(batch: &mut RxBatch<'_>, head: usize, g: &mut coalesce::Group, payload: &[u8]) -> bool {
    let Some(mut h) = batch.get_mut(head) else {
        return false;
    };
    let len = h.len();
    match g.append(h.frame_and_tail_mut(), len, payload) {
        // (Within the buffer `frame_and_tail_mut` gave, so the length fits the slot.)
        Some(new_len) => h.set_len(new_len),
        None => false,
    }
}

/// Turns a group of two or more datagrams into its GSO frame.
fn close_group(batch: &mut RxBatch<'_>, head: usize, g: &coalesce::Group) {
    if let Some(mut h) = batch.get_mut(head)
        && let Some(o) = g.finish(h.data_mut())
    {
        h.set_vnet(Some(tx_vnet(&o)));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    use altroute_packet::wire::MacAddr;

    /// A 60-byte UDP over IPv4 frame from source port `sport`, built by the packet crate.
    pub(in crate::worker) fn udp_frame(sport: u16) -> Vec<u8> {
        use altroute_packet::wire::{EtherType, EthernetRepr, Ipv4Repr, UdpRepr};
        let mut f = vec![0u8; 60];
        let eth = EthernetRepr {
            src: MacAddr([2, 0, 0, 0, 0, 2]),
            dst: MacAddr([2, 0, 0, 0, 0, 1]),
            vlan: None,
            ethertype: EtherType::IPV4,
        }
        .emit(&mut f)
        .unwrap();
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(203, 0, 113, 10));
        let ip = Ipv4Repr::new(src, dst, 17, 64, 8)
            .emit(&mut f[eth..])
            .unwrap();
        UdpRepr {
            src_port: sport,
            dst_port: 53,
            payload_len: 0,
        }
        .emit(&mut f[eth + ip..])
        .unwrap();
        f.truncate(eth + ip + 8);
        f
    }

    /// A vnet header as the kernel hands it over: `NEEDS_CSUM` with its offsets or nothing, a
    /// GSO type the pipeline knows (with the ECN bit for TCP) and its size, or none and zeros.
    fn kernel_vnet() -> impl proptest::strategy::Strategy<Value = VnetHdr> {
        use proptest::prelude::*;
        (
            any::<bool>(),
            any::<bool>(),
            prop_oneof![
                Just(VnetHdr::GSO_NONE),
                Just(VnetHdr::GSO_TCPV4),
                Just(VnetHdr::GSO_TCPV6),
                Just(VnetHdr::GSO_UDP_L4),
            ],
            any::<bool>(),
            any::<(u16, u16, u16, u16)>(),
        )
            .prop_map(|(csum, valid, gso, ecn, (start, off, size, hdr))| {
                let tcp = gso == VnetHdr::GSO_TCPV4 || gso == VnetHdr::GSO_TCPV6;
                let is_gso = gso != VnetHdr::GSO_NONE;
                VnetHdr {
                    flags: if csum { VnetHdr::F_NEEDS_CSUM } else { 0 }
                        | if valid { VnetHdr::F_DATA_VALID } else { 0 },
                    gso_type: gso | if ecn && tcp { VnetHdr::GSO_ECN } else { 0 },
                    hdr_len: if is_gso { hdr } else { 0 },
                    gso_size: if is_gso { size } else { 0 },
                    csum_start: if csum { start } else { 0 },
                    csum_offset: if csum { off } else { 0 },
                }
            })
    }

    proptest::proptest! {
        /// What the kernel says in a vnet header goes back out unchanged through the pipeline's
        /// metadata, but `DATA_VALID` (receive-only: the kernel ignores it on transmit).
        #[test]
        fn vnet_headers_round_trip_through_the_offload_metadata(v in kernel_vnet()) {
            let o = rx_offload(&[], Some(v), false).unwrap();
            let back = tx_vnet(&o);
            proptest::prop_assert_eq!(
                back,
                VnetHdr {
                    flags: v.flags & !VnetHdr::F_DATA_VALID,
                    ..v
                }
            );
        }
    }

    #[test]
    fn offload_state_of_plain_and_unknown_frames() {
        let f = udp_frame(40000);
        // Without a vnet header the packet crate finds the field of a "checksum not ready" frame.
        let o = rx_offload(&f, None, true).unwrap();
        assert_eq!(o, TxOffload::checksum_not_ready(&f));
        assert_eq!(o.partial.map(|p| (p.start, p.offset)), Some((34, 6)));
        assert_eq!(rx_offload(&f, None, false), Some(TxOffload::NONE));
        // UFO and unknown GSO types are not the pipeline's.
        for t in [VnetHdr::GSO_UDP, 0x42] {
            let v = VnetHdr {
                gso_type: t,
                ..VnetHdr::default()
            };
            assert_eq!(rx_offload(&f, Some(v), false), None);
        }
        assert_eq!(tx_vnet(&TxOffload::NONE), VnetHdr::default());
    }
}
