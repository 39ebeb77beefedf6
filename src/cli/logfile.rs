//! `logging.file`: a size-rotated log file (file-rotate): `file` is written until it passes
//! `max_size_mb`, then becomes `file.1` (older ones shift up), keeping `backup_count` of them.

use std::path::Path;
use std::sync::Mutex;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};

/// A rotating log file, shareable by the subscriber (a `Mutex<W: Write>` is a `MakeWriter`).
pub type RotatingFile = Mutex<FileRotate<AppendCount>>;

/// Opens (creating it and its directory) the log file at `path`, rotated once it passes
/// `max_bytes` (a line is never split), keeping `backups` rotated files.
pub fn open(path: &Path, max_bytes: u64, backups: u32) -> std::io::Result<RotatingFile> {
    // file-rotate panics where it cannot create the directory or file: check here first.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let limit = usize::try_from(max_bytes.max(1)).unwrap_or(usize::MAX);
    Ok(Mutex::new(FileRotate::new(
        path,
        AppendCount::new(backups as usize),
        ContentLimit::BytesSurpassed(limit),
        Compression::None,
        None,
    )))
}

/// `logging.max_size_mb` in bytes.
pub fn max_bytes(max_size_mb: u64) -> u64 {
    max_size_mb.max(1).saturating_mul(1024 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotates_by_size_and_keeps_backup_count_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/kh.log");
        let log = open(&path, 100, 2).expect("open");
        for i in 0..40 {
            // One write per line, as the subscriber writes one formatted event.
            let line = format!("line {i:03} {}\n", "x".repeat(40));
            let mut w = log.lock().expect("lock");
            w.write_all(line.as_bytes()).expect("write");
        }
        drop(log);
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("logs"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["kh.log", "kh.log.1", "kh.log.2"]);
        let current = std::fs::read_to_string(&path).expect("current");
        assert!(
            current.ends_with(&format!("line 039 {}\n", "x".repeat(40))),
            "{current}"
        );
        let newest_backup = std::fs::read_to_string(dir.path().join("logs/kh.log.1")).expect("1");
        // Whole lines only, each file just past the limit, and the oldest lines gone.
        assert!(
            newest_backup.lines().all(|l| l.len() == 49),
            "{newest_backup}"
        );
        assert!(
            newest_backup.len() >= 100 && newest_backup.len() <= 150,
            "{}",
            newest_backup.len()
        );
        let all = [
            std::fs::read_to_string(dir.path().join("logs/kh.log.2")).expect("2"),
            newest_backup,
            current,
        ]
        .concat();
        assert!(!all.contains("line 000 "), "{all}");
    }

    #[test]
    fn tracing_events_rotate_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kh.log");
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(open(&path, 2048, 3).expect("open"))
            .finish();
        tracing::subscriber::with_default(sub, || {
            for i in 0..400 {
                tracing::info!(i, pad = "y".repeat(60).as_str(), "event");
            }
        });
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["kh.log", "kh.log.1", "kh.log.2", "kh.log.3"]);
        for n in &names {
            let text = std::fs::read_to_string(dir.path().join(n)).expect("read");
            assert!(text.len() <= 2048 + 200, "{n}: {}", text.len());
            assert!(text.lines().all(|l| l.contains(" event i=")), "{n}: {text}");
        }
        let current = std::fs::read_to_string(&path).expect("current");
        assert!(current.contains(" event i=399 "), "{current}");
    }

    #[test]
    fn an_unwritable_path_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").expect("write");
        assert!(open(&blocker.join("kh.log"), 100, 1).is_err());
        assert_eq!(max_bytes(0), 1024 * 1024);
        assert_eq!(max_bytes(100), 100 * 1024 * 1024);
    }
}
