//! Read limits of a viewer WebSocket, applied as bytes arrive.
//!
//! tungstenite checks a frame's length against one cap for every message
//! kind, and reserves the frame's whole length once its header is read. An
//! authenticated viewer may send a bundle as large as the bundle cap, so
//! that one cap would let a 300 MB *text* message be buffered before the
//! 1 MiB text cap refused it. This guard reads the frame headers in the
//! byte stream itself, before tungstenite sees them, and cuts the stream at
//! the header of the first frame that takes its message over the cap of its
//! kind (text, or binary); before the hello it also bounds the total read.
//! After such a cut the socket is closed with 1009 and what the peer still
//! sends is read and dropped until its Close frame, which the guard spots.

use crate::hooked_io::{HookedIo, IoHook};

/// Why the guard cut the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A message over the cap of its kind (in bytes).
    TooLarge(u64),
    /// Too many bytes before the hello frame.
    BeforeHello,
}

/// The kind of the message being received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// Where the parser is in the frame stream.
#[derive(Debug)]
enum Phase {
    /// Collecting a header of up to 14 bytes.
    Header { buf: [u8; 14], have: usize },
    /// Inside a payload, this many bytes to go; `close` for a Close frame's.
    Payload { left: u64, close: bool },
}

/// The read side of a viewer WebSocket, measured frame by frame.
#[derive(Debug)]
pub(crate) struct FrameGuard {
    text_cap: u64,
    binary_cap: u64,
    /// Bytes the peer may still send before its hello; `None` once lifted.
    budget: Option<u64>,
    phase: Phase,
    /// The message being received and its size so far.
    message: Option<(Kind, u64)>,
    violation: Option<Violation>,
    /// Reads pass (and are only watched for a Close frame).
    discarding: bool,
    peer_closed: bool,
}

impl FrameGuard {
    /// A guard for a socket that has not said hello: text messages up to
    /// `text_cap`, binary ones no larger, `budget` bytes in all.
    pub(crate) fn before_hello(text_cap: u64, budget: u64) -> Self {
        Self {
            text_cap,
            binary_cap: text_cap,
            budget: Some(budget),
            phase: Phase::Header {
                buf: [0; 14],
                have: 0,
            },
            message: None,
            violation: None,
            discarding: false,
            peer_closed: false,
        }
    }

    /// The peer authenticated: no total budget, binary messages up to
    /// `binary_cap` (bundles come whole).
    pub(crate) fn after_hello(&mut self, binary_cap: u64) {
        self.budget = None;
        self.binary_cap = binary_cap;
    }

    /// Why the stream was cut, if it was.
    pub(crate) fn violation(&self) -> Option<Violation> {
        self.violation
    }

    /// From now on every read passes and is only watched for the peer's
    /// Close frame.
    pub(crate) fn discard(&mut self) {
        self.discarding = true;
    }

    /// Whether the peer's Close frame has arrived.
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Parses `bytes`; returns the offset of the first frame header that
    /// breaks a cap (when this read completed it), else `bytes.len()`.
    fn scan(&mut self, bytes: &[u8]) -> usize {
        let mut keep = bytes.len();
        let mut at = 0;
        while at < bytes.len() {
            match &mut self.phase {
                Phase::Payload { left, close } => {
                    let step = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - at);
                    at += step;
                    *left -= step as u64;
                    if *left == 0 {
                        // Closed once the whole Close frame is read, so that
                        // nothing of it is left unread (which would reset).
                        self.peer_closed |= *close;
                        self.phase = Phase::Header {
                            buf: [0; 14],
                            have: 0,
                        };
                    }
                }
                Phase::Header { buf, have } => {
                    let header_start = at.saturating_sub(*have);
                    buf[*have] = bytes[at];
                    *have += 1;
                    at += 1;
                    let Some(needed) = header_len(&buf[..*have]) else {
                        continue;
                    };
                    if *have < needed {
                        continue;
                    }
                    let (fin, opcode, len) = parse_header(&buf[..needed]);
                    let close = opcode == 0x8;
                    self.phase = if len == 0 {
                        self.peer_closed |= close;
                        Phase::Header {
                            buf: [0; 14],
                            have: 0,
                        }
                    } else {
                        Phase::Payload { left: len, close }
                    };
                    let broken = self.on_frame(fin, opcode, len);
                    if let Some(cap) =
                        broken.filter(|_| self.violation.is_none() && !self.discarding)
                    {
                        self.violation = Some(Violation::TooLarge(cap));
                        keep = keep.min(header_start);
                    }
                }
            }
        }
        keep
    }

    /// Accounts one frame header; the cap it breaks, when it takes its
    /// message over the cap of its kind.
    fn on_frame(&mut self, fin: bool, opcode: u8, len: u64) -> Option<u64> {
        let (kind, size) = match opcode {
            0x0 => {
                // A stray continuation is tungstenite's to refuse.
                let (kind, size) = self.message?;
                (kind, size.saturating_add(len))
            }
            0x1 => (Kind::Text, len),
            0x2 => (Kind::Binary, len),
            // Close, pings, pongs and reserved opcodes: tungstenite's to judge.
            _ => return None,
        };
        self.message = (!fin).then_some((kind, size));
        let cap = match kind {
            Kind::Text => self.text_cap,
            Kind::Binary => self.binary_cap,
        };
        (size > cap).then_some(cap)
    }
}

