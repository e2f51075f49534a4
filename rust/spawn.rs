//! Create the container's first process, park it before exec, start it and
//! wait for it.
//!
//! clone() is called fork-style from a possibly multi-threaded interpreter.
//! Between clone and exec the child only touches memory prepared by the
//! parent and calls async-signal-safe functions; it reports its progress on a
//! CLOEXEC pipe as fixed-size records, so an exec that succeeds shows up as
//! end-of-file and a failure as a record naming the step and errno.
//!
//! Two pipes join the processes:
//! - `go` (parent -> child): `M` once the user-namespace maps are written,
//!   `G` to exec. End-of-file means the parent died: the child exits.
//! - `msg` (child -> parent): READY when parked, or an error record.

use std::ffi::c_char;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::cgroups::{self, Manager, Stats};
use crate::error::{Error, Result};
use crate::ops::{run_ops, Kernel, Op};
use crate::plan::Plan;

/// Where one of the child's stdio streams goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// Duplicate this descriptor of the caller onto it.
    Fd(RawFd),
    /// A pipe whose other end the caller reads or writes.
    Pipe,
    /// /dev/null.
    Null,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// SIGKILL the container when the calling thread dies (foreground runs,
    /// and the shim: a container outlives neither).
    pub die_with_parent: bool,
    /// stdin is a terminal's slave side: the child starts a session and makes
    /// it its controlling terminal, so job control and ^C work inside.
    pub terminal: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { die_with_parent: true, terminal: false }
    }
}

const MSG_READY: u32 = 1;
const MSG_OP: u32 = 2;
const MSG_IDENTITY: u32 = 3;
const MSG_EXEC: u32 = 4;
const MSG_CGROUP: u32 = 5;
/// MSG_CGROUP's index for the cgroup-namespace step (else: which procs file)
const CGROUPNS_STEP: u32 = u32::MAX;

const IDENTITY_STAGES: &[&str] = &[
    "keep capabilities across the user switch",
    "drop capabilities from the bounding set",
    "set supplementary groups",
    "set group id",
    "set user id",
    "set capabilities",
    "raise ambient capabilities",
    "set no_new_privs",
];

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Msg {
    kind: u32,
    index: u32,
    errno: i32,
}

/// Signals a foreground CLI passes on to the container, as docker does.
pub const FORWARDED: &[i32] = &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe", e))
}

/// Which of the container's output streams a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The exit status as a shell reports it: the code, or 128 + signal.
#[derive(Debug, Clone, Default)]
pub struct Exit {
    pub code: i32,
    pub signal: Option<i32>,
    pub stdout: Option<Vec<u8>>,
    pub stderr: Option<Vec<u8>>,
    pub timed_out: bool,
    /// The cgroup saw the OOM killer act.
    pub oom_killed: bool,
    /// What the container used, read just before its cgroup was removed.
    pub stats: Option<Stats>,
}

#[derive(Debug, Default)]
pub struct WaitOptions {
    pub forward_signals: bool,
    pub timeout: Option<Duration>,
    pub input: Option<Vec<u8>>,
    /// Leave the (empty) cgroup for the caller to remove, off its hot path.
    pub keep_cgroup: bool,
}

/// A container's first process, from clone until reaped.
pub struct Container {
    pub pid: i32,
    pidfd: OwnedFd,
    msg_r: OwnedFd,
    go_w: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    plan: Plan,
    ready: bool,
    exited: Option<(i32, Option<i32>)>,
    cgroup: Option<Box<dyn Manager>>,
    /// Limits the host could not enforce (docker warns and goes on).
    pub warnings: Vec<String>,
}

/// Pointer arrays for execve, built before clone.
struct ExecArrays {
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

impl ExecArrays {
    fn new(plan: &Plan) -> Self {
        let nul = |v: &[std::ffi::CString]| v.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect();
        ExecArrays { argv: nul(&plan.exec.argv), envp: nul(&plan.exec.envp) }
    }
}

struct ChildArgs<'a> {
    plan: &'a Plan,
    exec: &'a ExecArrays,
    stdio: [RawFd; 3],
    close: [RawFd; 5],
    go_r: RawFd,
    msg_w: RawFd,
    die_with_parent: bool,
    terminal: bool,
    last_cap: u32,
    root_fd: RawFd,
    /// cgroup.procs files to write "0" into, first thing
    cgroup_procs: &'a [std::ffi::CString],
    unshare_cgroupns: bool,
}

fn last_cap() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    })
}

