//! The journal's disk fills up: the webhook answers 503 (Alertmanager retries), the journal
//! stays sound (`PRAGMA integrity_check`), and intake works again once space returns.
//!
//! The journal lives on its own 8 MiB tmpfs (mounted by the test, so it needs root with
//! CAP_SYS_ADMIN, as `scripts/test` and CI run), filled with a filler file: a real ENOSPC,
//! for every file SQLite writes (database, WAL, shm). RLIMIT_FSIZE would only limit the size
//! of each file (EFBIG, and SIGXFSZ unless ignored) and say nothing about a full disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::Scratch;
use crate::serve::harness::*;

use super::{integrity, journal_db};

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mkdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs for the full-disk test needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` with one file, until ENOSPC.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
}

/// A body of `n` alerts, each with a 64 KiB annotation (so no free page or WAL slack
/// absorbs it), labelled with `tag`.
fn big_body(tag: &str, n: usize) -> String {
    let blob = "x".repeat(64 * 1024);
    let alerts = (0..n)
        .map(|i| {
            let mut a = alert(
                "firing",
                serde_json::json!({"alertname": "Unmatched", "tag": tag, "i": i.to_string()}),
            );
            a["annotations"]["blob"] = serde_json::Value::String(blob.clone());
            a
        })
        .collect();
    webhook("r", alerts)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_journal_disk_answers_503_stays_sound_and_recovers() {
    let s = Scratch::new();
    let state = s.path().join("state");
    let _fs = Tmpfs::mount(&state, "8m");
    let srv = Server::start(&s, &config(""), "rules: []\n");
    let mut acked = 0usize;
    assert_eq!(srv.post(&big_body("before", 4)).await.0, 200);
    acked += 4;

    fill(&state.join("filler"));
    let mut statuses = Vec::new();
    for i in 0..20 {
        let (st, body) = srv.post(&big_body(&format!("full-{i}"), 4)).await;
        statuses.push(st);
        match st {
            200 => acked += 4,
            503 => assert!(body.to_string().contains("journal"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
        if statuses.ends_with(&[503, 503]) {
            break;
        }
    }
    eprintln!("disk full: answers {statuses:?}");
    assert!(
        statuses.ends_with(&[503, 503]),
        "a full disk gets 503s: {statuses:?}"
    );
    let (ready, _) = srv.get("/-/ready").await;
    assert_eq!(ready, 503, "not ready while the journal cannot write");

    std::fs::remove_file(state.join("filler")).expect("free the space");
    let mut recovered = false;
    for _ in 0..50 {
        let (st, _) = srv.post(&big_body("after", 4)).await;
        if st == 200 {
            acked += 4;
            recovered = true;
            break;
        }
        assert_eq!(st, 503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "intake works again once space returns; log:\n{}",
        srv.log()
    );
    let (ready, _) = srv.get("/-/ready").await;
    assert_eq!(ready, 200, "ready again");

    drop(srv);
    assert_eq!(integrity(s.path()), "ok");
    let n: i64 = journal_db(s.path())
        .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
        .expect("count");
    assert_eq!(
        n as usize, acked,
        "every acknowledged alert, and only those, is journaled"
    );
}
