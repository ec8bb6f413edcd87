//! The process's own resource use, read from Linux's /proc for the metrics (only storage
//! touches files). Elsewhere, or when /proc is not mounted, the figures are absent.

use std::path::Path;

/// What the process holds, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ProcessStats {
    /// Resident set size (`VmRSS` of /proc/self/status).
    pub resident_bytes: Option<u64>,
    /// Entries of /proc/self/fd.
    pub open_fds: Option<u64>,
    /// The limit on open file descriptors (the soft limit of /proc/self/limits).
    pub fds_max: Option<u64>,
}

/// Reads the process's figures. The cost is bounded by the open descriptors, which the
/// connection limits bound.
pub(crate) fn process_stats() -> ProcessStats {
    let proc_self = Path::new("/proc/self");
    let status = std::fs::read_to_string(proc_self.join("status")).ok();
    let limits = std::fs::read_to_string(proc_self.join("limits")).ok();
    let open_fds = std::fs::read_dir(proc_self.join("fd"))
        .ok()
        .map(|entries| entries.count() as u64);
    ProcessStats {
        resident_bytes: status.as_deref().and_then(resident_bytes),
        open_fds,
        fds_max: limits.as_deref().and_then(fds_max),
    }
}

/// `VmRSS:     1234 kB` in /proc/self/status, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `Max open files            1024                 4096                 files` in
/// /proc/self/limits: the soft limit.
fn fds_max(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines_are_parsed() {
        assert_eq!(
            resident_bytes("Name:\tflo\nVmRSS:\t    2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(resident_bytes("Name:\tflo\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 4096                 files\n";
        assert_eq!(fds_max(limits), Some(1024));
        assert_eq!(
            fds_max("Max open files            unlimited  unlimited files"),
            None
        );
    }

    #[test]
    fn this_process_has_figures_on_linux() {
        let stats = process_stats();
        if cfg!(target_os = "linux") {
            assert!(stats.resident_bytes.is_some_and(|bytes| bytes > 0));
            assert!(stats.open_fds.is_some_and(|count| count >= 3));
        }
    }
}
