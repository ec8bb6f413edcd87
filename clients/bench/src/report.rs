//! The figures of one benchmark run, as text for people and as one JSON object for scripts.
//!
//! The JSON is built with serde_json. `ci/bench.sh` and `ci/bench_report.py` read these field
//! names; `flo-client bench` prints the same object, so flo and its peers land in one table.

use std::time::Duration;

use serde::Serialize;

use super::{BenchSpec, Histogram, LatencySummary};

/// One run's figures. Only acknowledged (or, for reads, received) events are counted.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    pub target: String,
    /// `produce`, `read`, `group` (live) or `group-drain` (a stored backlog).
    pub kind: &'static str,
    pub connections: usize,
    pub window: usize,
    pub event_size: usize,
    pub rate: Option<u64>,
    pub events: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Acknowledgement latency for produces; time per batch for reads.
    pub latency: LatencySummary,
    /// Produce to a tailing consumer, when one was measured; for a group run, produce to
    /// the member that received the event.
    pub end_to_end: Option<LatencySummary>,
    /// Group members (0 for other runs).
    pub members: usize,
    /// Group runs: produce to the moment the receiving member's ack was sent.
    pub acked: Option<LatencySummary>,
    /// Runs that stamp payloads (end-to-end, live group): from each produce's due time to the
    /// start of the write that sent it, the load generator's own delay inside the latencies
    /// that count from the due time.
    pub send_late: Option<LatencySummary>,
}

impl BenchResult {
    pub fn produce(
        target: String,
        spec: &BenchSpec,
        latency: Histogram,
        elapsed: Duration,
    ) -> BenchResult {
        let events = latency.count();
        BenchResult {
            target,
            kind: "produce",
            connections: spec.connections,
            window: spec.window,
            event_size: spec.event_size,
            rate: spec.rate,
            events,
            bytes: events * spec.event_size as u64,
            elapsed,
            latency: latency.summary(),
            end_to_end: None,
            members: 0,
            acked: None,
            send_late: None,
        }
    }

    /// A group run (`kind` `group` or `group-drain`): `events` acknowledged deliveries over
    /// `elapsed`; `latency` is the producers' acknowledgement latency.
    pub fn group(
        target: String,
        kind: &'static str,
        spec: &BenchSpec,
        members: usize,
        events: u64,
        produce_latency: Histogram,
        elapsed: Duration,
    ) -> BenchResult {
        BenchResult {
            kind,
            members,
            events,
            bytes: events * spec.event_size as u64,
            elapsed,
            ..BenchResult::produce(target, spec, produce_latency, elapsed)
        }
    }

    pub fn read(
        target: String,
        event_size: usize,
        events: u64,
        batch_latency: Histogram,
        elapsed: Duration,
    ) -> BenchResult {
        BenchResult {
            target,
            kind: "read",
            connections: 1,
            window: 1,
            event_size,
            rate: None,
            events,
            bytes: events * event_size as u64,
            elapsed,
            latency: batch_latency.summary(),
            end_to_end: None,
            members: 0,
            acked: None,
            send_late: None,
        }
    }

    pub fn events_per_second(&self) -> f64 {
        per_second(self.events as f64, self.elapsed)
    }

    /// Payload megabytes (10^6 bytes) per second.
    pub fn megabytes_per_second(&self) -> f64 {
        per_second(self.bytes as f64 / 1e6, self.elapsed)
    }

    /// One line of JSON, latencies in microseconds.
    pub fn to_json(&self) -> String {
        let latency = micros(Some(&self.latency));
        let end_to_end = micros(self.end_to_end.as_ref());
        let acked = micros(self.acked.as_ref());
        let late = micros(self.send_late.as_ref());
        let line = JsonLine {
            target: &self.target,
            kind: self.kind,
            connections: self.connections,
            window: self.window,
            event_size: self.event_size,
            rate: self.rate,
            events: self.events,
            bytes: self.bytes,
            elapsed_s: rounded(self.elapsed.as_secs_f64(), 6),
            events_per_s: rounded(self.events_per_second(), 1),
            mb_per_s: rounded(self.megabytes_per_second(), 3),
            latency_min_us: latency[0],
            latency_p50_us: latency[1],
            latency_p99_us: latency[2],
            latency_p999_us: latency[3],
            latency_max_us: latency[4],
            latency_mean_us: latency[5],
            e2e_min_us: end_to_end[0],
            e2e_p50_us: end_to_end[1],
            e2e_p99_us: end_to_end[2],
            e2e_p999_us: end_to_end[3],
            e2e_max_us: end_to_end[4],
            e2e_mean_us: end_to_end[5],
            members: self.members,
            acked_min_us: acked[0],
            acked_p50_us: acked[1],
            acked_p99_us: acked[2],
            acked_p999_us: acked[3],
            acked_max_us: acked[4],
            acked_mean_us: acked[5],
            late_p50_us: late[1],
            late_p99_us: late[2],
            late_p999_us: late[3],
            late_max_us: late[4],
        };
        // A struct of numbers and strings always serializes.
        serde_json::to_string(&line).expect("the report serializes")
    }

