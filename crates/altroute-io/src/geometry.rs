//! Ring geometry: how big a slot must be for the largest frame we want whole (a 64 KiB GSO
//! super-frame plus the kernel's headers, our headroom and the vnet header), and how to group
//! slots into page-multiple blocks without wasting memory.
//!
//! Where the kernel puts a received frame inside a slot (`tpacket_rcv`, SOCK_RAW, Ethernet):
//! `netoff = TPACKET_ALIGN(tp_hdrlen + 16) + reserve + vnet_len` and `macoff = netoff - 14`, so
//! the frame starts at `macoff` and a frame of `len` bytes fits whole iff
//! `macoff + len <= frame_size` (V2) or `<= block_size - block header` (V3).

use crate::sys::{self, TPACKET2_HDRLEN, TPACKET3_HDRLEN, tpacket_align};

/// Which `TPACKET` version a ring uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingVersion {
    /// `TPACKET_V2`: fixed-size slots, each handed to user space as soon as it is filled.
    V2,
    /// `TPACKET_V3`: variable-size frames packed into blocks; a block is handed to user space when
    /// it is full or when its retire timer fires (adds up to that many ms of latency when idle).
    V3,
}

/// Page size assumed for block sizes (the kernel requires multiples of `PAGE_SIZE`).
pub const PAGE_SIZE: usize = 4096;
/// Largest block we ask for (the kernel falls back to vmalloc for large orders).
pub const MAX_BLOCK_SIZE: usize = 4 << 20;
/// Ethernet header length the kernel's offset arithmetic assumes.
const ETH_HLEN: usize = 14;
/// `BLK_PLUS_PRIV(0)`: the V3 block descriptor rounded to 8.
pub const V3_BLOCK_HDR: usize = (size_of::<sys::TpacketBlockDesc>() + 7) & !7;

/// The geometry of one ring, as passed to `PACKET_RX_RING` / `PACKET_TX_RING`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RingGeometry {
    /// Ring version.
    pub version: RingVersion,
    /// Bytes per block (a multiple of [`PAGE_SIZE`]).
    pub block_size: u32,
    /// Number of blocks.
    pub block_nr: u32,
    /// Bytes per slot (V2; a multiple of 16 dividing into the block).
    pub frame_size: u32,
    /// Total slots (`block_nr * (block_size / frame_size)`).
    pub frame_nr: u32,
}

impl RingGeometry {
    /// Offset of the frame (MAC header) inside a slot for `reserve` bytes of `PACKET_RESERVE` and
    /// an optional vnet header, for a 14-byte Ethernet header.
    pub fn mac_offset(version: RingVersion, reserve: usize, vnet: bool) -> usize {
        let hdrlen = match version {
            RingVersion::V2 => TPACKET2_HDRLEN,
            RingVersion::V3 => TPACKET3_HDRLEN,
        };
        let vnet_len = if vnet { crate::vnet::VNET_HDR_LEN } else { 0 };
        tpacket_align(hdrlen + 16) + reserve + vnet_len - ETH_HLEN
    }

    /// Smallest slot that holds a frame of `max_frame` bytes whole (rounded to 16).
    pub fn min_slot(version: RingVersion, reserve: usize, vnet: bool, max_frame: usize) -> usize {
        tpacket_align(Self::mac_offset(version, reserve, vnet) + max_frame)
    }

    /// V2 geometry with at least `min_frames` slots each holding `max_frame` bytes whole.
    ///
    /// Picks the smallest power-of-two block (pages) that wastes at most 1/16 of itself on the
    /// remainder after packing whole slots, else the least wasteful block up to
    /// [`MAX_BLOCK_SIZE`], then spreads the block evenly over its slots.
    pub fn v2(
        reserve: usize,
        vnet: bool,
        max_frame: usize,
        min_frames: u32,
    ) -> Result<RingGeometry, String> {
        let slot = Self::min_slot(RingVersion::V2, reserve, vnet, max_frame);
        Self::v2_slots(slot, min_frames)
    }

