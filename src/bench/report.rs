//! The figures of one benchmark run, as text for people and as one JSON object for scripts.
//!
//! The JSON is written by hand (serde is an optional feature of the crate). `ci/bench.sh` and
//! `ci/bench_report.py` read these field names; `flo-client bench` should print the same object
//! so that flo and its peers land in one table.

use std::fmt::Write as _;
use std::time::Duration;

use super::{BenchSpec, Histogram, LatencySummary};

/// One run's figures. Only acknowledged (or, for reads, received) events are counted.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    pub target: String,
    /// `produce` or `read`.
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
    /// Produce to a tailing consumer, when one was measured.
    pub end_to_end: Option<LatencySummary>,
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
        let mut out = String::with_capacity(400);
        out.push('{');
        let _ = write!(out, "\"target\":{}", json_string(&self.target));
        let _ = write!(out, ",\"kind\":{}", json_string(self.kind));
        let _ = write!(out, ",\"connections\":{}", self.connections);
        let _ = write!(out, ",\"window\":{}", self.window);
        let _ = write!(out, ",\"event_size\":{}", self.event_size);
        match self.rate {
            Some(rate) => {
                let _ = write!(out, ",\"rate\":{rate}");
            }
            None => out.push_str(",\"rate\":null"),
        }
        let _ = write!(out, ",\"events\":{}", self.events);
        let _ = write!(out, ",\"bytes\":{}", self.bytes);
        let _ = write!(out, ",\"elapsed_s\":{:.6}", self.elapsed.as_secs_f64());
        let _ = write!(out, ",\"events_per_s\":{:.1}", self.events_per_second());
        let _ = write!(out, ",\"mb_per_s\":{:.3}", self.megabytes_per_second());
        write_latency_fields(&mut out, "latency", Some(&self.latency));
        write_latency_fields(&mut out, "e2e", self.end_to_end.as_ref());
        out.push('}');
        out
    }

    /// A few lines for a terminal.
    pub fn to_text(&self) -> String {
        let latency_label = match self.kind {
            "read" => "batch time",
            _ => "ack latency",
        };
        let us = |nanos: u64| nanos as f64 / 1e3;
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
                format!(
                    "  end-to-end us: min {:.1}  p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  \
                     mean {:.1}\n",
                    us(e2e.min),
                    us(e2e.p50),
                    us(e2e.p99),
                    us(e2e.p999),
                    us(e2e.max),
                    us(e2e.mean)
                )
            })
            .unwrap_or_default()
    }
}

/// `,"<prefix>_min_us":..` and the other figures in microseconds, or `null`s.
fn write_latency_fields(out: &mut String, prefix: &str, latency: Option<&LatencySummary>) {
    let fields = latency.map(|latency| {
        [
            latency.min,
            latency.p50,
            latency.p99,
            latency.p999,
            latency.max,
            latency.mean,
        ]
    });
    for (index, name) in ["min", "p50", "p99", "p999", "max", "mean"]
        .iter()
        .enumerate()
    {
        match fields {
            Some(nanos) => {
                let _ = write!(
                    out,
                    ",\"{prefix}_{name}_us\":{:.1}",
                    nanos[index] as f64 / 1e3
                );
            }
            None => {
                let _ = write!(out, ",\"{prefix}_{name}_us\":null");
            }
        }
    }
}

fn per_second(amount: f64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        amount / seconds
    } else {
        0.0
    }
}

/// A JSON string literal with the escapes RFC 8259 requires.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if (control as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", control as u32);
            }
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Stop;

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
            "\"mb_per_s\":0.200",
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
    fn control_characters_are_escaped() {
        assert_eq!(json_string("a\u{1}\tb"), "\"a\\u0001\\tb\"");
    }

    #[test]
    fn text_names_the_run() {
        let text = sample().to_text();
        assert!(text.contains("4 conn x 64 window, 100 B events"), "{text}");
        assert!(text.contains("2000 events/s"), "{text}");
    }
}
