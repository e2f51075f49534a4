//! The per-container supervisor of a detached container (`pinnace-shim`).
//!
//! No daemon keeps containers: each detached one has this small process as
//! its parent. It holds the container directory's flock for as long as the
//! container lives (the Python store reads "flock held" as "owner alive"),
//! appends the container's output to a log in podman's k8s-file format,
//! reaps it, writes its exit status to a file and, when asked, removes the
//! container. It stays resident for every idle container, so it does little
//! and keeps little: the work is the crate's `spawn` and `cgroups`.
//!
//! The configuration (one JSON file, written by Python) is described in
//! docs/ARCHITECTURE.md ("Detached containers: the shim").

use std::ffi::CString;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::Error;
use crate::spawn::{self, Stdio, Stream};

/// What to remove when the container exits (`--rm`): what the Python
/// store's `remove` removes, named by path so the shim knows no layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The container directory: renamed to `trash`, then deleted.
    pub dir: PathBuf,
    pub trash: PathBuf,
    /// The name symlink, removed only while it still points at `name_target`.
    pub name_link: Option<PathBuf>,
    pub name_target: String,
    /// Other files (the runtime record), removed if present.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecSource {
    Inline(String),
    Path(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub spec: SpecSource,
    pub log_path: PathBuf,
    pub exit_path: PathBuf,
    /// The container directory whose flock marks the owner as alive.
    pub lock_dir: PathBuf,
    /// An inherited descriptor on `lock_dir` whose open file already holds
    /// the flock (so the lock never lapses between the caller and the shim).
    pub lock_fd: Option<RawFd>,
    /// The inherited write end of a pipe that gets one JSON line.
    pub ready_fd: RawFd,
    pub tty: bool,
    /// (rows, columns) of the terminal, with `tty`.
    pub console_size: Option<(u16, u16)>,
    /// The runtime record: written (with `State.Pid` filled in) once the
    /// container runs, before the ready line; removed when it exits.
    pub runtime_record: Option<(PathBuf, Value)>,
    pub remove: Option<Removal>,
    /// An inherited pidfd of the process that owns the container (a test
    /// session): when that process exits, however it exits, the container is
    /// killed, and so ends (and is removed, with `remove`) as if stopped.
    pub owner_pidfd: Option<RawFd>,
    /// A command run once the container has ended (and when it failed to
    /// start), before the container is removed and the lock let go: what
    /// gives back the container's network (firewall elements, leases).
    pub exit_command: Option<Vec<String>>,
    /// A file naming, one per line, files to delete once the container has
    /// ended (before `exit_command`): the leases of its addresses, given back
    /// without running a program.
    pub exit_unlink: Option<PathBuf>,
    /// Where a reset is asked for and answered (absent: no resets).
    pub reset: Option<Reset>,
}

/// A reset brings a running container back to its image's state without
/// giving up its identity: whoever asks writes `request`, then kills the
/// container's first process. Seeing that end, the shim does not record an
/// exit: it swaps `upper` (the overlay's private layer) and `work` for empty ones,
/// starts the container again from the same spec, in the same network
/// namespace (so its addresses, names and published ports stay), and
/// answers in `done` (`{"pid": N}` or `{"error": ..., "exit_code": N}`;
/// written into it when it is a FIFO, which the requester then polls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    pub upper: PathBuf,
    /// The overlay's work directory: a fresh one too (a `volatile` overlay
    /// leaves a mark there that refuses the next mount).
    pub work: PathBuf,
    pub request: PathBuf,
    pub done: PathBuf,
}

fn path(v: &Value, key: &str) -> Result<PathBuf, String> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(PathBuf::from).ok_or_else(|| format!("{key}: missing or not a string"))
}

