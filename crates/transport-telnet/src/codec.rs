//! The Telnet byte stream (RFC 854): a decoder that turns whatever one read
//! returned into text and commands, and encoders for what a client sends.
//!
//! The decoder is a state machine over single bytes, so a read may end
//! anywhere (inside an `IAC` sequence, between `SB` and its option, inside a
//! subnegotiation) and the next read carries on where it stopped. Text is
//! handed out in the call that received it; only the bytes whose meaning
//! depends on what comes next are held.

use std::fmt;

/// Interpret As Command: starts every command; doubled in text and in
/// subnegotiations to stand for a literal 255.
pub const IAC: u8 = 255;
/// The peer must stop (or must not start) using an option on its side.
pub const DONT: u8 = 254;
/// The peer is asked to use (or confirmed in using) an option on its side.
pub const DO: u8 = 253;
/// The sender refuses (or stops) using an option on its own side.
pub const WONT: u8 = 252;
/// The sender offers (or confirms) using an option on its own side.
pub const WILL: u8 = 251;
/// Starts a subnegotiation: `IAC SB option ... IAC SE`.
pub const SB: u8 = 250;
/// Go Ahead: the half-duplex turn signal; servers send it after prompts.
pub const GA: u8 = 249;
/// Erase Line.
pub const EL: u8 = 248;
/// Erase Character.
pub const EC: u8 = 247;
/// Are You There.
pub const AYT: u8 = 246;
/// Abort Output.
pub const AO: u8 = 245;
/// Interrupt Process.
pub const IP: u8 = 244;
/// Break.
pub const BRK: u8 = 243;
/// Data Mark: the synch point of an urgent-data `IAC DM`.
pub const DM: u8 = 242;
/// No Operation.
pub const NOP: u8 = 241;
/// Ends a subnegotiation.
pub const SE: u8 = 240;

/// TTYPE's SEND code (1): the server asks for our terminal type.
pub const TTYPE_SEND: u8 = 1;
/// TTYPE's IS code (0): our answer carrying the terminal type.
pub const TTYPE_IS: u8 = 0;

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const NUL: u8 = 0;

/// Option codes.
pub mod option {
    /// Binary transmission (RFC 856).
    pub const BINARY: u8 = 0;
    /// Echo (RFC 857).
    pub const ECHO: u8 = 1;
    /// Suppress Go Ahead (RFC 858).
    pub const SGA: u8 = 3;
    /// Status (RFC 859).
    pub const STATUS: u8 = 5;
    /// Timing mark (RFC 860).
    pub const TIMING_MARK: u8 = 6;
    /// Terminal type (RFC 1091).
    pub const TTYPE: u8 = 24;
    /// Negotiate About Window Size (RFC 1073).
    pub const NAWS: u8 = 31;
    /// Terminal speed (RFC 1079).
    pub const TSPEED: u8 = 32;
    /// Remote flow control (RFC 1372).
    pub const LFLOW: u8 = 33;
    /// Linemode (RFC 1184).
    pub const LINEMODE: u8 = 34;
    /// X display location (RFC 1096).
    pub const XDISPLOC: u8 = 35;
    /// The old environment option (RFC 1408).
    pub const OLD_ENVIRON: u8 = 36;
    /// Authentication (RFC 2941).
    pub const AUTHENTICATION: u8 = 37;
    /// Encryption (RFC 2946).
    pub const ENCRYPT: u8 = 38;
    /// The new environment option (RFC 1572).
    pub const NEW_ENVIRON: u8 = 39;
}

/// The four option negotiation commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `WILL`: the sender will use the option on its side.
    Will,
    /// `WONT`: the sender will not use the option on its side.
    Wont,
    /// `DO`: the sender wants the receiver to use the option.
    Do,
    /// `DONT`: the sender wants the receiver not to use the option.
    Dont,
}

impl Verb {
    /// The command byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            Verb::Will => WILL,
            Verb::Wont => WONT,
            Verb::Do => DO,
            Verb::Dont => DONT,
        }
    }

    /// The verb for a command byte, if it is one of the four.
    pub fn from_byte(b: u8) -> Option<Verb> {
        match b {
            WILL => Some(Verb::Will),
            WONT => Some(Verb::Wont),
            DO => Some(Verb::Do),
            DONT => Some(Verb::Dont),
            _ => None,
        }
    }
}