    /// V2 geometry with at least `min_frames` slots of at least `slot` bytes (see [`RingGeometry::v2`]).
    pub fn v2_slots(slot: usize, min_frames: u32) -> Result<RingGeometry, String> {
        let slot = tpacket_align(slot.max(TPACKET2_HDRLEN));
        if slot > MAX_BLOCK_SIZE {
            return Err(format!(
                "slot of {slot} bytes exceeds the {MAX_BLOCK_SIZE}-byte block limit"
            ));
        }
        if min_frames == 0 {
            return Err("a ring needs at least one frame".into());
        }
        let mut best: Option<(usize, usize)> = None; // (block, waste)
        let mut block = PAGE_SIZE;
        while block <= MAX_BLOCK_SIZE {
            if block >= slot {
                let per = block / slot;
                let waste = block - per * slot;
                if waste * 16 <= block {
                    best = Some((block, waste));
                    break;
                }
                if best.is_none_or(|(b, w)| waste * b < w * block) {
                    best = Some((block, waste));
                }
            }
            block *= 2;
        }
        let Some((block, _)) = best else {
            return Err("no block size fits the slot".into());
        };
        let per = block / slot;
        // Spread the spare bytes over the slots (keeps 16-byte alignment).
        let frame_size = (block / per) & !(sys::TPACKET_ALIGNMENT - 1);
        let per = per as u32;
        let block_nr = min_frames.div_ceil(per);
        let frame_nr = block_nr
            .checked_mul(per)
            .ok_or_else(|| "ring too large".to_string())?;
        let g = RingGeometry {
            version: RingVersion::V2,
            block_size: block as u32,
            block_nr,
            frame_size: frame_size as u32,
            frame_nr,
        };
        g.check_size()?;
        Ok(g)
    }

    /// V3 geometry: `block_nr` blocks of `block_size` bytes (rounded up to pages), which must hold
    /// at least one frame of `max_frame` bytes whole.
    pub fn v3(
        reserve: usize,
        vnet: bool,
        max_frame: usize,
        block_size: usize,
        block_nr: u32,
    ) -> Result<RingGeometry, String> {
        let block = block_size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let need = V3_BLOCK_HDR + Self::min_slot(RingVersion::V3, reserve, vnet, max_frame);
        if block < need {
            return Err(format!(
                "V3 block of {block} bytes cannot hold a {max_frame}-byte frame (needs {need})"
            ));
        }
        if block > MAX_BLOCK_SIZE || block_nr == 0 {
            return Err(format!(
                "V3 block size must be at most {MAX_BLOCK_SIZE} and block count non-zero"
            ));
        }
        // tp_frame_size is not used to place V3 frames, but the kernel validates it like V2's.
        let g = RingGeometry {
            version: RingVersion::V3,
            block_size: block as u32,
            block_nr,
            frame_size: block as u32,
            frame_nr: block_nr,
        };
        g.check_size()?;
        Ok(g)
    }

    /// Bytes the ring maps.
    pub fn ring_bytes(&self) -> usize {
        self.block_size as usize * self.block_nr as usize
    }

    /// Byte offset of slot `i` from the start of the ring. Slots never straddle blocks, so a
    /// block may end in unused bytes: slot `i` is at
    /// `(i / frames_per_block) * block_size + (i % frames_per_block) * frame_size`.
    pub fn slot_offset(&self, i: u32) -> usize {
        let per = self.frames_per_block().max(1);
        (i / per) as usize * self.block_size as usize
            + (i % per) as usize * self.frame_size as usize
    }

    /// Slots per block.
    pub fn frames_per_block(&self) -> u32 {
        self.block_size / self.frame_size.max(1)
    }

    /// The largest frame that arrives whole (for V3 the block is the limit).
    pub fn max_frame(&self, reserve: usize, vnet: bool) -> usize {
        let mac = Self::mac_offset(self.version, reserve, vnet);
        match self.version {
            RingVersion::V2 => (self.frame_size as usize).saturating_sub(mac),
            RingVersion::V3 => (self.block_size as usize).saturating_sub(V3_BLOCK_HDR + mac),
        }
    }

    fn check_size(&self) -> Result<(), String> {
        if self.ring_bytes() > (1 << 30) {
            return Err(format!("ring of {} bytes is over 1 GiB", self.ring_bytes()));
        }
        Ok(())
    }