fn fd(v: &Value, key: &str) -> Result<Option<RawFd>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n.as_i64().filter(|n| (0..=i32::MAX as i64).contains(n)).map(|n| Some(n as RawFd)).ok_or_else(|| format!("{key}: not a descriptor number")),
    }
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let spec = match (v.get("spec"), v.get("spec_path")) {
            (Some(s @ Value::Object(_)), None) => SpecSource::Inline(s.to_string()),
            (None, Some(Value::String(p))) => SpecSource::Path(PathBuf::from(p)),
            _ => return Err("give exactly one of spec (an object) and spec_path".into()),
        };
        let console_size = match v.get("console_size") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) if a.len() == 2 => {
                let n = |x: &Value| x.as_u64().filter(|n| *n <= u16::MAX as u64).map(|n| n as u16);
                Some((n(&a[0]).ok_or("console_size: bad rows")?, n(&a[1]).ok_or("console_size: bad columns")?))
            }
            Some(_) => return Err("console_size: expected [rows, columns]".into()),
        };
        let remove = match v.get("remove") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(r @ Value::Object(_)) => Some(Removal {
                dir: path(r, "dir").map_err(|e| format!("remove.{e}"))?,
                trash: path(r, "trash").map_err(|e| format!("remove.{e}"))?,
                name_link: path(r, "name_link").ok(),
                name_target: r.get("name_target").and_then(Value::as_str).unwrap_or("").to_string(),
                files: r
                    .get("files")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(PathBuf::from).collect())
                    .unwrap_or_default(),
            }),
            Some(_) => return Err("remove: expected an object".into()),
        };
        let runtime_record = match v.get("runtime_record") {
            None | Some(Value::Null) => None,
            Some(r) => match (path(r, "path"), r.get("record")) {
                (Ok(p), Some(rec @ Value::Object(_))) => Some((p, rec.clone())),
                _ => return Err("runtime_record: expected {\"path\": ..., \"record\": {...}}".into()),
            },
        };
        let exit_command = match v.get("exit_command") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
                Some(a.iter().filter_map(Value::as_str).map(String::from).collect())
            }
            Some(_) => return Err("exit_command: expected a non-empty array of strings".into()),
        };
        let reset = match v.get("reset") {
            None | Some(Value::Null) => None,
            Some(r @ Value::Object(_)) => Some(Reset {
                upper: path(r, "upper").map_err(|e| format!("reset.{e}"))?,
                work: path(r, "work").map_err(|e| format!("reset.{e}"))?,
                request: path(r, "request").map_err(|e| format!("reset.{e}"))?,
                done: path(r, "done").map_err(|e| format!("reset.{e}"))?,
            }),
            Some(_) => return Err("reset: expected an object".into()),
        };
        let exit_unlink = match v.get("exit_unlink") {
            None | Some(Value::Null) => None,
            Some(_) => Some(path(&v, "exit_unlink")?),
        };
        Ok(Config {
            spec,
            runtime_record,
            exit_command,
            exit_unlink,
            reset,
            log_path: path(&v, "log_path")?,
            exit_path: path(&v, "exit_path")?,
            lock_dir: path(&v, "lock_dir")?,
            lock_fd: fd(&v, "lock_fd")?,
            ready_fd: fd(&v, "ready_fd")?.ok_or("ready_fd: missing")?,
            tty: v.get("tty").and_then(Value::as_bool).unwrap_or(false),
            console_size,
            remove,
            owner_pidfd: fd(&v, "owner_pidfd")?,
        })
    }
}

// ---- time and the k8s-file log format --------------------------------------

/// (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's
/// civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// RFC 3339 in UTC with nanoseconds, always nine digits (as the Python side's
/// `containers.now()` writes them): fixed width, so records sort as text.
pub fn rfc3339_nano(secs: i64, nanos: u32) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", s / 3600, s / 60 % 60, s % 60)
}

pub fn now() -> String {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    rfc3339_nano(ts.tv_sec, ts.tv_nsec as u32)
}

/// Append `data` (one read from `stream`) to `out` as k8s-file records:
/// `<time> <stdout|stderr> <F|P> <content>\n`, F for a complete line (its
/// newline dropped), P for a piece that ended without one.
pub fn format_records(out: &mut Vec<u8>, ts: &str, stream: Stream, data: &[u8]) {
    let name: &[u8] = if stream == Stream::Stdout { b"stdout" } else { b"stderr" };
    let mut rest = data;
    while !rest.is_empty() {
        let (line, tag, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], b'F', &rest[i + 1..]),
            None => (rest, b'P', &rest[rest.len()..]),
        };
        out.extend_from_slice(ts.as_bytes());
        out.push(b' ');
        out.extend_from_slice(name);
        out.extend_from_slice(&[b' ', tag, b' ']);
        out.extend_from_slice(line);
        out.push(b'\n');
        rest = next;
    }
}

/// The exit file's content: docker's State field names.
pub fn exit_json(code: i32, signal: Option<i32>, oom_killed: bool, finished_at: &str, error: Option<&str>) -> String {
    let mut v = json!({"ExitCode": code, "Signal": signal, "OOMKilled": oom_killed, "FinishedAt": finished_at});
    if let Some(e) = error {
        v["Error"] = json!(e);
    }
    v.to_string()
}

