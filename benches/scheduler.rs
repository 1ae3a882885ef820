//! Scheduler benchmark (stub, replaced below).
fn main() {}
