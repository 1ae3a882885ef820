//! The small handles that the runtime's other rooms hold instead of the
//! whole admin state: [`Readiness`] (what `/ready` answers) and
//! [`ProblemBoard`] (the config problems the status page lists).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::problem::EntityProblem;

/// Whether the bot is ready: set by the refresher (the config loaded) and by
/// the runtime (shutting down), read by `/ready`. Ready means "the config
/// loaded and the jobs are scheduled": a backend that stops answering later
/// does not make a bot unready (its jobs run on, and their values wait in
/// the sender), or one backend hiccup would mark every replica of a
/// StatefulSet unready at once. Whether the backend answers is kept here for
/// the status page (and is `grafolean_bot_backend_up`). Cheap to clone; all
/// clones share the flags.
#[derive(Clone, Debug)]
pub(crate) struct Readiness(Arc<Flags>);

#[derive(Debug)]
struct Flags {
    /// Whether a Grafolean backend is configured.
    backend_configured: bool,
    config_loaded: AtomicBool,
    backend_reachable: AtomicBool,
    shutting_down: AtomicBool,
}

impl Readiness {
    /// Not ready: nothing loaded yet.
    pub(crate) fn new(backend_configured: bool) -> Self {
        Self(Arc::new(Flags {
            backend_configured,
            config_loaded: AtomicBool::new(false),
            backend_reachable: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// Records that the job config has been loaded once.
    pub(crate) fn set_config_loaded(&self) {
        self.0.config_loaded.store(true, Ordering::Relaxed);
    }

    /// Records whether the Grafolean backend answered the last request.
    pub(crate) fn set_backend_reachable(&self, reachable: bool) {
        self.0.backend_reachable.store(reachable, Ordering::Relaxed);
    }

    /// Records that shutdown has begun: not ready from now on.
    pub(crate) fn set_shutting_down(&self) {
        self.0.shutting_down.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, else the reason, as `/ready` reports it.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        let f = &self.0;
        if f.shutting_down.load(Ordering::Relaxed) {
            Err("shutting down")
        } else if !f.config_loaded.load(Ordering::Relaxed) {
            Err("the job config has not loaded yet")
        } else {
            Ok(())
        }
    }

    /// Whether the backend answered the last refresh; `None` without one.
    pub(crate) fn backend_reachable(&self) -> Option<bool> {
        self.0
            .backend_configured
            .then(|| self.0.backend_reachable.load(Ordering::Relaxed))
    }
}

/// The entities' config problems at the last refresh, for the status page.
/// Cheap to clone; all clones share the list.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProblemBoard(Arc<RwLock<Arc<[EntityProblem]>>>);

impl ProblemBoard {
    /// Replaces the list.
    pub(crate) fn set(&self, problems: Vec<EntityProblem>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = problems.into();
    }

    /// The list now.
    pub(crate) fn get(&self) -> Arc<[EntityProblem]> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
