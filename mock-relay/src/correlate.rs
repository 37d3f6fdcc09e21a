//! Request/reply correlation, as the real relay does it: by `requestId` for
//! skill, file, git and usage commands, by `sessionId` for spawns and kills,
//! by `terminalId` for terminal commands, and by reply name for the
//! commands whose reply carries no id (`ping`, `list_sessions`,
//! `list_terminals`).

use std::collections::BTreeMap;

use runner_protocol::{RunnerEvent, ServerEvent, names};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::RelayError;

/// Which reply answers a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Matcher {
    /// Any reply carrying this `requestId`.
    RequestId(String),
    /// `session_ready`/`session_error` (spawn) or
    /// `session_killed`/`session_error` (kill) for this session.
    Session { id: String, kill: bool },
    /// `terminal_ready`/`terminal_error` (open) or
    /// `terminal_exit`/`terminal_error` (kill) for this terminal.
    Terminal { id: String, kill: bool },
    /// The next event with this name.
    Reply(&'static str),
}

impl Matcher {
    pub(crate) fn matches(&self, event: &RunnerEvent) -> bool {
        match (self, event) {
            (Matcher::RequestId(id), ev) => ev.request_id() == Some(id.as_str()),
            (Matcher::Session { id, kill: false }, RunnerEvent::SessionReady(p)) => {
                &p.session_id == id
            }
            (Matcher::Session { id, kill: true }, RunnerEvent::SessionKilled(p)) => {
                &p.session_id == id
            }
            (Matcher::Session { id, .. }, RunnerEvent::SessionError(p)) => &p.session_id == id,
            (Matcher::Terminal { id, kill: false }, RunnerEvent::TerminalReady(p)) => {
                &p.terminal_id == id
            }
            (Matcher::Terminal { id, kill: true }, RunnerEvent::TerminalExit(p)) => {
                &p.terminal_id == id
            }
            (Matcher::Terminal { id, .. }, RunnerEvent::TerminalError(p)) => &p.terminal_id == id,
            (Matcher::Reply(name), ev) => ev.name() == *name,
            _ => false,
        }
    }
}

/// Fills a fresh `requestId` (or `sessionId`) where the command has one and
/// none was given, and says which reply answers it.
pub(crate) fn prepare(event: ServerEvent) -> Result<(ServerEvent, Matcher), RelayError> {
    fn fresh(slot: &mut Option<String>) -> Matcher {
        let id = slot.get_or_insert_with(|| Uuid::new_v4().to_string()).clone();
        Matcher::RequestId(id)
    }
    let mut event = event;
    let matcher = match &mut event {
        ServerEvent::ListSkills(p) => fresh(&mut p.request_id),
        ServerEvent::CreateSkill(p) => fresh(&mut p.request_id),
        ServerEvent::UpdateSkill(p) => fresh(&mut p.request_id),
        ServerEvent::DeleteSkill(p) => fresh(&mut p.request_id),
        ServerEvent::GetSkill(p) => fresh(&mut p.request_id),
        ServerEvent::ListFiles(p) => fresh(&mut p.request_id),
        ServerEvent::ReadFile(p) => fresh(&mut p.request_id),
        ServerEvent::GitStatus(p) => fresh(&mut p.request_id),
        ServerEvent::GitDiff(p) => fresh(&mut p.request_id),
        ServerEvent::GetUsage(p) => fresh(&mut p.request_id),
        ServerEvent::NewSession(p) => {
            if p.session_id.is_empty() {
                p.session_id = Uuid::new_v4().to_string();
            }
            Matcher::Session {
                id: p.session_id.clone(),
                kill: false,
            }
        }
        ServerEvent::KillSession(p) => Matcher::Session {
            id: p.session_id.clone(),
            kill: true,
        },
        ServerEvent::NewTerminal(p) => Matcher::Terminal {
            id: p.terminal_id.clone(),
            kill: false,
        },
        ServerEvent::KillTerminal(p) => Matcher::Terminal {
            id: p.terminal_id.clone(),
            kill: true,
        },
        ServerEvent::Ping(_) => Matcher::Reply(names::PONG),
        ServerEvent::ListSessions(_) => Matcher::Reply(names::SESSIONS_LIST),
        ServerEvent::ListTerminals(_) => Matcher::Reply(names::TERMINALS_LIST),
        other => return Err(RelayError::NoReply(other.name())),
    };
    Ok((event, matcher))
}

type Reply = Result<RunnerEvent, RelayError>;

#[derive(Debug)]
struct Waiter {
    runner_id: String,
    matcher: Matcher,
    tx: oneshot::Sender<Reply>,
}

/// Requests waiting for their reply, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    next: u64,
    waiters: BTreeMap<u64, Waiter>,
}