// ---- the process -----------------------------------------------------------

fn write_all(fd: RawFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            return false;
        }
        data = &data[n as usize..];
    }
    true
}

/// Replace `path` whole: a temporary name beside it, then rename.
fn write_atomic(path: &Path, data: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// The runtime record, with the container's pid in it.
fn write_record(path: &Path, mut rec: Value, pid: i32) -> Result<(), String> {
    if let Some(state) = rec.get_mut("State").and_then(Value::as_object_mut) {
        state.insert("Pid".into(), json!(pid));
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    write_atomic(path, &rec.to_string()).map_err(|e| format!("write {}: {e}", path.display()))
}

fn set_cloexec(fd: RawFd) {
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

fn remove(r: &Removal) {
    if let Some(link) = &r.name_link {
        if std::fs::read_link(link).is_ok_and(|t| t.as_os_str() == r.name_target.as_str()) {
            let _ = std::fs::remove_file(link);
        }
    }
    let target = if std::fs::rename(&r.dir, &r.trash).is_ok() { &r.trash } else { &r.dir };
    let _ = std::fs::remove_dir_all(target);
    for f in &r.files {
        let _ = std::fs::remove_file(f);
    }
}

/// A terminal: (master, slave), the slave opened without becoming ours.
fn open_pty(size: Option<(u16, u16)>) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let err = std::io::Error::last_os_error;
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            return Err(err());
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) < 0 || libc::unlockpt(m) < 0 {
            return Err(err());
        }
        let mut name = [0 as libc::c_char; 64];
        if libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0 {
            return Err(err());
        }
        let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if s < 0 {
            return Err(err());
        }
        if let Some((rows, cols)) = size {
            let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
            libc::ioctl(m, libc::TIOCSWINSZ, &ws);
        }
        Ok((master, OwnedFd::from_raw_fd(s)))
    }
}

/// Take the container directory's flock (never waiting for another owner).
fn lock(cfg: &Config) -> Result<OwnedFd, String> {
    let fd = match cfg.lock_fd {
        Some(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        None => {
            let c = CString::new(cfg.lock_dir.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(format!("open {}: {}", cfg.lock_dir.display(), std::io::Error::last_os_error()));
            }
            unsafe { OwnedFd::from_raw_fd(fd) }
        }
    };
    set_cloexec(fd.as_raw_fd());
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
        return Err(format!("lock {}: {}", cfg.lock_dir.display(), std::io::Error::last_os_error()));
    }
    Ok(fd)
}

/// Create and start the container; on success its handle, else the message
/// and docker-like exit code the caller reports.
fn launch(cfg: &Config) -> Result<spawn::Container, (String, i32)> {
    let fail = |e: Error| (e.to_string(), e.exit_code());
    let spec = match &cfg.spec {
        SpecSource::Inline(s) => s.clone(),
        SpecSource::Path(p) => std::fs::read_to_string(p).map_err(|e| (format!("read {}: {e}", p.display()), 125))?,
    };
    let plan = crate::plan_from_json(&spec).map_err(fail)?;
    drop(spec);
    let pty = if cfg.tty { Some(open_pty(cfg.console_size).map_err(|e| (format!("allocate a terminal: {e}"), 125))?) } else { None };
    let stdio = match &pty {
        Some((_, slave)) => [Stdio::Fd(slave.as_raw_fd()); 3],
        None => [Stdio::Null, Stdio::Pipe, Stdio::Pipe],
    };
    let opts = spawn::Options { die_with_parent: true, terminal: cfg.tty };
    let mut c = spawn::create(plan, stdio, opts).map_err(fail)?;
    if let Some((master, slave)) = pty {
        // the container's side closes when its last process does: EIO here
        drop(slave);
        c.stdout = Some(master);
    }
    c.start().map_err(fail)?;
    Ok(c)
}

/// The container's first process as the owner's watcher sees it: a pidfd
/// (-1: none) that a reset swaps for the new process's, and whether the
/// owner is gone (then no reset starts the container again).
#[derive(Default)]
struct Watch {
    target: RawFd,
    gone: bool,
}

type SharedWatch = std::sync::Arc<std::sync::Mutex<Watch>>;

fn pidfd_open(pid: i32) -> RawFd {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    if fd >= 0 {
        set_cloexec(fd);
    }
    fd
}

fn pidfd_kill(fd: RawFd) {
    if fd >= 0 {
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, libc::SIGKILL, std::ptr::null::<libc::c_void>(), 0) };
    }
}

