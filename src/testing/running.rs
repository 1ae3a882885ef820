//! A bot running in a test: its admin server on `127.0.0.1:0`, a graceful
//! stop, and a bounded wait for it.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::collector::Collector;
use crate::runtime::Bot;
use crate::runtime::RunError;
use crate::settings::Settings;

/// How long [`RunningBot::stop`] waits for the bot to shut down.
pub const STOP_WITHIN: Duration = Duration::from_secs(15);

/// A [`Bot`] running in the background of a test.
///
/// ```no_run
/// # use grafolean_collector::{Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Tick, Value};
/// # struct Hello;
/// # impl Collector for Hello {
/// #     type Params = ();
/// #     fn jobs(&self, _: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<()>> { Vec::new() }
/// #     async fn run(&self, _: Tick, _: &()) -> Result<Vec<Value>, BoxError> { Ok(Vec::new()) }
/// # }
/// # #[tokio::main] async fn main() {
/// use clap::Parser;
/// use grafolean_collector::Settings;
/// use grafolean_collector::testing::RunningBot;
///
/// let settings = Settings::try_parse_from(["hello"]).unwrap();
/// let bot = RunningBot::start(Bot::new("hello", Hello), settings);
/// let page = reqwest::get(format!("{}/live", bot.url())).await.unwrap();
/// assert_eq!(page.status(), 200);
/// bot.stop().await.unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct RunningBot {
    url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), RunError>>,
}

impl RunningBot {
    /// Starts `bot` with `settings`, its admin server on a free loopback port.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or when no loopback port is free.
    pub fn start<C: Collector>(bot: Bot<C>, settings: Settings) -> Self {
        let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        admin
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let url = format!("http://{}", admin.local_addr().expect("the bound address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bot.with_admin_listener(admin).run(settings, async {
            let _ = stopped.await;
        }));
        Self { url, stop, task }
    }

    /// The admin server's base URL, such as `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Scrapes the bot's `/metrics`, and returns the value of `series` (a
    /// metric's name with its labels as the page writes them, such as
    /// `grafolean_bot_runs_total{outcome="ok"}`), or 0 when it is not there.
    ///
    /// # Panics
    ///
    /// When `/metrics` does not answer.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("/metrics answers")
            .text()
            .await
            .expect("/metrics has a body");
        text.lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }

    /// Shuts the bot down as the first SIGTERM would, and returns how its
    /// run ended.
    ///
    /// # Panics
    ///
    /// When it does not stop within [`STOP_WITHIN`], or its task panicked.
    pub async fn stop(self) -> Result<(), RunError> {
        let _ = self.stop.send(());
        tokio::time::timeout(STOP_WITHIN, self.task)
            .await
            .expect("the bot shuts down in time")
            .expect("the bot's task does not panic")
    }
}