impl Pending {
    pub(crate) fn register(
        &mut self,
        runner_id: &str,
        matcher: Matcher,
    ) -> (u64, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        self.next += 1;
        self.waiters.insert(
            self.next,
            Waiter {
                runner_id: runner_id.to_owned(),
                matcher,
                tx,
            },
        );
        (self.next, rx)
    }

    pub(crate) fn cancel(&mut self, id: u64) {
        self.waiters.remove(&id);
    }

    /// Hands `event` from `runner_id` to the oldest request it answers.
    /// Returns whether one was waiting.
    pub(crate) fn resolve(&mut self, runner_id: &str, event: &RunnerEvent) -> bool {
        let found = self
            .waiters
            .iter()
            .find(|(_, w)| w.runner_id == runner_id && w.matcher.matches(event))
            .map(|(id, _)| *id);
        match found.and_then(|id| self.waiters.remove(&id)) {
            Some(waiter) => {
                let _ = waiter.tx.send(Ok(event.clone()));
                true
            }
            None => false,
        }
    }

    /// Fails every request waiting on `runner_id`.
    pub(crate) fn runner_gone(&mut self, runner_id: &str) {
        let ids: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.runner_id == runner_id)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(w) = self.waiters.remove(&id) {
                let _ = w
                    .tx
                    .send(Err(RelayError::RunnerDisconnected(runner_id.to_owned())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use runner_protocol::{
        GetSkill, KillSession, NewSession, Restart, SessionError, SessionKilled, SessionReady,
        SkillResult,
    };

    use super::*;

    #[test]
    fn prepare_fills_ids_and_keeps_given_ones() {
        let (ev, m) = prepare(ServerEvent::GetSkill(GetSkill {
            request_id: None,
            name: "x".into(),
        }))
        .unwrap();
        let ServerEvent::GetSkill(p) = ev else {
            panic!("variant changed")
        };
        let id = p.request_id.expect("a request id was filled");
        assert_eq!(m, Matcher::RequestId(id));

        let (_, m) = prepare(ServerEvent::GetSkill(GetSkill {
            request_id: Some("mine".into()),
            name: "x".into(),
        }))
        .unwrap();
        assert_eq!(m, Matcher::RequestId("mine".into()));

        let (ev, _) = prepare(ServerEvent::NewSession(NewSession {
            session_id: String::new(),
            cwd: None,
            prompt: None,
            model: None,
            skills: None,
        }))
        .unwrap();
        assert!(matches!(ev, ServerEvent::NewSession(p) if !p.session_id.is_empty()));

        assert_eq!(
            prepare(ServerEvent::Restart(Restart {})),
            Err(RelayError::NoReply("restart"))
        );
    }

    #[test]
    fn replies_go_to_the_oldest_matching_request_of_that_runner() {
        let mut p = Pending::default();
        let spawn = Matcher::Session {
            id: "s".into(),
            kill: false,
        };
        let kill = Matcher::Session {
            id: "s".into(),
            kill: true,
        };
        let (_, mut kill_rx) = p.register("r", kill);
        let (_, mut spawn_rx) = p.register("r", spawn.clone());
        let (_, mut other_rx) = p.register("other", spawn);

        let ready = RunnerEvent::SessionReady(SessionReady {
            session_id: "s".into(),
        });
        assert!(p.resolve("r", &ready));
        assert_eq!(spawn_rx.try_recv().unwrap(), Ok(ready.clone()));
        assert!(kill_rx.try_recv().is_err());
        assert!(other_rx.try_recv().is_err());

        let killed = RunnerEvent::SessionKilled(SessionKilled {
            session_id: "s".into(),
        });
        assert!(p.resolve("r", &killed));
        assert_eq!(kill_rx.try_recv().unwrap(), Ok(killed.clone()));
        assert!(!p.resolve("r", &killed));

        let error = RunnerEvent::SessionError(SessionError {
            session_id: "s".into(),
            message: "m".into(),
        });
        assert!(p.resolve("other", &error));
        assert_eq!(other_rx.try_recv().unwrap(), Ok(error));
    }

    #[test]
    fn request_ids_must_match_exactly_and_runner_gone_fails_waiters() {
        let mut p = Pending::default();
        let (_, mut rx) = p.register("r", Matcher::RequestId("a".into()));
        let wrong = RunnerEvent::SkillResult(SkillResult::failure(Some("b".into()), "x"));
        assert!(!p.resolve("r", &wrong));
        p.runner_gone("r");
        assert_eq!(
            rx.try_recv().unwrap(),
            Err(RelayError::RunnerDisconnected("r".into()))
        );
        let (_, _rx) = p.register("r", Matcher::Reply(names::PONG));
        let kill = ServerEvent::KillSession(KillSession {
            session_id: "k".into(),
        });
        assert!(prepare(kill).is_ok());
    }
}