/// Clone the child and leave it parked before exec. With `go_now` the start
/// signal is queued at once, so the child runs straight through to exec.
pub fn spawn(mut plan: Plan, stdio: [Stdio; 3], opts: Options, go_now: bool) -> Result<Container> {
    // Namespaces to join, opened (and their type checked) here so that a bad
    // path fails before anything exists; the child inherits the descriptors.
    let joined = open_joined_namespaces(&mut plan.ops)?;
    let (go_r, go_w) = pipe()?;
    let (msg_r, msg_w) = pipe()?;
    let devnull = if stdio.contains(&Stdio::Null) {
        Some(
            nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
                .map_err(|e| Error::sys("open /dev/null", e))?,
        )
    } else {
        None
    };
    // For each stream: the fd the child dups onto 0/1/2, and the end we keep.
    let mut child_fds = [-1; 3];
    let mut ours: [Option<OwnedFd>; 3] = [None, None, None];
    let mut theirs: Vec<OwnedFd> = Vec::new();
    for (i, s) in stdio.iter().enumerate() {
        child_fds[i] = match s {
            Stdio::Fd(fd) => *fd,
            Stdio::Null => devnull.as_ref().expect("opened above").as_raw_fd(),
            Stdio::Pipe => {
                let (r, w) = pipe()?;
                let (mine, child) = if i == 0 { (w, r) } else { (r, w) };
                let fd = child.as_raw_fd();
                ours[i] = Some(mine);
                theirs.push(child);
                fd
            }
        };
    }
    let close = [
        go_w.as_raw_fd(),
        msg_r.as_raw_fd(),
        ours[0].as_ref().map_or(-1, |f| f.as_raw_fd()),
        ours[1].as_ref().map_or(-1, |f| f.as_raw_fd()),
        ours[2].as_ref().map_or(-1, |f| f.as_raw_fd()),
    ];
    let exec = ExecArrays::new(&plan);
    // The cgroup exists, limits written, before the process does; the child
    // joins it before doing anything else.
    let mut cgroup: Option<Box<dyn Manager>> = None;
    let mut warnings = Vec::new();
    let mut procs = Vec::new();
    if let Some((rel, res)) = &plan.cgroup {
        let m = cgroups::open_for(rel, res);
        match m.create() {
            // No cgroup can be made here (a read-only /sys/fs/cgroup inside
            // another container, say): without limits to enforce, run without
            // one, as the limits' absence asks nothing of it.
            Err(e) if res.is_empty() => {
                let _ = m.destroy();
                warnings.push(format!("{e}: running without a cgroup of its own (no stats, no limits)"));
            }
            made => {
                match made.and_then(|_| m.apply(res)) {
                    Ok(w) => warnings = w,
                    Err(e) => {
                        let _ = m.destroy();
                        return Err(e.into());
                    }
                }
                use std::os::unix::ffi::OsStrExt;
                procs = m
                    .procs_files()
                    .iter()
                    .map(|p| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("no NUL in a path"))
                    .collect();
                cgroup = Some(m);
            }
        }
    }
    // Joining a running container: its cgroups, made by whoever made it.
    if let Some(j) = &plan.join {
        procs.clone_from(&j.cgroup_procs);
    }
    // Dropped on every early return below: the cgroup goes with it.
    struct CgroupGuard(Option<Box<dyn Manager>>);
    impl Drop for CgroupGuard {
        fn drop(&mut self) {
            if let Some(m) = self.0.take() {
                let _ = m.destroy();
            }
        }
    }
    let mut cgroup = CgroupGuard(cgroup.take());
    let root_fd = match &plan.detached_root {
        None => None,
        Some((fstype, options)) => Some(unsafe {
            OwnedFd::from_raw_fd(crate::ops::detached_mount(fstype, options).map_err(|(what, e)| {
                Error::sys(format!("make the {} root filesystem: {what}", fstype.to_string_lossy()), e)
            })?)
        }),
    };
    let mut args = ChildArgs {
        plan: &plan,
        exec: &exec,
        stdio: child_fds,
        close,
        go_r: go_r.as_raw_fd(),
        msg_w: msg_w.as_raw_fd(),
        die_with_parent: opts.die_with_parent,
        // asked for by the caller (the shim's pty) or by the spec (process.terminal)
        terminal: opts.terminal || plan.terminal,
        last_cap: last_cap(),
        root_fd: root_fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
        cgroup_procs: &procs,
        unshare_cgroupns: plan.unshare_cgroupns,
    };

    // With nothing to do between clone and exec (no user-namespace maps to
    // write, the start signal queued now), clone vfork-style: sharing the
    // address space spares copying the interpreter's page tables and the
    // copy-on-write faults after it, which cost more than the whole
    // container setup in a large process.
    let vfork = go_now && plan.id_maps.is_none();
    if vfork {
        let b = b'G';
        if unsafe { libc::write(go_w.as_raw_fd(), (&b as *const u8).cast(), 1) } != 1 {
            return Err(Error::sys("queue the start signal", Errno::last()));
        }
    }
    // setns(CLONE_NEWPID) affects only the children of the calling thread,
    // and unlike the mount or user namespace any thread may do it: this one
    // enters the container's pid namespace for the clone and leaves it after.
    let pidns = match plan.join.as_ref().map(|j| j.pidns_fd) {
        Some(fd) if fd >= 0 => Some(PidnsSwitch::enter(fd)?),
        _ => None,
    };
    // Block every signal around clone so that no handler of ours (Python's
    // among them) runs in the child before it resets them all.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let flags = plan.clone_flags | libc::SIGCHLD;
    // On cgroup v2 the kernel can start the child inside its cgroup
    // (clone3 with CLONE_INTO_CGROUP); otherwise the child joins it.
    let cgroup_dir = cgroup.0.as_ref().and_then(|m| m.unified_dir()).or_else(|| plan.join.as_ref().and_then(|j| j.cgroup_dir.clone())).and_then(|d| {
        nix::fcntl::open(&d, nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()).ok()
    });
    let mut into_cgroup = -1;
    if let Some(fd) = &cgroup_dir {
        args.cgroup_procs = &[];
        into_cgroup = clone3_into_cgroup(&args, plan.clone_flags, fd.as_raw_fd(), vfork);
        if into_cgroup < 0 && matches!(Errno::last(), Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL | Errno::EPERM) {
            // an older kernel, or a seccomp filter refusing clone3
            args.cgroup_procs = &procs;
        }
    }
    let pid = if into_cgroup >= 0 || (cgroup_dir.is_some() && args.cgroup_procs.is_empty()) {
        into_cgroup
    } else if vfork {
        clone_vfork(&args, flags)
    } else {
        // SAFETY: fork-style clone (no new stack); the child only runs
        // `child`, which never returns and never allocates.
        let pid = unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
        if pid == 0 {
            unsafe { child(&args) }
        }
        pid as libc::c_int
    };
    let clone_errno = Errno::last();
    let left = pidns.map(PidnsSwitch::leave);
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if let Some(Err(e)) = left {
        // Cannot happen (our own namespace is always ours to re-enter); if it
        // did, this thread's children would land in the container.
        panic!("leave the container's pid namespace: {e}");
    }
    if pid < 0 {
        return Err(Error::sys("clone the container process", clone_errno));
    }
    let pid = pid as i32;
    // The child has its own copies of these (clone without CLONE_FILES).
    drop((go_r, msg_w, theirs, devnull, root_fd, joined));
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        let e = Errno::last();
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return Err(Error::sys("pidfd_open", e));
    }
    let [stdin, stdout, stderr] = ours;
    let mut c = Container {
        pid,
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) },
        msg_r,
        go_w: Some(go_w),
        stdin,
        stdout,
        stderr,
        plan,
        ready: false,
        exited: None,
        cgroup: cgroup.0.take(),
        warnings,
    };
    if let Some((uid_map, gid_map)) = c.plan.id_maps.clone() {
        let write = |file: &str, data: &str| {
            std::fs::write(format!("/proc/{pid}/{file}"), data)
                .map_err(|e| Error::sys(format!("write {file} of pid {pid}"), Errno::from_raw(e.raw_os_error().unwrap_or(0))))
        };
        if let Err(e) = write("uid_map", &uid_map).and_then(|_| write("gid_map", &gid_map)) {
            c.kill_and_reap();
            return Err(e);
        }
        c.send(b'M')?;
    }
    if go_now && !vfork {
        c.send(b'G')?;
    }
    Ok(c)
}