/// A thread that waits for the owner (readable pidfd: it exited) and then
/// kills the container's first process, which takes its whole pid namespace
/// along; `supervise` then sees the end as for any other.
fn kill_when_owner_exits(owner: RawFd, pid: i32) -> SharedWatch {
    // a pidfd now, while the container cannot yet have been reaped
    let watch = SharedWatch::new(std::sync::Mutex::new(Watch { target: pidfd_open(pid), gone: false }));
    let w = watch.clone();
    let spawned = std::thread::Builder::new().stack_size(64 << 10).spawn(move || loop {
        let mut p = libc::pollfd { fd: owner, events: libc::POLLIN, revents: 0 };
        let r = unsafe { libc::poll(&mut p, 1, -1) };
        if r > 0 {
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            w.gone = true;
            pidfd_kill(w.target);
            return;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    });
    if spawned.is_err() {
        // no watcher: at worst the container outlives its owner until a sweep
        let mut w = watch.lock().unwrap_or_else(|e| e.into_inner());
        unsafe { libc::close(w.target) };
        w.target = -1;
    }
    watch
}

/// Log records are gathered up to this size before a write.
const LOG_FLUSH: usize = 8192;
/// How much output one read takes.
const CHUNK: usize = 16384;

/// Run as `pinnace-shim CONFIG.json`; returns the process exit status.
pub fn main(args: &[String]) -> i32 {
    let [_, config_path] = args else {
        eprintln!("usage: pinnace-shim CONFIG.json");
        return 2;
    };
    let cfg = match std::fs::read_to_string(config_path).map_err(|e| e.to_string()).and_then(|t| Config::parse(&t)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pinnace-shim: {config_path}: {e}");
            return 2;
        }
    };
    set_cloexec(cfg.ready_fd);
    if let Some(fd) = cfg.owner_pidfd {
        set_cloexec(fd);
    }
    // Fork once so that the caller can reap its child at once, and the shim
    // is adopted by init (or the caller's subreaper) instead.
    match unsafe { libc::fork() } {
        0 => {}
        -1 => {
            let e = std::io::Error::last_os_error();
            ready(cfg.ready_fd, &json!({"error": format!("fork the shim: {e}"), "exit_code": 125}));
            return 1;
        }
        _ => unsafe { libc::_exit(0) },
    }
    unsafe {
        libc::setsid();
        for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let _ = std::env::set_current_dir("/");
    // Setting up and supervising are separate frames, so that what setting
    // up used of the stack lies below this one when `shed` gives it back.
    match setup(cfg) {
        Ok(running) => {
            let watch = match running.cfg.owner_pidfd {
                Some(fd) => kill_when_owner_exits(fd, running.c.pid),
                None => SharedWatch::new(std::sync::Mutex::new(Watch { target: -1, gone: false })),
            };
            shed();
            supervise(running, &watch, config_path)
        }
        Err(status) => status,
    }
}

/// A started container and what its supervisor holds.
struct Running {
    cfg: Config,
    c: spawn::Container,
    log: std::fs::File,
    lock: OwnedFd,
    runtime_file: Option<PathBuf>,
    /// The network namespace the container joined by path (kept for a reset:
    /// the path it was given may name another process's descriptor).
    netns: Option<OwnedFd>,
}

/// Lock, create, start, record; answer on the ready pipe either way.
#[inline(never)]
fn setup(mut cfg: Config) -> Result<Running, i32> {
    let lock_fd = match lock(&cfg) {
        Ok(fd) => fd,
        Err(e) => {
            ready(cfg.ready_fd, &json!({"error": e, "exit_code": 125}));
            return Err(1);
        }
    };
    let runtime_file = cfg.runtime_record.as_ref().map(|(p, _)| p.clone());
    let launched = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&cfg.log_path)
        .map_err(|e| (format!("open log {}: {e}", cfg.log_path.display()), 125))
        .and_then(|log| launch(&cfg).map(|c| (c, log)))
        .and_then(|(c, log)| match cfg.runtime_record.take() {
            None => Ok((c, log)),
            // dropping `c` kills the container
            Some((path, rec)) => write_record(&path, rec, c.pid).map(|_| (c, log)).map_err(|e| (e, 125)),
        });
    match launched {
        Ok((mut c, log)) => {
            let netns = match (&cfg.reset, &cfg.spec) {
                (Some(_), SpecSource::Inline(spec)) if joins_netns(spec) => open_netns(c.pid),
                _ => None,
            };
            ready(cfg.ready_fd, &json!({"pid": c.pid, "shim_pid": std::process::id()}));
            cfg.spec = SpecSource::Inline(String::new());
            c.release_plan();
            Ok(Running { cfg, c, log, lock: lock_fd, runtime_file, netns })
        }
        Err((msg, code)) => {
            // The container is done with before anyone learnt of it: record
            // and clean up first, so the caller sees the end state.
            let _ = write_atomic(&cfg.exit_path, &exit_json(code, None, false, &now(), Some(&msg)));
            run_exit_command(&cfg);
            if let Some(r) = &cfg.remove {
                remove(r);
            }
            // let go before answering: the caller may look at once
            drop(lock_fd);
            ready(cfg.ready_fd, &json!({"error": msg, "exit_code": code}));
            Err(0)
        }
    }
}