/// One thing the peer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Text from the peer, with IAC IAC undone and CR NUL turned into CR (CR LF stays CR LF).
    Data(Vec<u8>),
    /// IAC WILL/WONT/DO/DONT option.
    Negotiation {
        /// The command.
        verb: Verb,
        /// The option it is about.
        option: u8,
    },
    /// A whole IAC SB option ... IAC SE, IAC IAC in it undone.
    Subnegotiation {
        /// The option byte right after `SB`.
        option: u8,
        /// What came between the option byte and `IAC SE`.
        payload: Vec<u8>,
    },
    /// A subnegotiation longer than the decoder's limit: its bytes were dropped (up to its IAC SE), never buffered beyond the limit.
    SubnegotiationTooLong {
        /// The option byte right after `SB`.
        option: u8,
    },
    /// Any other two-byte command (GA, NOP, AYT, DM, ...): never part of the text.
    Command(u8),
}

/// Where the decoder stands between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    /// A CR was seen in the text and is held: a NUL after it is dropped, so
    /// the CR cannot go out before the next byte is known.
    TextCr,
    Iac,
    Verb(Verb),
    /// `IAC SB` seen, the option byte not yet.
    SbOption,
    Sb,
    SbIac,
}

/// Decodes the bytes a Telnet server sends into [`Event`]s.
pub struct Decoder {
    state: State,
    max_subnegotiation: usize,
    sb_option: u8,
    sb_payload: Vec<u8>,
    /// The current subnegotiation outgrew the limit: its payload was freed and
    /// the rest of it is skipped up to `IAC SE`.
    sb_overflow: bool,
    /// The peer sends binary (RFC 856): a CR is text like any byte, and no
    /// NUL after it is dropped.
    binary: bool,
}

// By hand, so that a debug log shows the state without dumping a payload
// that may be as large as the limit.
impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("state", &self.state)
            .field("max_subnegotiation", &self.max_subnegotiation)
            .field("sb_option", &self.sb_option)
            .field("sb_len", &self.sb_payload.len())
            .field("sb_overflow", &self.sb_overflow)
            .finish()
    }
}

impl Decoder {
    /// `max_subnegotiation`: payload bytes kept for one subnegotiation.
    pub fn new(max_subnegotiation: usize) -> Self {
        Decoder {
            state: State::Text,
            max_subnegotiation,
            sb_option: 0,
            sb_payload: Vec::new(),
            sb_overflow: false,
            binary: false,
        }
    }

    /// Whether the peer's text is binary (RFC 856): then `CR NUL` is two
    /// bytes of data, not an NVT carriage return. Also for peers that never
    /// negotiate and send a program's bytes raw (busybox `telnetd`).
    pub fn set_binary(&mut self, binary: bool) {
        self.binary = binary;
    }

