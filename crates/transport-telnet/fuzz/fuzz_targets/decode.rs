//! Decodes the same bytes whole and cut into reads, and checks that the cuts
//! change nothing but how text is split into `Data` events, that no kept
//! subnegotiation payload passes the limit, and that escaped text decodes
//! back to itself.
//!
//! Input layout: byte 0 is the subnegotiation limit; byte 1 says how many
//! of the following bytes (0 to 15) give read lengths, used in turn; the
//! rest is the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_transport_telnet::codec::{Decoder, Event, escape, merged};

fuzz_target!(|input: &[u8]| {
    let [limit, n, rest @ ..] = input else { return };
    let limit = usize::from(*limit);
    let n = usize::from(*n % 16).min(rest.len());
    let (lengths, stream) = rest.split_at(n);

    let mut whole = Vec::new();
    Decoder::new(limit).decode(stream, &mut whole);

    let mut split = Vec::new();
    let mut decoder = Decoder::new(limit);
    let mut left = stream;
    let mut lengths = lengths.iter().cycle();
    while !left.is_empty() {
        let mut len = lengths.next().map_or(left.len(), |&l| usize::from(l)).min(left.len());
        if len == 0 {
            // A read that returned nothing must be harmless too; then move on,
            // or all-zero lengths would never finish.
            decoder.decode(&[], &mut split);
            len = 1;
        }
        let (chunk, tail) = left.split_at(len);
        decoder.decode(chunk, &mut split);
        left = tail;
    }

    for event in whole.iter().chain(&split) {
        match event {
            Event::Data(d) => assert!(!d.is_empty(), "empty Data"),
            Event::Subnegotiation { payload, .. } => assert!(payload.len() <= limit, "payload over the limit"),
            _ => {}
        }
    }
    assert_eq!(merged(whole), merged(split));

    let mut wire = Vec::new();
    escape(stream, &mut wire);
    let mut text = Vec::new();
    Decoder::new(0).decode(&wire, &mut text);
    let text: Vec<u8> = text
        .into_iter()
        .flat_map(|e| match e {
            Event::Data(d) => d,
            other => panic!("escaped text decoded to {other:?}"),
        })
        .collect();
    assert_eq!(text, stream);
});
