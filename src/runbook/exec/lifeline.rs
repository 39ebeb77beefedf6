//! A step's lifeline to the instance that started it: where the OS allows, a local step
//! dies with the service, and a step whose service died anyway is found and killed at the
//! next start.
//!
//! - **Parent-death signal.** Unsafe code is forbidden here, so `prctl(PR_SET_PDEATHSIG)`
//!   cannot be called between `fork` and `exec`. Instead a step is launched as
//!   `setpriv --pdeathsig SIGKILL -- ARGV…` (util-linux ≥ 2.33): `setpriv` sets the signal
//!   and `exec`s the step, which keeps its pid and its process group; the step's argv
//!   elements stay separate arguments after `--`, never a shell command line. Without
//!   `setpriv` (or for a program `setpriv` would hand to a shell: a file that is neither
//!   an ELF binary nor a `#!` script), the step is started directly, as before. The
//!   engine leaves `setpriv` out for diagnostics runbooks (`ExecOptions::setpriv` `None`):
//!   its extra `exec` per step costs a storm of `/bin/true` diagnostics about 40 % of its
//!   runs per second.
//! - **The forking thread.** The kernel sends the parent-death signal when the *thread*
//!   that forked the child exits, even if the process lives on. Tokio forks a child on
//!   whichever thread polls the spawn: a worker (they live as long as the runtime, unless
//!   `block_in_place` hands the worker's role to another thread) or a blocking-pool thread
//!   (it exits after 10 s idle). So every step is forked by one of a few dedicated threads,
//!   [`SPAWNER_THREAD`], that live as long as the process: the signal fires only when the
//!   service itself dies.
//! - **Priority.** Threads of a level fork children `nice` levels below the service's CPU
//!   priority ([`ExecOptions::nice`](super::ExecOptions::nice)): the engine starts
//!   diagnostics that way, so that a storm of them leaves the CPU to the webhook and the
//!   journal (and to the broker on a shared host).
//! - **Orphan sweep.** The signal reaches the step's leader only; what the leader started
//!   lives on (re-parented) when the service dies. Every step process carries
//!   [`STEP_COOKIE_VAR`]`=SERVICE_PID-N`; [`sweep_orphans`], run by `serve` at start-up,
//!   SIGKILLs the processes whose cookie names a service that is no longer alive.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// The environment variable holding a try's cookie (`SERVICE_PID-N`, unique per try), by
/// which processes that left the try's process group are still found when it is stopped,
/// and orphans of a dead instance at start-up.
pub const STEP_COOKIE_VAR: &str = "KAFKA_HEALING_STEP_ID";

/// The name of the threads that fork every step (see the module doc).
pub const SPAWNER_THREAD: &str = "kh-step-spawner";

/// Where `setpriv` is looked for when the service's `PATH` does not have it.
const SETPRIV_FALLBACK: [&str; 2] = ["/usr/bin/setpriv", "/bin/setpriv"];

/// Most sweeps for orphans (each catches what the previous one's victims forked meanwhile).
const SWEEP_ROUNDS: usize = 20;

/// `setpriv` with a working `--pdeathsig`, found once per process (the first call looks
/// and logs the result once): `None` when there is none, and steps then outlive a crash of
/// the service until the next start sweeps them.
pub fn setpriv() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let found = find_setpriv();
            match &found {
                Some(p) => tracing::info!(
                    setpriv = %p.display(),
                    "steps run under `setpriv --pdeathsig SIGKILL`: a step's leader dies with the service"
                ),
                None => tracing::warn!(
                    "no `setpriv` with --pdeathsig (util-linux >= 2.33) found: after a crash \
                     of the service its running step lives on until the next start sweeps it \
                     (run under systemd's KillMode=control-group to stop it at once)"
                ),
            }
            found
        })
        .clone()
}

