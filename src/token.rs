//! TODO: token
