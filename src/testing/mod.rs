//! TODO: the fake Grafolean backend
