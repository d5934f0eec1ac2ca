//! Option negotiation by RFC 1143's Q method.
//!
//! RFC 854's own rule ("do not answer a request that matches the current
//! state") is not enough when both ends change their minds while commands are
//! in flight; the Q method adds the WANTNO/WANTYES states and a one-bit queue
//! so that every request gets exactly one answer and no two correct ends can
//! loop. A peer that is not correct is cut off by a per-option answer budget.

use std::fmt;

use crate::codec::{Verb, negotiation};

/// Which options we agree to, on each side.
#[derive(Debug, Clone)]
pub struct Policy {
    /// options we will enable on our side when asked (DO x → WILL x)
    pub local: Vec<u8>,
    /// options we let the server enable (WILL x → DO x)
    pub remote: Vec<u8>,
}

/// At most this many answers are sent for one option (both sides counted together) in one connection: a peer that flips an option forever gets bounded answers, then silence.
pub const MAX_ANSWERS_PER_OPTION: u32 = 16;

/// One side's state of one option, as RFC 1143 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Q {
    No,
    Yes,
    /// We asked for disabling and wait for the answer.
    WantNo,
    /// We asked for enabling and wait for the answer.
    WantYes,
}

/// The state of one option on one side, with RFC 1143's queue bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Side {
    q: Q,
    /// OPPOSITE: once the pending answer arrives, ask for the opposite of
    /// what is pending (the caller changed its mind meanwhile).
    opposite: bool,
}

const NO: Side = Side { q: Q::No, opposite: false };

/// Which end of the connection an option is enabled on.
#[derive(Clone, Copy)]
enum Who {
    /// Us: the server sends DO/DONT, we answer WILL/WONT.
    Us,
    /// Him (the server): it sends WILL/WONT, we answer DO/DONT.
    Him,
}

impl Who {
    /// The verb that asks for, or agrees to, `enable` on this side.
    fn verb(self, enable: bool) -> Verb {
        match (self, enable) {
            (Who::Us, true) => Verb::Will,
            (Who::Us, false) => Verb::Wont,
            (Who::Him, true) => Verb::Do,
            (Who::Him, false) => Verb::Dont,
        }
    }
}

/// Tracks both sides of all 256 options and answers the server's commands.
pub struct Negotiator {
    us: [Side; 256],
    him: [Side; 256],
    allow_us: [bool; 256],
    allow_him: [bool; 256],
    answers: [u32; 256],
    flooded: bool,
}

// By hand: the derived form would print four 256-entry arrays.
impl fmt::Debug for Negotiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enabled = |sides: &[Side; 256]| -> Vec<usize> {
            sides.iter().enumerate().filter(|(_, s)| s.q == Q::Yes).map(|(i, _)| i).collect()
        };
        f.debug_struct("Negotiator")
            .field("local_enabled", &enabled(&self.us))
            .field("remote_enabled", &enabled(&self.him))
            .field("flooded", &self.flooded)
            .finish_non_exhaustive()
    }
}

impl Negotiator {
    /// Starts with every option disabled on both sides, as every Telnet
    /// connection does.
    pub fn new(policy: Policy) -> Self {
        let mut allow_us = [false; 256];
        let mut allow_him = [false; 256];
        for &o in &policy.local {
            allow_us[usize::from(o)] = true;
        }
        for &o in &policy.remote {
            allow_him[usize::from(o)] = true;
        }
        Negotiator { us: [NO; 256], him: [NO; 256], allow_us, allow_him, answers: [0; 256], flooded: false }
    }

    /// We ask the server to enable (DO) or disable (DONT) `option` on its side. Returns the bytes to send, if any (none when already in or moving to that state, per RFC 1143).
    pub fn ask_remote(&mut self, option: u8, enable: bool) -> Option<[u8; 3]> {
        request(&mut self.him[usize::from(option)], enable).then(|| negotiation(Who::Him.verb(enable), option))
    }

    /// We offer (WILL) or withdraw (WONT) `option` on our side.
    pub fn offer_local(&mut self, option: u8, enable: bool) -> Option<[u8; 3]> {
        request(&mut self.us[usize::from(option)], enable).then(|| negotiation(Who::Us.verb(enable), option))
    }

