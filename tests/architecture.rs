//! The layering invariants of ARCHITECTURE.md, stated as absences and checked by reading the
//! source tree: only reactor/ imports mio, only storage/ touches files, and the engine,
//! protocol and storage never read the clock or touch sockets. Each rule is checked twice: on the
//! paths every `use` item imports (braces expanded, so `use std::{fs, io}` counts as `std::fs`)
//! and on paths written out in the code. A change that breaks a rule fails here with the file.

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

/// The files under src/ (relative paths) that are not under an allowed prefix, with their text.
fn checked_files(allowed: &[&str]) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut checked = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .expect("under the manifest directory")
            .to_string_lossy()
            .to_string();
        if allowed.iter().any(|prefix| relative.starts_with(prefix)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source is UTF-8");
        checked.push((relative, text));
    }
    checked
}

/// Every (file, line number, line) under src/ whose path is not under an allowed prefix and
/// whose code (comments stripped) contains `needle`: catches paths written out in the code,
/// such as `std::fs::File::open(..)`.
fn offenders(needle: &str, allowed: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (relative, text) in checked_files(allowed) {
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(needle) {
                found.push(format!("{relative}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    found
}

/// The paths a `use` tree names, braces expanded and renames dropped:
/// `std::{fs, io::{self, Read as _}}` gives `std::fs`, `std::io`, `std::io::Read`.
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let mut paths = Vec::new();
    expand_into("", &tree, &mut paths);
    paths
}

fn expand_into(prefix: &str, tree: &str, paths: &mut Vec<String>) {
    let join = |tail: &str| match (prefix.is_empty(), tail) {
        (true, _) => tail.to_string(),
        (false, "self") => prefix.to_string(),
        (false, _) => format!("{prefix}::{tail}"),
    };
    match tree.find('{') {
        Some(open) => {
            let head = tree[..open].trim_end_matches("::");
            let close = tree.rfind('}').unwrap_or(tree.len());
            let inner = &tree[(open + 1).min(close)..close];
            let nested = join(head);
            for item in split_top_level(inner) {
                expand_into(&nested, item, paths);
            }
        }
        None if !tree.is_empty() => {
            let path = tree.split("as").next().unwrap_or(tree);
            paths.push(join(path.trim_end_matches("::")));
        }
        None => {}
    }
}

/// Splits `a, b::{c, d}, e` at the commas outside braces.
fn split_top_level(list: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (index, character) in list.char_indices() {
        match character {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&list[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    items
}

/// Every path imported by a `use` item (an item is a line that starts with `use`, `pub use` or
/// `pub(..) use`, up to its `;`, comments stripped) in the files under src/ not under an
/// allowed prefix, as (file, path).
fn imports(allowed: &[&str]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (relative, text) in checked_files(allowed) {
        let mut item: Option<String> = None;
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("").trim();
            let mut current = match item.take() {
                Some(open) => open + " " + code,
                None => match use_item_start(code) {
                    Some(tree) => tree.to_string(),
                    None => continue,
                },
            };
            match current.find(';') {
                Some(end) => {
                    current.truncate(end);
                    for path in expand_use_tree(&current) {
                        found.push((relative.clone(), path.trim_start_matches("::").to_string()));
                    }
                }
                None => item = Some(current),
            }
        }
    }
    found
}

/// The use tree of a line that starts a `use` item.
fn use_item_start(code: &str) -> Option<&str> {
    let code = match code.strip_prefix("pub") {
        Some(rest) if rest.starts_with('(') => &rest[rest.find(')')? + 1..],
        Some(rest) => rest,
        None => code,
    };
    code.trim_start().strip_prefix("use ")
}

/// The imports whose path starts with one of `prefixes`, as `file: path`.
fn imported(prefixes: &[&str], allowed: &[&str]) -> Vec<String> {
    imports(allowed)
        .into_iter()
        .filter(|(_, path)| {
            prefixes
                .iter()
                .any(|prefix| path == prefix || path.starts_with(&format!("{prefix}::")))
        })
        .map(|(file, path)| format!("{file}: use {path}"))
        .collect()
}

#[test]
fn use_trees_are_read_as_the_compiler_reads_them() {
    assert_eq!(
        expand_use_tree("std::{fs, io::{self, Read as _}, net::TcpStream as Tcp}"),
        ["std::fs", "std::io", "std::io::Read", "std::net::TcpStream"]
    );
    assert_eq!(expand_use_tree("mio::net::*"), ["mio::net::*"]);
}

#[test]
fn only_the_reactor_imports_mio() {
    assert_eq!(offenders("mio::", &["src/reactor/"]), Vec::<String>::new());
    assert_eq!(imported(&["mio"], &["src/reactor/"]), Vec::<String>::new());
}

#[test]
fn only_storage_touches_files() {
    // On the server side only storage touches files; the binaries may open a log file and the
    // client library saves cursors for its users.
    let allowed = ["src/storage/", "src/bin/", "src/client/"];
    assert_eq!(imported(&["std::fs"], &allowed), Vec::<String>::new());
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
    // The reactor gives the engine `now`; the client and the binaries (`flo-client bench`)
    // measure time for themselves. The benchmark load runner is outside the library, in
    // clients/bench.
    let allowed = ["src/reactor/", "src/client/", "src/bin/"];
    let clocks = ["std::time::Instant", "std::time::SystemTime"];
    assert_eq!(imported(&clocks, &allowed), Vec::<String>::new());
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
            &["src/reactor/", "src/client/", "src/bin/", "src/config.rs"],
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
    let allowed = ["src/reactor/", "src/client/", "src/bin/", "src/config.rs"];
    let sockets: Vec<String> = imported(&["std::net"], &allowed)
        .into_iter()
        .filter(|hit| !hit.ends_with("use std::net::SocketAddr"))
        .collect();
    assert_eq!(sockets, Vec::<String>::new());
}

#[test]
fn the_library_holds_no_benchmark_code() {
    // The load runner, its report and the Redis and NATS drivers are the `flo-bench` crate in
    // clients/bench; `flo-client bench` drives flo through the client library.
    assert!(
        !Path::new("src/bench").exists(),
        "src/bench is back: benchmark code belongs in clients/bench"
    );
    let offenders = offenders("mod bench", &["src/bin/"]);
    assert_eq!(offenders, Vec::<String>::new());
}
