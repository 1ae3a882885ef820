//! The NetFlow bot's own settings, beside the SDK's.

use std::net::SocketAddr;

use clap::Args;

use crate::aggregate::DEFAULT_TOP_KEYS;
use crate::receiver::RECEIVE_BUFFER;

/// Where and how the bot receives NetFlow.
#[derive(Clone, Debug, Args)]
pub struct NetflowSettings {
    /// The UDP port NetFlow, v9 and IPFIX come in on, as the Python bot's
    /// `NETFLOW_PORT`.
    #[arg(
        long = "netflow-port",
        env = "NETFLOW_PORT",
        default_value_t = 2055,
        help_heading = "NetFlow"
    )]
    pub netflow_port: u16,

    /// The address to receive on, with its port (such as `0.0.0.0:2055`
    /// or `[::1]:9995`). Default: every address (`[::]`, IPv4 too) with a
    /// backend, as the Python bot; `127.0.0.1` when standalone.
    #[arg(
        long = "netflow-listen",
        env = "NETFLOW_LISTEN",
        value_name = "ADDR:PORT",
        help_heading = "NetFlow"
    )]
    pub netflow_listen: Option<SocketAddr>,

    /// Receive sockets sharing the port (`SO_REUSEPORT`); one exporter's
    /// datagrams always reach the same one. One is enough for about
    /// a million flows a second.
    #[arg(
        long,
        env = "NETFLOW_RECEIVE_THREADS",
        default_value_t = 1,
        help_heading = "NetFlow"
    )]
    pub receive_threads: usize,

    /// The receive buffer asked for each socket, in bytes.
    #[arg(long, env = "NETFLOW_RECEIVE_BUFFER", default_value_t = RECEIVE_BUFFER, help_heading = "NetFlow")]
    pub receive_buffer: usize,

    /// Count bytes as sent, without multiplying by the exporter's sampling
    /// rate (what the Python bot does).
    #[arg(long = "ignore-sampling", env = "NETFLOW_IGNORE_SAMPLING", action = clap::ArgAction::SetFalse, help_heading = "NetFlow")]
    pub apply_sampling: bool,

    /// Keys each top-list map of a window holds exactly; past it the map
    /// keeps the largest and the top lists become bounded estimates
    /// (`netflow_window_exact` says so).
    #[arg(long, env = "NETFLOW_TOP_KEYS", default_value_t = DEFAULT_TOP_KEYS, help_heading = "NetFlow")]
    pub top_keys: usize,

    /// How often exporters that match no device are suggested as entities
    /// (with a backend), in seconds.
    #[arg(
        long,
        env = "NETFLOW_SUGGEST_INTERVAL",
        default_value_t = 120,
        help_heading = "NetFlow"
    )]
    pub suggest_interval: u64,

    /// A file where the exporters' templates are kept across restarts
    /// (saved every minute and at shutdown), so that their data is read at
    /// once after a restart. Off by default.
    #[arg(
        long,
        env = "NETFLOW_TEMPLATE_FILE",
        value_name = "FILE",
        help_heading = "NetFlow"
    )]
    pub template_file: Option<std::path::PathBuf>,

    /// A file where the open windows (15 min to 24 h) are kept across
    /// restarts: saved every 5 minutes and at shutdown, put back at start
    /// when they are still open. Off by default: a restart then loses the
    /// open windows (nothing is counted twice either way).
    #[arg(
        long,
        env = "NETFLOW_WINDOWS_FILE",
        value_name = "FILE",
        help_heading = "NetFlow"
    )]
    pub windows_file: Option<std::path::PathBuf>,
}

impl Default for NetflowSettings {
    fn default() -> Self {
        Self {
            netflow_port: 2055,
            netflow_listen: None,
            receive_threads: 1,
            receive_buffer: RECEIVE_BUFFER,
            apply_sampling: true,
            top_keys: DEFAULT_TOP_KEYS,
            suggest_interval: 120,
            template_file: None,
            windows_file: None,
        }
    }
}
