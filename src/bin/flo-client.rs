//! The `flo-client` command-line client.

fn main() {
    eprintln!("flo-client: not built yet");
    std::process::exit(1);
}
