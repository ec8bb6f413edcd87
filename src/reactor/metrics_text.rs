//! The Prometheus text format (version 0.0.4) of the engine's figures: names `flo_*` with base
//! units (seconds, bytes) and `_total` on counters; `process_*` as Prometheus's own client
//! libraries name them. docs/operations.md lists every metric.

use std::fmt::Write;

use super::http::EndpointFigures;
use crate::engine::{Histogram, MetricsSnapshot};
use crate::protocol::MemberState;
use crate::storage::ProcessStats;

/// Figures the reactor keeps itself.
pub(super) struct ReactorFigures {
    pub process: ProcessStats,
    pub endpoint: EndpointFigures,
    pub socket_reads: super::SocketReads,
    pub lingering: LingeringFigures,
}

/// The sockets the server closed (or refused) that linger to deliver what they are owed.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LingeringFigures {
    pub connections: usize,
    pub output_bytes: usize,
    pub cut: u64,
}

/// Writes one metric family's HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

fn seconds(micros: u64) -> String {
    format!("{}", micros as f64 / 1e6)
}

fn histogram(out: &mut String, name: &str, help: &str, histogram: &Histogram) {
    family(out, name, "histogram", help);
    for (bound_us, count) in histogram.cumulative() {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {count}", seconds(bound_us));
    }
    let count = histogram.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", seconds(histogram.sum_us()));
    let _ = writeln!(out, "{name}_count {count}");
}

/// The engine's figures as one scrape gathered them, with the text of their consumer groups:
/// reused by the scrapes within `metrics.snapshot_interval`. The groups' text is rendered once
/// per snapshot because it is most of an answer (5 series a group, each repeating the group's
/// name of up to 255 bytes: 1.5 MB at 1024 groups of 250-byte names), and rendering it per
/// request let a scrape flood hold a bystander's produce ack at a 31-36 ms median against
/// 8-16 ms with short names (attack round 18, `ci/attacks/metrics_groups.py`).
pub(super) struct Snapshot {
    pub taken_ms: u64,
    pub figures: MetricsSnapshot,
    groups_text: String,
}

impl Snapshot {
    pub(super) fn new(taken_ms: u64, figures: MetricsSnapshot) -> Snapshot {
        let mut groups_text = String::new();
        render_groups(&mut groups_text, &figures);
        Snapshot {
            taken_ms,
            figures,
            groups_text,
        }
    }
}

/// The whole exposition.
pub(super) fn render(snapshot: &Snapshot, reactor: &ReactorFigures) -> String {
    let figures = &snapshot.figures;
    let mut out = String::with_capacity(8 * 1024 + snapshot.groups_text.len());
    render_server(&mut out, figures);
    render_log(&mut out, figures);
    render_traffic(&mut out, figures, reactor);
    render_cluster(&mut out, figures);
    render_order(&mut out, figures);
    out.push_str(&snapshot.groups_text);
    render_process(&mut out, reactor);
    out
}

