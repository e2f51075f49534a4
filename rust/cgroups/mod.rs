//! Cgroups: one directory per container under one parent, limits written
//! as files, usage read back, and every process killed at the end.
//!
//! [`Manager`] has a v1 and a v2 implementation; [`open`] detects which one
//! the host needs (v1, v2, or hybrid, where the v1 controllers do the work).
//! Both only touch files below the roots they are given, so every
//! controller's writes are unit-tested on a tempdir.

pub mod v1;
pub mod v2;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
pub const NO_BLKIO_WEIGHT: &str =
    "your kernel does not support block I/O weight (the I/O scheduler has no weight control): weight discarded";
pub const NO_SWAP_LIMIT: &str =
    "your kernel does not support swap limit capabilities or the cgroup is not mounted: memory limited without swap";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {op}: {errno}")]
    Io { path: PathBuf, op: &'static str, errno: Errno },
    #[error("cgroup {path}: write {data:?}: {errno}")]
    Write { path: PathBuf, data: String, errno: Errno },
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, CgroupError>;

fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Write one control file, naming the file, the data and the errno on failure.
pub fn write_file(path: &Path, data: &str) -> Result<()> {
    fs::write(path, data).map_err(|e| CgroupError::Write { path: path.to_path_buf(), data: data.into(), errno: errno_of(&e) })
}

pub fn read_file(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| CgroupError::Io { path: path.to_path_buf(), op: "read", errno: errno_of(&e) })
}

/// mkdir that accepts an existing directory.
pub fn mkdir(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CgroupError::Io { path: path.to_path_buf(), op: "mkdir", errno: errno_of(&e) }),
    }
}

/// rmdir that accepts a missing directory and waits out EBUSY (tasks still
/// leaving after a kill).
pub fn rmdir(path: &Path, patience: Duration) -> Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if errno_of(&e) == Errno::EBUSY && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => return Err(CgroupError::Io { path: path.to_path_buf(), op: "rmdir", errno: errno_of(&e) }),
        }
    }
}

/// Limits, in docker's terms, already validated by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// bytes
    pub memory: Option<i64>,
    /// memory + swap in bytes; -1 unlimited swap
    pub memory_swap: Option<i64>,
    /// soft limit in bytes
    pub memory_reservation: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// docker's --cpu-shares (cgroup v1 units, 2..262144)
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// <= 0 means unlimited
    pub pids_limit: Option<i64>,
    /// 10..1000
    pub blkio_weight: Option<u16>,
    /// (major, minor, bytes per second)
    pub read_bps: Vec<(i64, i64, u64)>,
    pub write_bps: Vec<(i64, i64, u64)>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }
}

/// What a container used, read from its cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub memory_usage: u64,
    /// u64::MAX when unlimited
    pub memory_limit: u64,
    pub memory_peak: u64,
    /// page cache that docker subtracts from usage (inactive_file)
    pub memory_inactive_file: u64,
    pub cpu_usage_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub cpu_periods: u64,
    pub cpu_throttled_periods: u64,
    pub cpu_throttled_ns: u64,
    pub pids_current: u64,
    /// u64::MAX when unlimited
    pub pids_limit: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub oom_kills: u64,
}

pub trait Manager: Send + Sync {
    /// Make the cgroup (and the shared parent, enabling controllers on it).
    fn create(&self) -> Result<()>;
    /// Write the limits; returns warnings for limits the host cannot enforce
    /// (docker discards those with a warning too).
    fn apply(&self, r: &Resources) -> Result<Vec<String>>;
    /// The cgroup.procs files a process writes "0" into to join.
    fn procs_files(&self) -> Vec<PathBuf>;
    /// The v2 directory, for clone3(CLONE_INTO_CGROUP); None on v1.
    fn unified_dir(&self) -> Option<PathBuf>;
    fn pids(&self) -> Result<Vec<i32>>;
    fn stats(&self) -> Result<Stats>;
    /// SIGKILL every process in the cgroup, so nothing escapes by forking.
    fn kill_all(&self) -> Result<()>;
    /// Kill what is left and remove the cgroup. The shared parent stays (as
    /// docker's does): making and removing it on every run would cost more
    /// than the run; `remove_parent_if_empty` is for prune.
    fn destroy(&self) -> Result<()>;
    /// Remove the parent directories of this cgroup that hold no other cgroup.
    fn remove_parent_if_empty(&self);
}