/// Looks for `setpriv` on the service's `PATH`, then in the usual places, and keeps the
/// first one that really sets a parent-death signal and `exec`s (it runs itself once).
fn find_setpriv() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("setpriv"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(SETPRIV_FALLBACK.iter().map(PathBuf::from))
        .filter(|p| p.is_absolute() && p.is_file())
        .find(|p| {
            std::process::Command::new(p)
                .args(["--pdeathsig", "SIGKILL", "--"])
                .arg(p)
                .arg("--version")
                .env_clear()
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// The command that runs `program args…` with the children's environment `env`: through
/// `setpriv` (when given, and when it would `exec` the program exactly as a direct start
/// does) so that the step dies with the service, else directly. Returns the command and
/// whether it goes through `setpriv`.
pub(super) fn command(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    setpriv: Option<&Path>,
) -> (Command, bool) {
    match setpriv.filter(|_| execs_like_a_direct_start(program, env)) {
        Some(sp) => {
            let mut c = Command::new(sp);
            // `--`: whatever the argv holds is the program and its arguments, never options.
            c.args(["--pdeathsig", "SIGKILL", "--"])
                .arg(program)
                .args(args);
            (c, true)
        }
        None => {
            let mut c = Command::new(program);
            c.args(args);
            (c, false)
        }
    }
}

/// Whether `setpriv` (which `exec`s with `execvp`) would run `program` as a direct start
/// does: the program resolves (as the kernel and `execvp` resolve it, through the
/// children's `PATH` when it has no `/`) to an ELF binary or a `#!` script. `execvp` hands
/// any other executable file to `/bin/sh`, where a direct start of a path fails with
/// "Exec format error": such a program is started directly, with the error it always had.
/// A program that does not resolve is started directly too, so its error stays the same.
fn execs_like_a_direct_start(program: &str, env: &[(String, String)]) -> bool {
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        let Some(path) = env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v) else {
            return false;
        };
        path.split(':')
            .map(|d| {
                if d.is_empty() {
                    PathBuf::from(program)
                } else {
                    Path::new(d).join(program)
                }
            })
            .collect()
    };
    let Some(file) = candidates.iter().find(|p| is_executable_file(p)) else {
        return false;
    };
    let mut head = [0u8; 4];
    let read = std::fs::File::open(file).and_then(|mut f| f.read(&mut head));
    match read {
        Ok(n) => head[..n].starts_with(b"\x7fELF") || head[..n].starts_with(b"#!"),
        Err(_) => false,
    }
}

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A command to fork on a spawner thread, with the runtime it belongs to.
struct Job {
    cmd: Command,
    runtime: tokio::runtime::Handle,
    reply: tokio::sync::oneshot::Sender<std::io::Result<Child>>,
}

/// The spawner threads' queue for children started `nice` levels below the service's CPU
/// priority, started on first use: [`spawner_threads`] threads named [`SPAWNER_THREAD`] take
/// jobs from it. A thread's nice value is inherited by what it forks, so each level has
/// threads of its own (an unprivileged thread cannot raise its priority back). The senders
/// live in a static and are never dropped, so the threads wait for jobs until the process
/// exits. More than one per level, because `spawn` blocks its thread until the child has
/// `exec`ed (`setpriv`, then the step): one thread would serialize every step's start.
fn spawner(nice: u32) -> Option<mpsc::Sender<Job>> {
    static QUEUES: OnceLock<std::sync::Mutex<BTreeMap<u32, Option<mpsc::Sender<Job>>>>> =
        OnceLock::new();
    let queues = QUEUES.get_or_init(Default::default);
    let mut queues = match queues.lock() {
        Ok(q) => q,
        Err(p) => p.into_inner(),
    };
    queues
        .entry(nice)
        .or_insert_with(|| start_spawners(nice))
        .clone()
}

/// Starts one level's spawner threads; `None` when none could be started.
fn start_spawners(nice: u32) -> Option<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let mut started = 0;
    for _ in 0..spawner_threads(nice) {
        let rx = rx.clone();
        let thread = std::thread::Builder::new()
            .name(SPAWNER_THREAD.into())
            .spawn(move || {
                lower_own_priority(nice);
                serve_jobs(&rx)
            });
        match thread {
            Ok(_) => started += 1,
            Err(e) => tracing::warn!(error = %e, "cannot start a step spawner thread"),
        }
    }
    if started == 0 {
        tracing::warn!("no step spawner thread: steps are forked by the runtime's threads");
        return None;
    }
    Some(tx)
}