fn render_server(out: &mut String, s: &MetricsSnapshot) {
    family(
        out,
        "flo_build_info",
        "gauge",
        "The server's version and fsync policy (value 1).",
    );
    let _ = writeln!(
        out,
        "flo_build_info{{version=\"{}\",fsync=\"{}\",actor_id=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        label(&s.fsync_policy.to_string()),
        s.actor_id
    );
    single(
        out,
        "flo_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        seconds(s.uptime_ms * 1000),
    );
    family(out, "flo_events_appended_total", "counter", "Events made durable in this node's log, by the actor that created them (this node's own produces and replicated events).");
    for (actor, appended) in &s.appended {
        let _ = writeln!(
            out,
            "flo_events_appended_total{{origin=\"{actor}\"}} {}",
            appended.events
        );
    }
    family(
        out,
        "flo_event_data_appended_bytes_total",
        "counter",
        "Event data bytes made durable, by origin actor.",
    );
    for (actor, appended) in &s.appended {
        let _ = writeln!(
            out,
            "flo_event_data_appended_bytes_total{{origin=\"{actor}\"}} {}",
            appended.data_bytes
        );
    }
    family(
        out,
        "flo_produce_errors_total",
        "counter",
        "Produce and batch produce requests answered with an error, by error code.",
    );
    for (code, count) in &s.produce_errors {
        let _ = writeln!(out, "flo_produce_errors_total{{code=\"{code:?}\"}} {count}");
    }
    single(
        out,
        "flo_sync_failures_total",
        "counter",
        "Turns whose appends could not be made durable (their produces got StorageFailure).",
        s.sync_failures,
    );
    single(
        out,
        "flo_fsyncs_total",
        "counter",
        "fdatasyncs of segment data.",
        s.activity.fsync_count,
    );
    histogram(
        out,
        "flo_fsync_duration_seconds",
        "The duration of a turn's group commit (write and fdatasync) when it ran an fdatasync on the reactor thread (fsync always, or a segment seal).",
        &s.fsync_duration,
    );
    histogram(
        out,
        "flo_turn_duration_seconds",
        "The duration of a reactor turn's work (reading, the engine, writing), waiting excluded.",
        &s.turn_duration,
    );
    single(
        out,
        "flo_frames_decoded_total",
        "counter",
        "Frame units decoded from all connections (a batch counts as its events, a conditional produce also the work of its namespace lookup).",
        s.frames_decoded,
    );
    single(
        out,
        "flo_turn_frames_decoded_max",
        "gauge",
        "The most frame units decoded in one reactor turn since start (bounded by frames_per_turn_total_max, plus one frame's units).",
        s.turn_frames_max,
    );
    single(
        out,
        "flo_listing_records_sorted_total",
        "counter",
        "Records of the open segment sorted by name for namespace listings.",
        s.activity.listing_records_sorted,
    );
    single(
        out,
        "flo_turn_listing_records_sorted_max",
        "gauge",
        "The most records of the open segment sorted by name for namespace listings in one reactor turn since start.",
        s.turn_listing_sorted_max,
    );
}

fn render_log(out: &mut String, s: &MetricsSnapshot) {
    single(
        out,
        "flo_log_events",
        "gauge",
        "Events in the log (retained).",
        s.log.event_count,
    );
    single(
        out,
        "flo_log_size_bytes",
        "gauge",
        "Bytes of segment files.",
        s.log.byte_count,
    );
    single(
        out,
        "flo_log_segments",
        "gauge",
        "Segment files.",
        s.log.segment_count,
    );
    single(
        out,
        "flo_cache_size_bytes",
        "gauge",
        "Bytes of the newest events kept in memory.",
        s.log.cache_bytes,
    );
    single(
        out,
        "flo_cache_limit_bytes",
        "gauge",
        "The cache's limit (--max-cache-memory).",
        s.cache_bytes_max,
    );
    family(
        out,
        "flo_log_reads_total",
        "counter",
        "Records read from the log, by where they came from (cache or disk).",
    );
    let _ = writeln!(
        out,
        "flo_log_reads_total{{source=\"cache\"}} {}",
        s.activity.cache_reads
    );
    let _ = writeln!(
        out,
        "flo_log_reads_total{{source=\"disk\"}} {}",
        s.activity.disk_reads
    );
    let reads = s.activity.cache_reads + s.activity.disk_reads;
    let ratio = if reads == 0 {
        1.0
    } else {
        s.activity.cache_reads as f64 / reads as f64
    };
    single(
        out,
        "flo_cache_hit_ratio",
        "gauge",
        "The share of records read from the cache since start (1 before any read).",
        ratio,
    );
    single(
        out,
        "flo_retention_deleted_events_total",
        "counter",
        "Events deleted by retention.",
        s.activity.retention_deleted_events,
    );
    single(
        out,
        "flo_retention_deleted_segments_total",
        "counter",
        "Segments deleted by retention.",
        s.activity.retention_deleted_segments,
    );
}