    /// Decodes one read's bytes, appending events to `events`. State carries over between calls, so input may be split anywhere.
    ///
    /// Within one call, adjacent text (text separated only by `IAC IAC` or
    /// `CR NUL`) forms one [`Event::Data`]; all text received is handed out
    /// before the call returns, except a CR that is the last byte of
    /// `input`: whether a NUL follows it decides what it stands for, so it
    /// comes out with the next call's first event. No empty `Data` is ever
    /// produced.
    ///
    /// RFC 854 allows only `IAC IAC` and `IAC SE` inside a subnegotiation.
    /// Any other `IAC x` there is taken to mean the peer forgot the `IAC SE`:
    /// the subnegotiation ends at that point (its collected payload is
    /// emitted as usual) and `IAC x` is then handled as it would be in text,
    /// so a lost `SE` cannot swallow the rest of the session.
    pub fn decode(&mut self, input: &[u8], events: &mut Vec<Event>) {
        let mut text = Vec::new();
        let mut rest = input;
        while let Some((&b, tail)) = rest.split_first() {
            rest = tail;
            match self.state {
                State::Text => {
                    match b {
                        IAC => self.state = State::Iac,
                        CR if !self.binary => self.state = State::TextCr,
                        _ => {
                            // Plain text is the bulk of the stream: copy runs
                            // of it at once instead of byte by byte.
                            let binary = self.binary;
                            let run = rest.iter().position(|&c| c == IAC || (c == CR && !binary)).unwrap_or(rest.len());
                            text.push(b);
                            text.extend_from_slice(&rest[..run]);
                            rest = &rest[run..];
                        }
                    }
                }
                State::TextCr => {
                    text.push(CR);
                    match b {
                        NUL => self.state = State::Text,
                        CR => {}
                        IAC => self.state = State::Iac,
                        _ => {
                            text.push(b);
                            self.state = State::Text;
                        }
                    }
                }
                State::Iac => self.command(b, &mut text, events),
                State::Verb(verb) => {
                    flush(&mut text, events);
                    events.push(Event::Negotiation { verb, option: b });
                    self.state = State::Text;
                }
                State::SbOption => {
                    self.sb_option = b;
                    self.sb_payload.clear();
                    self.sb_overflow = false;
                    self.state = State::Sb;
                }
                State::Sb => {
                    if b == IAC {
                        self.state = State::SbIac;
                    } else {
                        self.keep(b);
                        // Skip to the next IAC: an overlong payload costs a
                        // scan, nothing more.
                        let run = rest.iter().position(|&c| c == IAC).unwrap_or(rest.len());
                        for &c in &rest[..run] {
                            self.keep(c);
                        }
                        rest = &rest[run..];
                    }
                }
                State::SbIac => match b {
                    IAC => {
                        self.keep(IAC);
                        self.state = State::Sb;
                    }
                    SE => {
                        flush(&mut text, events);
                        self.end_subnegotiation(events);
                        self.state = State::Text;
                    }
                    _ => {
                        flush(&mut text, events);
                        self.end_subnegotiation(events);
                        self.command(b, &mut text, events);
                    }
                },
            }
        }
        flush(&mut text, events);
    }

    /// Handles the byte after an `IAC` met outside a subnegotiation.
    fn command(&mut self, b: u8, text: &mut Vec<u8>, events: &mut Vec<Event>) {
        self.state = match b {
            IAC => {
                text.push(IAC);
                State::Text
            }
            SB => State::SbOption,
            _ => match Verb::from_byte(b) {
                Some(verb) => State::Verb(verb),
                None => {
                    // Unknown bytes after IAC included: RFC 854 reserves
                    // them, and passing them on as text would corrupt it.
                    flush(text, events);
                    events.push(Event::Command(b));
                    State::Text
                }
            },
        };
    }

    /// Keeps one payload byte of the current subnegotiation, unless that
    /// would take the payload past the limit.
    fn keep(&mut self, b: u8) {
        if self.sb_overflow {
            return;
        }
        let len = self.sb_payload.len();
        if len >= self.max_subnegotiation {
            self.sb_overflow = true;
            self.sb_payload = Vec::new();
            return;
        }
        if len == self.sb_payload.capacity() {
            // Grow by doubling as usual, but never reserve past the limit:
            // plain `push` could double a buffer of limit-1 bytes to almost
            // twice the limit.
            let target = (len * 2).max(16).min(self.max_subnegotiation);
            self.sb_payload.reserve_exact(target - len);
        }
        self.sb_payload.push(b);
    }

    fn end_subnegotiation(&mut self, events: &mut Vec<Event>) {
        let option = self.sb_option;
        if self.sb_overflow {
            self.sb_overflow = false;
            events.push(Event::SubnegotiationTooLong { option });
        } else {
            events.push(Event::Subnegotiation { option, payload: std::mem::take(&mut self.sb_payload) });
        }
    }
}

fn flush(text: &mut Vec<u8>, events: &mut Vec<Event>) {
    if !text.is_empty() {
        events.push(Event::Data(std::mem::take(text)));
    }
}