/// Adds `nice` to the calling thread's nice value (at most 19), as `nice -n` does for a
/// command; what the thread forks inherits it. A failure is logged and the thread keeps
/// the service's priority. Also used for the engine's own thread.
pub(crate) fn lower_own_priority(nice: u32) {
    if nice == 0 {
        return;
    }
    let add = i32::try_from(nice.min(MAX_NICE)).unwrap_or(0);
    let done = rustix::process::getpriority_process(None)
        .and_then(|own| rustix::process::setpriority_process(None, (own + add).min(19)));
    if let Err(e) = done {
        tracing::warn!(error = %e, nice, "cannot lower the priority of a thread: it runs at the service's");
    }
}

/// The largest nice increment (nice values run from -20 to 19).
const MAX_NICE: u32 = 39;

/// How many spawner threads a level has: the machine's parallelism, 2–8; a lowered level
/// 8, because its forks (which hold their thread until the child has `exec`ed, the
/// child at the lowered priority) wait longer for a CPU on a busy machine.
fn spawner_threads(nice: u32) -> usize {
    if nice > 0 {
        return 8;
    }
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2)
        .clamp(2, 8)
}

/// A spawner thread's loop: forks each job's command until the process exits.
fn serve_jobs(rx: &std::sync::Mutex<mpsc::Receiver<Job>>) {
    loop {
        let next = match rx.lock() {
            Ok(r) => r.recv(),
            Err(p) => p.into_inner().recv(),
        };
        let Ok(Job {
            mut cmd,
            runtime,
            reply,
        }) = next
        else {
            return; // the sender is gone: the process is exiting
        };
        // The child's pipes and its reaping belong to the caller's runtime. A panic must
        // not end this thread: its children would get their parent-death signal.
        let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ctx = runtime.enter();
            cmd.spawn()
        }))
        .unwrap_or_else(|_| {
            Err(std::io::Error::other(
                "the step spawner panicked while forking",
            ))
        });
        let _ = reply.send(spawned);
    }
}

/// Forks `cmd` on a spawner thread `nice` levels below the service's CPU priority (see the
/// module doc), or where it is called, at the caller's priority, when none can be used.
pub(super) async fn spawn(mut cmd: Command, nice: u32) -> std::io::Result<Child> {
    let (Some(queue), Ok(runtime)) = (spawner(nice), tokio::runtime::Handle::try_current()) else {
        return cmd.spawn();
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    match queue.send(Job {
        cmd,
        runtime,
        reply,
    }) {
        Ok(()) => answer
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the step spawner thread stopped"))),
        Err(mpsc::SendError(mut job)) => job.cmd.spawn(),
    }
}

/// A process killed by [`sweep_orphans`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its pid.
    pub pid: i32,
    /// Its step cookie (`SERVICE_PID-N`).
    pub cookie: String,
    /// Its command line (arguments joined by spaces, cut at 200 characters).
    pub command: String,
    /// Why its service counts as dead.
    pub why: String,
}

/// SIGKILLs every process on this host that carries a step cookie of a service that is no
/// longer alive, logs each (pid, cookie, command line, why) and returns them.
///
/// A cookie's service pid counts as dead when no process has it (or a zombie), or when the
/// process that has it started after the oldest live process carrying the cookie: the pid
/// was reused, since a service starts before its steps. Processes of a live service —
/// this one included — are never touched. Processes whose environment cannot be read
/// (another user's) are skipped. Blocking (reads `/proc`): call it at start-up or through
/// `spawn_blocking`.
pub fn sweep_orphans() -> Vec<Orphan> {
    sweep(|_| true)
}