    pub(crate) fn to_req(self, retire_ms: u32) -> sys::TpacketReq3 {
        sys::TpacketReq3 {
            tp_block_size: self.block_size,
            tp_block_nr: self.block_nr,
            tp_frame_size: self.frame_size,
            tp_frame_nr: self.frame_nr,
            tp_retire_blk_tov: if self.version == RingVersion::V3 {
                retire_ms
            } else {
                0
            },
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mac_offsets_match_the_kernel_arithmetic() {
        // V2: tp_hdrlen 52 -> netoff = ALIGN16(68) = 80 -> macoff 66.
        assert_eq!(RingGeometry::mac_offset(RingVersion::V2, 0, false), 66);
        assert_eq!(
            RingGeometry::mac_offset(RingVersion::V2, 18, true),
            66 + 18 + 10
        );
        // V3: tp_hdrlen 68 -> netoff = ALIGN16(84) = 96 -> macoff 82.
        assert_eq!(RingGeometry::mac_offset(RingVersion::V3, 0, false), 82);
    }

    #[test]
    fn gso_slots_hold_64k_and_pack_blocks_tightly() {
        let g = RingGeometry::v2(18, true, 65535 + 18, 200).unwrap();
        assert!(g.frame_size as usize >= 65535 + 18 + 66 + 18 + 10);
        assert_eq!(g.block_size % PAGE_SIZE as u32, 0);
        assert_eq!(g.frame_size % 16, 0);
        assert_eq!(g.frame_nr, g.block_nr * g.frames_per_block());
        assert!(g.frame_nr >= 200);
        let used = g.frames_per_block() * g.frame_size;
        assert!((g.block_size - used) * 16 <= g.block_size, "{g:?}");
        assert!(g.max_frame(18, true) >= 65535 + 18);
        // The 69,632-byte layout from NOTES would be one slot per 128 KiB block: ours is denser.
        assert!(g.ring_bytes() / g.frame_nr as usize <= 70 * 1024, "{g:?}");
    }

    #[test]
    fn slots_do_not_straddle_blocks() {
        let g = RingGeometry::v2(18, false, 1518, 64).unwrap();
        let per = g.frames_per_block();
        assert!(
            per > 1 && !g.block_size.is_multiple_of(g.frame_size),
            "a layout with slack: {g:?}"
        );
        assert_eq!(g.slot_offset(0), 0);
        assert_eq!(g.slot_offset(1), g.frame_size as usize);
        assert_eq!(g.slot_offset(per), g.block_size as usize);
        assert_eq!(
            g.slot_offset(per + 1),
            (g.block_size + g.frame_size) as usize
        );
        for i in 0..g.frame_nr {
            let o = g.slot_offset(i);
            let block = o / g.block_size as usize;
            assert_eq!(
                (o + g.frame_size as usize - 1) / g.block_size as usize,
                block
            );
            assert!(o + g.frame_size as usize <= g.ring_bytes());
        }
    }

    #[test]
    fn mtu_slots_are_small() {
        let g = RingGeometry::v2(18, false, 1518, 512).unwrap();
        assert!(g.frame_size <= 2048, "{g:?}");
        assert!(g.max_frame(18, false) >= 1518);
    }

    #[test]
    fn v3_checks_the_block_holds_a_frame() {
        let g = RingGeometry::v3(18, true, 65553, 1 << 20, 8).unwrap();
        assert_eq!(g.ring_bytes(), 8 << 20);
        assert!(g.max_frame(18, true) >= 65553);
        assert!(RingGeometry::v3(18, true, 65553, 64 << 10, 8).is_err());
        assert!(
            RingGeometry::v3(0, false, 1500, 5000, 1)
                .unwrap()
                .block_size
                == 8192
        );
    }

    #[test]
    fn rejects_impossible_requests() {
        assert!(RingGeometry::v2(0, false, 8 << 20, 4).is_err());
        assert!(RingGeometry::v2(0, false, 1500, 0).is_err());
        assert!(RingGeometry::v2(0, false, 65535, 1 << 20).is_err());
    }

    proptest! {
        #[test]
        fn v2_geometry_is_always_kernel_valid(
            reserve in 0usize..256, vnet: bool, max_frame in 60usize..200_000, frames in 1u32..2048
        ) {
            if let Ok(g) = RingGeometry::v2(reserve, vnet, max_frame, frames) {
                prop_assert_eq!(g.block_size as usize % PAGE_SIZE, 0);
                prop_assert_eq!(g.frame_size as usize % 16, 0);
                prop_assert!(g.frame_size >= 52 + reserve as u32);
                prop_assert!(g.frames_per_block() >= 1);
                prop_assert_eq!(g.frame_nr, g.block_nr * g.frames_per_block());
                prop_assert!(g.frame_nr >= frames);
                prop_assert!(g.max_frame(reserve, vnet) >= max_frame);
            }
        }
    }
}
