//! `logging.audit`: the journal's events as JSON lines in a file, appended after they are
//! committed (read back from the journal in id order), so the file never holds what the
//! journal does not. After a restart it resumes after the last id in the file.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::journal::Journal;

/// Events read per round.
const BATCH: u32 = 1000;

/// The last event id written to the audit file at `path` (0 when there is none).
pub fn last_id(path: &Path) -> i64 {
    let Ok(f) = std::fs::File::open(path) else {
        return 0;
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter_map(|v| v["id"].as_i64())
        .max()
        .unwrap_or(0)
}

/// Appends every committed event after `after` to `path`; returns the last id written.
pub fn drain(journal: &Journal, path: &Path, mut after: i64) -> std::io::Result<i64> {
    loop {
        let events = journal
            .events_after(after, BATCH)
            .map_err(std::io::Error::other)?;
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(after);
        };
        let mut out = String::new();
        for e in &events {
            out.push_str(&serde_json::to_string(e).map_err(std::io::Error::other)?);
            out.push('\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(out.as_bytes())?;
        after = last;
        if events.len() < BATCH as usize {
            return Ok(after);
        }
    }
}

/// Follows the journal every `every` until `cancel`, then drains once more.
pub async fn follow(journal: Journal, path: PathBuf, every: Duration, cancel: CancellationToken) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        warn!(path = %path.display(), error = %e, "logging.audit: cannot create the directory");
    }
    let mut after = last_id(&path);
    let mut failing = false;
    loop {
        let stop = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tokio::time::sleep(every) => false,
        };
        let (j, p) = (journal.clone(), path.clone());
        match tokio::task::spawn_blocking(move || drain(&j, &p, after)).await {
            Ok(Ok(last)) => {
                after = last;
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                warn!(path = %path.display(), error = %e, "logging.audit: cannot write the audit file; retrying");
            }
            _ => {}
        }
        if stop {
            return;
        }
    }
}