/// [`sweep_orphans`], limited to cookies for which `scope` holds.
fn sweep(scope: impl Fn(&str) -> bool) -> Vec<Orphan> {
    let own = std::process::id();
    let mut orphan_cookies: BTreeMap<String, String> = BTreeMap::new();
    let mut killed: Vec<Orphan> = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..SWEEP_ROUNDS {
        let holders: Vec<Holder> = cookie_holders(own)
            .into_iter()
            .filter(|h| scope(&h.cookie))
            .collect();
        for (cookie, why) in classify(&holders, own, &|pid| proc_start(pid)) {
            orphan_cookies.entry(cookie).or_insert(why);
        }
        let mut any = false;
        for h in holders {
            let Some(why) = orphan_cookies.get(&h.cookie) else {
                continue;
            };
            any = true;
            let _ = nix::sys::signal::kill(Pid::from_raw(h.pid), Signal::SIGKILL);
            if seen.insert(h.pid) {
                tracing::warn!(
                    pid = h.pid,
                    cookie = %h.cookie,
                    command = %h.command,
                    why = %why,
                    "killed an orphaned step process left by a dead instance"
                );
                killed.push(Orphan {
                    pid: h.pid,
                    cookie: h.cookie,
                    command: h.command,
                    why: why.clone(),
                });
            }
        }
        if !any {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    killed
}

/// A live process carrying a step cookie.
#[derive(Debug, Clone)]
struct Holder {
    pid: i32,
    cookie: String,
    /// Start time, in clock ticks since boot.
    start: u64,
    command: String,
}

/// A process's start time (clock ticks since boot), `None` when it is gone or a zombie.
type StartOf<'a> = &'a dyn Fn(u32) -> Option<u64>;

/// The cookies among `holders` whose service is dead, with why. `start_of` reads a pid's
/// start time (`None`: no such live process).
fn classify(holders: &[Holder], own: u32, start_of: StartOf<'_>) -> Vec<(String, String)> {
    // The oldest live holder of each cookie: the service started before it.
    let mut oldest: BTreeMap<&str, u64> = BTreeMap::new();
    for h in holders {
        let e = oldest.entry(h.cookie.as_str()).or_insert(h.start);
        *e = (*e).min(h.start);
    }
    let mut out = Vec::new();
    for (cookie, first) in oldest {
        let Some(service) = cookie
            .split_once('-')
            .and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue; // not a cookie this program writes: leave it alone
        };
        let why = match start_of(service) {
            None => format!("its service pid {service} is not running"),
            Some(started) if started > first => format!(
                "pid {service} was reused: that process started after the step{}",
                if service == own {
                    " (it is this instance)"
                } else {
                    ""
                }
            ),
            Some(_) => continue, // a live instance (maybe this one): never touched
        };
        out.push((cookie.to_string(), why));
    }
    out
}

/// Live (not zombie) processes other than `own` with a step cookie in their environment.
fn cookie_holders(own: u32) -> Vec<Holder> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let prefix = format!("{STEP_COOKIE_VAR}=");
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let Some(cookie) = env
            .split(|b| *b == 0)
            .find_map(|e| e.strip_prefix(prefix.as_bytes()))
            .map(|c| String::from_utf8_lossy(c).into_owned())
        else {
            continue;
        };
        let (Some(start), Ok(pid_i32)) = (proc_start(pid), i32::try_from(pid)) else {
            continue; // gone meanwhile, or a zombie
        };
        let command = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                let words: Vec<String> = c
                    .split(|b| *b == 0)
                    .filter(|w| !w.is_empty())
                    .map(|w| String::from_utf8_lossy(w).into_owned())
                    .collect();
                words.join(" ").chars().take(200).collect()
            })
            .unwrap_or_default();
        out.push(Holder {
            pid: pid_i32,
            cookie,
            start,
            command,
        });
    }
    out
}

