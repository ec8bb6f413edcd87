//! The reactor thread's scheduling request: a short EEVDF slice (Linux 6.12 and later), so
//! that when the thread wakes (a socket became readable, an fdatasync returned) the kernel
//! runs it before threads that asked for the default slice, instead of after them.
//!
//! A slice is the kernel's way for a latency-sensitive thread to say how long it runs when it
//! wakes (`sched_attr::sched_runtime` for `SCHED_OTHER` and `SCHED_BATCH`; the kernel clamps it
//! to 0.1-100 ms). It is no priority: the thread's share of the CPU (its nice value) stays, it
//! only gets that share in shorter pieces, sooner after each wake-up. Kernels before 6.12
//! accept and ignore it. Needs no privilege.

use std::io;
use std::time::Duration;

/// The thread attributes of `sched_setattr(2)` up to `sched_period` (`SCHED_ATTR_SIZE_VER0`).
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Asks for `slice` as the calling thread's scheduler slice, keeping its policy and nice
/// value; a thread with a real-time or idle policy is left as it is.
#[cfg(target_os = "linux")]
pub(crate) fn request_slice(slice: Duration) -> io::Result<()> {
    let size = std::mem::size_of::<SchedAttr>() as u32;
    let mut attr = SchedAttr::default();
    // SAFETY: sched_getattr writes at most `size` bytes into `attr`, a live, writable
    // `repr(C)` struct of exactly `size` bytes laid out as the kernel's `struct sched_attr`.
    let got = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if got != 0 {
        return Err(io::Error::last_os_error());
    }
    let fair = [libc::SCHED_OTHER, libc::SCHED_BATCH];
    if !fair.iter().any(|&policy| attr.policy == policy as u32) {
        return Ok(());
    }
    attr.size = size;
    attr.flags = 0;
    attr.runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: sched_setattr only reads `attr.size` bytes of `attr`, which is that large.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere the scheduler has no such request: nothing to do.
#[cfg(not(target_os = "linux"))]
pub(crate) fn request_slice(_slice: Duration) -> io::Result<()> {
    Ok(())
}

/// The slice and nice value the kernel reports for thread `tid` (0: the calling thread); for
/// tests, also the integration tests that read the server process's threads.
#[cfg(all(any(test, feature = "testing"), target_os = "linux"))]
pub fn slice_and_nice(tid: i32) -> io::Result<(Duration, i32)> {
    let size = std::mem::size_of::<SchedAttr>() as u32;
    let mut attr = SchedAttr::default();
    // SAFETY: as in `request_slice`.
    let got = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if got != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((Duration::from_nanos(attr.runtime), attr.nice))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_the_slice_it_asks_for_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            let (default, _) = slice_and_nice(0).expect("sched_getattr");
            // SAFETY: setpriority on the calling thread (a Linux thread id is a process id for
            // PRIO_PROCESS); lowering the priority needs no privilege.
            let lowered =
                unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 3) };
            assert_eq!(lowered, 0, "{}", io::Error::last_os_error());
            request_slice(Duration::from_micros(123)).expect("sched_setattr");
            assert_eq!(
                slice_and_nice(0).expect("sched_getattr"),
                (Duration::from_micros(123), 3)
            );
            // The kernel clamps a request below 0.1 ms.
            request_slice(Duration::from_micros(5)).expect("sched_setattr");
            assert_eq!(
                slice_and_nice(0).expect("sched_getattr"),
                (Duration::from_micros(100), 3)
            );
            assert_ne!(default, Duration::from_micros(100), "the default is longer");
        })
        .join()
        .expect("the thread asserts");
    }
}
