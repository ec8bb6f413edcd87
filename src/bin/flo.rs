//! The `flo` server binary: a thin wrapper around the embedded server.

fn main() {
    eprintln!("flo: server not built yet");
    std::process::exit(1);
}
