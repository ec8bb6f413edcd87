//! `consume --group NAME --exec CMD`: a group member that hands each event to a command and
//! acknowledges it only when the command succeeds.
//!
//! `consume --group` acknowledges each event once it is printed, so a shell pipeline could not
//! refuse one (walkthrough, session 15). A nack needs a membership (GroupNack names its
//! subscription id, protocol.md section 16), so a separate `groups nack` command, which would
//! join the group to refuse an event, would be handed other events meanwhile; the member that
//! received the event is the one to decide. So the member runs the command itself, as
//! `xargs` or `find -exec` do, and turns its exit status into the ack or the nack.

use std::io::{self, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use flo::client::{GroupConsumer, GroupDelivery};
use flo::event::Event;
use flo::units::format_duration_ms;

use super::group_error;

/// Runs `command` for each event of `consumer` until the group has caught up (or, with
/// `tail`, until Ctrl-C), at most `limit` events (0: no limit), then leaves the group.
pub fn consume(
    mut consumer: GroupConsumer<'_>,
    group: &str,
    glob: &str,
    tail: bool,
    limit: u64,
    command: &str,
    nack_delay: Duration,
) -> Result<(), String> {
    let failed = |error: flo::client::ClientError| group_error(group, glob, error);
    let mut handled = 0u64;
    let mut said_no_progress = false;
    while limit == 0 || handled < limit {
        let event = match consumer.next_delivery().map_err(failed)? {
            None | Some(GroupDelivery::End(_)) => break,
            Some(GroupDelivery::CaughtUp) if !tail => break,
            Some(GroupDelivery::CaughtUp) => continue,
            Some(GroupDelivery::Event(event)) => event,
        };
        if consumer.progress_refused() && !said_no_progress {
            said_no_progress = true;
            eprintln!("{}", no_progress_note(group));
        }
        handled += 1;
        // A Ctrl-C from here until the ack or nack is sent waits for them (see `on_sigint`).
        RUNNING.store(true, Ordering::SeqCst);
        let status = run(command, &event, &mut consumer)?;
        answer(&mut consumer, &event, status, nack_delay).map_err(failed)?;
        RUNNING.store(false, Ordering::SeqCst);
        // The handler sets STOP before it reads RUNNING, and RUNNING is cleared before STOP is
        // read here: either the handler saw RUNNING clear and exited, or this sees STOP.
        if STOP.load(Ordering::SeqCst) {
            break;
        }
    }
    consumer
        .leave()
        .map_err(|error| format!("group {group}: {error}"))
}

/// What a member says once when the server is older than GroupProgress (it closed the
/// connection at the join's probe, `GroupBuilder::probe_progress`).
pub fn no_progress_note(group: &str) -> String {
    format!(
        "flo-client: group {group:?}: the server is older than GroupProgress and cannot extend \
         ack time-outs: an event held longer than the group's ack time-out is delivered to \
         another member too (this member keeps its connection open with Pings)"
    )
}

/// Acknowledges `event` when its command succeeded, refuses it (nack) otherwise, at once:
/// the command's effect is done, and a Ctrl-C must not leave it unanswered.
fn answer(
    consumer: &mut GroupConsumer<'_>,
    event: &Event,
    status: ExitStatus,
    nack_delay: Duration,
) -> Result<(), flo::client::ClientError> {
    if status.success() {
        consumer.ack(event.id)?;
        return consumer.flush();
    }
    let mut namespace = String::new();
    flo::client::format::push_terminal_safe(&mut namespace, &event.namespace);
    let when = match nack_delay.is_zero() {
        true => "at once".to_string(),
        false => format!(
            "after {}",
            format_duration_ms(nack_delay.as_millis() as u64)
        ),
    };
    eprintln!(
        "flo-client: event {} ({namespace}): the --exec command {}: refused (nack); the \
             group delivers it again {when}, or parks it after its max deliveries",
        event.id,
        describe(status)
    );
    consumer.nack(&[event.id], nack_delay)
}

/// Set while an `--exec` command runs and until its event is acknowledged or refused.
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Set by the first Ctrl-C.
static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler of `consume --group --exec` (instead of the consumer's, which
/// exits at once). Attack round 16: exiting at once while the command ran left the command
/// running on its own; it finished its work and nobody acknowledged the event, so the group
/// delivered it again and its effect happened twice.
/// The handler only touches atomics and calls write(2) and _exit(2).
pub fn stop_after_the_command_on_ctrl_c() -> Result<(), String> {
    crate::interrupt::register_sigint(on_sigint)
}

/// The first Ctrl-C: with no command running (waiting for an event), exit 0 at once, as
/// `consume` does (an event received but not yet handed to the command is delivered again);
/// while one runs, let it finish, answer its event, leave the group and exit 0. A second
/// Ctrl-C exits at once with 130.
fn on_sigint() {
    if STOP.swap(true, Ordering::SeqCst) {
        write_stderr(
            b"flo-client: interrupted again: stopped without waiting for the --exec command; \
              the group delivers its event again\n",
        );
        signal_hook::low_level::exit(130);
    }
    if !RUNNING.load(Ordering::SeqCst) {
        signal_hook::low_level::exit(0);
    }
    write_stderr(
        b"flo-client: Ctrl-C: stopping once the running --exec command ends and its event is \
          acknowledged (exit 0) or refused; Ctrl-C again stops at once\n",
    );
}

fn write_stderr(message: &[u8]) {
    // SAFETY: write(2) on fd 2 with a valid buffer; a failed write is ignored (nothing better
    // can be done inside a signal handler).
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
    }
}

/// Runs `command` with `sh -c`, the event's data on its standard input and the event's fields
/// in its environment; its standard output and error are this process's. While it runs, the
/// member sends GroupProgress for the event every `progress_interval` (1 s at most): the
/// group's ack time-out starts again each time, so a command longer than it (30 s by default)
/// does not have its event delivered to another member too (prog17; a server older than
/// GroupProgress gets a Ping instead, see `no_progress_note`), and the connection is not
/// closed as idle (attack round 17: a command longer than `--idle-timeout` had its connection
/// closed, its finished work never acknowledged, flo-client exit 1 and the event delivered
/// again; that fix sent Pings). The input is written by a thread of its own, so that a
/// command that does not read it (more than a pipe's buffer) does not stop them either.
fn run(
    command: &str,
    event: &Event,
    consumer: &mut GroupConsumer<'_>,
) -> Result<ExitStatus, String> {
    let parent = event.parent_id.map_or(String::new(), |id| id.to_string());
    let mut child = Command::new("sh")
        .args(["-c", command])
        .env("FLO_EVENT_ID", event.id.to_string())
        .env("FLO_NAMESPACE", &event.namespace)
        .env("FLO_TIMESTAMP_MS", event.timestamp_ms.to_string())
        .env("FLO_PARENT_ID", parent)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|error| format!("could not run the --exec command with sh: {error}"))?;
    let stdin = child.stdin.take();
    let interval = consumer.progress_interval();
    std::thread::scope(|scope| {
        let writer = stdin.map(|mut stdin| {
            // A command that does not read its input closes the pipe (EPIPE): its exit
            // status still decides. Dropping `stdin` then ends the command's input.
            scope.spawn(move || match stdin.write_all(&event.data) {
                Err(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(error),
                _ => Ok(()),
            })
        });
        let (done, ended) = mpsc::channel();
        let waiter = scope.spawn(move || {
            let status = child.wait();
            // The receiver is only gone if this function returned, which it does not
            // before joining this thread.
            let _ = done.send(());
            status
        });
        let mut kept = Ok(());
        while kept.is_ok() {
            match ended.recv_timeout(interval) {
                Err(mpsc::RecvTimeoutError::Timeout) => kept = consumer.progress(&[event.id]),
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // The connection failed: the command's end.
        let status = (waiter.join())
            .map_err(|_| "the thread waiting for the --exec command panicked".to_string())?
            .map_err(|error| format!("could not wait for the --exec command: {error}"))?;
        if let Some(writer) = writer {
            (writer.join())
                .map_err(|_| "the thread writing to the --exec command panicked".to_string())?
                .map_err(|error| format!("could not write to the --exec command: {error}"))?;
        }
        // A connection lost while the command ran: its event cannot be answered.
        kept.map_err(|error| format!("while the --exec command ran: {error}"))?;
        Ok(status)
    })
}

/// "exited with code 3" or "was killed by signal 9".
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}