/// `events` with adjacent [`Event::Data`] joined: how the decodes of one
/// stream split in different places compare equal (the split property the
/// tests and the fuzz target check).
pub fn merged(events: impl IntoIterator<Item = Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for event in events {
        match (out.last_mut(), event) {
            (Some(Event::Data(prev)), Event::Data(next)) => prev.extend_from_slice(&next),
            (_, event) => out.push(event),
        }
    }
    out
}

/// Appends `data` as NVT text: IAC doubled, a CR not followed by LF sent as CR NUL (a CR at the very end of `data` also becomes CR NUL).
///
/// Each call stands alone: a CR ending `data` is sent as CR NUL even if the
/// next call starts with LF, so the peer receives exactly the bytes given,
/// never a CR LF the caller did not write in one piece.
pub fn escape(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() + data.len() / 16);
    for (i, &b) in data.iter().enumerate() {
        match b {
            IAC => out.extend_from_slice(&[IAC, IAC]),
            CR => {
                out.push(CR);
                if data.get(i + 1) != Some(&LF) {
                    out.push(NUL);
                }
            }
            _ => out.push(b),
        }
    }
}

/// IAC verb option.
pub fn negotiation(verb: Verb, option: u8) -> [u8; 3] {
    [IAC, verb.byte(), option]
}

/// IAC SB NAWS with width and height as 16-bit big-endian, every 255 byte doubled, IAC SE.
pub fn naws(cols: u16, rows: u16) -> Vec<u8> {
    let mut out = vec![IAC, SB, option::NAWS];
    for b in cols.to_be_bytes().into_iter().chain(rows.to_be_bytes()) {
        push_sb_byte(&mut out, b);
    }
    out.extend_from_slice(&[IAC, SE]);
    out
}

/// IAC SB TTYPE IS name IAC SE (IAC in the name doubled).
pub fn ttype_is(name: &str) -> Vec<u8> {
    let mut out = vec![IAC, SB, option::TTYPE, TTYPE_IS];
    for &b in name.as_bytes() {
        push_sb_byte(&mut out, b);
    }
    out.extend_from_slice(&[IAC, SE]);
    out
}

fn push_sb_byte(out: &mut Vec<u8>, b: u8) {
    if b == IAC {
        out.push(IAC);
    }
    out.push(b);
}

#[cfg(test)]
mod tests {
    use super::option::{ECHO, NAWS, SGA, TTYPE};
    use super::*;
    use proptest::prelude::*;

    fn decode_all(limit: usize, input: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        Decoder::new(limit).decode(input, &mut events);
        events
    }

    /// One decode call per chunk, each call's events kept apart.
    fn decode_chunks(limit: usize, chunks: &[&[u8]]) -> Vec<Vec<Event>> {
        let mut decoder = Decoder::new(limit);
        chunks
            .iter()
            .map(|chunk| {
                let mut events = Vec::new();
                decoder.decode(chunk, &mut events);
                events
            })
            .collect()
    }

    fn data(bytes: &[u8]) -> Event {
        Event::Data(bytes.to_vec())
    }

    // The eight faults of the existing crates, one test each.

    /// nectar 0.4 panicked on this.
    #[test]
    fn subnegotiation_split_across_reads_does_not_panic() {
        let whole = [IAC, SB, TTYPE, TTYPE_SEND, IAC, SE];
        for cut in 0..=whole.len() {
            let (a, b) = whole.split_at(cut);
            let events: Vec<Event> = decode_chunks(64, &[a, b]).concat();
            assert_eq!(events, vec![Event::Subnegotiation { option: TTYPE, payload: vec![TTYPE_SEND] }], "cut {cut}");
        }
    }

    /// nectar 0.4 gave "Pass" and then "PassPassword".
    #[test]
    fn line_split_across_reads_is_not_repeated() {
        let per_call = decode_chunks(64, &[b"Pass", b"word: "]);
        assert_eq!(per_call, vec![vec![data(b"Pass")], vec![data(b"word: ")]]);
    }