    /// A negotiation command from the server: the reply to send, if any, following RFC 1143's state table (NO/YES/WANTNO/WANTYES with the OPPOSITE/EMPTY queue bit) for both "us" and "him".
    ///
    /// Once `option` has used up [`MAX_ANSWERS_PER_OPTION`], nothing more is
    /// sent for it: a command that needs no answer still moves the state,
    /// one that tells us the option is off (WONT, DONT) turns that side off
    /// unanswered, and any other is ignored, so an option is never taken
    /// for enabled without the agreement having been sent.
    pub fn receive(&mut self, verb: Verb, option: u8) -> Option<[u8; 3]> {
        let i = usize::from(option);
        let (who, enable) = match verb {
            Verb::Will => (Who::Him, true),
            Verb::Wont => (Who::Him, false),
            Verb::Do => (Who::Us, true),
            Verb::Dont => (Who::Us, false),
        };
        let (side, allowed) = match who {
            Who::Us => (&mut self.us[i], self.allow_us[i]),
            Who::Him => (&mut self.him[i], self.allow_him[i]),
        };
        let (next, reply) = answer(*side, enable, allowed);
        let Some(reply) = reply else {
            *side = next;
            return None;
        };
        if self.answers[i] >= MAX_ANSWERS_PER_OPTION {
            if !enable {
                *side = NO;
            }
            return None;
        }
        *side = next;
        self.answers[i] += 1;
        if self.answers[i] == MAX_ANSWERS_PER_OPTION {
            self.flooded = true;
        }
        Some(negotiation(who.verb(reply), option))
    }

    /// Is the option enabled on the server's side (him = YES)?
    pub fn remote_enabled(&self, option: u8) -> bool {
        self.him[usize::from(option)].q == Q::Yes
    }

    /// Is it enabled on our side (us = YES)?
    pub fn local_enabled(&self, option: u8) -> bool {
        self.us[usize::from(option)].q == Q::Yes
    }

    /// True once some option hit MAX_ANSWERS_PER_OPTION (the caller may log it or give up on the peer).
    pub fn flooded(&self) -> bool {
        self.flooded
    }
}

/// RFC 1143's table for our own wish to enable or disable one side: moves
/// `side` and says whether the request must be sent now. Requests that only
/// flip the queue bit, or ask for what is already so or already asked for,
/// send nothing.
fn request(side: &mut Side, enable: bool) -> bool {
    let (q, opposite) = (side.q, side.opposite);
    // The table is symmetric: disabling is enabling with YES/NO and
    // WANTYES/WANTNO swapped.
    let (off, on, want_off, want_on) =
        if enable { (Q::No, Q::Yes, Q::WantNo, Q::WantYes) } else { (Q::Yes, Q::No, Q::WantYes, Q::WantNo) };
    if q == off {
        *side = Side { q: want_on, opposite: false };
        true
    } else if q == on {
        false
    } else if q == want_off {
        // Cannot ask before the pending answer is in: queue the change of
        // mind (a second identical request leaves it queued).
        side.opposite = true;
        false
    } else {
        debug_assert_eq!(q, want_on);
        if opposite {
            // We had queued the reverse of what is pending; now we want what
            // is pending after all.
            side.opposite = false;
        }
        false
    }
}

