//! The server's side of the Telnet stream, written apart from the crate's own
//! codec so that the tests do not share its mistakes: a decoder for what the
//! client sends, an escaper for what the server sends, and a minimal,
//! loop-free way of answering negotiation.

pub const IAC: u8 = 255;
pub const DONT: u8 = 254;
pub const DO: u8 = 253;
pub const WONT: u8 = 252;
pub const WILL: u8 = 251;
pub const SB: u8 = 250;
pub const SE: u8 = 240;

pub const ECHO: u8 = 1;
pub const SGA: u8 = 3;
pub const TTYPE: u8 = 24;

/// One thing the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// A byte of text (`IAC IAC` undone, the NUL of `CR NUL` dropped).
    Data(u8),
    /// `IAC verb option`.
    Verb(u8, u8),
    /// `IAC SB option … IAC SE` (payload capped at 64 bytes).
    Sub(u8, Vec<u8>),
    /// Any other `IAC x`.
    Command(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    Cr,
    Iac,
    Verb(u8),
    SbOption,
    Sb,
    SbIac,
}

/// Decodes the client's bytes; a read may end anywhere.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    sb_option: u8,
    sb: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { state: State::Text, sb_option: 0, sb: Vec::new() }
    }
}

impl Decoder {
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Ev>) {
        for &b in bytes {
            self.state = match (self.state, b) {
                (State::Text | State::Cr, IAC) => State::Iac,
                (State::Cr, 0) => State::Text,
                (State::Text | State::Cr, b'\r') => {
                    out.push(Ev::Data(b'\r'));
                    State::Cr
                }
                (State::Text | State::Cr, _) => {
                    out.push(Ev::Data(b));
                    State::Text
                }
                (State::Iac, IAC) => {
                    out.push(Ev::Data(IAC));
                    State::Text
                }
                (State::Iac, WILL | WONT | DO | DONT) => State::Verb(b),
                (State::Iac, SB) => State::SbOption,
                (State::Iac, _) => {
                    out.push(Ev::Command(b));
                    State::Text
                }
                (State::Verb(verb), _) => {
                    out.push(Ev::Verb(verb, b));
                    State::Text
                }
                (State::SbOption, _) => {
                    self.sb_option = b;
                    self.sb.clear();
                    State::Sb
                }
                (State::Sb, IAC) => State::SbIac,
                (State::Sb, _) => {
                    if self.sb.len() < 64 {
                        self.sb.push(b);
                    }
                    State::Sb
                }
                (State::SbIac, SE) => {
                    out.push(Ev::Sub(self.sb_option, std::mem::take(&mut self.sb)));
                    State::Text
                }
                (State::SbIac, _) => {
                    if self.sb.len() < 64 {
                        self.sb.push(b);
                    }
                    State::Sb
                }
            };
        }
    }
}

/// `text` with every 255 doubled, as a Telnet server must send it.
pub fn escape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 4);
    for &b in text {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
    out
}

/// Answers negotiation the way small embedded servers do: it offered ECHO
/// and SGA itself, agrees to SGA from the client, refuses everything else,
/// and answers each (verb, option) pair once at most, so it cannot loop.
#[derive(Debug, Default)]
pub struct Answerer {
    answered: std::collections::HashSet<(u8, u8)>,
}

impl Answerer {
    /// What the server sends on connect.
    pub fn greeting() -> Vec<u8> {
        vec![IAC, WILL, ECHO, IAC, WILL, SGA]
    }

    pub fn answer(&mut self, verb: u8, option: u8) -> Option<[u8; 3]> {
        let reply = match (verb, option) {
            // Acknowledgements of what we offered.
            (DO, ECHO | SGA) => return None,
            (WILL, SGA) => DO,
            (WILL, _) => DONT,
            (DO, _) => WONT,
            // WONT and DONT need no answer from a server that does nothing.
            _ => return None,
        };
        self.answered.insert((verb, option)).then_some([IAC, reply, option])
    }
}
