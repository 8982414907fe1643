//! The agent's state, put together in one place: every supervised check posts its part to
//! the [`Board`], which builds the one [`AgentState`] envelope, hands it to the reporter and
//! writes `state_dir/state.json` for `doctor`. No check builds the envelope or the file.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rollcall_proto::{AgentState, BesclientState, NessusdState};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::events::EventLog;
use crate::state::{self, LocalState};

/// Events the state file keeps for `doctor`.
const STATE_FILE_EVENTS: usize = 50;

/// Each check's latest state. A new check adds its field here and in [`AgentState`].
#[derive(Debug, Default)]
pub struct Envelope {
    pub besclient: Option<BesclientState>,
    pub nessusd: Option<NessusdState>,
}

/// Where checks post their state; cheap to clone.
#[derive(Clone)]
pub struct Board(Arc<Mutex<Inner>>);

struct Inner {
    envelope: Envelope,
    /// Each check's "what next", in posting order.
    next: Vec<(&'static str, String)>,
    state_dir: PathBuf,
    events: EventLog,
    clock: Arc<dyn Clock>,
    reporting: Option<watch::Sender<Option<AgentState>>>,
    /// The state file could not be written; said once.
    said_unwritable: bool,
    /// What keeps the agent from reporting, shown in the state file.
    problem: Option<crate::report::Problem>,
}

impl Board {
    /// `reporting`: the reporter's side, if the agent reports to a collector.
    pub fn new(
        state_dir: PathBuf,
        events: EventLog,
        clock: Arc<dyn Clock>,
        reporting: Option<watch::Sender<Option<AgentState>>>,
    ) -> Board {
        Board(Arc::new(Mutex::new(Inner {
            envelope: Envelope::default(),
            next: Vec::new(),
            state_dir,
            events,
            clock,
            reporting,
            said_unwritable: false,
            problem: None,
        })))
    }

    /// Shows what keeps the agent from reporting (set by the reporter) in the state file.
    pub fn with_reporting_problem(self, problem: crate::report::Problem) -> Board {
        crate::lock(&self.0).problem = Some(problem);
        self
    }

    /// Takes a check's state (`put` places it), its words for what comes next, and whether
    /// it changed in anything an SRE would see: a change is sent to the collector at once,
    /// anything else only refreshes what the next regular heartbeat carries.
    pub fn post(
        &self,
        check: &'static str,
        next: String,
        changed: bool,
        put: impl FnOnce(&mut Envelope),
    ) {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        put(&mut inner.envelope);
        match inner.next.iter_mut().find(|(c, _)| *c == check) {
            Some((_, words)) => *words = next,
            None => inner.next.push((check, next)),
        }
        inner.write(changed);
    }

    /// The agent state as last put together (none before besclient's first post).
    pub fn agent_state(&self) -> Option<AgentState> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .agent_state()
    }
}

impl Inner {
    fn agent_state(&self) -> Option<AgentState> {
        Some(AgentState {
            proto_version: rollcall_proto::PROTO_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            at: self.clock.now(),
            besclient: self.envelope.besclient.clone()?,
            // The reporter adds the latest in-band BMC check to what it sends.
            bmc: None,
            nessusd: self.envelope.nessusd.clone(),
        })
    }

    fn write(&mut self, changed: bool) {
        let Some(agent_state) = self.agent_state() else {
            return;
        };
        if let Some(tx) = &self.reporting {
            let st = agent_state.clone();
            tx.send_if_modified(|v| {
                *v = Some(st);
                changed
            });
        }
        let next = match self.next.as_slice() {
            [(_, only)] => only.clone(),
            all => all
                .iter()
                .map(|(check, words)| format!("{check}: {words}"))
                .collect::<Vec<_>>()
                .join("; "),
        };
        let local = LocalState {
            pid: std::process::id(),
            state: agent_state,
            next,
            events: self.events.recent(STATE_FILE_EVENTS),
            reporting_problem: self.problem.as_ref().and_then(|p| crate::lock(p).clone()),
        };
        let bytes = serde_json::to_vec_pretty(&local).unwrap_or_default();
        let path = state::path(&self.state_dir);
        if let Err(e) = state::write_atomic(&path, &bytes) {
            if !std::mem::replace(&mut self.said_unwritable, true) {
                log::warn!(target: "agent", "cannot write {}: {e}; doctor will not show the agent's history", path.display());
            }
        }
    }
}