    /// nectar 0.4 waited for a newline that a prompt never sends.
    #[test]
    fn prompt_without_newline_comes_out_at_once() {
        let mut decoder = Decoder::new(64);
        let mut events = Vec::new();
        decoder.decode(b"login: ", &mut events);
        assert_eq!(events, vec![data(b"login: ")]);
        events.clear();
        decoder.decode(b"\r\nPassword:", &mut events);
        assert_eq!(events, vec![data(b"\r\nPassword:")]);
    }

    /// nectar 0.4 put IAC GA into the text.
    #[test]
    fn iac_ga_never_leaks_into_text() {
        let events = decode_all(64, &[b'$', b' ', IAC, GA, b'x']);
        assert_eq!(events, vec![data(b"$ "), Event::Command(GA), data(b"x")]);
        let per_call = decode_chunks(64, &[b"$ \xff", &[GA]]);
        assert_eq!(per_call, vec![vec![data(b"$ ")], vec![Event::Command(GA)]]);
    }

    /// nectar 0.4 sent 255 undoubled, which the server takes for IAC.
    #[test]
    fn naws_doubles_255() {
        assert_eq!(naws(255, 255), vec![IAC, SB, NAWS, 0, 255, 255, 0, 255, 255, IAC, SE]);
        assert_eq!(naws(0xffff, 0x01ff), vec![IAC, SB, NAWS, 255, 255, 255, 255, 1, 255, 255, IAC, SE]);
        assert_eq!(
            decode_all(64, &naws(255, 255)),
            vec![Event::Subnegotiation { option: NAWS, payload: vec![0, 255, 0, 255] }]
        );
    }

    /// libtelnet-rs 2.0 put the option byte into the text when IAC ended a read.
    #[test]
    fn iac_split_across_reads_does_not_leak_option_byte() {
        let per_call = decode_chunks(64, &[b"hi\xff", &[WILL], &[ECHO, b'o', b'k']]);
        assert_eq!(
            per_call,
            vec![vec![data(b"hi")], vec![], vec![Event::Negotiation { verb: Verb::Will, option: ECHO }, data(b"ok")]]
        );
    }

    /// libtelnet-rs 2.0 lost everything after IAC IAC.
    #[test]
    fn data_after_iac_iac_is_kept() {
        assert_eq!(decode_all(64, b"a\xff\xffbcd\xff\xff"), vec![data(b"a\xffbcd\xff")]);
        let per_call = decode_chunks(64, &[b"a\xff", b"\xffbcd"]);
        assert_eq!(per_call, vec![vec![data(b"a")], vec![data(b"\xffbcd")]]);
    }

    /// libtelnet-rs 2.0 buffered an unterminated subnegotiation forever.
    #[test]
    fn unterminated_subnegotiation_is_bounded() {
        let limit = 100;
        let mut decoder = Decoder::new(limit);
        let mut events = Vec::new();
        decoder.decode(&[IAC, SB, TTYPE], &mut events);
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..160 {
            decoder.decode(&junk, &mut events);
            decoder.decode(&[IAC, IAC], &mut events);
            assert!(decoder.sb_payload.capacity() <= limit, "{}", decoder.sb_payload.capacity());
        }
        assert!(events.is_empty());
        decoder.decode(&[IAC, SE, b'o', b'k'], &mut events);
        assert_eq!(events, vec![Event::SubnegotiationTooLong { option: TTYPE }, data(b"ok")]);
    }

    // The rest of the behaviour.

    #[test]
    fn naws_80x24_is_byte_exact() {
        assert_eq!(naws(80, 24), vec![255, 250, 31, 0, 80, 0, 24, 255, 240]);
    }

    #[test]
    fn ttype_is_is_byte_exact() {
        assert_eq!(ttype_is("xterm"), b"\xff\xfa\x18\x00xterm\xff\xf0".to_vec());
        // UTF-8 never contains 0xff, so a &str cannot carry an IAC to double.
        assert_eq!(ttype_is("\u{ff}"), vec![IAC, SB, TTYPE, TTYPE_IS, 0xc3, 0xbf, IAC, SE]);
        assert_eq!(
            decode_all(64, &ttype_is("VT100")),
            vec![Event::Subnegotiation { option: TTYPE, payload: b"\0VT100".to_vec() }]
        );
        assert_eq!(negotiation(Verb::Do, SGA), [IAC, DO, SGA]);
    }