/// Open the path of every [`Op::JoinNamespace`] and fill in its descriptor.
fn open_joined_namespaces(ops: &mut [Op]) -> Result<Vec<OwnedFd>> {
    use std::os::unix::ffi::OsStrExt;
    let mut fds = Vec::new();
    for op in ops {
        if let Op::JoinNamespace { nstype, path, fd } = op {
            let f = crate::namespaces::open(std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes())), *nstype)?;
            *fd = f.as_raw_fd();
            fds.push(f);
        }
    }
    Ok(fds)
}

/// The calling thread's pid namespace for children, switched to a
/// container's until `leave`.
struct PidnsSwitch {
    ours: OwnedFd,
}

impl PidnsSwitch {
    fn enter(fd: RawFd) -> Result<Self> {
        let ours = nix::fcntl::open(
            "/proc/thread-self/ns/pid_for_children",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys("open /proc/thread-self/ns/pid_for_children", e))?;
        if unsafe { libc::setns(fd, libc::CLONE_NEWPID) } < 0 {
            return Err(Error::sys("join the container's pid namespace", Errno::last()));
        }
        Ok(PidnsSwitch { ours })
    }

    fn leave(self) -> std::result::Result<(), Errno> {
        if unsafe { libc::setns(self.ours.as_raw_fd(), libc::CLONE_NEWPID) } < 0 {
            return Err(Errno::last());
        }
        Ok(())
    }
}

const VFORK_STACK: usize = 256 * 1024;

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

extern "C" fn child_trampoline(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildArgs the parent keeps alive while the child
    // needs it (the parent is suspended, or the memory is a private copy);
    // `child` never returns.
    unsafe { child(&*(arg as *const ChildArgs)) }
}

