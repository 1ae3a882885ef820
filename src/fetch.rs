//! TODO: fetch
