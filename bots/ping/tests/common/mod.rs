//! Helpers shared by the integration tests and the benchmark. The bot's
//! process itself (its log, `/metrics`, a SIGTERM stop) is run with the SDK's
//! kit, `grafolean_collector::testing::process`.

pub mod hanging;
pub mod netns;
pub mod standalone;

/// The binary under test.
#[allow(dead_code)]
pub const BIN: &str = env!("CARGO_BIN_EXE_grafolean-ping-bot");