/// Log the output until the container ends; record the end; clean up.
/// An end that a reset asked for starts the container again instead.
#[inline(never)]
fn supervise(r: Running, watch: &SharedWatch, config_path: &str) -> i32 {
    let Running { cfg, mut c, log, lock, runtime_file, netns } = r;
    let log_fd = log.as_raw_fd();
    let mut records: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut sink = |stream: Stream, data: &[u8]| {
        let ts = now();
        for piece in data.chunks(LOG_FLUSH) {
            format_records(&mut records, &ts, stream, piece);
            if records.len() >= LOG_FLUSH {
                write_all(log_fd, &records);
                records.clear();
            }
        }
        write_all(log_fd, &records);
        records.clear();
        if records.capacity() > 4 * LOG_FLUSH {
            records = Vec::new();
        }
    };
    let (text, last) = loop {
        let exit = c.wait_streaming(&mut chunk, &mut sink);
        let reset = cfg.reset.as_ref().filter(|r| std::fs::remove_file(&r.request).is_ok());
        let Some(reset) = reset.filter(|_| !watch.lock().unwrap_or_else(|e| e.into_inner()).gone) else {
            break (exit_text(&exit, &c), Some(c));
        };
        // the old container's cgroup goes before the new one takes its place
        drop(c);
        let mut old = Vec::new();
        let relaunched = relaunch(&cfg, reset, config_path, netns.as_ref(), &mut old);
        match relaunched {
            Ok(new) => {
                c = new;
                {
                    let mut w = watch.lock().unwrap_or_else(|e| e.into_inner());
                    if w.target >= 0 {
                        unsafe { libc::close(w.target) };
                        w.target = pidfd_open(c.pid);
                    }
                    if w.gone {
                        pidfd_kill(w.target);
                    }
                }
                if let Some(f) = &runtime_file {
                    restamp_record(f, c.pid);
                }
                answer(&reset.done, &json!({"pid": c.pid}).to_string());
                c.release_plan();
                remove_all(&old);
            }
            Err((msg, code)) => {
                answer(&reset.done, &json!({"error": msg, "exit_code": code}).to_string());
                remove_all(&old);
                break (exit_json(code, None, false, &now(), Some(&msg)), None);
            }
        }
    };
    drop(chunk);
    drop(log);
    let _ = write_atomic(&cfg.exit_path, &text);
    if let Some(f) = &runtime_file {
        let _ = std::fs::remove_file(f);
    }
    drop(last);
    drop(netns);
    run_exit_command(&cfg);
    if let Some(r) = &cfg.remove {
        remove(r);
    }
    drop(lock);
    0
}

/// exit.json's content for how the container ended.
fn exit_text(exit: &crate::error::Result<spawn::Exit>, c: &spawn::Container) -> String {
    let finished = now();
    match exit {
        Ok(e) => exit_json(e.code, e.signal, e.oom_killed, &finished, None),
        Err(e) => {
            let (code, signal) = c.exit_status().unwrap_or((125, None));
            exit_json(code, signal, false, &finished, Some(&e.to_string()))
        }
    }
}

/// A reset's answer: into the FIFO its requester waits on (woken at once,
/// no polling), else as a file.
fn answer(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::FileTypeExt;

    let fifo = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(path);
    match fifo {
        Ok(mut f) if f.metadata().is_ok_and(|m| m.file_type().is_fifo()) => {
            let _ = f.write_all(format!("{text}\n").as_bytes());
        }
        _ => {
            let _ = write_atomic(path, text);
        }
    }
}

/// Whether the spec joins an existing network namespace by path.
fn joins_netns(spec: &str) -> bool {
    let v: Value = serde_json::from_str(spec).unwrap_or(Value::Null);
    network_ns(&v).is_some_and(|ns| ns.get("path").and_then(Value::as_str).is_some_and(|p| !p.is_empty()))
}

