//! The sender's own instruments, which it registers in the registry it is
//! given, under the SDK's prefix (`grafolean_bot_`): values sent, retried,
//! buffered, replayed and dropped (by reason), the accounts by send mode, and
//! whether the backend answered.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::PREFIX;
use crate::value::ValueError;

/// Why values were dropped: the `reason` label of the dropped-values counter.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum DropReason {
    /// Rejected before sending: the path is not a valid Grafolean path.
    invalid_path,
    /// Rejected before sending: the value is not finite.
    invalid_value,
    /// An older value of the same path in the same batch.
    duplicate,
    /// The send buffer was full.
    buffer_full,
    /// A late value could not be replayed: PUT is forbidden.
    put_forbidden,
    /// The backend refused the value alone.
    rejected,
    /// 403 on POST.
    forbidden,
    /// Still unsent when the shutdown deadline passed.
    shutdown,
}

impl DropReason {
    /// Why a value that does not validate is dropped.
    pub(crate) fn of(error: &ValueError) -> Self {
        match error {
            ValueError::NotFinite { .. } => Self::invalid_value,
            _ => Self::invalid_path,
        }
    }
}

/// Labels of the dropped-values counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: DropReason,
}

/// Labels of the send-mode gauge: `mode` is `put` or `post`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

/// The sender's instruments. Cheap to clone; all clones record into the same
/// series.
#[derive(Clone, Debug)]
pub(crate) struct SenderMetrics {
    /// 1 when the last request to the backend got an HTTP answer that was not a 5xx.
    pub(crate) backend_up: Gauge,
    /// Values accepted by the backend.
    pub(crate) values_sent: Counter,
    /// Send attempts that failed and will be retried (counted per value).
    pub(crate) values_retried: Counter,
    /// Values currently waiting in the buffer.
    pub(crate) values_buffered: Gauge,
    /// Every value the sender holds that the backend has not taken yet: the
    /// backlog, open and ready batches, and requests in flight. Not exported:
    /// the runtime reads it when a second signal stops the bot at once.
    pub(crate) values_unsent: Gauge,
    /// Values delivered late, with their original timestamps.
    pub(crate) values_replayed: Counter,
    /// Values dropped, by reason.
    pub(crate) values_dropped: Family<ReasonLabels, Counter>,
    /// Accounts by how their values go: `put` or `post` (see the sender).
    send_mode: Family<ModeLabels, Gauge>,
}

impl SenderMetrics {
    /// Registers the sender's instruments in `registry`, under the SDK's
    /// prefix.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix(PREFIX);
        let backend_up = Gauge::default();
        registry.register(
            "backend_up",
            "1 if the Grafolean backend answered the last request, else 0",
            backend_up.clone(),
        );
        let values_sent = Counter::default();
        registry.register(
            "values_sent",
            "Values accepted by the backend",
            values_sent.clone(),
        );
        let values_retried = Counter::default();
        registry.register(
            "values_retried",
            "Values whose send failed and was retried",
            values_retried.clone(),
        );
        let values_buffered = Gauge::default();
        registry.register(
            "values_buffered",
            "Values waiting in the send buffer",
            values_buffered.clone(),
        );
        let values_replayed = Counter::default();
        registry.register(
            "values_replayed",
            "Values delivered late with their original timestamps",
            values_replayed.clone(),
        );
        let send_mode = Family::<ModeLabels, Gauge>::default();
        registry.register(
            "send_mode_accounts",
            "Accounts the sender writes to, by mode: put (values keep their tick's time, \
             stored exactly once) or post (PUT forbidden: stamped on arrival, at least once)",
            send_mode.clone(),
        );
        let values_dropped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "values_dropped",
            "Values dropped, by reason",
            values_dropped.clone(),
        );
        Self {
            backend_up,
            values_sent,
            values_retried,
            values_buffered,
            values_unsent: Gauge::default(),
            values_replayed,
            values_dropped,
            send_mode,
        }
    }

    /// Sets how many accounts the sender writes to by PUT and by POST.
    pub(crate) fn set_send_mode(&self, put: usize, post: usize) {
        for (mode, n) in [("put", put), ("post", post)] {
            self.send_mode
                .get_or_create(&ModeLabels { mode })
                .set(n as i64);
        }
    }

    /// Counts `n` dropped values with the given reason.
    pub(crate) fn dropped(&self, reason: DropReason, n: u64) {
        self.values_dropped
            .get_or_create(&ReasonLabels { reason })
            .inc_by(n);
    }
}
