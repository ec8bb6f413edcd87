//! The counters behind the Prometheus endpoint (`--metrics-addr`, docs/operations.md). The
//! engine keeps them as it works and never reads the clock: durations (fsync, turn) are measured
//! by the reactor and handed in; the reactor also renders the text format.
//!
//! Every collection here is bounded by something already bounded: appends by origin actor by
//! `cluster.actors_max`, produce errors by the number of error codes.

use std::collections::BTreeMap;

use super::connection::{Phase, Stream};
use super::Engine;
use crate::config::FsyncPolicy;
use crate::protocol::{ErrorCode, Info, MemberStatus, OrderStatus, ServerFrame};
use crate::storage::{Log, LogActivity, LogStats};

/// Upper bounds of the duration histograms' buckets, in microseconds (50 µs to 10 s).
pub const DURATION_BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// A histogram of durations over [`DURATION_BUCKETS_US`], as Prometheus keeps one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last entry counts those above every bound.
    counts: [u64; DURATION_BUCKETS_US.len() + 1],
    sum_us: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: [0; DURATION_BUCKETS_US.len() + 1],
            sum_us: 0,
        }
    }
}

impl Histogram {
    pub fn observe(&mut self, micros: u64) {
        let bucket = DURATION_BUCKETS_US.partition_point(|&bound| bound < micros);
        self.counts[bucket] += 1;
        self.sum_us = self.sum_us.saturating_add(micros);
    }

    /// (upper bound in microseconds, cumulative count) per bucket, `+Inf` excluded.
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut total = 0;
        DURATION_BUCKETS_US
            .iter()
            .zip(self.counts.iter())
            .map(move |(&bound, &count)| {
                total += count;
                (bound, total)
            })
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }
}

/// Events and their data bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub events: u64,
    pub data_bytes: u64,
}

/// What the engine counts as it works.
#[derive(Debug, Default)]
pub(super) struct Metrics {
    /// Durable appends by origin actor (this node's own produces and replicated events).
    appended: BTreeMap<u16, Appended>,
    /// This turn's appends, counted into `appended` once its sync succeeded.
    turn_appended: BTreeMap<u16, Appended>,
    /// Produce and batch produce errors by code.
    produce_errors: BTreeMap<u16, u64>,
    bytes_received: u64,
    bytes_sent: u64,
    fsync_duration: Histogram,
    turn_duration: Histogram,
    /// Frame units decoded (a frame, or a batch's events): in all, this turn, and the most in
    /// one turn (`frames_per_turn_total_max` bounds it, plus one frame's events).
    frames_decoded: u64,
    turn_frames: u64,
    turn_frames_max: u64,
    /// The most records of the open segment sorted for namespace listings in one turn.
    turn_listing_sorted_max: u64,
}

impl Metrics {
    /// An event from `actor` with `data_bytes` of data was appended this turn.
    pub(super) fn on_append(&mut self, actor: u16, data_bytes: usize) {
        let entry = self.turn_appended.entry(actor).or_default();
        entry.events += 1;
        entry.data_bytes += data_bytes as u64;
    }

    /// The turn's sync decided: its appends count once durable, and not at all otherwise.
    pub(super) fn on_turn_synced(&mut self, durable: bool) {
        // The turn's entries are zeroed, not removed, so the next turns allocate nothing
        // (they are as many as the actors appended, at most `cluster.actors_max`).
        for (&actor, appended) in self.turn_appended.iter_mut() {
            let turn = std::mem::take(appended);
            if durable && turn.events > 0 {
                let entry = self.appended.entry(actor).or_default();
                entry.events += turn.events;
                entry.data_bytes += turn.data_bytes;
            }
        }
    }

    pub(super) fn on_produce_error(&mut self, code: ErrorCode) {
        *self.produce_errors.entry(code as u16).or_default() += 1;
    }

    pub(super) fn on_received(&mut self, count: usize) {
        self.bytes_received += count as u64;
    }

    pub(super) fn on_decoded(&mut self, units: usize) {
        self.frames_decoded += units as u64;
        self.turn_frames += units as u64;
    }

    /// The turn ended: its frame count may be the most yet.
    pub(super) fn on_turn_decoded(&mut self) {
        self.turn_frames_max = self.turn_frames_max.max(self.turn_frames);
        self.turn_frames = 0;
    }

