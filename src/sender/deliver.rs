//! One delivery: a POST or PUT of a batch, split in halves when the backend
//! rejects it.
//!
//! A batch that passed validation should never get a 400, but if it does (a
//! rule the SDK does not know about), re-sending it would loop forever. So a
//! rejected batch is bisected until the rejected values are isolated; they are
//! dropped, and the rest is delivered. A 404 rejects the whole batch at once.
//! Any other error stops the delivery, and what was not delivered is handed
//! back to be retried.

use std::ops::Range;
use std::sync::Arc;

use crate::api::{ApiError, Client, PostValue, PutValue};

/// The body of a delivery, shared with the sender's bookkeeping so that an
/// aborted delivery loses nothing.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// Live values, stamped by the backend.
    Post(Arc<Vec<PostValue>>),
    /// Values with their own measurement times.
    Put(Arc<Vec<PutValue>>),
}

impl Body {
    /// The number of values.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Post(v) => v.len(),
            Self::Put(v) => v.len(),
        }
    }

    /// The path of value `i`.
    pub(crate) fn path(&self, i: usize) -> &str {
        match self {
            Self::Post(v) => &v[i].p,
            Self::Put(v) => &v[i].p,
        }
    }
}

/// What happened to each value of a delivery, by index.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    /// Accepted by the backend.
    pub(crate) delivered: Vec<Range<usize>>,
    /// Rejected (4xx other than 401/403), with the error.
    pub(crate) rejected: Vec<(Range<usize>, Arc<str>)>,
    /// Not delivered because of `error`; to be retried or handled.
    pub(crate) failed: Vec<Range<usize>>,
    /// The error that stopped the delivery.
    pub(crate) error: Option<ApiError>,
}

impl Delivery {
    /// The number of delivered values.
    pub(crate) fn delivered_count(&self) -> usize {
        self.delivered.iter().map(ExactSizeIterator::len).sum()
    }
}

/// Delivers `body` to `account`, bisecting on rejection.
pub(crate) async fn deliver(client: &Client, account: u64, body: &Body) -> Delivery {
    let mut out = Delivery::default();
    let mut stack: Vec<Range<usize>> = Vec::new();
    stack.push(0..body.len());
    while let Some(range) = stack.pop() {
        if range.is_empty() {
            continue;
        }
        let result = match body {
            Body::Post(v) => client.post_values(account, &v[range.clone()]).await,
            Body::Put(v) => client.put_values(account, &v[range.clone()]).await,
        };
        match result {
            Ok(()) => out.delivered.push(range),
            Err(e @ ApiError::Rejected { .. }) if range.len() == 1 => {
                out.rejected.push((range, e.to_string().into()));
            }
            Err(ApiError::Rejected { .. }) => {
                let mid = range.start + range.len() / 2;
                stack.push(mid..range.end);
                stack.push(range.start..mid);
            }
            Err(e @ ApiError::NotFound { .. }) => out.rejected.push((range, e.to_string().into())),
            Err(e) => {
                out.failed.push(range);
                out.failed.append(&mut stack);
                out.error = Some(e);
            }
        }
    }
    out
}
