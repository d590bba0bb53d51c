//! `TcpPacket::new_checked` on arbitrary bytes: no panic; an accepted header re-emits to the same
//! repr.
#![no_main]

use altroute_packet::wire::{TcpPacket, TcpRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = TcpPacket::new_checked(data) else {
        return;
    };
    let r = TcpRepr::parse(&p);
    let mut out = vec![0u8; data.len().max(64)];
    if r.emit(&mut out).is_ok() {
        let n = data.len().max(64);
        let again = TcpPacket::new_checked(&out[..n]).expect("emitted header must parse");
        assert_eq!(TcpRepr::parse(&again), r);
    }
});