fn is_network(ns: &Value) -> bool {
    ns.get("type").and_then(Value::as_str) == Some("network")
}

fn network_ns(spec: &Value) -> Option<&Value> {
    spec.pointer("/linux/namespaces")?.as_array()?.iter().find(|ns| is_network(ns))
}

fn network_ns_mut(spec: &mut Value) -> Option<&mut Value> {
    spec.pointer_mut("/linux/namespaces")?.as_array_mut()?.iter_mut().find(|ns| is_network(ns))
}

fn open_netns(pid: i32) -> Option<OwnedFd> {
    let path = CString::new(format!("/proc/{pid}/ns/net")).ok()?;
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Start the container again for a reset: an empty upper layer and work
/// directory (the old ones' paths pushed onto `old`, to be deleted once the
/// caller has its answer, whether or not the start succeeded), the
/// spec from the shim's configuration file, the kept network namespace.
fn relaunch(cfg: &Config, reset: &Reset, config_path: &str, netns: Option<&OwnedFd>, old: &mut Vec<PathBuf>) -> Result<spawn::Container, (String, i32)> {
    let stamp = format!(".reset-{}", now().replace([':', '.'], ""));
    for dir in [&reset.upper, &reset.work] {
        let mut aside = dir.as_os_str().to_owned();
        aside.push(&stamp);
        let aside = PathBuf::from(aside);
        std::fs::rename(dir, &aside).map_err(|e| (format!("reset: move {} aside: {e}", dir.display()), 125))?;
        old.push(aside);
        std::fs::DirBuilder::new().mode(0o755).create(dir).map_err(|e| (format!("reset: make {}: {e}", dir.display()), 125))?;
    }
    let text = std::fs::read_to_string(config_path).map_err(|e| (format!("reset: read {config_path}: {e}"), 125))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| (format!("reset: {config_path}: {e}"), 125))?;
    let mut spec = v.get("spec").cloned().ok_or_else(|| (format!("reset: {config_path}: no spec"), 125))?;
    if let Some(fd) = netns {
        let path = format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd());
        if let Some(ns) = network_ns_mut(&mut spec) {
            ns["path"] = json!(path);
        }
    }
    let mut again = cfg.clone();
    again.spec = SpecSource::Inline(spec.to_string());
    again.runtime_record = None;
    launch(&again)
}