/// Which hierarchy layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    V1,
    V2,
    /// v1 controllers, plus a cgroup2 mount (at `unified/`) without them.
    Hybrid,
}

fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).map(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC).unwrap_or(false)
}

pub fn detect(root: &Path) -> Mode {
    if is_cgroup2(root) {
        Mode::V2
    } else if is_cgroup2(&root.join("unified")) {
        Mode::Hybrid
    } else {
        Mode::V1
    }
}

/// The v1 hierarchies from /proc/self/mountinfo: (controllers, mount point).
pub fn v1_mounts() -> Vec<(Vec<String>, PathBuf)> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    parse_v1_mounts(&info)
}

pub fn parse_v1_mounts(mountinfo: &str) -> Vec<(Vec<String>, PathBuf)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let _source = post.next();
        let opts = post.next().unwrap_or("");
        let Some(mount_point) = pre.split_whitespace().nth(4) else { continue };
        let controllers: Vec<String> = opts
            .split(',')
            .filter(|o| v1::CONTROLLERS.contains(o))
            .map(String::from)
            .collect();
        if !controllers.is_empty() {
            out.push((controllers, PathBuf::from(mount_point)));
        }
    }
    out
}

/// The cgroup.procs file of the cgroup this process is in, in the first v1
/// hierarchy of `mountinfo` (/proc/self/mountinfo) that `proc_cgroup`
/// (/proc/self/cgroup) places it in, below that mount's root.
pub fn own_v1_procs_file(mountinfo: &str, proc_cgroup: &str) -> Option<PathBuf> {
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let opts: Vec<&str> = post.nth(1).unwrap_or("").split(',').filter(|o| v1::CONTROLLERS.contains(o)).collect();
        let mut pre = pre.split_whitespace();
        let (Some(root), Some(mount_point)) = (pre.nth(3), pre.next()) else { continue };
        if opts.is_empty() {
            continue;
        }
        // "ID:controller[,controller...]:path", the same controllers as the mount's
        let path = proc_cgroup.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            ctrl.split(',').any(|c| opts.contains(&c)).then_some(path)
        })?;
        let below = if root == "/" { Some(path) } else { path.strip_prefix(root).filter(|r| r.is_empty() || r.starts_with('/')) };
        let mut file = PathBuf::from(mount_point);
        file.push(below?.trim_start_matches('/'));
        file.push("cgroup.procs");
        return Some(file);
    }
    None
}

/// Get the kernel ready to move a process into a v1 cgroup, on a thread of
/// its own; returns at once.
///
/// Each move through cgroup.procs takes cgroup_threadgroup_rwsem for
/// writing, which first waits for an RCU grace period (its readers switch to
/// their slow path): 5-15 ms on a mostly idle host, on every start that
/// follows a pause. The switch then holds until about a grace period after
/// the last move. A container joining its v1 cgroups pays that wait in the
/// middle of its start; this starts it ahead, with a move that changes
/// nothing (this process into the cgroup it is already in), so that a caller
/// who calls this early (the CLI, before Python imports the rest) finds the
/// join fast. On v2 hosts the child is cloned straight into its cgroup,
/// which waits for nothing: there this does nothing. Best effort: errors are
/// ignored.
pub fn prewarm_migration() {
    if layout().0 == Mode::V2 {
        return;
    }
    let (Ok(info), Ok(own)) = (fs::read_to_string("/proc/self/mountinfo"), fs::read_to_string("/proc/self/cgroup")) else {
        return;
    };
    use std::os::unix::ffi::OsStringExt;
    let Some(Ok(file)) = own_v1_procs_file(&info, &own).map(|f| std::ffi::CString::new(f.into_os_string().into_vec()))
    else {
        return;
    };
    // Plain open and write: the thread allocates nothing (its first malloc
    // would set up an arena of its own) and needs no more than a small stack.
    let spawned = std::thread::Builder::new().stack_size(64 << 10).spawn(move || unsafe {
        let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
        }
    });
    if spawned.is_ok() {
        // When the other CPUs are busy the new thread is queued behind this
        // one and would wait for a scheduler tick (4 ms) before it even
        // starts the write, which is all the head start there is: let it run
        // now. It blocks in the write at once, and this thread goes on.
        unsafe { libc::sched_yield() };
    }
}

