//! The `grafolean-ping-bot` binary. It is wired to the SDK's runtime later;
//! for now it only says so.

fn main() {
    eprintln!(
        "grafolean-ping-bot {}: the runtime is not wired in yet; see the crate's library",
        env!("CARGO_PKG_VERSION")
    );
}