    /// A few lines for a terminal.
    pub fn to_text(&self) -> String {
        let latency_label = match self.kind {
            "read" => "batch time",
            _ => "ack latency",
        };
        let us = |nanos: u64| nanos as f64 / 1e3;
        let line = |label: &str, summary: &LatencySummary| {
            format!(
                "  {label} us: min {:.1}  p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}\n",
                us(summary.min),
                us(summary.p50),
                us(summary.p99),
                us(summary.p999),
                us(summary.max),
                us(summary.mean)
            )
        };
        let latency = &self.latency;
        let rate = match self.rate {
            Some(rate) => format!(", rate {rate}/s"),
            None => String::new(),
        };
        format!(
            "{} {}: {} conn x {} window, {} B events{}\n  {} events in {:.3} s: {:.0} events/s, \
             {:.2} MB/s\n  {} us: min {:.1}  p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  \
             mean {:.1}\n",
            self.target,
            self.kind,
            self.connections,
            self.window,
            self.event_size,
            rate,
            self.events,
            self.elapsed.as_secs_f64(),
            self.events_per_second(),
            self.megabytes_per_second(),
            latency_label,
            us(latency.min),
            us(latency.p50),
            us(latency.p99),
            us(latency.p999),
            us(latency.max),
            us(latency.mean),
        ) + &self
            .end_to_end
            .map(|e2e| {
                let label = if self.members > 0 {
                    "delivered"
                } else {
                    "end-to-end"
                };
                line(label, &e2e)
            })
            .unwrap_or_default()
            + &self
                .acked
                .map(|acked| line("acked", &acked))
                .unwrap_or_default()
            + &self
                .send_late
                .map(|late| line("produce sent after its due time", &late))
                .unwrap_or_default()
            + &if self.members > 0 {
                format!("  {} group members\n", self.members)
            } else {
                String::new()
            }
    }
}

/// The report's JSON object, field by field in the order scripts have always seen.
#[derive(Serialize)]
struct JsonLine<'a> {
    target: &'a str,
    kind: &'a str,
    connections: usize,
    window: usize,
    event_size: usize,
    rate: Option<u64>,
    events: u64,
    bytes: u64,
    elapsed_s: f64,
    events_per_s: f64,
    mb_per_s: f64,
    latency_min_us: Option<f64>,
    latency_p50_us: Option<f64>,
    latency_p99_us: Option<f64>,
    latency_p999_us: Option<f64>,
    latency_max_us: Option<f64>,
    latency_mean_us: Option<f64>,
    e2e_min_us: Option<f64>,
    e2e_p50_us: Option<f64>,
    e2e_p99_us: Option<f64>,
    e2e_p999_us: Option<f64>,
    e2e_max_us: Option<f64>,
    e2e_mean_us: Option<f64>,
    members: usize,
    acked_min_us: Option<f64>,
    acked_p50_us: Option<f64>,
    acked_p99_us: Option<f64>,
    acked_p999_us: Option<f64>,
    acked_max_us: Option<f64>,
    acked_mean_us: Option<f64>,
    late_p50_us: Option<f64>,
    late_p99_us: Option<f64>,
    late_p999_us: Option<f64>,
    late_max_us: Option<f64>,
}

/// min, p50, p99, p99.9, max and mean in microseconds to one decimal, or `None`s when not
/// measured.
fn micros(latency: Option<&LatencySummary>) -> [Option<f64>; 6] {
    let Some(latency) = latency else {
        return [None; 6];
    };
    [
        latency.min,
        latency.p50,
        latency.p99,
        latency.p999,
        latency.max,
        latency.mean,
    ]
    .map(|nanos| Some(rounded(nanos as f64 / 1e3, 1)))
}

/// `value` rounded to `decimals` places, as the report has always printed it.
fn rounded(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn per_second(amount: f64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        amount / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stop;

    fn sample() -> BenchResult {
        let mut histogram = Histogram::new();
        for micros in [10u64, 20, 30, 40] {
            histogram.record(micros * 1_000);
        }
        let spec = BenchSpec {
            connections: 4,
            window: 64,
            event_size: 100,
            stop: Stop::Count(4),
            rate: None,
        };
        BenchResult::produce(
            "redis-\"always\"".to_string(),
            &spec,
            histogram,
            Duration::from_millis(2),
        )
    }

    #[test]
    fn throughput_counts_acknowledged_events() {
        let result = sample();
        assert_eq!(result.events, 4);
        assert_eq!(result.bytes, 400);
        assert!((result.events_per_second() - 2_000.0).abs() < 1e-6);
        assert!((result.megabytes_per_second() - 0.2).abs() < 1e-9);
    }

    #[test]
    fn json_has_every_field_and_escapes_the_name() {
        let json = sample().to_json();
        assert!(json.starts_with("{\"target\":\"redis-\\\"always\\\"\",\"kind\":\"produce\""));
        for field in [
            "\"connections\":4",
            "\"window\":64",
            "\"event_size\":100",
            "\"rate\":null",
            "\"events\":4",
            "\"events_per_s\":2000.0",
            "\"mb_per_s\":0.2",
            "\"latency_min_us\":10.0",
            "\"latency_max_us\":40.0",
            "\"latency_mean_us\":25.0",
            "\"e2e_p99_us\":null",
        ] {
            assert!(json.contains(field), "{field} missing from {json}");
        }
        assert!(json.ends_with('}'));
        assert!(!json.contains('\n'));
    }

    #[test]
    fn the_json_parses_back_with_every_field() {
        let value: serde_json::Value =
            serde_json::from_str(&sample().to_json()).expect("valid JSON");
        assert_eq!(value["target"], "redis-\"always\"");
        assert_eq!(value["latency_p50_us"], 20.0);
        assert!(value["e2e_max_us"].is_null());
    }

    #[test]
    fn text_names_the_run() {
        let text = sample().to_text();
        assert!(text.contains("4 conn x 64 window, 100 B events"), "{text}");
        assert!(text.contains("2000 events/s"), "{text}");
    }
}
