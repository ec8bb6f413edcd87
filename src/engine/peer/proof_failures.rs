//! The rate limit of failed peer proofs, per source address (docs/security.md, "Peers").
//!
//! Anyone who reaches the port can start a peer handshake and send a wrong proof. Each failed
//! PeerProof is logged with the dialer's address and counted against its IP address (not its
//! port: a new connection gets a new port) in a window of `cluster.peer_proof_failure_window`.
//! Past `cluster.peer_proof_failures_max` failures in the window, a PeerHello from that address
//! is refused with `AuthFailed` before any nonce is made, until the window ends, so a guesser
//! gets a fixed number of tries per window per address and floods neither the log (one line
//! when the limit is reached, one when the window ends) nor the CPU.
//!
//! The table holds at most `cluster.peer_proof_failure_addresses_max` addresses, so its memory
//! is bounded whatever the attacker's number of addresses: a new failing address when it is
//! full takes the place of the one whose window started first (expired windows go first). This
//! fails open, on purpose: refusing every new address instead would lock a legitimate member
//! out whenever a distributed attacker fills the table. An attacker with more addresses than
//! the table gets more tries in total; the proof is an HMAC-SHA256 under a long random secret
//! (`flo gen-token`), so online guessing is hopeless either way, and what the limit buys is a
//! readable log and a bounded cost per address.

use std::collections::BTreeMap;
// An IP address is a value, like the `SocketAddr` it comes from, not a socket (the
// architecture test allows only `SocketAddr` from `std::net`; `core::net` is the same type).
use core::net::IpAddr;
use std::net::SocketAddr;

use crate::config::ClusterConfig;

/// One address's failed proofs in its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failures {
    window_start_ms: u64,
    count: u32,
    /// PeerHellos refused unchecked in this window (logged when the window ends).
    refused: u64,
}

/// Failed peer proofs per source IP address (bounded).
#[derive(Debug, Default)]
pub(in crate::engine) struct ProofFailures {
    by_address: BTreeMap<IpAddr, Failures>,
}

impl ProofFailures {
    /// How many addresses the table holds (for tests and invariants).
    pub(in crate::engine) fn len(&self) -> usize {
        self.by_address.len()
    }

    /// Whether a PeerHello from `addr` at `now_ms` is refused unchecked: its address failed
    /// `peer_proof_failures_max` proofs in the current window. Returns the seconds left in the
    /// window when it is.
    pub(in crate::engine) fn check(
        &mut self,
        config: &ClusterConfig,
        addr: SocketAddr,
        now_ms: u64,
    ) -> Result<(), u64> {
        let window_ms = super::super::millis(config.peer_proof_failure_window);
        let ip = addr.ip();
        let Some(failures) = self.by_address.get_mut(&ip) else {
            return Ok(());
        };
        let elapsed_ms = now_ms.saturating_sub(failures.window_start_ms);
        if elapsed_ms >= window_ms {
            if failures.refused > 0 {
                log::warn!(
                    "{} peer handshakes from {ip} were refused unchecked in the last {} s: over {} failed peer proofs",
                    failures.refused,
                    window_ms / 1000,
                    config.peer_proof_failures_max
                );
            }
            self.by_address.remove(&ip);
            return Ok(());
        }
        if failures.count < config.peer_proof_failures_max {
            return Ok(());
        }
        failures.refused += 1;
        Err((window_ms - elapsed_ms).div_ceil(1000))
    }

    /// Counts a failed proof from `addr` at `now_ms`; returns the failures of its window so far.
    pub(in crate::engine) fn record(
        &mut self,
        config: &ClusterConfig,
        addr: SocketAddr,
        now_ms: u64,
    ) -> u32 {
        let window_ms = super::super::millis(config.peer_proof_failure_window);
        let ip = addr.ip();
        if !self.by_address.contains_key(&ip) {
            self.make_room(config.peer_proof_failure_addresses_max, window_ms, now_ms);
        }
        let failures = self.by_address.entry(ip).or_insert(Failures {
            window_start_ms: now_ms,
            count: 0,
            refused: 0,
        });
        if now_ms.saturating_sub(failures.window_start_ms) >= window_ms {
            *failures = Failures {
                window_start_ms: now_ms,
                count: 0,
                refused: 0,
            };
        }
        failures.count = failures.count.saturating_add(1);
        failures.count
    }

    /// Leaves room for one more address under `addresses_max`: drops the expired windows,
    /// then, if still full, the window that started first. A scan of at most `addresses_max`
    /// entries, only when a new address fails a proof.
    fn make_room(&mut self, addresses_max: usize, window_ms: u64, now_ms: u64) {
        if self.by_address.len() < addresses_max {
            return;
        }
        self.by_address
            .retain(|_, f| now_ms.saturating_sub(f.window_start_ms) < window_ms);
        while self.by_address.len() >= addresses_max {
            let oldest = self
                .by_address
                .iter()
                .min_by_key(|(_, f)| f.window_start_ms)
                .map(|(ip, _)| *ip);
            match oldest {
                Some(ip) => self.by_address.remove(&ip),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> ClusterConfig {
        ClusterConfig {
            peer_proof_failures_max: 3,
            peer_proof_failure_window: Duration::from_secs(60),
            peer_proof_failure_addresses_max: 4,
            ..ClusterConfig::default()
        }
    }

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], port))
    }

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_ends_whatever_its_port() {
        let config = config();
        let mut table = ProofFailures::default();
        for (i, now) in [0, 10, 20].into_iter().enumerate() {
            assert_eq!(table.check(&config, addr(1, 1000 + i as u16), now), Ok(()));
            table.record(&config, addr(1, 1000 + i as u16), now);
        }
        assert_eq!(table.check(&config, addr(1, 2000), 30), Err(60));
        assert_eq!(
            table.check(&config, addr(2, 2000), 30),
            Ok(()),
            "other address"
        );
        assert_eq!(table.check(&config, addr(1, 2000), 59_999), Err(1));
        assert_eq!(table.check(&config, addr(1, 2000), 60_000), Ok(()));
        assert_eq!(table.len(), 0, "an expired window is forgotten");
    }

    #[test]
    fn the_table_never_holds_more_than_its_limit_and_drops_the_oldest_first() {
        let config = config();
        let mut table = ProofFailures::default();
        for last in 0..=200u8 {
            table.record(&config, addr(last, 1), u64::from(last));
            assert!(table.len() <= 4, "{} addresses", table.len());
        }
        // The four newest remain.
        for last in 197..=200u8 {
            table.record(&config, addr(last, 1), 300);
            table.record(&config, addr(last, 1), 300);
            assert!(table.check(&config, addr(last, 1), 301).is_err());
        }
        assert!(table.check(&config, addr(0, 1), 301).is_ok());
    }
}
