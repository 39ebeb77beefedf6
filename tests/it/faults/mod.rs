//! Storm and faults: bounded end-to-end tests of `kafka-healing serve` under an alert storm,
//! `kill -9`, a full journal disk, a stalling SMTP server, a step that leaves a daemon
//! behind, and a corpus of hostile label values.

mod daemon;

use std::path::Path;
use std::time::{Duration, Instant};

/// Whether process `pid` is gone (no such process, or a zombie waiting to be reaped).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| matches!(state, "Z" | "X")),
    }
}

/// Polls `done` every 50 ms for at most `secs` seconds; whether it held.
pub fn poll(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads a pid written into `file` (by a fixture script), waiting for it at most 10 s.
pub fn read_pid(file: &Path) -> i32 {
    let mut pid = None;
    poll(10, || {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        pid.is_some()
    });
    pid.unwrap_or_else(|| panic!("no pid in {}", file.display()))
}

/// SIGKILLs `pid` if it still runs (cleanup of fixtures a failed test left behind).
pub fn kill_if_alive(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}