    /// A turn's namespace listings sorted `records` of the open segment by name.
    pub(super) fn on_listing_sorted(&mut self, records: u64) {
        self.turn_listing_sorted_max = self.turn_listing_sorted_max.max(records);
    }

    pub(super) fn on_sent(&mut self, count: usize) {
        self.bytes_sent += count as u64;
    }
}

#[derive(Debug, Default)]
struct ConnectionCounts {
    clients: u64,
    peers: u64,
    other: u64,
    subscriptions: u64,
}

/// One consumer group, as the metrics show it: the figures of its Groups reply
/// (`Group::info`, protocol.md section 16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetrics {
    pub name: String,
    /// Events delivered and not yet acknowledged (in flight or waiting for redelivery).
    pub pending: u64,
    pub parked: u64,
    /// Log records the group has not looked at yet (from its delivered position to the durable
    /// end): an upper bound on matching events not yet delivered.
    pub lag: u64,
    pub members: u64,
    /// Since the first delivery of its oldest pending event; 0 with none pending.
    pub oldest_pending_age_ms: u64,
}

/// Everything the endpoint shows, taken at once.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub actor_id: u16,
    /// Time since the reactor started.
    pub uptime_ms: u64,
    pub fsync_policy: FsyncPolicy,
    /// Durable appends by origin actor, in actor order.
    pub appended: Vec<(u16, Appended)>,
    /// Produce errors by code, in code order.
    pub produce_errors: Vec<(ErrorCode, u64)>,
    pub sync_failures: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub fsync_duration: Histogram,
    pub turn_duration: Histogram,
    /// Frame units decoded since start, and the most decoded in one turn.
    pub frames_decoded: u64,
    pub turn_frames_max: u64,
    /// The most records of the open segment sorted by name for namespace listings in one turn
    /// (`LogActivity::listing_records_sorted` counts them all).
    pub turn_listing_sorted_max: u64,
    pub client_connections: u64,
    pub peer_connections: u64,
    /// Connections before their handshake, or closing.
    pub other_connections: u64,
    pub subscriptions: u64,
    pub events_delivered: u64,
    /// Id-order deliveries after a larger id (`EngineStats::events_delivered_late`).
    pub events_delivered_late: u64,
    pub log: LogStats,
    pub activity: LogActivity,
    pub cache_bytes_max: u64,
    pub peers: Vec<MemberStatus>,
    /// Peer connections closed for breaking the peer protocol (`EngineStats::peer_violations`).
    pub peer_violations: u64,
    /// PeerPurges ignored under `--peer-purges refuse`.
    pub peer_purges_refused: u64,
    /// Id order: the stable clock, what holds it back, what waits.
    pub order: OrderStatus,
    pub groups: Vec<GroupMetrics>,
}

impl<L: Log> Engine<L> {
    /// The reactor measured the turn's sync (`handle_turn_sync`) at `micros`, and it ran at
    /// least one fdatasync.
    pub fn record_fsync_duration(&mut self, micros: u64) {
        self.metrics.fsync_duration.observe(micros);
    }

    /// The reactor measured a whole turn (reading, the engine's work, writing) at `micros`.
    pub fn record_turn_duration(&mut self, micros: u64) {
        self.metrics.turn_duration.observe(micros);
    }

