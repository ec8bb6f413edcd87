//! `.nsx` build benchmark (not a test): the CPU time of building one segment's namespace index
//! file (`SegmentNames::write_to`, what the `flo-nsx` thread does at each seal) and of the sort
//! alone (`SegmentNames::refresh_name_view` with unbounded work: the listing's name view, the
//! same `records_by_name` sort made in parts of `NAME_VIEW_PART_RECORDS`), for a segment of
//! R records (default 400,000, about a 64 MiB segment of 100-byte events) spread round robin
//! over 1 namespace, 10,000 namespaces and R namespaces (every name distinct), named as
//! `flo-client bench --namespaces N` names them; and the file's bytes per record.
//!
//! Run: `cargo run --release --example nsx_build -- [RECORDS] [REPEATS] [NAMESPACES,...]`
//! (defaults 400000, 7, and the three shapes above; `0` as a namespace count means RECORDS).
//! Prints the median of REPEATS builds of each shape, in thread CPU time.
//!
//! Instructions a record, deterministic on a loaded machine (the lead's measure of the build;
//! BENCHMARKS.md, issue 14, "Index build at seal"): count only `write_to` under callgrind, one
//! build of one shape, e.g. 200,000 records of distinct names:
//! `ci/callgrind_nsx_build.sh 200000 0`.

use std::time::Duration;

use flo::storage::{BuildBuffers, SegmentNames};

fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for clock_gettime to fill.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(result, 0, "clock_gettime");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args.next().map_or(400_000, |a| a.parse().expect("RECORDS"));
    let repeats: usize = args.next().map_or(7, |a| a.parse().expect("REPEATS"));
    let shapes: Vec<u64> = args.next().map_or(vec![1, 10_000, records], |a| {
        (a.split(','))
            .map(|n| match n.parse().expect("NAMESPACES") {
                0 => records,
                n => n,
            })
            .collect()
    });
    let dir = tempfile::tempdir_in(".")?;
    let mut buffers = BuildBuffers::default();
    for namespaces in shapes {
        let mut names = SegmentNames::empty(0);
        let size = 160u64;
        for i in 0..records {
            let name = format!("/bench/4242_0/{}", i % namespaces);
            // Told when the name is the record before's, as the write path tells it (within
            // one write; here every record is in one).
            let repeated = i > 0 && namespaces == 1;
            names.observe_next_at(&name, i * size, size, repeated);
        }
        let (mut builds, mut sorts, mut file_size) = (Vec::new(), Vec::new(), 0);
        for repeat in 0..repeats {
            let path = dir.path().join(format!("{repeat}.nsx"));
            let file = std::fs::File::create(&path)?;
            let start = thread_cpu();
            let header = names.write_to(7, &file, &mut buffers)?;
            builds.push(thread_cpu() - start);
            file_size = header.file_size;
            std::fs::remove_file(&path)?;
            let mut fresh = names.clone();
            let start = thread_cpu();
            fresh.refresh_name_view(&mut u64::MAX.clone());
            sorts.push(thread_cpu() - start);
        }
        let (build, sort) = (median(builds), median(sorts));
        println!(
            "{records} records, {namespaces} namespaces: build {:.1} ms ({:.0} ns a record), \
             of which the sort {:.1} ms ({:.0} ns a record); {file_size} bytes ({:.1} a record)",
            build.as_secs_f64() * 1e3,
            build.as_nanos() as f64 / records as f64,
            sort.as_secs_f64() * 1e3,
            sort.as_nanos() as f64 / records as f64,
            file_size as f64 / records as f64,
        );
    }
    Ok(())
}