fn render_traffic(out: &mut String, s: &MetricsSnapshot, reactor: &ReactorFigures) {
    family(
        out,
        "flo_connections",
        "gauge",
        "Open connections, by kind (client, peer, other: before the handshake or closing).",
    );
    let _ = writeln!(
        out,
        "flo_connections{{kind=\"client\"}} {}",
        s.client_connections
    );
    let _ = writeln!(
        out,
        "flo_connections{{kind=\"peer\"}} {}",
        s.peer_connections
    );
    let _ = writeln!(
        out,
        "flo_connections{{kind=\"other\"}} {}",
        s.other_connections
    );
    single(
        out,
        "flo_subscriptions",
        "gauge",
        "Open client subscriptions.",
        s.subscriptions,
    );
    single(
        out,
        "flo_events_delivered_total",
        "counter",
        "Events sent to consumers.",
        s.events_delivered,
    );
    single(
        out,
        "flo_received_bytes_total",
        "counter",
        "Protocol bytes received from clients and peers (after TLS).",
        s.bytes_received,
    );
    single(
        out,
        "flo_sent_bytes_total",
        "counter",
        "Protocol bytes sent to clients and peers (before TLS).",
        s.bytes_sent,
    );
    single(
        out,
        "flo_socket_reads_total",
        "counter",
        "Read system calls on plaintext client and peer sockets.",
        reactor.socket_reads.calls,
    );
    single(
        out,
        "flo_socket_reads_would_block_total",
        "counter",
        "Of those, the reads that found nothing to read (WouldBlock).",
        reactor.socket_reads.would_block,
    );
    single(
        out,
        "flo_lingering_connections",
        "gauge",
        "Connections the server closed or refused that linger to deliver what they are owed.",
        reactor.lingering.connections,
    );
    single(
        out,
        "flo_lingering_output_bytes",
        "gauge",
        "Owed output those connections still hold (counted in --max-clients-memory).",
        reactor.lingering.output_bytes,
    );
    single(
        out,
        "flo_lingering_cut_total",
        "counter",
        "Lingering connections cut with their owed output to stay under --max-clients-memory.",
        reactor.lingering.cut,
    );
    single(
        out,
        "flo_metrics_connections",
        "gauge",
        "Open connections to this endpoint.",
        reactor.endpoint.connections,
    );
    single(
        out,
        "flo_metrics_connections_refused_total",
        "counter",
        "Connections to this endpoint closed at once at its connection limit.",
        reactor.endpoint.refused,
    );
    single(
        out,
        "flo_metrics_connections_timed_out_total",
        "counter",
        "Connections to this endpoint dropped at their deadline.",
        reactor.endpoint.timed_out,
    );
}

fn render_cluster(out: &mut String, s: &MetricsSnapshot) {
    family(
        out,
        "flo_peer_lag_records",
        "gauge",
        "Records of this node's log not yet sent to the peer.",
    );
    for peer in &s.peers {
        let _ = writeln!(
            out,
            "flo_peer_lag_records{{actor=\"{}\",addr=\"{}\"}} {}",
            peer.actor_id,
            label(&peer.addr),
            peer.lag
        );
    }
    family(
        out,
        "flo_peer_state",
        "gauge",
        "1 for the peer's current state (connected, connecting, backing_off), 0 for the others.",
    );
    for peer in &s.peers {
        for (state, name) in [
            (MemberState::Connected, "connected"),
            (MemberState::Connecting, "connecting"),
            (MemberState::BackingOff, "backing_off"),
        ] {
            let value = u8::from(peer.state == state);
            let _ = writeln!(
                out,
                "flo_peer_state{{actor=\"{}\",addr=\"{}\",state=\"{name}\"}} {value}",
                peer.actor_id,
                label(&peer.addr)
            );
        }
    }
    single(
        out,
        "flo_peer_violations_total",
        "counter",
        "Peer connections closed for breaking the peer protocol (credit beyond its window, an event below its own clock promise).",
        s.peer_violations,
    );
    single(
        out,
        "flo_peer_purges_refused_total",
        "counter",
        "Purges from peers ignored under --peer-purges refuse.",
        s.peer_purges_refused,
    );
}