    #[test]
    fn verb_bytes_round_trip() {
        for verb in [Verb::Will, Verb::Wont, Verb::Do, Verb::Dont] {
            assert_eq!(Verb::from_byte(verb.byte()), Some(verb));
        }
        assert_eq!(Verb::from_byte(SB), None);
    }

    #[test]
    fn negotiation_flood_decodes_to_events_only() {
        let mut wire = Vec::new();
        for i in 0..100_000u32 {
            let verb = [WILL, WONT, DO, DONT][i as usize % 4];
            wire.extend_from_slice(&[IAC, verb, (i % 256) as u8]);
        }
        let mut decoder = Decoder::new(64);
        let mut events = Vec::new();
        for chunk in wire.chunks(1000) {
            decoder.decode(chunk, &mut events);
        }
        assert_eq!(events.len(), 100_000);
        assert!(events.iter().all(|e| matches!(e, Event::Negotiation { .. })));
        assert_eq!(decoder.sb_payload.capacity(), 0);
        assert_eq!(decoder.state, State::Text);
    }

    #[test]
    fn cr_nul_becomes_cr_and_cr_lf_stays() {
        assert_eq!(decode_all(64, b"a\r\0b\r\nc\rd\r\r\0"), vec![data(b"a\rb\r\nc\rd\r\r")]);
    }

    #[test]
    fn binary_text_keeps_cr_nul() {
        let mut decoder = Decoder::new(16);
        decoder.set_binary(true);
        let mut events = Vec::new();
        decoder.decode(b"a\r\0b\r", &mut events);
        decoder.decode(&[IAC, IAC, b'\r', b'\n'], &mut events);
        assert_eq!(events, [Event::Data(b"a\r\0b\r".to_vec()), Event::Data(vec![IAC, b'\r', b'\n'])]);
    }

    #[test]
    fn trailing_cr_is_held_until_the_next_byte() {
        let per_call = decode_chunks(64, &[b"ab\r", b"\0", b"\r", b"\n", b"\r", &[IAC, NOP]]);
        assert_eq!(
            per_call,
            vec![
                vec![data(b"ab")],
                vec![data(b"\r")],
                vec![],
                vec![data(b"\r\n")],
                vec![],
                vec![data(b"\r"), Event::Command(NOP)]
            ]
        );
    }

    #[test]
    fn unknown_commands_and_stray_se_are_commands() {
        assert_eq!(
            decode_all(64, &[b'a', IAC, 7, IAC, SE, IAC, AYT, b'b']),
            vec![data(b"a"), Event::Command(7), Event::Command(SE), Event::Command(AYT), data(b"b")]
        );
    }

    #[test]
    fn subnegotiation_undoes_iac_iac() {
        assert_eq!(
            decode_all(64, &[IAC, SB, 42, 1, IAC, IAC, 2, IAC, SE]),
            vec![Event::Subnegotiation { option: 42, payload: vec![1, 255, 2] }]
        );
        assert_eq!(decode_all(0, &[IAC, SB, 42, IAC, SE]), vec![Event::Subnegotiation { option: 42, payload: vec![] }]);
    }

    #[test]
    fn other_command_inside_subnegotiation_ends_it() {
        assert_eq!(
            decode_all(64, &[IAC, SB, TTYPE, 1, IAC, WILL, ECHO, b'x']),
            vec![
                Event::Subnegotiation { option: TTYPE, payload: vec![1] },
                Event::Negotiation { verb: Verb::Will, option: ECHO },
                data(b"x"),
            ]
        );
        assert_eq!(
            decode_all(64, &[IAC, SB, TTYPE, 1, IAC, SB, NAWS, 2, IAC, SE]),
            vec![
                Event::Subnegotiation { option: TTYPE, payload: vec![1] },
                Event::Subnegotiation { option: NAWS, payload: vec![2] },
            ]
        );
        assert_eq!(
            decode_all(64, &[IAC, SB, TTYPE, 1, IAC, GA]),
            vec![Event::Subnegotiation { option: TTYPE, payload: vec![1] }, Event::Command(GA)]
        );
    }

