//! Ctrl-C in the middle of `produce` from standard input (walkthrough, session 9).
//!
//! Killed by the default SIGINT, the producer left events stored whose ids it had not printed
//! (acks in flight, ids still in its output buffer) and said nothing: a user could not tell
//! which lines to send again. Now the first Ctrl-C stops reading standard input; the producer
//! collects the acks of the events in flight, prints their ids and says how many lines were
//! produced, then exits with 130. When it is waiting for input with nothing in flight (every
//! id printed), there is nothing to collect and the handler exits at once. A second Ctrl-C
//! exits at once too, saying that the events in flight may or may not be stored.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The exit code of a produce stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
pub const INTERRUPTED_EXIT: u8 = 130;

/// The start of the message of a produce stopped by Ctrl-C; `main` maps it to exit code 130.
pub const INTERRUPTED_PREFIX: &str = "interrupted: ";

/// Set by the first Ctrl-C.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// True while the producer waits for standard input with nothing in flight and every id
/// printed and flushed: a Ctrl-C then loses nothing by exiting at once.
static IDLE: AtomicBool = AtomicBool::new(false);
/// Events acknowledged (and printed) so far, for the handler's message when idle.
static ACKNOWLEDGED: AtomicU64 = AtomicU64::new(0);

/// Installs the handler. Called once, before the first line is read. (The handler only
/// touches atomics, formats into a buffer on its stack, and calls write(2) and _exit(2).)
pub fn install() -> Result<(), String> {
    register_sigint(on_sigint)
}

/// Registers `handler` for SIGINT (Ctrl-C). The caller promises that `handler` is
/// async-signal-safe: atomics, write(2) and _exit(2) only; no lock, no allocation, no other
/// Rust state.
pub fn register_sigint(handler: fn()) -> Result<(), String> {
    // SAFETY: the caller's promise above.
    let registered =
        unsafe { signal_hook::low_level::register(signal_hook::consts::SIGINT, handler) };
    registered
        .map(|_| ())
        .map_err(|error| format!("could not install the Ctrl-C handler: {error}"))
}

fn on_sigint() {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        write_stderr(&[
            ERROR_PREFIX,
            b"interrupted again: stopped without waiting for the acks of the events in flight, ",
            b"which may or may not be stored\n",
        ]);
        signal_hook::low_level::exit(i32::from(INTERRUPTED_EXIT));
    }
    if IDLE.load(Ordering::SeqCst) {
        let mut digits = [0u8; 20];
        let count = format_u64(ACKNOWLEDGED.load(Ordering::SeqCst), &mut digits);
        write_stderr(&[ERROR_PREFIX, MESSAGE_START, count, MESSAGE_END, b"\n"]);
        signal_hook::low_level::exit(i32::from(INTERRUPTED_EXIT));
    }
}

/// What every error line of `flo-client` starts with (`main` adds it to the others).
const ERROR_PREFIX: &[u8] = b"flo-client: ";

/// The message around the count: the first N lines are stored, none after them.
const MESSAGE_START: &[u8] = b"interrupted: the first ";
const MESSAGE_END: &[u8] = b" lines of standard input were produced; no later line was sent";

/// The message of a produce that stopped after a Ctrl-C, once every ack in flight arrived.
pub fn message(acknowledged: u64) -> String {
    let mut text = String::from_utf8_lossy(MESSAGE_START).into_owned();
    text.push_str(&acknowledged.to_string());
    text.push_str(&String::from_utf8_lossy(MESSAGE_END));
    text
}

/// Whether a Ctrl-C came: the producer then stops reading and collects its acks.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// About to wait for input with nothing in flight and `acknowledged` ids printed and flushed.
/// Returns false when a Ctrl-C came first: the caller stops instead of waiting.
pub fn enter_idle(acknowledged: u64) -> bool {
    ACKNOWLEDGED.store(acknowledged, Ordering::SeqCst);
    IDLE.store(true, Ordering::SeqCst);
    // The handler sets INTERRUPTED before it reads IDLE, and we set IDLE before we read
    // INTERRUPTED: either it sees IDLE and exits, or we see INTERRUPTED here.
    if INTERRUPTED.load(Ordering::SeqCst) {
        IDLE.store(false, Ordering::SeqCst);
        return false;
    }
    true
}

/// Input arrived: events are about to be in flight again.
pub fn leave_idle() {
    IDLE.store(false, Ordering::SeqCst);
}

fn write_stderr(parts: &[&[u8]]) {
    for part in parts {
        // SAFETY: write(2) on fd 2 with a valid buffer; a failed write is ignored (nothing
        // better can be done inside a signal handler).
        unsafe {
            libc::write(2, part.as_ptr().cast(), part.len());
        }
    }
}

/// `value` in decimal, in `buffer`, without allocating (signal handler).
fn format_u64(mut value: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        // The remainder is below 10: the cast cannot truncate.
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buffer[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_starts_with_the_prefix_main_maps_to_exit_130() {
        assert!(MESSAGE_START.starts_with(INTERRUPTED_PREFIX.as_bytes()));
        assert!(message(3).starts_with(INTERRUPTED_PREFIX));
    }

    #[test]
    fn counts_are_formatted_without_allocating() {
        let mut buffer = [0u8; 20];
        assert_eq!(format_u64(0, &mut buffer), b"0");
        assert_eq!(format_u64(61079, &mut buffer), b"61079");
        assert_eq!(format_u64(u64::MAX, &mut buffer), b"18446744073709551615");
    }
}