/// clone3 straight into the cgroup behind `cgroup_fd`. Fork-style, or (on
/// x86_64) vfork-style on a stack of its own. Returns the pid, or -1 with
/// errno set.
fn clone3_into_cgroup(args: &ChildArgs, ns_flags: libc::c_int, cgroup_fd: RawFd, vfork: bool) -> libc::c_int {
    let mut ca = CloneArgs {
        flags: ns_flags as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_fd as u64,
        ..Default::default()
    };
    #[cfg(target_arch = "x86_64")]
    if vfork {
        let Some(stack) = VforkStack::new() else { return -1 };
        ca.flags |= (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
        ca.stack = stack.base as u64;
        ca.stack_size = VFORK_STACK as u64;
        // SAFETY: as in clone_vfork; the assembly only ever returns in the
        // parent, the child leaves through `child`, which execs or exits.
        let ret = unsafe { clone3_vfork_x86_64(&ca, child_trampoline, args as *const ChildArgs as *mut libc::c_void) };
        drop(stack);
        if ret < 0 {
            Errno::set_raw(-ret as i32);
            return -1;
        }
        return ret as libc::c_int;
    }
    #[cfg(not(target_arch = "x86_64"))]
    if vfork {
        Errno::set_raw(libc::ENOSYS);
        return -1;
    }
    // SAFETY: fork-style (no stack given): the child continues here on a copy
    // of our memory and only runs `child`.
    let pid = unsafe { libc::syscall(libc::SYS_clone3, &ca as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if pid == 0 {
        unsafe { child(args) }
    }
    pid as libc::c_int
}

/// glibc has no clone3 wrapper, and a child that starts on a new stack must
/// not return into this function: like glibc's own clone, a few
/// instructions call `f(arg)` on the child's stack and exit with its result.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_vfork_x86_64(
    ca: *const CloneArgs,
    f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> i64 {
    let ret: i64;
    std::arch::asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        // child: the kernel switched rsp to the top of the new stack
        "xor ebp, ebp",
        "mov rdi, r13",
        "call r12",
        "mov edi, eax",
        "mov eax, 60", // exit
        "syscall",
        "ud2",
        "2:",
        inlateout("rax") libc::SYS_clone3 => ret,
        in("rdi") ca,
        in("rsi") std::mem::size_of::<CloneArgs>(),
        in("r12") f,
        in("r13") arg,
        lateout("rcx") _,
        lateout("r11") _,
    );
    ret
}

/// clone(CLONE_VM | CLONE_VFORK) onto a stack of its own: this thread sleeps
/// until the child has exec'd or exited, so the child may use our memory.
fn clone_vfork(args: &ChildArgs, flags: libc::c_int) -> libc::c_int {
    let Some(stack) = VforkStack::new() else { return -1 };
    // SAFETY: the stack outlives the child's use of it (CLONE_VFORK resumes
    // us only after exec or exit); `child_trampoline` never returns.
    let pid = unsafe {
        libc::clone(
            child_trampoline,
            stack.top(),
            flags | libc::CLONE_VM | libc::CLONE_VFORK,
            args as *const ChildArgs as *mut libc::c_void,
        )
    };
    let e = Errno::last();
    drop(stack);
    Errno::set_raw(e as i32);
    pid
}

/// A private stack for a vfork-style child, unmapped when dropped (which the
/// parent does only once the child has exec'd or exited).
struct VforkStack {
    base: *mut libc::c_void,
}

impl VforkStack {
    fn new() -> Option<Self> {
        // SAFETY: a fresh private anonymous mapping.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                VFORK_STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        (base != libc::MAP_FAILED).then_some(VforkStack { base })
    }

    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, where a stack starts.
        unsafe { (self.base as *mut u8).add(VFORK_STACK).cast() }
    }
}

impl Drop for VforkStack {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.base, VFORK_STACK) };
    }
}

/// Create: clone and wait until the child is parked before exec.
pub fn create(plan: Plan, stdio: [Stdio; 3], opts: Options) -> Result<Container> {
    let mut c = spawn(plan, stdio, opts, false)?;
    c.await_msg(true)?;
    Ok(c)
}

/// Create, start and wait in one go: the foreground `run`. Signals to be
/// forwarded are caught from before the clone, so none slips through.
/// `on_spawn` sees the pid (and the limits the host cannot enforce) while the
/// child is still setting up, so a caller can record it without a second
/// round trip.
pub fn run(
    plan: Plan,
    stdio: [Stdio; 3],
    opts: Options,
    wopts: WaitOptions,
    on_spawn: impl FnOnce(i32, &[String]) -> Result<()>,
) -> Result<(i32, Exit, Vec<String>)> {
    let guard = if wopts.forward_signals { Some(SignalForwarder::new()?) } else { None };
    let mut c = spawn(plan, stdio, opts, true)?;
    on_spawn(c.pid, &c.warnings)?;
    c.await_exec()?;
    let exit = c.wait_with(guard.as_ref(), wopts)?;
    Ok((c.pid, exit, std::mem::take(&mut c.warnings)))
}

