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
    bisect(body.len(), |range| async move {
        match body {
            Body::Post(v) => client.post_values(account, &v[range]).await,
            Body::Put(v) => client.put_values(account, &v[range]).await,
        }
    })
    .await
}

/// Sends `0..len` with `send`, halving a range the backend rejects (400)
/// until the rejected values stand alone. Ranges go in order.
pub(crate) async fn bisect<F, Fut>(len: usize, mut send: F) -> Delivery
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Result<(), ApiError>>,
{
    let mut out = Delivery::default();
    let mut stack: Vec<Range<usize>> = Vec::new();
    stack.push(0..len);
    while let Some(range) = stack.pop() {
        if range.is_empty() {
            continue;
        }
        match send(range.clone()).await {
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

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // the ranges a delivery reports
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn rejected(status: u16) -> ApiError {
        ApiError::Rejected {
            method: "PUT".into(),
            resource: "accounts/1/values".into(),
            status,
            body: "Input validation failed".into(),
        }
    }

    /// A backend that rejects any range holding one of `bad`, and fails with
    /// a 500 on the `fail_at`-th request; returns the delivery and the
    /// ranges it was asked for.
    async fn run(
        len: usize,
        bad: &[usize],
        fail_at: Option<usize>,
    ) -> (Delivery, Vec<Range<usize>>) {
        let asked = RefCell::new(Vec::new());
        let delivery = bisect(len, |range| {
            asked.borrow_mut().push(range.clone());
            let n = asked.borrow().len();
            let result = if fail_at == Some(n) {
                Err(ApiError::Server {
                    method: "PUT".into(),
                    resource: "accounts/1/values".into(),
                    status: 500,
                    body: String::new(),
                })
            } else if bad.iter().any(|b| range.contains(b)) {
                Err(rejected(400))
            } else {
                Ok(())
            };
            async move { result }
        })
        .await;
        (delivery, asked.into_inner())
    }

    #[tokio::test]
    async fn a_400_is_bisected_until_the_rejected_values_stand_alone() {
        let (d, asked) = run(8, &[5], None).await;
        assert_eq!(asked, [0..8, 0..4, 4..8, 4..6, 4..5, 5..6, 6..8]);
        assert_eq!(d.delivered, [0..4, 4..5, 6..8]);
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].0, 5..6);
        assert!(d.failed.is_empty() && d.error.is_none());
        assert_eq!(d.delivered_count(), 7);
    }

    #[tokio::test]
    async fn a_clean_batch_is_one_request() {
        let (d, asked) = run(5, &[], None).await;
        assert_eq!(asked, [0..5]);
        assert_eq!(d.delivered, [0..5]);
    }

    #[tokio::test]
    async fn a_transient_error_while_bisecting_hands_back_the_rest() {
        // 0..8 rejected, 0..4 ok, then 4..8 meets a 500: 4..8 is handed back.
        let (d, asked) = run(8, &[6], Some(3)).await;
        assert_eq!(asked, [0..8, 0..4, 4..8]);
        assert_eq!(d.delivered, [0..4]);
        assert_eq!(d.failed, [4..8]);
        assert!(matches!(d.error, Some(ApiError::Server { .. })));
    }

    #[tokio::test]
    async fn every_value_rejected_is_dropped_one_by_one() {
        let (d, _) = run(3, &[0, 1, 2], None).await;
        assert!(d.delivered.is_empty());
        let ranges: Vec<_> = d.rejected.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(ranges, [0..1, 1..2, 2..3]);
    }
}
