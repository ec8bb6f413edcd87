//! The `flo` binary's configuration surface without starting a server: `--config FILE` (keys
//! are the long flag names, flags override them, unknown keys are errors naming the key),
//! `--check-config` (prints the effective settings as a file `--config` accepts; exit 0 or 1),
//! and the generated completions and man page.

use std::path::Path;
use std::process::{Command, Output};

fn flo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flo"))
        .args(args)
        .output()
        .expect("run flo")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config file");
    path.display().to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn flags_override_the_file_and_the_printed_configuration_reads_back() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = write(
        dir.path(),
        "flo.toml",
        "data-dir = \"/var/lib/flo\"\nport = 4000\nmax-age = \"7d\"\nfsync = \"interval:100\"\n\
         peer-addr = [\"127.0.0.1:3001\", \"127.0.0.1:3002\"]\nmax-connections = 100\n",
    );
    let output = flo(&["--config", &file, "--port", "5000", "--check-config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    for line in [
        "data-dir = \"/var/lib/flo\"",
        "port = 5000",
        "max-age = \"7d\"",
        "fsync = \"interval:100\"",
        "peer-addr = [\"127.0.0.1:3001\", \"127.0.0.1:3002\"]",
        "max-connections = 100",
        "max-cache-memory = \"64M\"",
        "# max-events: not set",
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "no {line:?} in:\n{printed}"
        );
    }
    // A repeated flag replaces the file's whole list.
    let output = flo(&[
        "--config",
        &file,
        "--peer-addr",
        "127.0.0.1:4001",
        "--check-config",
    ]);
    assert!(
        stdout(&output).contains("peer-addr = [\"127.0.0.1:4001\"]"),
        "{}",
        stdout(&output)
    );
    // What --check-config prints is itself a configuration file meaning the same.
    let again = write(dir.path(), "printed.toml", &printed);
    let output = flo(&["--config", &again, "--check-config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), printed);
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = write(dir.path(), "flo.toml", "port = 4000\nmax-conections = 5\n");
    let output = flo(&["--config", &file, "--check-config"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("unknown key \"max-conections\""),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn bad_values_and_invalid_settings_exit_1_with_one_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cases = [
        ("port = \"many\"\n", "'--port <PORT>'"),
        ("repair = true\n", "only accepted on the command line"),
        ("port = [1, 2]\n", "must be a string or a number"),
        ("port = \n", "line 1"),
        (
            "max-connections = 0\n",
            "max connections must be at least 1",
        ),
    ];
    for (text, expected) in cases {
        let file = write(dir.path(), "flo.toml", text);
        let output = flo(&["--config", &file, "--check-config"]);
        assert_eq!(output.status.code(), Some(1), "{text:?}");
        let message = stderr(&output);
        assert!(message.contains(expected), "{text:?}: {message}");
        assert_eq!(message.lines().count(), 1, "{text:?}: {message}");
    }
    let output = flo(&["--config", "/nonexistent/flo.toml", "--check-config"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("/nonexistent/flo.toml"));
}

/// `--check-config` refuses what a start refuses before it opens the data directory: here a
/// non-loopback bind without an auth file (the example file of docs/operations.md had one, and
/// the check passed it), and auth or TLS files that cannot be read.
#[test]
fn check_config_refuses_what_a_start_refuses() {
    let output = flo(&["--bind", "0.0.0.0", "--check-config"]);
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("refusing to listen on 0.0.0.0 without client authentication"),
        "{}",
        stderr(&output)
    );
    let output = flo(&["--bind", "0.0.0.0", "--insecure-no-auth", "--check-config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("missing.toml").display().to_string();
    let output = flo(&[
        "--bind",
        "0.0.0.0",
        "--auth-file",
        &missing,
        "--check-config",
    ]);
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("missing.toml"),
        "{}",
        stderr(&output)
    );
    let bad = write(
        dir.path(),
        "auth.toml",
        "[principals.a]\nproduce = [\"/x\"]\n",
    );
    let output = flo(&["--auth-file", &bad, "--check-config"]);
    assert!(!output.status.success(), "{}", stdout(&output));
    let no_cert = [
        "--tls-cert",
        &missing,
        "--tls-key",
        &missing,
        "--check-config",
    ];
    let output = flo(&no_cert);
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("could not read"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_cluster_secret_is_not_printed() {
    let output = flo(&["--cluster-secret", "hunter2", "--check-config"]);
    assert!(output.status.success());
    assert!(!stdout(&output).contains("hunter2"), "{}", stdout(&output));
    assert!(stdout(&output).contains("# cluster-secret: set (not shown)"));
}

#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let output = flo(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        assert!(stdout(&output).contains("--max-connections"), "{shell}");
    }
    let output = flo(&["man"]);
    assert!(output.status.success());
    assert!(stdout(&output).contains(".TH flo 1"));
    assert!(stdout(&output).contains("max\\-connections"));
}

#[test]
fn retention_rules_are_checked_and_printed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "flo.toml",
        "retention-rule = [\"/metrics/** keep 7d\", \"/debug/* keep 12h\"]\n",
    );
    let output = flo(&["--config", &file, "--check-config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("retention-rule = [\"/metrics/** keep 7d\", \"/debug/* keep 12h\"]"),
        "{text}"
    );
    assert!(text.contains("max-purge-rules = 256"), "{text}");
    for bad in [
        "/metrics/** 7d",
        "metrics keep 7d",
        "/m keep soon",
        "/m keep 0s",
    ] {
        let output = flo(&["--retention-rule", bad, "--check-config"]);
        assert!(!output.status.success(), "{bad}: {}", stdout(&output));
        assert_eq!(
            stderr(&output).lines().count(),
            1,
            "{bad}: {}",
            stderr(&output)
        );
    }
}

/// `flo completions bash | head` and `flo man | head`: a reader that closed the pipe is not an
/// error, and neither binary panics (clap_complete's own writer panicked on the closed pipe).
#[test]
fn a_closed_pipe_after_completions_or_man_is_not_a_panic() {
    let runs: [(&str, &[&str]); 4] = [
        (env!("CARGO_BIN_EXE_flo"), &["completions", "bash"]),
        (env!("CARGO_BIN_EXE_flo"), &["man"]),
        (env!("CARGO_BIN_EXE_flo-client"), &["completions", "bash"]),
        (env!("CARGO_BIN_EXE_flo-client"), &["man"]),
    ];
    for (binary, args) in runs {
        // The read end is closed before the program starts: every write meets EPIPE.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let output = Command::new(binary)
            .args(args)
            .stdout(writer)
            .output()
            .expect("run");
        let message = stderr(&output);
        assert!(
            !message.contains("panicked"),
            "{binary} {args:?}: {message}"
        );
        assert!(output.status.success(), "{binary} {args:?}: {message}");
    }
}

/// Attack round 5, finding 4: a cache larger than the system can give started, and the first
/// produce aborted the process (an allocation failure) before acknowledging. The cache's memory
/// is reserved at start-up, so such a value stops the start with one clear line.
#[test]
fn a_cache_the_system_cannot_reserve_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // 200,000 GiB: beyond the address space of a 64-bit process on x86-64 and aarch64.
    let mut child = Command::new(env!("CARGO_BIN_EXE_flo"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--port", "0", "--insecure-no-auth"])
        .args(["--max-cache-memory", "200000G"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run flo");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("wait for flo").is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().expect("stop flo");
            child.wait().expect("reap flo");
            panic!("flo started with a cache it cannot reserve");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("flo's output");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(
            "reserving 214748364800000 bytes of memory for the event cache (--max-cache-memory)"
        ),
        "{message}"
    );
}

/// Walkthrough (session 9): flag values refused without saying what was expected ("attempted
/// to convert a string that doesn't match an existing log level", "invalid socket address
/// syntax", "invalid IP address syntax"), and a data directory that is a file ("create
/// /dev/null: File exists").
#[test]
fn bad_flag_values_say_what_is_expected() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--log-level", "loud"],
            "invalid log level \"loud\": expected error, warn, info, debug or trace",
        ),
        (&["--log-module", "flo=loud"], "expected error, warn, info"),
        (
            &["--peer-addr", "nohost"],
            "expected IP:PORT such as 127.0.0.1:3001",
        ),
        (&["--metrics-addr", "9100"], "expected IP:PORT"),
        (&["--bind", "0.0.0.0:3000"], "(no port: that is --port)"),
        (&["--peer-purges", "maybe"], "expected accept or refuse"),
    ];
    for (args, expected) in cases {
        let output = flo(&[args, &["--check-config"]].concat());
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let message = stderr(&output);
        assert!(message.contains(expected), "{args:?}: {message}");
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = write(dir.path(), "not-a-directory", "");
    let output = flo(&["-d", &file, "-p", "0"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("(it exists and is not a directory)"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

/// Walkthrough (session 9): `--check-config` printed no line for eleven settings (TLS files,
/// replicas, id-order buffer and stall time-out, peer credit and dialing), so an operator
/// could not see them, and its output was no complete configuration file. Every long flag of
/// `flo --help` but the command-line-only ones is now a key of the output (or a comment naming
/// it when unset), and the new keys read back.
#[test]
fn check_config_prints_every_setting() {
    let help = stdout(&flo(&["--help"]));
    let flags: Vec<&str> = help
        .lines()
        // Option lines are indented by at most 6 spaces; their descriptions by 10.
        .filter(|line| {
            line.len() - line.trim_start().len() <= 6 && line.trim_start().starts_with('-')
        })
        .filter_map(|line| line.trim_start().split(' ').find(|w| w.starts_with("--")))
        .map(|flag| flag.trim_start_matches("--").trim_end_matches(','))
        .filter(|flag| !["config", "check-config", "repair", "help", "version"].contains(flag))
        .collect();
    assert!(flags.len() > 40, "{flags:?}");
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = write(
        dir.path(),
        "flo.toml",
        "peer-addr = [\"127.0.0.1:3001\"]\nmin-replicas = 2\nreplication-timeout = \"9s\"\n\
         order-buffer-size = \"2M\"\norder-stall-timeout = \"1m\"\npeer-credit-window = 64\n\
         dial-backoff-initial = \"200ms\"\ndial-backoff-max = \"20s\"\nconnect-timeout = \"3s\"\n\
         peer-purges = \"refuse\"\n",
    );
    let output = flo(&["--config", &file, "--check-config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    for flag in flags {
        let named = printed.lines().any(|line| {
            line.starts_with(&format!("{flag} = ")) || line.starts_with(&format!("# {flag}: "))
        });
        assert!(named, "--check-config names no {flag:?}:\n{printed}");
    }
    for line in [
        "min-replicas = 2",
        "replication-timeout = \"9s\"",
        "order-buffer-size = \"2M\"",
        "order-stall-timeout = \"1m\"",
        "peer-credit-window = 64",
        "dial-backoff-initial = \"200ms\"",
        "dial-backoff-max = \"20s\"",
        "connect-timeout = \"3s\"",
        "peer-purges = \"refuse\"",
        "# tls-cert: not set",
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "no {line:?} in:\n{printed}"
        );
    }
    let again = write(dir.path(), "printed.toml", &printed);
    let output = flo(&["--config", &again, "--check-config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), printed);
}

/// A second server on a port already taken (the default 3000 on a second `flo` is the usual
/// case): exit 1, and the error line says what to do (walk11: it said only "Address already
/// in use (os error 98)").
#[test]
fn a_port_in_use_exits_1_saying_to_choose_another() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("its address").port().to_string();
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().display().to_string();
    let output = flo(&["-d", &data, "-p", &port]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("flo: could not listen on 127.0.0.1:{port}: "))
            && last.ends_with("stop it or choose another port with -p)"),
        "{text}"
    );
}