/// The manager for cgroup `rel` (e.g. "pinnace/ID") on this host, seeing
/// every hierarchy a container may have joined (to read, kill, remove). The
/// host's layout and v1 mounts are read once per process.
pub fn open(rel: &Path) -> Box<dyn Manager> {
    open_with(rel, None)
}

/// The host's layout: (mode, v1 hierarchies), read once per process.
pub fn layout() -> &'static (Mode, Vec<(Vec<String>, PathBuf)>) {
    type V1Mounts = Vec<(Vec<String>, PathBuf)>;
    static LAYOUT: std::sync::OnceLock<(Mode, V1Mounts)> = std::sync::OnceLock::new();
    LAYOUT.get_or_init(|| {
        let mode = detect(Path::new(CGROUP_ROOT));
        (mode, if mode == Mode::V2 { Vec::new() } else { v1_mounts() })
    })
}

/// As [`open`], for a container with limits `r` (on v1, joining only the
/// hierarchies [`v1::needed`] names).
pub fn open_for(rel: &Path, r: &Resources) -> Box<dyn Manager> {
    open_with(rel, Some(v1::needed(r)))
}

fn open_with(rel: &Path, only: Option<Vec<&'static str>>) -> Box<dyn Manager> {
    let root = Path::new(CGROUP_ROOT);
    let (mode, mounts) = layout();
    match mode {
        Mode::V2 => Box::new(v2::V2::new(root.to_path_buf(), rel.to_path_buf())),
        Mode::V1 | Mode::Hybrid => {
            let m = v1::V1::new(mounts.clone(), rel.to_path_buf());
            Box::new(match only {
                Some(o) => m.only(o),
                None => m,
            })
        }
    }
}

/// Parse "key value" lines (memory.stat, cpu.stat, memory.events).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next().and_then(|v| v.parse().ok())).flatten()
    })
}

/// A number, or u64::MAX for "max".
pub fn number(text: &str) -> u64 {
    let t = text.trim();
    if t == "max" {
        u64::MAX
    } else {
        t.parse().unwrap_or(0)
    }
}

/// Poll `done` until true or the deadline passes.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn kill_pids(pids: &[i32]) {
    for &p in pids {
        if p > 0 {
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

pub fn parse_pids(text: &str) -> Vec<i32> {
    text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_mounts_come_from_mountinfo() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd";
        let m = parse_v1_mounts(info);
        assert_eq!(
            m,
            vec![
                (vec!["cpu".into(), "cpuacct".into()], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")),
                (vec!["memory".into()], PathBuf::from("/sys/fs/cgroup/memory")),
            ]
        );
    }

    #[test]
    fn own_v1_cgroup_is_found_below_its_mount_root() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory";
        let own = "12:name=systemd:/user.slice\n4:memory:/user.slice/x\n3:cpu,cpuacct:/docker/abc/inner\n0::/\n";
        assert_eq!(own_v1_procs_file(info, own), Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/inner/cgroup.procs")));
        // a cgroup outside what the mount shows: nothing to write to
        let outside = "3:cpu,cpuacct:/elsewhere\n";
        assert_eq!(own_v1_procs_file(info, outside), None);
        let root_mount = "34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory";
        assert_eq!(own_v1_procs_file(root_mount, "4:memory:/\n"), Some(PathBuf::from("/sys/fs/cgroup/memory/cgroup.procs")));
        // v2 only
        assert_eq!(own_v1_procs_file("31 30 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw", "0::/x\n"), None);
    }

    #[test]
    fn keyed_and_number_parse_control_files() {
        assert_eq!(keyed("usage_usec 10\nnr_throttled 3\n", "nr_throttled"), Some(3));
        assert_eq!(keyed("a 1\n", "b"), None);
        assert_eq!(number("max\n"), u64::MAX);
        assert_eq!(number("42\n"), 42);
    }

    #[test]
    fn rmdir_accepts_missing() {
        let d = tempfile::tempdir().unwrap();
        rmdir(&d.path().join("nope"), Duration::ZERO).unwrap();
    }
}