/// Read one record; None at end-of-file.
fn read_msg(fd: RawFd) -> Result<Option<Msg>> {
    let mut m = Msg::default();
    loop {
        let n = unsafe { libc::read(fd, (&mut m as *mut Msg).cast(), std::mem::size_of::<Msg>()) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        if n < 0 {
            return Err(Error::sys("read from the container process", Errno::last()));
        }
        return Ok((n as usize == std::mem::size_of::<Msg>()).then_some(m));
    }
}

impl Container {
    fn send(&mut self, b: u8) -> Result<()> {
        let fd = self.go_w.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
        let n = unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
        if n != 1 {
            let e = Errno::last();
            self.kill_and_reap();
            return Err(Error::sys("signal the container process", e));
        }
        Ok(())
    }

    /// Read progress until READY (`want_ready`) or until exec (end-of-file).
    fn await_msg(&mut self, want_ready: bool) -> Result<()> {
        loop {
            let msg = read_msg(self.msg_r.as_raw_fd())?;
            let m = match msg {
                Some(m) if m.kind == MSG_READY => {
                    self.ready = true;
                    if want_ready {
                        return Ok(());
                    }
                    continue;
                }
                Some(m) => m,
                None if want_ready || !self.ready => {
                    let (code, _) = self.reap();
                    return Err(Error::ChildDied(code));
                }
                None => return Ok(()),
            };
            self.reap();
            let errno = Errno::from_raw(m.errno);
            return Err(match m.kind {
                MSG_OP => match (self.plan.ops.get(m.index as usize), &self.plan.join) {
                    // exec does not make a missing working directory: say so
                    // as runc does, with docker's exit codes for it
                    (Some(Op::Chdir { path }), Some(_)) => Error::Exec {
                        message: format!(
                            "chdir to cwd ({:?}) set in config.json failed: {}",
                            path.to_string_lossy(),
                            errno.desc().to_lowercase()
                        ),
                        exit_code: if matches!(errno, Errno::ENOENT | Errno::ENOTDIR) { 127 } else { 126 },
                    },
                    (op, _) => Error::Setup { what: op.map_or_else(|| "unknown step".into(), |o| o.describe()), errno },
                },
                MSG_CGROUP => Error::Setup {
                    what: match (m.index, self.plan.cgroup.as_ref(), self.plan.join.as_ref()) {
                        (CGROUPNS_STEP, _, _) => "unshare the cgroup namespace".into(),
                        (i, _, Some(j)) => match j.cgroup_procs.get(i as usize) {
                            Some(p) => format!("join cgroup {}", p.to_string_lossy().trim_end_matches("/cgroup.procs")),
                            None => "join the container's cgroup".into(),
                        },
                        (_, Some((rel, _)), None) => format!("join cgroup {}", rel.display()),
                        (_, None, None) => "unshare the cgroup namespace".into(),
                    },
                    errno,
                },
                MSG_IDENTITY => Error::Setup {
                    what: IDENTITY_STAGES.get(m.index as usize).copied().unwrap_or("switch user").into(),
                    errno,
                },
                _ => exec_error(&self.plan.exec.arg0, errno),
            });
        }
    }

    /// Start: let the parked child exec; returns once exec has happened.
    pub fn start(&mut self) -> Result<()> {
        if self.go_w.is_none() {
            return Err(Error::Spec("container process already started".into()));
        }
        self.send(b'G')?;
        self.go_w = None;
        self.await_msg(false)
    }

    /// Free the plan once the process has exec'd: it only serves error
    /// messages until then, and a long-lived supervisor keeps little.
    pub fn release_plan(&mut self) {
        if self.go_w.is_none() && self.ready {
            self.plan.ops = Vec::new();
            self.plan.exec.candidates = Vec::new();
            self.plan.exec.argv = Vec::new();
            self.plan.exec.envp = Vec::new();
            self.plan.detached_root = None;
        }
    }

    /// For `spawn(.., go_now = true)`: wait until exec happened or failed.
    pub fn await_exec(&mut self) -> Result<()> {
        self.go_w = None;
        self.await_msg(false)
    }

    pub fn kill(&self, sig: i32) -> Result<()> {
        if self.exited.is_some() {
            return Ok(());
        }
        // pidfd_send_signal cannot hit a recycled pid.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.pidfd.as_raw_fd(), sig, 0usize, 0u32) };
        if r < 0 && Errno::last() != Errno::ESRCH {
            return Err(Error::sys(format!("signal {sig} to pid {}", self.pid), Errno::last()));
        }
        Ok(())
    }

    fn kill_and_reap(&mut self) {
        let _ = self.kill(libc::SIGKILL);
        self.reap();
    }

    /// Block until the process is gone; returns (shell exit code, signal).
    fn reap(&mut self) -> (i32, Option<i32>) {
        if let Some(e) = self.exited {
            return e;
        }
        let mut status = 0;
        loop {
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) };
            if r < 0 && Errno::last() == Errno::EINTR {
                continue;
            }
            break;
        }
        let e = if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            (128 + sig, Some(sig))
        } else {
            (libc::WEXITSTATUS(status), None)
        };
        self.exited = Some(e);
        e
    }

    /// Let a joined process (a detached exec) run on unwatched; returns its
    /// pid. A thread reaps it when it ends, so it never lingers as a zombie
    /// of a long-lived caller.
    pub fn detach(mut self) -> i32 {
        let pid = self.pid;
        std::thread::spawn(move || loop {
            let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL) };
            if !(r < 0 && Errno::last() == Errno::EINTR) {
                break;
            }
        });
        // nothing left for Drop to kill
        self.exited = Some((0, None));
        pid
    }

    pub fn exit_status(&self) -> Option<(i32, Option<i32>)> {
        self.exited
    }

    /// Wait for exit, pumping captured stdio, forwarding signals and
    /// enforcing a timeout (SIGKILL) on the way.
    pub fn wait(&mut self, opts: WaitOptions) -> Result<Exit> {
        let guard = if opts.forward_signals { Some(SignalForwarder::new()?) } else { None };
        self.wait_with(guard.as_ref(), opts)
    }

    fn wait_with(&mut self, guard: Option<&SignalForwarder>, opts: WaitOptions) -> Result<Exit> {
        let mut out: Option<Vec<u8>> = self.stdout.as_ref().map(|_| Vec::new());
        let mut err: Option<Vec<u8>> = self.stderr.as_ref().map(|_| Vec::new());
        let mut chunk = vec![0u8; 65536];
        let mut sink = |s: Stream, data: &[u8]| {
            let buf = if s == Stream::Stdout { out.as_mut() } else { err.as_mut() };
            buf.expect("read only from captured streams").extend_from_slice(data);
        };
        let timed_out = self.pump(guard, opts.input.unwrap_or_default(), opts.timeout, &mut chunk, &mut sink)?;
        let mut exit = self.finish(opts.keep_cgroup)?;
        exit.timed_out = timed_out;
        exit.stdout = out;
        exit.stderr = err;
        Ok(exit)
    }

    /// Wait for exit, handing captured output to `sink` as it arrives, read
    /// in pieces of at most `chunk.len()` bytes; then read the cgroup's
    /// stats and remove it. The returned Exit carries no output.
    pub fn wait_streaming(&mut self, chunk: &mut [u8], sink: &mut dyn FnMut(Stream, &[u8])) -> Result<Exit> {
        self.pump(None, Vec::new(), None, chunk, sink)?;
        self.finish(false)
    }

    /// The loop behind every wait: returns whether the timeout struck.
    fn pump(
        &mut self,
        guard: Option<&SignalForwarder>,
        input: Vec<u8>,
        timeout: Option<Duration>,
        chunk: &mut [u8],
        sink: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<bool> {
        let mut written = 0usize;
        if let Some(fd) = self.stdin.as_ref() {
            set_nonblocking(fd.as_raw_fd());
        }
        if input.is_empty() {
            self.stdin = None;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut timed_out = false;
        while self.exited.is_none() {
            let mut fds = [libc::pollfd { fd: -1, events: 0, revents: 0 }; 5];
            let mut set = |i: usize, fd: RawFd, events: i16| fds[i] = libc::pollfd { fd, events, revents: 0 };
            set(0, self.pidfd.as_raw_fd(), libc::POLLIN);
            set(1, self.stdout.as_ref().map_or(-1, |f| f.as_raw_fd()), libc::POLLIN);
            set(2, self.stderr.as_ref().map_or(-1, |f| f.as_raw_fd()), libc::POLLIN);
            set(3, self.stdin.as_ref().map_or(-1, |f| f.as_raw_fd()), libc::POLLOUT);
            set(4, guard.as_ref().map_or(-1, |g| g.fd.as_raw_fd()), libc::POLLIN);
            let wait_ms = match deadline {
                None => -1,
                Some(d) => d.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32,
            };
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
            if n < 0 {
                if Errno::last() == Errno::EINTR {
                    continue;
                }
                return Err(Error::sys("poll", Errno::last()));
            }
            if n == 0 && deadline.is_some_and(|d| Instant::now() >= d) && !timed_out {
                timed_out = true;
                self.kill(libc::SIGKILL)?;
                continue;
            }
            let ready = |i: usize| fds[i].revents != 0;
            if ready(1) && !drain(&mut self.stdout, chunk, &mut |d| sink(Stream::Stdout, d), false) {
                self.stdout = None;
            }
            if ready(2) && !drain(&mut self.stderr, chunk, &mut |d| sink(Stream::Stderr, d), false) {
                self.stderr = None;
            }
            if ready(3) {
                let fd = self.stdin.as_ref().unwrap().as_raw_fd();
                let n = unsafe { libc::write(fd, input[written..].as_ptr().cast(), input.len() - written) };
                if n > 0 {
                    written += n as usize;
                }
                if (n < 0 && Errno::last() != Errno::EAGAIN) || written >= input.len() {
                    self.stdin = None;
                }
            }
            if ready(4) {
                if let Some(sig) = guard.as_ref().and_then(|g| g.read()) {
                    self.kill(sig)?;
                }
            }
            if ready(0) {
                self.reap();
            }
        }
        // Everyone in the pid namespace is dead by now: take what is buffered.
        drain(&mut self.stdout, chunk, &mut |d| sink(Stream::Stdout, d), true);
        drain(&mut self.stderr, chunk, &mut |d| sink(Stream::Stderr, d), true);
        self.stdout = None;
        self.stderr = None;
        self.stdin = None;
        Ok(timed_out)
    }

    /// After the exit: the status, the cgroup's last stats, and the cgroup
    /// removed (unless kept for the caller).
    fn finish(&mut self, keep_cgroup: bool) -> Result<Exit> {
        let (code, signal) = self.reap();
        let stats = self.cgroup.as_ref().and_then(|c| c.stats().ok());
        let oom_killed = stats.as_ref().is_some_and(|s| s.oom_kills > 0);
        if let Some(c) = self.cgroup.take() {
            if !keep_cgroup {
                c.destroy()?;
            }
        }
        Ok(Exit { code, signal, oom_killed, stats, ..Default::default() })
    }
}

impl Drop for Container {
    /// A handle dropped before its process ended takes the process with it.
    fn drop(&mut self) {
        if self.exited.is_none() {
            if let Some(c) = &self.cgroup {
                let _ = c.kill_all();
            }
            self.kill_and_reap();
        }
        if let Some(c) = self.cgroup.take() {
            let _ = c.destroy();
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Read what is available and hand it to `sink`; false at end-of-file (or
/// EIO: a terminal whose other side is closed). With `to_end`, reads
/// without blocking until nothing is left.
fn drain(fd: &mut Option<OwnedFd>, chunk: &mut [u8], sink: &mut dyn FnMut(&[u8]), to_end: bool) -> bool {
    let Some(f) = fd.as_ref() else { return false };
    if to_end {
        set_nonblocking(f.as_raw_fd());
    }
    loop {
        let n = unsafe { libc::read(f.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
        if n > 0 {
            sink(&chunk[..n as usize]);
            if !to_end {
                return true;
            }
            continue;
        }
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        return n < 0 && Errno::last() == Errno::EAGAIN;
    }
}

fn exec_error(arg0: &str, errno: Errno) -> Error {
    let (why, code) = match errno {
        Errno::ENOENT if !arg0.contains('/') => ("executable file not found in $PATH".to_string(), 127),
        Errno::ENOENT => ("no such file or directory".to_string(), 127),
        Errno::EACCES => ("permission denied".to_string(), 126),
        e => (e.desc().to_lowercase(), 126),
    };
    Error::Exec { message: format!("exec: \"{arg0}\": {why}"), exit_code: code }
}

/// Blocks the forwarded signals in this thread and receives them on a
/// signalfd instead; restores the mask when dropped.
struct SignalForwarder {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl SignalForwarder {
    fn new() -> Result<Self> {
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in FORWARDED {
                libc::sigaddset(&mut set, *s);
            }
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                let e = Errno::last();
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                return Err(Error::sys("signalfd", e));
            }
            Ok(SignalForwarder { fd: OwnedFd::from_raw_fd(fd), old })
        }
    }

    fn read(&self) -> Option<i32> {
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let n = unsafe {
            libc::read(self.fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), std::mem::size_of_val(&info))
        };
        (n as usize == std::mem::size_of_val(&info)).then_some(info.ssi_signo as i32)
    }
}

impl Drop for SignalForwarder {
    fn drop(&mut self) {
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

// ---- the child: no allocation, no locks, async-signal-safe calls only ----

fn report(fd: RawFd, kind: u32, index: u32, errno: Errno) {
    let m = Msg { kind, index, errno: errno as i32 };
    unsafe { libc::write(fd, (&m as *const Msg).cast(), std::mem::size_of::<Msg>()) };
}

fn read_byte(fd: RawFd) -> u8 {
    let mut b = 0u8;
    loop {
        let n = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        return if n == 1 { b } else { 0 };
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

unsafe fn child(a: &ChildArgs) -> ! {
    if a.die_with_parent {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    for fd in a.close {
        if fd >= 0 {
            libc::close(fd);
        }
    }
    // Python ignores SIGPIPE and blocks signals in some threads; ignored
    // dispositions and the mask survive exec, so reset both.
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    // Move the sources out of the way first so one stream's source can never
    // be overwritten by another's dup2.
    let mut src = [-1; 3];
    for (s, fd) in src.iter_mut().zip(a.stdio) {
        if fd >= 0 {
            *s = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
        }
    }
    for (i, fd) in src.iter().enumerate() {
        if *fd >= 0 {
            libc::dup2(*fd, i as i32);
        }
    }
    if a.terminal {
        // A session of its own with the terminal on stdin as its controlling
        // terminal: ^C typed there becomes SIGINT for it. Without it the
        // command still runs, only without job control, so no failure here.
        libc::setsid();
        libc::ioctl(0, libc::TIOCSCTTY as _, 0);
    }
    for (i, procs) in a.cgroup_procs.iter().enumerate() {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            report(a.msg_w, MSG_CGROUP, i as u32, Errno::last());
            libc::_exit(125);
        }
        libc::close(fd);
    }
    if a.unshare_cgroupns && libc::unshare(libc::CLONE_NEWCGROUP) < 0 {
        report(a.msg_w, MSG_CGROUP, CGROUPNS_STEP, Errno::last());
        libc::_exit(125);
    }
    if a.plan.id_maps.is_some() {
        if read_byte(a.go_r) != b'M' {
            libc::_exit(1);
        }
        // Our ids are the host's, unmapped in the new namespace: become its
        // root so that files we create (device nodes, mount points) have an
        // owner there. Raw syscalls, as in switch_identity.
        libc::syscall(libc::SYS_setresgid, 0, 0, 0);
        libc::syscall(libc::SYS_setresuid, 0, 0, 0);
    }
    libc::umask(0);
    if let Err((i, e)) = run_ops(&a.plan.ops, &Kernel::new(a.root_fd)) {
        report(a.msg_w, MSG_OP, i as u32, e);
        libc::_exit(125);
    }
    if let Err((stage, e)) = switch_identity(a) {
        report(a.msg_w, MSG_IDENTITY, stage, e);
        libc::_exit(125);
    }
    // A change of uid or gid clears the parent-death signal: set it again for
    // the identity the command runs as. (A parent that died before this still
    // ends us: the 'G' below never comes.)
    if a.die_with_parent {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    libc::umask(a.plan.identity.umask as libc::mode_t);
    report(a.msg_w, MSG_READY, 0, Errno::UnknownErrno);
    if read_byte(a.go_r) != b'G' {
        libc::_exit(1);
    }
    let mut err = Errno::ENOENT;
    for c in &a.plan.exec.candidates {
        libc::execve(c.as_ptr(), a.exec.argv.as_ptr(), a.exec.envp.as_ptr());
        match Errno::last() {
            Errno::ENOENT | Errno::ENOTDIR => {}
            Errno::EACCES => err = Errno::EACCES,
            e => {
                err = e;
                break;
            }
        }
    }
    report(a.msg_w, MSG_EXEC, 0, err);
    libc::_exit(if err == Errno::ENOENT { 127 } else { 126 })
}

unsafe fn switch_identity(a: &ChildArgs) -> std::result::Result<(), (u32, Errno)> {
    let fail = |stage: u32| Err((stage, Errno::last()));
    let id = &a.plan.identity;
    if let Some(c) = a.plan.caps {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1) < 0 {
            return fail(0);
        }
        for cap in 0..=a.last_cap.min(63) {
            if c.bounding & (1u64 << cap) == 0
                && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) < 0
                && Errno::last() != Errno::EINVAL
            {
                return fail(1);
            }
        }
    }
    // Raw syscalls, not glibc's wrappers: those broadcast the change to every
    // thread glibc believes exists, and the clone inherited the parent's
    // thread list but none of its threads, so they would wait forever.
    if libc::syscall(libc::SYS_setgroups, id.groups.len(), id.groups.as_ptr()) < 0 && Errno::last() != Errno::EPERM {
        return fail(2);
    }
    if libc::syscall(libc::SYS_setresgid, id.gid, id.gid, id.gid) < 0 {
        return fail(3);
    }
    if libc::syscall(libc::SYS_setresuid, id.uid, id.uid, id.uid) < 0 {
        return fail(4);
    }
    if let Some(c) = a.plan.caps {
        let mut hdr = CapHeader { version: CAP_V3, pid: 0 };
        let lo = |m: u64| m as u32;
        let hi = |m: u64| (m >> 32) as u32;
        let data = [
            CapData { effective: lo(c.effective), permitted: lo(c.permitted), inheritable: lo(c.inheritable) },
            CapData { effective: hi(c.effective), permitted: hi(c.permitted), inheritable: hi(c.inheritable) },
        ];
        if libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) < 0 {
            return fail(5);
        }
        for cap in 0..64u64 {
            if c.ambient & (1 << cap) != 0
                && libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, cap as libc::c_ulong, 0, 0) < 0
            {
                return fail(6);
            }
        }
    }
    if a.plan.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
        return fail(7);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_errors_map_to_docker_codes() {
        let e = exec_error("nope", Errno::ENOENT);
        assert_eq!(e.exit_code(), 127);
        assert_eq!(e.to_string(), "exec: \"nope\": executable file not found in $PATH");
        assert_eq!(exec_error("/bin/nope", Errno::ENOENT).to_string(), "exec: \"/bin/nope\": no such file or directory");
        assert_eq!(exec_error("/etc", Errno::EACCES).exit_code(), 126);
        assert_eq!(exec_error("/x", Errno::ENOEXEC).exit_code(), 126);
    }
}