fn render_order(out: &mut String, s: &MetricsSnapshot) {
    let order = &s.order;
    single(
        out,
        "flo_id_order_stable_clock",
        "gauge",
        "Id-order subscriptions deliver events up to this counter.",
        order.stable_clock,
    );
    family(
        out,
        "flo_id_order_held_seconds",
        "gauge",
        "For how long the member named holds id order back without its clock moving (no sample when nothing holds it).",
    );
    if let Some(holder) = &order.held_by {
        let _ = writeln!(
            out,
            "flo_id_order_held_seconds{{actor=\"{}\",addr=\"{}\"}} {}",
            holder.actor_id,
            label(&holder.addr),
            seconds(holder.held_ms.saturating_mul(1000))
        );
    }
    single(
        out,
        "flo_id_order_waiting_subscriptions",
        "gauge",
        "Id-order subscriptions whose next event waits for the stable clock.",
        order.waiting_subscriptions,
    );
    single(
        out,
        "flo_id_order_waiting_events",
        "gauge",
        "Events id-order subscriptions hold in their reorder buffers, waiting.",
        order.waiting_events,
    );
    single(
        out,
        "flo_id_order_waiting_seconds",
        "gauge",
        "How long the longest-waiting id-order subscription has waited (OrderStalled at --order-stall-timeout).",
        seconds(order.waiting_ms.saturating_mul(1000)),
    );
    single(
        out,
        "flo_id_order_delivered_late_total",
        "counter",
        "Events id-order subscriptions delivered after a larger id (docs/clustering.md, Id order: the exception, after a catch-up time-out).",
        s.events_delivered_late,
    );
}

fn render_groups(out: &mut String, s: &MetricsSnapshot) {
    family(
        out,
        "flo_group_pending_events",
        "gauge",
        "Events a consumer group delivered and has not had acknowledged.",
    );
    for group in &s.groups {
        let _ = writeln!(
            out,
            "flo_group_pending_events{{group=\"{}\"}} {}",
            label(&group.name),
            group.pending
        );
    }
    family(
        out,
        "flo_group_parked_events",
        "gauge",
        "Events a consumer group parked after their last delivery.",
    );
    for group in &s.groups {
        let _ = writeln!(
            out,
            "flo_group_parked_events{{group=\"{}\"}} {}",
            label(&group.name),
            group.parked
        );
    }
    family(
        out,
        "flo_group_lag_records",
        "gauge",
        "Log records a consumer group has not looked at yet (from its delivered position to the durable end): an upper bound on matching events not yet delivered.",
    );
    for group in &s.groups {
        let _ = writeln!(
            out,
            "flo_group_lag_records{{group=\"{}\"}} {}",
            label(&group.name),
            group.lag
        );
    }
    family(
        out,
        "flo_group_oldest_pending_age_seconds",
        "gauge",
        "Since the first delivery of a consumer group's oldest pending event (0 with none pending).",
    );
    for group in &s.groups {
        let _ = writeln!(
            out,
            "flo_group_oldest_pending_age_seconds{{group=\"{}\"}} {}",
            label(&group.name),
            seconds(group.oldest_pending_age_ms.saturating_mul(1000))
        );
    }
    family(
        out,
        "flo_group_members",
        "gauge",
        "Connected members of a consumer group.",
    );
    for group in &s.groups {
        let _ = writeln!(
            out,
            "flo_group_members{{group=\"{}\"}} {}",
            label(&group.name),
            group.members
        );
    }
}

fn render_process(out: &mut String, reactor: &ReactorFigures) {
    let process = &reactor.process;
    if let Some(bytes) = process.resident_bytes {
        single(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            bytes,
        );
    }
    if let Some(count) = process.open_fds {
        single(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            count,
        );
    }
    if let Some(count) = process.fds_max {
        single(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            count,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histograms_end_with_inf_sum_and_count() {
        let mut h = Histogram::default();
        h.observe(1_500);
        let mut out = String::new();
        histogram(&mut out, "x_seconds", "help", &h);
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(out.contains("x_seconds_bucket{le=\"0.0025\"} 1\n"));
        assert!(out.contains(
            "x_seconds_bucket{le=\"+Inf\"} 1\nx_seconds_sum 0.0015\nx_seconds_count 1\n"
        ));
    }
}