/// The length of a frame header from its first bytes, once known.
fn header_len(start: &[u8]) -> Option<usize> {
    let second = *start.get(1)?;
    let masked = if second & 0x80 != 0 { 4 } else { 0 };
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    Some(2 + extended + masked)
}

/// FIN, opcode and payload length of a complete header.
fn parse_header(header: &[u8]) -> (bool, u8, u64) {
    let fin = header[0] & 0x80 != 0;
    let opcode = header[0] & 0x0f;
    let len = match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[2..10]);
            u64::from_be_bytes(bytes)
        }
        short => u64::from(short),
    };
    (fin, opcode, len)
}

/// An I/O object whose reads pass a [`FrameGuard`].
pub(crate) type GuardedIo<T> = HookedIo<T, FrameGuard>;

impl IoHook for FrameGuard {
    fn before_read(&mut self, _cx: &std::task::Context<'_>) -> crate::hooked_io::ReadGate {
        use crate::hooked_io::ReadGate;
        if self.discarding || self.violation.is_none() {
            return ReadGate::Proceed;
        }
        ReadGate::Refuse(std::io::Error::other(match self.violation {
            Some(Violation::BeforeHello) => "the peer sent too much before its hello frame",
            _ => "the peer sent a message over its cap",
        }))
    }

    fn after_read(&mut self, bytes: &[u8]) -> usize {
        let keep = self.scan(bytes);
        if self.discarding {
            return bytes.len();
        }
        if let Some(left) = self.budget.as_mut() {
            *left = left.saturating_sub(bytes.len() as u64);
            if *left == 0 && self.violation.is_none() {
                // What already arrived passes; the next read is refused.
                self.violation = Some(Violation::BeforeHello);
            }
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header for a payload of `len` bytes.
    fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | opcode];
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out
    }

    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut out = header(fin, opcode, len as u64);
        out.resize(out.len() + len, b'x');
        out
    }

    fn authenticated() -> FrameGuard {
        let mut guard = FrameGuard::before_hello(1000, u64::MAX);
        guard.after_hello(100_000);
        guard
    }

    #[test]
    fn a_text_frame_over_the_text_cap_is_cut_at_its_header() {
        let mut guard = authenticated();
        let mut stream = frame(true, 0x1, 10);
        let cut_at = stream.len();
        stream.extend_from_slice(&header(true, 0x1, 300_000_000));
        stream.extend_from_slice(&[b'x'; 50]);
        assert_eq!(guard.after_read(&stream), cut_at);
        assert_eq!(guard.violation(), Some(Violation::TooLarge(1000)));
    }

    #[test]
    fn binary_frames_take_the_binary_cap_and_fragments_add_up() {
        let mut guard = authenticated();
        let big_binary = frame(true, 0x2, 50_000);
        assert_eq!(guard.after_read(&big_binary), big_binary.len());
        let mut fragments = frame(false, 0x1, 600);
        fragments.extend(frame(false, 0x0, 300));
        let cut_at = fragments.len();
        fragments.extend(frame(true, 0x0, 200));
        assert_eq!(guard.after_read(&fragments), cut_at);
        assert_eq!(guard.violation(), Some(Violation::TooLarge(1000)));
    }

    #[test]
    fn a_header_split_across_reads_is_still_seen() {
        let mut guard = authenticated();
        let head = header(true, 0x1, 5_000);
        assert_eq!(guard.after_read(&head[..3]), 3);
        assert_eq!(guard.violation(), None);
        // The cut falls before this read: nothing of it passes.
        assert_eq!(guard.after_read(&head[3..]), 0);
        assert!(guard.violation().is_some());
    }

    #[test]
    fn while_discarding_reads_pass_until_the_close_frame() {
        let mut guard = authenticated();
        let mut stream = header(true, 0x1, 4000);
        stream.extend_from_slice(&[b'x'; 100]);
        assert_eq!(guard.after_read(&stream), 0);
        guard.discard();
        let rest = vec![b'x'; 3900];
        assert_eq!(guard.after_read(&rest), rest.len());
        assert!(!guard.peer_closed());
        let close = frame(true, 0x8, 2);
        assert_eq!(guard.after_read(&close), close.len());
        assert!(guard.peer_closed());
    }

    #[test]
    fn before_hello_binary_is_held_to_the_text_cap_and_the_budget_counts() {
        let mut guard = FrameGuard::before_hello(1000, 2000);
        assert_eq!(guard.after_read(&header(true, 0x2, 1001)), 0);
        let mut guard = FrameGuard::before_hello(1000, 2000);
        let small = frame(true, 0x1, 900);
        assert_eq!(guard.after_read(&small), small.len());
        assert_eq!(guard.after_read(&small), small.len());
        assert_eq!(guard.after_read(&small), small.len());
        assert_eq!(guard.violation(), Some(Violation::BeforeHello));
    }
}