    #[test]
    fn subnegotiation_at_the_limit_is_kept_and_one_past_is_not() {
        let at = decode_all(3, &[IAC, SB, NAWS, 1, 2, 3, IAC, SE]);
        assert_eq!(at, vec![Event::Subnegotiation { option: NAWS, payload: vec![1, 2, 3] }]);
        let past = decode_all(3, &[IAC, SB, NAWS, 1, 2, 3, IAC, IAC, IAC, SE, IAC, SB, NAWS, 9, IAC, SE]);
        assert_eq!(
            past,
            vec![
                Event::SubnegotiationTooLong { option: NAWS },
                Event::Subnegotiation { option: NAWS, payload: vec![9] }
            ]
        );
    }

    #[test]
    fn sb_without_option_split_across_reads() {
        let per_call = decode_chunks(64, &[b"x\xff", &[SB], &[NAWS], &[0, 80, 0, 24, IAC], &[SE]]);
        assert_eq!(
            per_call,
            vec![
                vec![data(b"x")],
                vec![],
                vec![],
                vec![],
                vec![Event::Subnegotiation { option: NAWS, payload: vec![0, 80, 0, 24] }]
            ]
        );
    }

    #[test]
    fn escape_doubles_iac_and_pads_bare_cr() {
        let mut out = Vec::new();
        escape(b"a\xffb\r\nc\rd\r", &mut out);
        assert_eq!(out, b"a\xff\xffb\r\nc\r\0d\r\0".to_vec());
    }

    /// Bytes that matter to the decoder, often, among any others.
    fn telnet_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => any::<u8>(),
            2 => Just(IAC),
            1 => Just(SB),
            1 => Just(SE),
            1 => Just(CR),
            1 => Just(NUL),
            1 => Just(LF),
            1 => prop::sample::select(vec![WILL, WONT, DO, DONT]),
        ]
    }

    fn split_at_points<'a>(input: &'a [u8], points: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&input[start..cut]);
            start = cut;
        }
        chunks.push(&input[start..]);
        chunks
    }

    proptest! {
        /// Where the reads end changes nothing but how text is cut into
        /// `Data` events; no call yields an empty `Data`, and no kept payload
        /// exceeds the limit.
        #[test]
        fn any_split_decodes_like_the_whole(
            input in prop::collection::vec(telnet_byte(), 0..2000),
            points in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
            limit in 0usize..80,
        ) {
            let whole = decode_all(limit, &input);
            let chunks = split_at_points(&input, &points);
            let split: Vec<Event> = decode_chunks(limit, &chunks).concat();
            for event in whole.iter().chain(&split) {
                match event {
                    Event::Data(d) => prop_assert!(!d.is_empty()),
                    Event::Subnegotiation { payload, .. } => prop_assert!(payload.len() <= limit),
                    _ => {}
                }
            }
            prop_assert_eq!(merged(whole), merged(split));
        }

        /// Exact for every byte string: escaping `data`, cut into any pieces
        /// escaped one call each, and decoding the wire bytes, cut anywhere,
        /// yields `Data` events only, and their concatenation is `data`.
        /// Nothing is held back at the end either, since `escape` never
        /// leaves a bare CR last.
        #[test]
        fn escape_then_decode_is_identity(
            input in prop::collection::vec(telnet_byte(), 0..2000),
            escape_points in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            read_points in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        ) {
            let mut wire = Vec::new();
            for piece in split_at_points(&input, &escape_points) {
                escape(piece, &mut wire);
            }
            let mut decoder = Decoder::new(0);
            let mut events = Vec::new();
            for chunk in split_at_points(&wire, &read_points) {
                decoder.decode(chunk, &mut events);
            }
            let mut text = Vec::new();
            for event in events {
                match event {
                    Event::Data(d) => text.extend_from_slice(&d),
                    other => prop_assert!(false, "not text: {:?}", other),
                }
            }
            prop_assert_eq!(text, input);
            prop_assert_eq!(decoder.state, State::Text);
        }
    }
}