/// RFC 1143's table for a command received about one side: `enable` is
/// WILL/DO, `!enable` WONT/DONT; `allowed` is our policy for enabling that
/// side. Returns the new state and the answer (true: agree to enable /
/// ask to enable; false: refuse / ask to disable), if any.
fn answer(side: Side, enable: bool, allowed: bool) -> (Side, Option<bool>) {
    let Side { q, opposite } = side;
    let empty = |q| Side { q, opposite: false };
    if enable {
        match (q, opposite) {
            (Q::No, _) if allowed => (empty(Q::Yes), Some(true)),
            (Q::No, _) => (empty(Q::No), Some(false)),
            (Q::Yes, _) => (side, None),
            // The peer answered our disable request with an enable: RFC 1143
            // calls it an error and settles on NO (or on YES when we had
            // queued wanting it back), without answering again.
            (Q::WantNo, false) => (empty(Q::No), None),
            (Q::WantNo, true) => (empty(Q::Yes), None),
            (Q::WantYes, false) => (empty(Q::Yes), None),
            (Q::WantYes, true) => (empty(Q::WantNo), Some(false)),
        }
    } else {
        match (q, opposite) {
            (Q::No, _) => (side, None),
            (Q::Yes, _) => (empty(Q::No), Some(false)),
            (Q::WantNo, false) => (empty(Q::No), None),
            (Q::WantNo, true) => (empty(Q::WantYes), Some(true)),
            (Q::WantYes, _) => (empty(Q::No), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::option::{ECHO, NAWS, SGA, TTYPE};
    use crate::codec::{DO, DONT, IAC, WILL, WONT};
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn client() -> Negotiator {
        Negotiator::new(Policy { local: vec![TTYPE, NAWS], remote: vec![ECHO, SGA] })
    }

    fn verb_of(bytes: [u8; 3]) -> (Verb, u8) {
        assert_eq!(bytes[0], IAC);
        (Verb::from_byte(bytes[1]).unwrap(), bytes[2])
    }

    #[test]
    fn unknown_options_are_refused_once() {
        let mut n = client();
        assert_eq!(n.receive(Verb::Will, 99), Some([IAC, DONT, 99]));
        assert_eq!(n.receive(Verb::Do, 99), Some([IAC, WONT, 99]));
        // The peer's acknowledgements of the refusals need no reply.
        assert_eq!(n.receive(Verb::Wont, 99), None);
        assert_eq!(n.receive(Verb::Dont, 99), None);
        assert!(!n.remote_enabled(99) && !n.local_enabled(99));
    }

    #[test]
    fn unknown_option_offered_by_a_peer_gets_one_refusal() {
        let mut us = client();
        let mut peer = Negotiator::new(Policy { local: vec![], remote: vec![] });
        let offer = peer.offer_local(99, true).unwrap();
        let (v, o) = verb_of(offer);
        let refusal = us.receive(v, o).unwrap();
        assert_eq!(refusal, [IAC, DONT, 99]);
        let (v, o) = verb_of(refusal);
        assert_eq!(peer.receive(v, o), None);
        assert!(!peer.local_enabled(99));
    }

    #[test]
    fn request_matching_the_state_gets_no_reply() {
        let mut n = client();
        assert_eq!(n.receive(Verb::Wont, ECHO), None);
        assert_eq!(n.receive(Verb::Dont, TTYPE), None);
        assert_eq!(n.receive(Verb::Will, ECHO), Some([IAC, DO, ECHO]));
        assert_eq!(n.receive(Verb::Will, ECHO), None);
        assert_eq!(n.receive(Verb::Do, TTYPE), Some([IAC, WILL, TTYPE]));
        assert_eq!(n.receive(Verb::Do, TTYPE), None);
        assert!(n.remote_enabled(ECHO) && n.local_enabled(TTYPE));
        assert_eq!(n.ask_remote(ECHO, true), None);
        assert_eq!(n.offer_local(TTYPE, true), None);
    }

    #[test]
    fn our_do_answered_by_will_is_enabled_without_reply() {
        let mut n = client();
        assert_eq!(n.ask_remote(SGA, true), Some([IAC, DO, SGA]));
        assert!(!n.remote_enabled(SGA));
        // Asking again while the answer is pending sends nothing.
        assert_eq!(n.ask_remote(SGA, true), None);
        assert_eq!(n.receive(Verb::Will, SGA), None);
        assert!(n.remote_enabled(SGA));
        assert_eq!(n.offer_local(NAWS, true), Some([IAC, WILL, NAWS]));
        assert_eq!(n.receive(Verb::Do, NAWS), None);
        assert!(n.local_enabled(NAWS));
    }

    #[test]
    fn wantyes_refused_becomes_no() {
        let mut n = client();
        assert_eq!(n.ask_remote(SGA, true), Some([IAC, DO, SGA]));
        assert_eq!(n.receive(Verb::Wont, SGA), None);
        assert!(!n.remote_enabled(SGA));
        assert_eq!(n.him[usize::from(SGA)], NO);
        assert_eq!(n.offer_local(NAWS, true), Some([IAC, WILL, NAWS]));
        assert_eq!(n.receive(Verb::Dont, NAWS), None);
        assert_eq!(n.us[usize::from(NAWS)], NO);
    }

    #[test]
    fn disabling_an_enabled_option() {
        let mut n = client();
        n.receive(Verb::Will, ECHO);
        assert_eq!(n.ask_remote(ECHO, false), Some([IAC, DONT, ECHO]));
        assert_eq!(n.ask_remote(ECHO, false), None);
        assert_eq!(n.receive(Verb::Wont, ECHO), None);
        assert!(!n.remote_enabled(ECHO));
        // The server turning an option off is acknowledged, once.
        n.receive(Verb::Will, ECHO);
        assert_eq!(n.receive(Verb::Wont, ECHO), Some([IAC, DONT, ECHO]));
        assert_eq!(n.receive(Verb::Wont, ECHO), None);
    }

    #[test]
    fn queue_opposite_while_wantyes_disables_after_the_answer() {
        let mut n = client();
        assert_eq!(n.ask_remote(SGA, true), Some([IAC, DO, SGA]));
        // Changed our mind before the answer: queued, nothing sent.
        assert_eq!(n.ask_remote(SGA, false), None);
        assert_eq!(n.ask_remote(SGA, false), None);
        // The WILL arrives: now ask to disable.
        assert_eq!(n.receive(Verb::Will, SGA), Some([IAC, DONT, SGA]));
        assert!(!n.remote_enabled(SGA));
        assert_eq!(n.receive(Verb::Wont, SGA), None);
        assert_eq!(n.him[usize::from(SGA)], NO);
    }

    #[test]
    fn queue_opposite_while_wantyes_refused_needs_nothing_more() {
        let mut n = client();
        n.ask_remote(SGA, true);
        n.ask_remote(SGA, false);
        assert_eq!(n.receive(Verb::Wont, SGA), None);
        assert_eq!(n.him[usize::from(SGA)], NO);
    }

    #[test]
    fn queue_opposite_while_wantno_enables_after_the_answer() {
        let mut n = client();
        n.offer_local(NAWS, true);
        n.receive(Verb::Do, NAWS);
        assert_eq!(n.offer_local(NAWS, false), Some([IAC, WONT, NAWS]));
        assert_eq!(n.offer_local(NAWS, true), None);
        assert_eq!(n.offer_local(NAWS, true), None);
        assert_eq!(n.receive(Verb::Dont, NAWS), Some([IAC, WILL, NAWS]));
        assert_eq!(n.receive(Verb::Do, NAWS), None);
        assert!(n.local_enabled(NAWS));
    }

    #[test]
    fn queue_bit_cleared_by_asking_back() {
        let mut n = client();
        n.ask_remote(SGA, true);
        n.ask_remote(SGA, false);
        // Back to wanting it on: the queued disable is forgotten.
        assert_eq!(n.ask_remote(SGA, true), None);
        assert_eq!(n.receive(Verb::Will, SGA), None);
        assert!(n.remote_enabled(SGA));
    }

    #[test]
    fn enable_answering_our_disable_is_not_answered() {
        let mut n = client();
        n.receive(Verb::Will, ECHO);
        n.ask_remote(ECHO, false);
        assert_eq!(n.receive(Verb::Will, ECHO), None);
        assert!(!n.remote_enabled(ECHO));
        n.receive(Verb::Will, ECHO);
        n.ask_remote(ECHO, false);
        n.ask_remote(ECHO, true);
        assert_eq!(n.receive(Verb::Will, ECHO), None);
        assert!(n.remote_enabled(ECHO));
    }

    #[test]
    fn flipping_flood_gets_bounded_answers() {
        let mut n = client();
        let mut sent = 0;
        for i in 0..10_000 {
            let verb = if i % 2 == 0 { Verb::Will } else { Verb::Wont };
            sent += usize::from(n.receive(verb, ECHO).is_some());
        }
        assert_eq!(sent, MAX_ANSWERS_PER_OPTION as usize);
        assert!(n.flooded());
        // It ended on WONT, and WONT is believed even unanswered.
        assert!(!n.remote_enabled(ECHO));
        // Other options still get answers.
        assert_eq!(n.receive(Verb::Will, SGA), Some([IAC, DO, SGA]));
    }

    #[test]
    fn flood_cannot_turn_an_option_on_silently() {
        let mut n = client();
        for i in 0..(2 * MAX_ANSWERS_PER_OPTION) {
            n.receive(if i % 2 == 0 { Verb::Do } else { Verb::Dont }, TTYPE);
        }
        assert!(n.flooded());
        assert_eq!(n.receive(Verb::Do, TTYPE), None);
        assert!(!n.local_enabled(TTYPE));
    }

    /// One request either end may make before or during the exchange.
    #[derive(Debug, Clone)]
    struct Ask {
        a_side: bool,
        remote: bool,
        option: u8,
        enable: bool,
        /// How many messages get delivered before this request is made.
        after: usize,
    }

    fn ask() -> impl Strategy<Value = Ask> {
        (any::<bool>(), any::<bool>(), 0u8..4, any::<bool>(), 0usize..12)
            .prop_map(|(a_side, remote, option, enable, after)| Ask { a_side, remote, option, enable, after })
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (prop::collection::vec(0u8..4, 0..4), prop::collection::vec(0u8..4, 0..4))
            .prop_map(|(local, remote)| Policy { local, remote })
    }

    /// Runs `asks` against two ends wired back to back until nothing is in
    /// flight. The two directions are each delivered in order, as TCP does,
    /// but interleaved as `order` says; each request is made once `after`
    /// messages have been delivered. Fails if the exchange does not end.
    fn exchange(
        a: &mut Negotiator,
        b: &mut Negotiator,
        mut asks: Vec<Ask>,
        order: Vec<bool>,
    ) -> Result<(), TestCaseError> {
        // to_b: bytes a sent, not yet received by b.
        let mut to_b: VecDeque<[u8; 3]> = VecDeque::new();
        let mut to_a: VecDeque<[u8; 3]> = VecDeque::new();
        asks.sort_by_key(|x| x.after);
        let mut asks: VecDeque<Ask> = asks.into();
        let mut delivered = 0;
        let mut order = order.into_iter();
        loop {
            while asks.front().is_some_and(|x| x.after <= delivered) {
                let x = asks.pop_front().unwrap();
                let (n, queue) = if x.a_side { (&mut *a, &mut to_b) } else { (&mut *b, &mut to_a) };
                let sent = if x.remote { n.ask_remote(x.option, x.enable) } else { n.offer_local(x.option, x.enable) };
                queue.extend(sent);
            }
            let pick_a = match (to_a.is_empty(), to_b.is_empty()) {
                (true, true) if asks.is_empty() => return Ok(()),
                (true, true) => {
                    // Idle: jump to the next request.
                    delivered = asks.front().unwrap().after;
                    continue;
                }
                (false, true) => true,
                (true, false) => false,
                (false, false) => order.next().unwrap_or(true),
            };
            let (n, from, back) =
                if pick_a { (&mut *a, &mut to_a, &mut to_b) } else { (&mut *b, &mut to_b, &mut to_a) };
            let (verb, option) = verb_of(from.pop_front().unwrap());
            back.extend(n.receive(verb, option));
            delivered += 1;
            prop_assert!(delivered < 10_000, "no end to the exchange");
        }
    }

    proptest! {
        /// Two correct ends never loop: whatever they ask and whenever,
        /// with the two directions delivered in any interleaving, the
        /// exchange stops well inside the answer budget, nothing is left
        /// pending, and both agree on every option.
        #[test]
        fn back_to_back_negotiators_settle(
            pa in policy(),
            pb in policy(),
            asks in prop::collection::vec(ask(), 0..24),
            order in prop::collection::vec(any::<bool>(), 0..400),
        ) {
            let mut a = Negotiator::new(pa);
            let mut b = Negotiator::new(pb);
            exchange(&mut a, &mut b, asks, order)?;
            prop_assert!(!a.flooded() && !b.flooded());
            for option in 0..4 {
                let i = usize::from(option);
                for side in [a.us[i], a.him[i], b.us[i], b.him[i]] {
                    prop_assert!(matches!(side.q, Q::Yes | Q::No) && !side.opposite, "{:?}", side);
                }
                prop_assert_eq!(a.local_enabled(option), b.remote_enabled(option));
                prop_assert_eq!(a.remote_enabled(option), b.local_enabled(option));
            }
        }

        /// When only one end changes its mind (the other just follows its
        /// policy), the queue bit makes the last wish win however the
        /// requests and answers cross: an option ends enabled exactly when
        /// its last request was to enable and the peer's policy allows it.
        #[test]
        fn last_wish_wins_against_a_passive_peer(
            pa in policy(),
            pb in policy(),
            asks in prop::collection::vec(ask(), 0..24),
            order in prop::collection::vec(any::<bool>(), 0..400),
        ) {
            let asks: Vec<Ask> = asks.into_iter().map(|x| Ask { a_side: true, ..x }).collect();
            // The last wish for each (side, option), in the order requests are made.
            let mut sorted = asks.clone();
            sorted.sort_by_key(|x| x.after);
            let mut wish_remote = [false; 4];
            let mut wish_local = [false; 4];
            for x in &sorted {
                let wish = if x.remote { &mut wish_remote } else { &mut wish_local };
                wish[usize::from(x.option)] = x.enable;
            }
            let mut a = Negotiator::new(pa);
            let mut b = Negotiator::new(pb.clone());
            exchange(&mut a, &mut b, asks, order)?;
            for option in 0..4u8 {
                let i = usize::from(option);
                prop_assert_eq!(a.remote_enabled(option), wish_remote[i] && pb.local.contains(&option), "option {}", option);
                prop_assert_eq!(a.local_enabled(option), wish_local[i] && pb.remote.contains(&option), "option {}", option);
            }
        }
    }
}
