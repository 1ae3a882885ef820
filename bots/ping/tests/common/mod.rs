//! Helpers shared by the integration tests and the benchmark.

pub mod hanging;
pub mod netns;
pub mod process;
pub mod standalone;
