//! TODO: scheduler
