//! The layering invariants of ARCHITECTURE.md, stated as absences and checked by reading the
//! source tree: only reactor/ imports mio, only storage/ touches files, and the engine,
//! protocol and storage never read the clock or touch sockets. A change that breaks a rule
//! fails here with the file and line.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every (file, line number, line) under src/ whose path is not under an allowed prefix and
/// whose code (comments stripped) contains `needle`.
fn offenders(needle: &str, allowed: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if allowed.iter().any(|prefix| relative.starts_with(prefix)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(needle) {
                found.push(format!("{relative}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn only_the_reactor_imports_mio() {
    assert_eq!(offenders("mio::", &["src/reactor/"]), Vec::<String>::new());
}

#[test]
fn only_storage_touches_files() {
    // On the server side only storage touches files; the binaries may open a log file and the
    // client library saves cursors for its users.
    let allowed = ["src/storage/", "src/bin/", "src/client/"];
    for needle in ["std::fs", "File::", "OpenOptions"] {
        assert_eq!(
            offenders(needle, &allowed),
            Vec::<String>::new(),
            "{needle}"
        );
    }
}

#[test]
fn nothing_reads_the_clock_but_the_reactor_and_the_tools() {
    // The reactor gives the engine `now`; the client, the benchmark tools and the binaries
    // measure time for themselves.
    let allowed = ["src/reactor/", "src/client/", "src/bench/", "src/bin/"];
    for needle in ["SystemTime::now", "Instant::now"] {
        assert_eq!(
            offenders(needle, &allowed),
            Vec::<String>::new(),
            "{needle}"
        );
    }
}

#[test]
fn the_engine_protocol_and_storage_never_touch_sockets() {
    for needle in ["TcpStream", "TcpListener", "std::net::"] {
        let hits: Vec<String> = offenders(
            needle,
            &[
                "src/reactor/",
                "src/client/",
                "src/bench/",
                "src/bin/",
                "src/config.rs",
            ],
        );
        // A `SocketAddr` is a value (the engine names the peers it wants dialed), not a
        // socket; every other item of std::net is.
        let hits: Vec<String> = hits
            .into_iter()
            .filter(|hit| {
                needle != "std::net::"
                    || hit.matches("std::net::").count()
                        != hit.matches("std::net::SocketAddr").count()
            })
            .collect();
        assert_eq!(hits, Vec::<String>::new(), "{needle}");
    }
}