    /// The figures for the metrics endpoint. Costs a pass over the connections, the groups and
    /// the log's segments: a scrape, not something for every turn.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let counts = self.connection_counts();
        let metrics = &self.metrics;
        MetricsSnapshot {
            actor_id: self.config.actor_id.0,
            uptime_ms: self.now_ms,
            fsync_policy: self.config.storage.fsync,
            appended: metrics.appended.iter().map(|(&a, &n)| (a, n)).collect(),
            produce_errors: metrics
                .produce_errors
                .iter()
                .filter_map(|(&code, &count)| Some((ErrorCode::from_u16(code)?, count)))
                .collect(),
            sync_failures: self.stats.sync_failures,
            bytes_received: metrics.bytes_received,
            bytes_sent: metrics.bytes_sent,
            fsync_duration: metrics.fsync_duration.clone(),
            turn_duration: metrics.turn_duration.clone(),
            frames_decoded: metrics.frames_decoded,
            turn_frames_max: metrics.turn_frames_max,
            turn_listing_sorted_max: metrics.turn_listing_sorted_max,
            client_connections: counts.clients,
            peer_connections: counts.peers,
            other_connections: counts.other,
            subscriptions: counts.subscriptions,
            events_delivered: self.stats.events_delivered,
            events_delivered_late: self.stats.events_delivered_late,
            log: self.log.stats(),
            activity: self.log.activity(),
            cache_bytes_max: self.config.storage.cache_bytes_max as u64,
            peers: self.status().members,
            peer_violations: self.stats.peer_violations,
            peer_purges_refused: self.stats.peer_purges_refused,
            order: self.order_status(),
            groups: self.group_metrics(),
        }
    }

    /// What `flo-client info` shows: the server, its log and its connections.
    pub fn info(&self) -> Info {
        let snapshot_counts = self.connection_counts();
        let stats = self.log.stats();
        let count32 = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: self.now_ms,
            fsync_policy: self.config.storage.fsync.to_string(),
            actor_id: self.config.actor_id.0,
            log_bytes: stats.byte_count,
            event_count: stats.event_count,
            segment_count: stats.segment_count,
            client_connections: count32(snapshot_counts.clients),
            peer_connections: count32(snapshot_counts.peers),
            subscriptions: count32(snapshot_counts.subscriptions),
            group_count: count32(self.groups.groups.len() as u64),
        }
    }

    /// An InfoRequest: held with the turn's replies like a StatusRequest (it must not overtake
    /// the Ack of an earlier Produce), and counted at the size of an Info built now.
    /// Its counts visit every connection and subscription, now and again when it is sent:
    /// charged to the turn's frame budget like a Status (attack round 8).
    pub(super) fn on_info_request(&mut self, conn: super::ConnId) {
        self.charge_scan(self.connection_scan_entries().saturating_mul(2));
        let mut encoded = Vec::new();
        crate::protocol::encode(&ServerFrame::Info(self.info()), &mut encoded);
        let size = encoded.len();
        self.hold_reply(super::PendingReply::Status {
            conn,
            size,
            report: super::Report::Info,
        });
    }

    /// Connections by kind and client subscriptions: a pass over the connections.
    fn connection_counts(&self) -> ConnectionCounts {
        let mut counts = ConnectionCounts::default();
        for connection in self.conns.iter().flatten() {
            match connection.phase {
                Phase::Client(_) => counts.clients += 1,
                Phase::Peer(_) => counts.peers += 1,
                Phase::AwaitingHello { .. }
                | Phase::PeerAwaitingWelcome { .. }
                | Phase::PeerAwaitingAccept { .. }
                | Phase::PeerAwaitingProof { .. }
                | Phase::Closing { .. } => counts.other += 1,
            }
            counts.subscriptions += connection
                .subscriptions
                .values()
                .filter(|sub| !matches!(sub.stream, Stream::Replication))
                .count() as u64;
        }
        counts
    }

    fn group_metrics(&self) -> Vec<GroupMetrics> {
        let durable_end = self.log.durable_end();
        self.groups
            .groups
            .iter()
            .map(|(name, group)| {
                let info = group.info(name, durable_end, self.now_ms);
                GroupMetrics {
                    name: info.name,
                    pending: info.pending,
                    parked: info.parked,
                    lag: info.lag,
                    members: u64::from(info.members),
                    oldest_pending_age_ms: info.oldest_pending_age_ms,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let mut histogram = Histogram::default();
        for micros in [50, 51, 1_000, 20_000_000] {
            histogram.observe(micros);
        }
        let buckets: Vec<(u64, u64)> = histogram.cumulative().collect();
        assert_eq!(buckets[0], (50, 1));
        assert_eq!(buckets[1], (100, 2));
        assert_eq!(buckets[4], (1_000, 3));
        assert_eq!(buckets.last(), Some(&(10_000_000, 3)));
        assert_eq!(histogram.count(), 4);
        assert_eq!(histogram.sum_us(), 20_001_101);
    }

    #[test]
    fn appends_count_only_after_a_durable_sync() {
        let mut metrics = Metrics::default();
        metrics.on_append(1, 10);
        metrics.on_turn_synced(false);
        metrics.on_append(1, 5);
        metrics.on_append(2, 7);
        metrics.on_turn_synced(true);
        let appended: Vec<(u16, Appended)> = metrics.appended.into_iter().collect();
        assert_eq!(
            appended,
            [
                (
                    1,
                    Appended {
                        events: 1,
                        data_bytes: 5
                    }
                ),
                (
                    2,
                    Appended {
                        events: 1,
                        data_bytes: 7
                    }
                )
            ]
        );
    }
}