fn remove_all(dirs: &[PathBuf]) {
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The runtime record after a reset: the new pid and start time.
fn restamp_record(path: &Path, pid: i32) {
    let Ok(text) = std::fs::read_to_string(path) else { return };
    let Ok(mut rec) = serde_json::from_str::<Value>(&text) else { return };
    if let Some(state) = rec.get_mut("State").and_then(Value::as_object_mut) {
        state.insert("StartedAt".into(), json!(now()));
    }
    let _ = write_record(path, rec, pid);
}

/// Delete the files `exit_unlink` lists, then run `exit_command` to its end,
/// its output discarded; a failure to run it leaves what it would have freed
/// to the next pinnace command's sweep.
fn run_exit_command(cfg: &Config) {
    if let Some(list) = &cfg.exit_unlink {
        for f in std::fs::read_to_string(list).unwrap_or_default().lines().filter(|l| !l.is_empty()) {
            let _ = std::fs::remove_file(f);
        }
    }
    if let Some(argv) = &cfg.exit_command {
        let _ = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Hand back what setting up took, so the idle shim costs only what it
/// holds: the heap's free pages, the stack below this frame, and the
/// mappings of our own binary's read-only pages (they stay in the page cache;
/// only the few pages the idle loop runs fault back in).
#[inline(never)]
fn shed() {
    let marker = 0u8;
    // below this address only the frames of the calls made from here live
    let stack_keep = (&marker as *const u8 as usize).saturating_sub(16 << 10) & !4095;
    let (Ok(exe), Ok(smaps)) = (std::fs::read_link("/proc/self/exe"), std::fs::read_to_string("/proc/self/smaps")) else {
        return;
    };
    let mut drops: Vec<(usize, usize)> = Vec::new();
    let mut cur: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').and_then(|(a, b)| Some((usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?))) {
            let perms = f.next().unwrap_or("");
            let name = f.nth(3).unwrap_or("");
            cur = None;
            if name == "[stack]" && a < stack_keep {
                drops.push((a, stack_keep.min(b)));
            } else if perms.as_bytes().get(1) == Some(&b'-') && Path::new(name) == exe {
                cur = Some((a, b));
            }
        } else if first == "Anonymous:" {
            // never a page the loader wrote (relocations): only clean ones
            if let (Some(m), Some("0")) = (cur.take(), f.next()) {
                drops.push(m);
            }
        }
    }
    drop(smaps);
    for (a, b) in drops {
        unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED) };
    }
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The one line the caller waits for; closing the pipe ends its read.
fn ready(fd: RawFd, v: &Value) {
    let mut line = v.to_string();
    line.push('\n');
    write_all(fd, line.as_bytes());
    unsafe { libc::close(fd) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(chunks: &[(Stream, &[u8])]) -> String {
        let mut out = Vec::new();
        for (s, d) in chunks {
            format_records(&mut out, "T", *s, d);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn complete_lines_are_full_records() {
        assert_eq!(records(&[(Stream::Stdout, b"a\nbb\n")]), "T stdout F a\nT stdout F bb\n");
        assert_eq!(records(&[(Stream::Stderr, b"\n")]), "T stderr F \n");
        assert_eq!(records(&[(Stream::Stdout, b"")]), "");
    }

    #[test]
    fn a_piece_without_newline_is_partial() {
        assert_eq!(records(&[(Stream::Stdout, b"a\nhal"), (Stream::Stdout, b"f\n")]), "T stdout F a\nT stdout P hal\nT stdout F f\n");
        assert_eq!(records(&[(Stream::Stderr, b"no newline")]), "T stderr P no newline\n");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_nanoseconds() {
        assert_eq!(rfc3339_nano(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_nano(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339_nano(1_700_000_000, 123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(rfc3339_nano(4_102_444_799, 999_999_999), "2099-12-31T23:59:59.999999999Z");
        assert_eq!(now().len(), 30);
    }

    #[test]
    fn exit_file_has_docker_field_names() {
        let v: Value = serde_json::from_str(&exit_json(137, Some(9), true, "X", None)).unwrap();
        assert_eq!(v, json!({"ExitCode": 137, "Signal": 9, "OOMKilled": true, "FinishedAt": "X"}));
        let v: Value = serde_json::from_str(&exit_json(127, None, false, "X", Some("exec failed"))).unwrap();
        assert_eq!(v["Signal"], Value::Null);
        assert_eq!(v["Error"], "exec failed");
    }

    #[test]
    fn config_parses() {
        let c = Config::parse(
            r#"{"spec": {"ociVersion": "1.0.2"}, "log_path": "/c/ctr.log", "exit_path": "/c/exit.json",
                "lock_dir": "/c", "lock_fd": 5, "ready_fd": 4, "tty": true, "console_size": [24, 80], "owner_pidfd": 6,
                "remove": {"dir": "/c", "trash": "/.trash-c", "name_link": "/n/x", "name_target": "c",
                           "files": ["/run/c.json"]}}"#,
        )
        .unwrap();
        assert_eq!(c.spec, SpecSource::Inline(r#"{"ociVersion":"1.0.2"}"#.into()));
        assert_eq!((c.lock_fd, c.ready_fd, c.tty, c.console_size), (Some(5), 4, true, Some((24, 80))));
        assert_eq!(c.owner_pidfd, Some(6));
        let r = c.remove.unwrap();
        assert_eq!(r.name_link, Some(PathBuf::from("/n/x")));
        assert_eq!(r.files, vec![PathBuf::from("/run/c.json")]);
        assert_eq!(c.exit_command, None);

        let ok = r#"{"spec": {}, "log_path": "l", "exit_path": "e", "lock_dir": "d", "ready_fd": 3, "exit_command": ["/bin/sh", "/c/down.sh"]}"#;
        assert_eq!(Config::parse(ok).unwrap().exit_command, Some(vec!["/bin/sh".to_string(), "/c/down.sh".to_string()]));
        for bad in [r#""exit_command": []"#, r#""exit_command": "sh""#, r#""exit_command": ["sh", 1]"#] {
            let text = format!(r#"{{"spec": {{}}, "log_path": "l", "exit_path": "e", "lock_dir": "d", "ready_fd": 3, {bad}}}"#);
            assert!(Config::parse(&text).unwrap_err().starts_with("exit_command"), "{bad}");
        }

        let rec = r#""runtime_record": {"path": "/run/c.json", "record": {"State": {"Pid": 0}}}"#;
        let c = Config::parse(&format!(r#"{{"spec": {{}}, "log_path": "l", "exit_path": "e", "lock_dir": "d", "ready_fd": 3, {rec}}}"#)).unwrap();
        assert_eq!(c.runtime_record, Some((PathBuf::from("/run/c.json"), json!({"State": {"Pid": 0}}))));

        let c = Config::parse(r#"{"spec_path": "/b/config.json", "log_path": "l", "exit_path": "e", "lock_dir": "d", "ready_fd": 3}"#).unwrap();
        assert_eq!(c.spec, SpecSource::Path("/b/config.json".into()));
        assert_eq!((c.lock_fd, c.tty, c.console_size, c.remove, c.owner_pidfd), (None, false, None, None, None));
        assert_eq!((c.reset, c.exit_unlink), (None, None));
        let c = Config::parse(r#"{"spec": {}, "log_path": "l", "exit_path": "e", "lock_dir": "d", "ready_fd": 3, "exit_unlink": "/c/net-down.files"}"#).unwrap();
        assert_eq!(c.exit_unlink, Some(PathBuf::from("/c/net-down.files")));

        let reset = r#""reset": {"upper": "/c/upper", "work": "/c/work", "request": "/c/reset.request", "done": "/c/reset.done"}"#;
        let c = Config::parse(&format!(r#"{{"spec": {{}}, "log_path": "l", "exit_path": "e", "lock_dir": "d", "ready_fd": 3, {reset}}}"#)).unwrap();
        assert_eq!(c.reset.map(|r| (r.upper, r.done)), Some(("/c/upper".into(), "/c/reset.done".into())));
        let bad = r#""reset": {"upper": "/c/upper", "work": "/c/work", "request": "/c/reset.request"}"#;
        let e = Config::parse(&format!(r#"{{"spec": {{}}, "log_path": "l", "exit_path": "e", "lock_dir": "d", "ready_fd": 3, {bad}}}"#)).unwrap_err();
        assert!(e.starts_with("reset.done"), "{e}");
    }

    #[test]
    fn a_reset_finds_the_network_namespace_joined_by_path() {
        assert!(joins_netns(r#"{"linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/1/fd/3"}]}}"#));
        assert!(!joins_netns(r#"{"linux": {"namespaces": [{"type": "network"}]}}"#));
        assert!(!joins_netns(r#"{"linux": {"namespaces": [{"type": "pid"}]}}"#));
    }

    #[test]
    fn config_errors_name_the_field() {
        let base = r#""log_path": "l", "exit_path": "e", "lock_dir": "d""#;
        let err = |t: &str| Config::parse(t).unwrap_err();
        assert!(err(&format!(r#"{{{base}, "ready_fd": 3}}"#)).contains("spec"));
        assert!(err(&format!(r#"{{"spec": {{}}, {base}}}"#)).contains("ready_fd"));
        assert!(err(&format!(r#"{{"spec": {{}}, {base}, "ready_fd": -1}}"#)).contains("ready_fd"));
        assert!(err(r#"{"spec": {}, "exit_path": "e", "lock_dir": "d", "ready_fd": 3}"#).contains("log_path"));
        assert!(err(&format!(r#"{{"spec": {{}}, {base}, "ready_fd": 3, "remove": {{"dir": "d"}}}}"#)).contains("remove.trash"));
    }

    #[test]
    fn the_runtime_record_gets_the_pid() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run/containers/c.json");
        write_record(&p, json!({"Id": "c", "State": {"Status": "running", "Pid": 0}}), 42).unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v, json!({"Id": "c", "State": {"Status": "running", "Pid": 42}}));
    }

    #[test]
    fn removal_keeps_a_name_taken_over_by_another_container() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("c1");
        std::fs::create_dir_all(dir.join("upper/x")).unwrap();
        std::os::unix::fs::symlink("c2", d.path().join("name")).unwrap();
        std::fs::write(d.path().join("c1.json"), "{}").unwrap();
        let r = Removal {
            dir: dir.clone(),
            trash: d.path().join(".trash-c1"),
            name_link: Some(d.path().join("name")),
            name_target: "c1".into(),
            files: vec![d.path().join("c1.json")],
        };
        remove(&r);
        assert!(!dir.exists() && !r.trash.exists() && !r.files[0].exists());
        assert!(d.path().join("name").symlink_metadata().is_ok(), "another container's name stays");
        std::fs::remove_file(d.path().join("name")).unwrap();
        std::os::unix::fs::symlink("c1", d.path().join("name")).unwrap();
        remove(&r);
        assert!(d.path().join("name").symlink_metadata().is_err());
    }
}
