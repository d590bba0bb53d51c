//! `Icmpv4Packet::new_checked` on arbitrary bytes: no panic; an accepted header re-emits to the same
//! repr.
#![no_main]

use altroute_packet::wire::{Icmpv4Packet, Icmpv4Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let r = Icmpv4Repr::parse(&p);
    let mut out = vec![0u8; data.len().max(64)];
    if r.emit(&mut out).is_ok() {
        let n = data.len().max(64);
        let again = Icmpv4Packet::new_checked(&out[..n]).expect("emitted header must parse");
        assert_eq!(Icmpv4Repr::parse(&again), r);
    }
});