/// The start time of live process `pid` (field 22 of `/proc/PID/stat`, clock ticks since
/// boot); `None` when there is no such process or it is a zombie.
fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state …`; comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first().copied(), Some("Z" | "X") | None) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    /// The nice value `nice` (coreutils) prints when forked at `level`.
    async fn nice_of_child(level: u32) -> i32 {
        let mut cmd = Command::new("nice");
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdout(std::process::Stdio::piped());
        let child = spawn(cmd, level).await.expect("spawn nice");
        let out = child.wait_with_output().await.expect("wait");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a number")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn children_start_at_their_levels_below_the_service() {
        let own = rustix::process::getpriority_process(None).expect("own nice");
        assert_eq!(nice_of_child(0).await, own, "level 0 keeps the service's");
        assert_eq!(nice_of_child(4).await, (own + 4).min(19));
        assert_eq!(nice_of_child(19).await, 19);
        // A level's threads keep theirs: level 0 after the others is still the service's.
        assert_eq!(nice_of_child(0).await, own);
        assert_eq!(nice_of_child(4).await, (own + 4).min(19));
    }

    fn holder(pid: i32, cookie: &str, start: u64) -> Holder {
        Holder {
            pid,
            cookie: cookie.into(),
            start,
            command: "sleep 60".into(),
        }
    }

    #[test]
    fn dead_and_reused_service_pids_make_orphans_live_ones_do_not() {
        // Service 10 is gone; 20 started (tick 500) after its step (tick 400): pid reuse;
        // 30 started before its steps: alive; 40 (this instance) started after the oldest
        // holder of its cookie: an earlier incarnation with the same pid.
        let starts = |pid: u32| match pid {
            20 => Some(500),
            30 => Some(100),
            40 => Some(900),
            _ => None,
        };
        let holders = [
            holder(1, "10-1", 50),
            holder(2, "20-1", 400),
            holder(3, "30-1", 200),
            // A late child of 30's step: the oldest holder decides.
            holder(4, "30-1", 950),
            holder(5, "40-3", 800),
            holder(6, "40-4", 950),
            holder(7, "not-a-cookie", 1),
        ];
        let got = classify(&holders, 40, &starts);
        let cookies: Vec<&str> = got.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(cookies, ["10-1", "20-1", "40-3"]);
        assert_eq!(got[0].1, "its service pid 10 is not running");
        assert_eq!(
            got[1].1,
            "pid 20 was reused: that process started after the step"
        );
        assert_eq!(
            got[2].1,
            "pid 40 was reused: that process started after the step (it is this instance)"
        );
        // A child started after its service's pid was reused is still an orphan when an
        // older holder of the same cookie lives.
        let got = classify(
            &[holder(8, "20-9", 100), holder(9, "20-9", 600)],
            40,
            &starts,
        );
        assert_eq!(got.len(), 1);
    }

    /// Waits (bounded) until `pid` runs `comm` (it has `exec`ed past `setpriv`).
    fn wait_for_exec(pid: u32, comm: &str) {
        for _ in 0..500 {
            let now = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if now.trim() == comm {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{pid} never became {comm}");
    }

    #[test]
    fn the_parent_death_signal_follows_the_forking_thread_and_the_spawner_outlives_steps() {
        let sp = setpriv().expect("util-linux `setpriv` with --pdeathsig is needed here");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let env = vec![("PATH".to_string(), "/usr/bin:/bin".to_string())];
        let cmd = || {
            let (mut c, wrapped) = command("sleep", &["1".into()], &env, Some(&sp));
            assert!(wrapped, "an ELF program goes through setpriv");
            c.env_clear().env("PATH", "/usr/bin:/bin");
            c
        };
        // The caveat: forked by a thread that then exits (as a blocking-pool thread does
        // when idle), the step is killed although the process lives on.
        let h = rt.handle().clone();
        let mut c = cmd();
        let mut forked_here = std::thread::spawn(move || {
            let _ctx = h.enter();
            let child = c.spawn().expect("spawn");
            wait_for_exec(child.id().expect("pid"), "sleep");
            child
        })
        .join()
        .expect("thread");
        // Through a spawner thread, from a thread that exits just the same: it runs on.
        let h = rt.handle().clone();
        let c = cmd();
        let mut forked_by_spawner = std::thread::spawn(move || {
            let child = h.block_on(spawn(c, 0)).expect("spawn");
            wait_for_exec(child.id().expect("pid"), "sleep");
            child
        })
        .join()
        .expect("thread");
        rt.block_on(async {
            let st = forked_here.wait().await.expect("wait");
            assert_eq!(st.signal(), Some(9), "{st:?}");
            let st = forked_by_spawner.wait().await.expect("wait");
            assert_eq!(st.code(), Some(0), "{st:?}");
        });
    }

    #[test]
    fn only_programs_setpriv_execs_like_a_direct_start_are_wrapped() {
        let dir = std::env::temp_dir().join(format!("kh-lifeline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let write = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(name);
            std::fs::write(&p, body).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            p.display().to_string()
        };
        let script = write("script", "#!/bin/sh\nexit 0\n");
        let bare = write("bare", "exit 0\n");
        let path = vec![("PATH".to_string(), dir.display().to_string())];
        let sp = Path::new("/usr/bin/setpriv");
        let wrapped = |program: &str, env: &[(String, String)]| {
            let (c, w) = command(program, &["x".into()], env, Some(sp));
            let argv: Vec<String> = c
                .as_std()
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            (
                w,
                c.as_std().get_program().to_string_lossy().into_owned(),
                argv,
            )
        };
        // ELF and `#!`: through setpriv, the argv after `--`, untouched.
        assert_eq!(
            wrapped("/bin/sh", &path),
            (
                true,
                "/usr/bin/setpriv".into(),
                vec![
                    "--pdeathsig".into(),
                    "SIGKILL".into(),
                    "--".into(),
                    "/bin/sh".into(),
                    "x".into()
                ]
            )
        );
        assert!(wrapped(&script, &path).0);
        assert!(
            wrapped("script", &path).0,
            "found through the children's PATH"
        );
        // No `#!`, not found, no PATH, no setpriv: started directly, as ever.
        assert_eq!(
            wrapped(&bare, &path),
            (false, bare.clone(), vec!["x".into()])
        );
        assert!(!wrapped("bare", &path).0);
        assert!(!wrapped("no-such-program", &path).0);
        assert!(!wrapped("script", &[]).0);
        let (c, w) = command("/bin/sh", &[], &path, None);
        assert!(!w);
        assert_eq!(c.as_std().get_program(), "/bin/sh");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn own_start_time_is_read() {
        let me = std::process::id();
        let mine = proc_start(me).expect("own start time");
        assert!(mine > 0);
        // The init process started first.
        assert!(proc_start(1).is_none_or(|init| init <= mine));
        assert_eq!(proc_start(u32::MAX), None);
    }

    /// A pid that no process has (a child that has been reaped).
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("/bin/true")
            .spawn()
            .expect("spawn true");
        let pid = c.id();
        c.wait().expect("reap");
        pid
    }

    fn sleeper(cookie: &str) -> std::process::Child {
        std::process::Command::new("/bin/sleep")
            .arg("60")
            .env(STEP_COOKIE_VAR, cookie)
            .spawn()
            .expect("spawn sleep")
    }

    #[test]
    fn the_sweep_kills_a_dead_services_processes_and_spares_a_live_ones() {
        use std::io::Write;
        let tag = format!("sweeptest{}", std::process::id());
        let dead = dead_pid();
        let mut orphan = sleeper(&format!("{dead}-{tag}"));
        // This test process is alive and older than the sleeper: a live instance.
        let mut alive = sleeper(&format!("{}-{tag}", std::process::id()));
        // Pid reuse: the step starts first, then the process its cookie names (the step
        // takes its cookie from stdin and `exec`s, which keeps its start time).
        let mut reused = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                &format!("read pid; exec env {STEP_COOKIE_VAR}=$pid-{tag} /bin/sleep 60"),
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        std::thread::sleep(Duration::from_millis(30)); // a later clock tick for the next one
        let mut younger = std::process::Command::new("/bin/sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep");
        if let Some(mut stdin) = reused.stdin.take() {
            writeln!(stdin, "{}", younger.id()).expect("write the pid");
        }
        let want = format!("{STEP_COOKIE_VAR}={}-{tag}", younger.id());
        for _ in 0..200 {
            let env = std::fs::read(format!("/proc/{}/environ", reused.id())).unwrap_or_default();
            if env.split(|b| *b == 0).any(|e| e == want.as_bytes()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut killed = sweep(|c| c.ends_with(&tag));
        killed.sort_by_key(|o| o.pid);
        let mut want_pids = vec![orphan.id() as i32, reused.id() as i32];
        want_pids.sort();
        let pids: Vec<i32> = killed.iter().map(|o| o.pid).collect();
        assert_eq!(pids, want_pids, "{killed:?}");
        let by_pid = |pid: u32| {
            killed
                .iter()
                .find(|o| o.pid == pid as i32)
                .expect("killed")
                .clone()
        };
        let o = by_pid(orphan.id());
        assert_eq!(o.cookie, format!("{dead}-{tag}"));
        assert_eq!(o.command, "/bin/sleep 60");
        assert_eq!(o.why, format!("its service pid {dead} is not running"));
        let r = by_pid(reused.id());
        assert_eq!(r.cookie, format!("{}-{tag}", younger.id()));
        assert_eq!(
            r.why,
            format!(
                "pid {} was reused: that process started after the step",
                younger.id()
            )
        );
        for c in [&mut orphan, &mut reused] {
            let st = c.wait().expect("reap");
            assert_eq!(st.signal(), Some(9), "killed with SIGKILL");
        }
        for c in [&mut alive, &mut younger] {
            assert!(
                c.try_wait().expect("try_wait").is_none(),
                "a live process was touched"
            );
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
