//! Which process runs a local execution, and whether it is still alive: what lets any command
//! that opens the database turn the execution of a process that died (`kill -9`, a power cut)
//! from `RUNNING` into `ABORTED` instead of leaving it running for ever.
//!
//! A process is named by host, pid and its start time (from `/proc/<pid>/stat`, so a recycled
//! pid is a different owner). On the same Linux host liveness is read from `/proc`; elsewhere,
//! or where `/proc` says nothing, a heartbeat older than [`STALE_HEARTBEAT`] means dead.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// How often a running execution refreshes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// A heartbeat older than this marks its owner dead when liveness cannot be read directly.
pub const STALE_HEARTBEAT: Duration = Duration::from_secs(60);

/// The process that runs an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    /// Start time of the process in clock ticks since boot (`/proc/<pid>/stat` field 22), or
    /// empty where `/proc` is not available.
    pub started: String,
}

impl Owner {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            host: hostname(),
            pid,
            started: start_ticks(pid).unwrap_or_default(),
        }
    }

    /// Whether this owner is certainly gone, judged from `/proc` on this host, and otherwise
    /// from its last heartbeat.
    pub fn is_dead(&self, heartbeat: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        if self.host == hostname() && !self.started.is_empty() {
            return start_ticks(self.pid).as_deref() != Some(self.started.as_str());
        }
        heartbeat.is_none_or(|beat| (now - beat).to_std().unwrap_or_default() > STALE_HEARTBEAT)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| "localhost".into())
}

/// The start time of a live (not zombie) process, from `/proc/<pid>/stat`.
fn start_ticks(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count from the
    // last ')'. After it come field 3 (state) … field 22 (starttime).
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_dead() {
        let now = Utc::now();
        let me = Owner::current();
        assert!(!me.is_dead(None, now));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Owner { pid, ..me.clone() };
        assert!(gone.is_dead(Some(now), now));
        // Another host: only the heartbeat tells.
        let remote = Owner {
            host: "elsewhere".into(),
            ..me
        };
        assert!(!remote.is_dead(Some(now), now));
        assert!(remote.is_dead(Some(now - chrono::Duration::seconds(61)), now));
        assert!(remote.is_dead(None, now));
    }
}
