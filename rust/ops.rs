//! The steps a container's first process performs between clone and exec.
//!
//! The parent turns a runtime spec into a list of [`Op`]s whose every string
//! is already a `CString`; the child walks the list through a [`Sys`] seam.
//! The child runs in a process cloned from a multi-threaded interpreter, so
//! [`run_ops`] allocates nothing, takes no lock and only calls
//! async-signal-safe functions. Tests drive the same walk with a recording
//! fake instead of the kernel.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

use libc::{c_ulong, dev_t, mode_t};
use nix::errno::Errno;

pub type SysResult = std::result::Result<(), Errno>;

/// What to make where a path in the root does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Make {
    Nothing,
    /// Directories, down to the path itself.
    Dir,
    /// Directories down to the parent, an empty file for the path (a mount
    /// point for a file bind).
    File,
}

/// A path inside the container's root, resolved there as if the root were
/// `/`: symlinks are followed but clamped at the root and magic links are
/// refused, so nothing in an image can point a mount or a mkdir at the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRoot {
    /// Relative to the root ("dev/pts"); "." is the root itself.
    pub rel: CString,
    /// Refuse a symlink as the path itself (ELOOP): proc and sysfs go on
    /// plain directories only (as runc insists), never where an image
    /// points them.
    pub nofollow: bool,
}

impl InRoot {
    /// As the container will see it, for messages.
    pub fn display(&self) -> String {
        match self.rel.to_bytes() {
            b"." => "/".into(),
            r => format!("/{}", String::from_utf8_lossy(r)),
        }
    }
}

/// Where a mount lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A host path: the root itself (and "/" for propagation), before
    /// anything of the image has been looked at.
    Host(CString),
    /// A path in the root, made if missing.
    Root(InRoot, Make),
}

/// A path argument of a syscall: a plain path, or a descriptor the path was
/// resolved to (the mount then acts on exactly that object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At<'a> {
    Path(&'a CStr),
    Fd(RawFd),
}

/// The syscalls the child makes, behind a seam so the walk is testable.
pub trait Sys {
    fn mount(
        &self,
        src: Option<At>,
        target: At,
        fstype: Option<&CStr>,
        flags: c_ulong,
        data: Option<&CStr>,
    ) -> SysResult;
    /// Open the (mounted) root: what every [`Sys::resolve`] starts from.
    fn open_root(&self, path: &CStr) -> SysResult;
    /// A descriptor of `path`, looked up inside the root; what is missing is
    /// made as `make` says, never through a symlink.
    fn resolve(&self, path: &InRoot, make: Make) -> std::result::Result<RawFd, Errno>;
    /// Whether `fd` is the root itself (nothing may be mounted over it).
    fn is_root(&self, fd: RawFd) -> std::result::Result<bool, Errno>;
    fn close(&self, fd: RawFd);
    /// mkdir by path: after pivot_root only.
    fn mkdir(&self, path: &CStr, mode: mode_t) -> SysResult;
    fn mknodat(&self, dir: RawFd, name: &CStr, mode: mode_t, dev: dev_t) -> SysResult;
    /// Create (or open) the regular file `name` in `dir`, not following a
    /// symlink there; returns a descriptor of it.
    fn create_file_at(&self, dir: RawFd, name: &CStr) -> std::result::Result<RawFd, Errno>;
    fn symlinkat(&self, target: &CStr, dir: RawFd, name: &CStr) -> SysResult;
    fn is_dir(&self, fd: RawFd) -> std::result::Result<bool, Errno>;
    /// chdir(new_root); pivot_root(".", "."); detach the old root; chdir("/").
    fn pivot_root(&self, new_root: &CStr) -> SysResult;
    fn sethostname(&self, name: &CStr) -> SysResult;
    fn setrlimit(&self, resource: i32, soft: u64, hard: u64) -> SysResult;
    fn chdir(&self, path: &CStr) -> SysResult;
    fn loopback_up(&self) -> SysResult;
    /// Attach the root filesystem the parent made as a detached mount.
    fn attach_root(&self, target: &CStr) -> SysResult;
    /// Enter the namespaces `nstype` names of what `fd` refers to (a pidfd,
    /// or one namespace's /proc/PID/ns file).
    fn setns(&self, fd: RawFd, nstype: libc::c_int) -> SysResult;
}

/// One step of container setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Mount {
        src: Option<CString>,
        target: Target,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// Open the root once it is mounted; every later path in the root is
    /// resolved from it.
    OpenRoot { path: CString },
    /// mkdir that accepts an existing directory (after pivot_root).
    Mkdir { path: CString },
    /// A device node `name` in `dir`; inside a user namespace mknod is
    /// refused, so the host's node is bind-mounted onto an empty file instead.
    Device { dir: InRoot, name: CString, mode: mode_t, dev: dev_t, host: CString },
    /// A symlink `name` in `dir`.
    Symlink { target: CString, dir: InRoot, name: CString },
    /// Hide a path: /dev/null over a file, a read-only tmpfs over a directory.
    Mask { path: InRoot },
    /// Bind a path onto itself read-only; a missing path is skipped.
    Readonly { path: InRoot },
    PivotRoot { root: CString },
    /// A read-only bind whose source may be missing (then nothing but the
    /// mount point is made): a container's cgroup directory, when it has none.
    OptionalBind { src: CString, target: InRoot },
    /// Remount the (new) root read-only.
    ReadonlyRoot,
    /// Make a mount read-only (after what had to be made inside it).
    RemountReadonly { target: InRoot },
    Sethostname { name: CString },
    Setrlimit { resource: i32, soft: u64, hard: u64 },
    Chdir { path: CString },
    LoopbackUp,
    /// Attach the detached root mount the parent created (see
    /// `Plan::detached_root`) at `target`.
    AttachRoot { target: CString },
    /// Join a running container's namespaces (exec). `fd` is a descriptor
    /// the parent keeps open until the child has exec'd.
    Setns { fd: RawFd, nstype: libc::c_int },
    /// Join the namespace of type `nstype` at `path` (the spec's
    /// `linux.namespaces[].path`). The parent opens the path just before
    /// clone and fills in `fd` (-1 in a plan); the child inherits it.
    JoinNamespace { nstype: libc::c_int, path: CString, fd: RawFd },
}

fn s(c: &CString) -> String {
    c.to_string_lossy().into_owned()
}

fn in_dir(dir: &InRoot, name: &CString) -> String {
    format!("{}/{}", dir.display().trim_end_matches('/'), s(name))
}

impl Target {
    fn display(&self) -> String {
        match self {
            Target::Host(p) => s(p),
            Target::Root(p, _) => p.display(),
        }
    }
}

impl Op {
    /// What the step was doing, for the error message the parent prints.
    pub fn describe(&self) -> String {
        match self {
            Op::Mount { src, target, fstype, .. } => match (src, fstype) {
                (_, Some(fs)) => format!("mount {} on {}", s(fs), target.display()),
                (Some(src), None) => format!("bind mount {} on {}", s(src), target.display()),
                (None, None) => format!("remount {}", target.display()),
            },
            Op::OpenRoot { path } => format!("open the root filesystem {}", s(path)),
            Op::Mkdir { path } => format!("create directory {}", s(path)),
            Op::Device { dir, name, .. } => format!("create device {}", in_dir(dir, name)),
            Op::Symlink { dir, name, .. } => format!("create symlink {}", in_dir(dir, name)),
            Op::Mask { path } => format!("mask {}", path.display()),
            Op::Readonly { path } => format!("make {} read-only", path.display()),
            Op::PivotRoot { root } => format!("pivot_root into {}", s(root)),
            Op::OptionalBind { src, target } => format!("bind mount {} on {}", s(src), target.display()),
            Op::ReadonlyRoot => "remount the root filesystem read-only".into(),
            Op::RemountReadonly { target } => format!("remount {} read-only", target.display()),
            Op::Sethostname { name } => format!("set hostname {}", s(name)),
            Op::Setrlimit { resource, .. } => format!("set rlimit {resource}"),
            Op::Chdir { path } => format!("change to working directory {}", s(path)),
            Op::LoopbackUp => "bring up the loopback interface".into(),
            Op::AttachRoot { target } => format!("attach the root filesystem at {}", s(target)),
            Op::Setns { nstype, .. } => format!("join the container's namespaces ({})", ns_names(*nstype)),
            Op::JoinNamespace { nstype, path, .. } => {
                format!("join {} namespace {}", crate::namespaces::type_name(*nstype), s(path))
            }
        }
    }
}

/// The namespace flags setns and clone know, with the names /proc/PID/ns uses.
pub const NAMESPACES: &[(libc::c_int, &str)] = &[
    (libc::CLONE_NEWUSER, "user"),
    (libc::CLONE_NEWNS, "mnt"),
    (libc::CLONE_NEWUTS, "uts"),
    (libc::CLONE_NEWIPC, "ipc"),
    (libc::CLONE_NEWNET, "net"),
    (libc::CLONE_NEWPID, "pid"),
    (libc::CLONE_NEWCGROUP, "cgroup"),
    (libc::CLONE_NEWTIME, "time"),
];

/// "user, mnt, net" for a mask of namespace flags.
pub fn ns_names(mask: libc::c_int) -> String {
    NAMESPACES.iter().filter(|(f, _)| mask & f != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
}

const MS_RO_BIND: c_ulong = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
const RO_REMOUNT: c_ulong = MS_RO_BIND | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

fn dev_null() -> &'static CStr {
    c"/dev/null"
}

/// Walk `ops` in order. On failure returns the index of the failed step and
/// its errno. Allocation-free: safe between clone and exec.
pub fn run_ops(ops: &[Op], sys: &dyn Sys) -> std::result::Result<(), (usize, Errno)> {
    for (i, op) in ops.iter().enumerate() {
        run_op(op, sys).map_err(|e| (i, e))?;
    }
    Ok(())
}

/// Run `f` on a descriptor of `path` resolved in the root, then close it.
fn with_fd(sys: &dyn Sys, path: &InRoot, make: Make, f: impl FnOnce(RawFd) -> SysResult) -> SysResult {
    let fd = sys.resolve(path, make)?;
    let r = f(fd);
    sys.close(fd);
    r
}

/// `f` on a path in the root that may be missing (then nothing happens).
fn if_exists(sys: &dyn Sys, path: &InRoot, f: impl FnOnce(RawFd) -> SysResult) -> SysResult {
    match sys.resolve(path, Make::Nothing) {
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
        Ok(fd) => {
            let r = f(fd);
            sys.close(fd);
            r
        }
    }
}

fn mount_op(
    sys: &dyn Sys,
    src: Option<&CStr>,
    target: &Target,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> SysResult {
    let bind = flags & libc::MS_BIND != 0;
    // Propagation flags cannot be combined with anything else.
    let propagation = flags & (libc::MS_PRIVATE | libc::MS_SLAVE | libc::MS_SHARED | libc::MS_UNBINDABLE);
    let rest = flags & !propagation;
    // A bind ignores every other flag until remounted.
    let extra = if bind { rest & !(libc::MS_BIND | libc::MS_REC) } else { 0 };
    let first = |at: At| {
        if bind {
            sys.mount(src.map(At::Path), at, None, rest & (libc::MS_BIND | libc::MS_REC), None)
        } else if rest & !libc::MS_REC != 0 || fstype.is_some() {
            sys.mount(src.map(At::Path), at, fstype, rest & !libc::MS_REC, data)
        } else {
            Ok(())
        }
    };
    let then = |at: At| {
        if extra != 0 {
            sys.mount(None, at, None, extra | libc::MS_BIND | libc::MS_REMOUNT, None)?;
        }
        if propagation != 0 {
            sys.mount(None, at, None, propagation | (flags & libc::MS_REC), None)?;
        }
        Ok(())
    };
    match target {
        Target::Host(path) => {
            first(At::Path(path))?;
            then(At::Path(path))
        }
        Target::Root(path, make) => {
            with_fd(sys, path, *make, |fd| {
                // A symlink to "/" would stack the mount on the root itself,
                // which pivot_root would then enter.
                if sys.is_root(fd)? {
                    return Err(Errno::EBUSY);
                }
                first(At::Fd(fd))
            })?;
            if extra | propagation == 0 {
                return Ok(());
            }
            // The descriptor names what was covered; look again for the mount.
            with_fd(sys, path, Make::Nothing, |fd| then(At::Fd(fd)))
        }
    }
}

fn run_op(op: &Op, sys: &dyn Sys) -> SysResult {
    match op {
        Op::Mount { src, target, fstype, flags, data } => {
            mount_op(sys, src.as_deref(), target, fstype.as_deref(), *flags, data.as_deref())
        }
        Op::OpenRoot { path } => sys.open_root(path),
        Op::Mkdir { path } => match sys.mkdir(path, 0o755) {
            Err(Errno::EEXIST) => Ok(()),
            r => r,
        },
        Op::Device { dir, name, mode, dev, host } => with_fd(sys, dir, Make::Nothing, |d| {
            match sys.mknodat(d, name, *mode, *dev) {
                Ok(()) | Err(Errno::EEXIST) => Ok(()),
                Err(Errno::EPERM) => {
                    let f = sys.create_file_at(d, name)?;
                    let r = sys.mount(Some(At::Path(host)), At::Fd(f), None, libc::MS_BIND, None);
                    sys.close(f);
                    r
                }
                Err(e) => Err(e),
            }
        }),
        Op::Symlink { target, dir, name } => with_fd(sys, dir, Make::Nothing, |d| match sys.symlinkat(target, d, name) {
            Err(Errno::EEXIST) => Ok(()),
            r => r,
        }),
        Op::Mask { path } => if_exists(sys, path, |fd| match sys.is_dir(fd)? {
            true => sys.mount(Some(At::Path(c"tmpfs")), At::Fd(fd), Some(c"tmpfs"), libc::MS_RDONLY, Some(c"size=0")),
            false => sys.mount(Some(At::Path(dev_null())), At::Fd(fd), None, libc::MS_BIND, None),
        }),
        Op::Readonly { path } => {
            let mut bound = false;
            if_exists(sys, path, |fd| {
                bound = true;
                sys.mount(Some(At::Fd(fd)), At::Fd(fd), None, libc::MS_BIND | libc::MS_REC, None)
            })?;
            if !bound {
                return Ok(());
            }
            with_fd(sys, path, Make::Nothing, |fd| sys.mount(None, At::Fd(fd), None, RO_REMOUNT, None))
        }
        Op::PivotRoot { root } => sys.pivot_root(root),
        Op::OptionalBind { src, target } => {
            let mut bound = false;
            with_fd(sys, target, Make::Dir, |fd| match sys.mount(Some(At::Path(src)), At::Fd(fd), None, libc::MS_BIND, None) {
                Err(Errno::ENOENT) => Ok(()),
                r => {
                    bound = r.is_ok();
                    r
                }
            })?;
            if !bound {
                return Ok(());
            }
            with_fd(sys, target, Make::Nothing, |fd| sys.mount(None, At::Fd(fd), None, RO_REMOUNT, None))
        }
        Op::ReadonlyRoot => sys.mount(None, At::Path(c"/"), None, MS_RO_BIND, None),
        Op::RemountReadonly { target } => with_fd(sys, target, Make::Nothing, |fd| sys.mount(None, At::Fd(fd), None, RO_REMOUNT, None)),
        Op::Sethostname { name } => sys.sethostname(name),
        Op::Setrlimit { resource, soft, hard } => sys.setrlimit(*resource, *soft, *hard),
        Op::Chdir { path } => sys.chdir(path),
        Op::LoopbackUp => sys.loopback_up(),
        Op::AttachRoot { target } => sys.attach_root(target),
        Op::Setns { fd, nstype } | Op::JoinNamespace { fd, nstype, .. } => sys.setns(*fd, *nstype),
    }
}

// ---- resolution inside the root: raw syscalls, no allocation ----

/// How paths in the root are looked up: as in a chroot (an absolute symlink
/// or `..` stops at the root), never through /proc's magic links.
const RESOLVE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

fn openat2(dir: RawFd, path: &CStr, flags: libc::c_int) -> std::result::Result<RawFd, Errno> {
    // SAFETY: open_how is plain data; zeroed is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC | flags) as u64;
    how.resolve = RESOLVE;
    // EAGAIN: a rename raced with a lookup through ".."; the kernel asks to retry.
    for _ in 0..16 {
        let fd = unsafe {
            libc::syscall(libc::SYS_openat2, dir, path.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
        };
        if fd >= 0 {
            return Ok(fd as RawFd);
        }
        if Errno::last() != Errno::EAGAIN {
            return Err(Errno::last());
        }
    }
    Err(Errno::EAGAIN)
}

/// Open `rel` inside the directory `root` as though `root` were `/`
/// (O_PATH, close-on-exec), making what is missing as `make` says: each
/// missing component is made with mkdirat in the directory its parent
/// resolved to, which never follows a symlink, so nothing is ever made
/// outside `root`. A dangling symlink on the way is ENOENT (as runc's
/// securejoin has it), not followed. With `nofollow`, `rel` itself must
/// not be a symlink (ELOOP); the way to it may pass through some.
/// Allocation-free: safe between clone and exec.
pub fn open_in_root(root: RawFd, rel: &CStr, make: Make, nofollow: bool) -> std::result::Result<RawFd, Errno> {
    match open_last(root, rel, nofollow) {
        Err(Errno::ENOENT) if make != Make::Nothing => {}
        r => return r,
    }
    let bytes = rel.to_bytes();
    let mut buf = [0u8; libc::PATH_MAX as usize + 1];
    if bytes.len() >= buf.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    let n = bytes.len();
    // The directory the next component is made in; `root` is not ours to close.
    let mut parent = root;
    let mut start = 0;
    let result = loop {
        while start < n && buf[start] == b'/' {
            start += 1;
        }
        if start >= n {
            break if parent == root { Err(Errno::ENOENT) } else { Ok(parent) };
        }
        let mut end = start;
        while end < n && buf[end] != b'/' {
            end += 1;
        }
        let last = buf[end..n].iter().all(|&b| b == b'/');
        let saved = buf[end];
        buf[end] = 0;
        // SAFETY: NUL-terminated at `end`, and `rel` holds no other NUL.
        let prefix = unsafe { CStr::from_bytes_with_nul_unchecked(&buf[..=end]) };
        let name = unsafe { CStr::from_bytes_with_nul_unchecked(&buf[start..=end]) };
        let open = |p| if last { open_last(root, p, nofollow) } else { openat2(root, p, 0) };
        let next = match open(prefix) {
            Err(Errno::ENOENT) => {
                let made = if last && make == Make::File {
                    let fd = unsafe {
                        libc::openat(parent, name.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0o644)
                    };
                    if fd >= 0 {
                        unsafe { libc::close(fd) };
                        Ok(())
                    } else {
                        Err(Errno::last())
                    }
                } else if unsafe { libc::mkdirat(parent, name.as_ptr(), 0o755) } < 0 {
                    Err(Errno::last())
                } else {
                    Ok(())
                };
                match made {
                    // EEXIST/ELOOP: a dangling symlink is there; the lookup
                    // below says ENOENT, as the first one did.
                    Ok(()) | Err(Errno::EEXIST) | Err(Errno::ELOOP) => open(prefix),
                    Err(e) => Err(e),
                }
            }
            r => r,
        };
        buf[end] = saved;
        if parent != root {
            unsafe { libc::close(parent) };
        }
        match next {
            Ok(fd) => parent = fd,
            Err(e) => break Err(e),
        }
        start = end;
    };
    result
}

/// The lookup of the path itself: with `nofollow`, a symlink there is ELOOP.
fn open_last(root: RawFd, path: &CStr, nofollow: bool) -> std::result::Result<RawFd, Errno> {
    if !nofollow {
        return openat2(root, path, 0);
    }
    let fd = openat2(root, path, libc::O_NOFOLLOW)?;
    match stat_fd(fd) {
        Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFLNK => Ok(fd),
        r => {
            unsafe { libc::close(fd) };
            Err(r.err().unwrap_or(Errno::ELOOP))
        }
    }
}

/// "/proc/self/fd/N", NUL-terminated, on the stack: how a mount is pointed
/// at exactly the object a descriptor holds.
struct FdPath([u8; 32]);

impl FdPath {
    fn new(fd: RawFd) -> Self {
        let mut b = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        b[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 12];
        let mut k = 0;
        let mut v = fd.max(0) as u32;
        loop {
            digits[k] = b'0' + (v % 10) as u8;
            k += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for i in 0..k {
            b[prefix.len() + i] = digits[k - 1 - i];
        }
        FdPath(b)
    }

    fn as_cstr(&self) -> &CStr {
        // SAFETY: at most 14 + 10 bytes written, the rest is NUL.
        unsafe { CStr::from_ptr(self.0.as_ptr().cast()) }
    }
}

/// The real kernel. `root_fd` is the parent's detached root mount, or -1.
pub struct Kernel {
    pub root_fd: libc::c_int,
    /// The mounted root, once opened: the base of every lookup in it.
    root: Cell<RawFd>,
}

impl Kernel {
    pub fn new(detached_root: libc::c_int) -> Self {
        Kernel { root_fd: detached_root, root: Cell::new(-1) }
    }
}

fn check(r: libc::c_int) -> SysResult {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

fn ptr(c: Option<&CStr>) -> *const libc::c_char {
    c.map_or(std::ptr::null(), |c| c.as_ptr())
}

fn stat_fd(fd: RawFd) -> std::result::Result<libc::stat, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    Ok(unsafe { st.assume_init() })
}

impl Sys for Kernel {
    fn mount(
        &self,
        src: Option<At>,
        target: At,
        fstype: Option<&CStr>,
        flags: c_ulong,
        data: Option<&CStr>,
    ) -> SysResult {
        let (src_fd, target_fd);
        let src = match src {
            None => None,
            Some(At::Path(p)) => Some(p),
            Some(At::Fd(fd)) => {
                src_fd = FdPath::new(fd);
                Some(src_fd.as_cstr())
            }
        };
        let target = match target {
            At::Path(p) => p,
            At::Fd(fd) => {
                target_fd = FdPath::new(fd);
                target_fd.as_cstr()
            }
        };
        // SAFETY: every pointer is a NUL-terminated string or null.
        check(unsafe {
            libc::mount(ptr(src), target.as_ptr(), ptr(fstype), flags, ptr(data).cast())
        })
    }
    fn open_root(&self, path: &CStr) -> SysResult {
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Errno::last());
        }
        let old = self.root.replace(fd);
        if old >= 0 {
            unsafe { libc::close(old) };
        }
        Ok(())
    }
    fn resolve(&self, path: &InRoot, make: Make) -> std::result::Result<RawFd, Errno> {
        let root = self.root.get();
        if root < 0 {
            return Err(Errno::EBADF);
        }
        open_in_root(root, &path.rel, make, path.nofollow)
    }
    fn is_root(&self, fd: RawFd) -> std::result::Result<bool, Errno> {
        let (a, b) = (stat_fd(fd)?, stat_fd(self.root.get())?);
        Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    }
    fn close(&self, fd: RawFd) {
        unsafe { libc::close(fd) };
    }
    fn mkdir(&self, path: &CStr, mode: mode_t) -> SysResult {
        check(unsafe { libc::mkdir(path.as_ptr(), mode) })
    }
    fn mknodat(&self, dir: RawFd, name: &CStr, mode: mode_t, dev: dev_t) -> SysResult {
        check(unsafe { libc::mknodat(dir, name.as_ptr(), mode, dev) })
    }
    fn create_file_at(&self, dir: RawFd, name: &CStr) -> std::result::Result<RawFd, Errno> {
        let fd = unsafe {
            libc::openat(dir, name.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0o644)
        };
        if fd < 0 {
            return Err(Errno::last());
        }
        Ok(fd)
    }
    fn symlinkat(&self, target: &CStr, dir: RawFd, name: &CStr) -> SysResult {
        check(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) })
    }
    fn is_dir(&self, fd: RawFd) -> std::result::Result<bool, Errno> {
        Ok(stat_fd(fd)?.st_mode & libc::S_IFMT == libc::S_IFDIR)
    }
    fn pivot_root(&self, new_root: &CStr) -> SysResult {
        // Nothing is looked up in the root by host path from here on.
        let root = self.root.replace(-1);
        if root >= 0 {
            unsafe { libc::close(root) };
        }
        check(unsafe { libc::chdir(new_root.as_ptr()) })?;
        let dot = c".";
        check(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int })?;
        // The old root now sits on top of the new one; make sure unmounting it
        // does not propagate anywhere, then detach it.
        check(unsafe {
            libc::mount(std::ptr::null(), dot.as_ptr(), std::ptr::null(), libc::MS_SLAVE | libc::MS_REC, std::ptr::null())
        })?;
        check(unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) })?;
        check(unsafe { libc::chdir(c"/".as_ptr()) })
    }
    fn sethostname(&self, name: &CStr) -> SysResult {
        check(unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) })
    }
    fn setrlimit(&self, resource: i32, soft: u64, hard: u64) -> SysResult {
        let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
        check(unsafe { libc::setrlimit(resource as _, &lim) })
    }
    fn chdir(&self, path: &CStr) -> SysResult {
        check(unsafe { libc::chdir(path.as_ptr()) })
    }
    fn loopback_up(&self) -> SysResult {
        // An ioctl rather than netlink: this runs in the child between clone
        // and exec, where building netlink messages would allocate.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(Errno::last());
        }
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let r = (|| {
            check(unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) })?;
            unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
            check(unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) })
        })();
        unsafe { libc::close(sock) };
        r
    }
    fn attach_root(&self, target: &CStr) -> SysResult {
        const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
        check(unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                self.root_fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            ) as libc::c_int
        })
    }
    fn setns(&self, fd: RawFd, nstype: libc::c_int) -> SysResult {
        check(unsafe { libc::setns(fd, nstype) })
    }
}

/// Make a filesystem as a detached mount (fsopen/fsconfig/fsmount), with
/// this process's credentials, attached nowhere: nothing changes on the host.
/// `options` are `key` or `key=value` as in mount(8)'s -o.
pub fn detached_mount(fstype: &CStr, options: &[CString]) -> std::result::Result<libc::c_int, (String, Errno)> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) } as libc::c_int;
    if fs < 0 {
        return Err(("fsopen".into(), Errno::last()));
    }
    let close = |fd| unsafe { libc::close(fd) };
    for opt in options {
        let bytes = opt.to_bytes();
        let r = match bytes.iter().position(|&b| b == b'=') {
            Some(i) => {
                let key = CString::new(&bytes[..i]).expect("no NUL in a CStr");
                let value = CString::new(&bytes[i + 1..]).expect("no NUL in a CStr");
                unsafe { libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr(), 0) }
            }
            None => unsafe { libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_SET_FLAG, opt.as_ptr(), std::ptr::null::<u8>(), 0) },
        };
        if r < 0 {
            let e = Errno::last();
            close(fs);
            return Err((format!("set option {}", opt.to_string_lossy()), e));
        }
    }
    if unsafe { libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, std::ptr::null::<u8>(), std::ptr::null::<u8>(), 0) } < 0 {
        let e = Errno::last();
        close(fs);
        return Err(("create".into(), e));
    }
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0) } as libc::c_int;
    let e = Errno::last();
    close(fs);
    if m < 0 {
        return Err(("fsmount".into(), e));
    }
    Ok(m)
}

#[cfg(test)]
pub mod fake {
    use super::*;
    use std::cell::RefCell;

    /// Records every call; answers with errors scripted per call prefix.
    /// Descriptors from `resolve` show in the record as `@` and the path
    /// they were resolved from.
    #[derive(Default)]
    pub struct Recorder {
        pub calls: RefCell<Vec<String>>,
        pub fail: Vec<(String, Errno)>,
        /// Paths in the root ("/sys/firmware") that are directories.
        pub dirs: Vec<String>,
        /// Paths in the root that resolve to the root itself.
        pub roots: Vec<String>,
        /// What each descriptor handed out names; None once closed.
        pub fds: RefCell<Vec<Option<String>>>,
    }

    const FD_BASE: RawFd = 100;

    impl Recorder {
        fn record(&self, call: String) -> SysResult {
            let r = self
                .fail
                .iter()
                .find(|(p, _)| call.starts_with(p.as_str()))
                .map_or(Ok(()), |(_, e)| Err(*e));
            self.calls.borrow_mut().push(call);
            r
        }

        fn open(&self, what: String) -> RawFd {
            let mut fds = self.fds.borrow_mut();
            fds.push(Some(what));
            FD_BASE + fds.len() as RawFd - 1
        }

        fn name(&self, fd: RawFd) -> String {
            self.fds.borrow()[(fd - FD_BASE) as usize].clone().expect("descriptor used after close")
        }

        fn at(&self, a: At) -> String {
            match a {
                At::Path(p) => o(Some(p)),
                At::Fd(fd) => format!("@{}", self.name(fd)),
            }
        }

        /// Descriptors handed out and not closed.
        pub fn open_fds(&self) -> Vec<String> {
            self.fds.borrow().iter().flatten().cloned().collect()
        }
    }

    fn o(c: Option<&CStr>) -> String {
        c.map_or("-".into(), |c| c.to_string_lossy().into_owned())
    }

    impl Sys for Recorder {
        fn mount(&self, src: Option<At>, t: At, fs: Option<&CStr>, flags: c_ulong, d: Option<&CStr>) -> SysResult {
            let src = src.map_or("-".into(), |a| self.at(a));
            self.record(format!("mount {} {} {} {:#x} {}", src, self.at(t), o(fs), flags, o(d)))
        }
        fn open_root(&self, p: &CStr) -> SysResult {
            self.record(format!("open root {}", o(Some(p))))
        }
        fn resolve(&self, p: &InRoot, make: Make) -> std::result::Result<RawFd, Errno> {
            let how = match make {
                Make::Nothing => "",
                Make::Dir => " dir",
                Make::File => " file",
            };
            self.record(format!("resolve {}{how}", p.display()))?;
            Ok(self.open(p.display()))
        }
        fn is_root(&self, fd: RawFd) -> std::result::Result<bool, Errno> {
            Ok(self.roots.contains(&self.name(fd)))
        }
        fn close(&self, fd: RawFd) {
            self.fds.borrow_mut()[(fd - FD_BASE) as usize] = None;
        }
        fn mkdir(&self, p: &CStr, _: mode_t) -> SysResult {
            self.record(format!("mkdir {}", o(Some(p))))
        }
        fn mknodat(&self, dir: RawFd, n: &CStr, m: mode_t, d: dev_t) -> SysResult {
            self.record(format!("mknod @{} {} {:o} {}", self.name(dir), o(Some(n)), m, d))
        }
        fn create_file_at(&self, dir: RawFd, n: &CStr) -> std::result::Result<RawFd, Errno> {
            let path = format!("{}/{}", self.name(dir), o(Some(n)));
            self.record(format!("create {path}"))?;
            Ok(self.open(path))
        }
        fn symlinkat(&self, t: &CStr, dir: RawFd, n: &CStr) -> SysResult {
            self.record(format!("symlink {} @{} {}", o(Some(t)), self.name(dir), o(Some(n))))
        }
        fn is_dir(&self, fd: RawFd) -> std::result::Result<bool, Errno> {
            let p = self.name(fd);
            self.record(format!("stat @{p}"))?;
            Ok(self.dirs.contains(&p))
        }
        fn pivot_root(&self, r: &CStr) -> SysResult {
            self.record(format!("pivot_root {}", o(Some(r))))
        }
        fn sethostname(&self, n: &CStr) -> SysResult {
            self.record(format!("sethostname {}", o(Some(n))))
        }
        fn setrlimit(&self, r: i32, s: u64, h: u64) -> SysResult {
            self.record(format!("setrlimit {r} {s} {h}"))
        }
        fn chdir(&self, p: &CStr) -> SysResult {
            self.record(format!("chdir {}", o(Some(p))))
        }
        fn loopback_up(&self) -> SysResult {
            self.record("lo up".into())
        }
        fn attach_root(&self, t: &CStr) -> SysResult {
            self.record(format!("attach {}", o(Some(t))))
        }
        fn setns(&self, fd: RawFd, nstype: libc::c_int) -> SysResult {
            self.record(format!("setns {fd} {}", super::ns_names(nstype)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::Recorder;
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn r(rel: &str) -> InRoot {
        InRoot { rel: c(rel), nofollow: false }
    }

    #[test]
    fn readonly_bind_is_bind_then_remount_of_what_is_mounted_now() {
        let op = Op::Mount {
            src: Some(c("/src")),
            target: Target::Root(r("dst"), Make::Dir),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY,
            data: None,
        };
        let rec = Recorder::default();
        run_ops(&[op], &rec).unwrap();
        let calls = rec.calls.borrow();
        assert_eq!(
            *calls,
            vec![
                "resolve /dst dir".to_string(),
                format!("mount /src @/dst - {:#x} -", libc::MS_BIND | libc::MS_REC),
                // looked up again: the first descriptor names the covered directory
                "resolve /dst".to_string(),
                format!("mount - @/dst - {:#x} -", libc::MS_RDONLY | libc::MS_BIND | libc::MS_REMOUNT),
            ]
        );
        assert!(rec.open_fds().is_empty());
    }

    #[test]
    fn propagation_is_a_separate_call() {
        let op = Op::Mount {
            src: None,
            target: Target::Host(c("/")),
            fstype: None,
            flags: libc::MS_PRIVATE | libc::MS_REC,
            data: None,
        };
        let rec = Recorder::default();
        run_ops(&[op], &rec).unwrap();
        assert_eq!(*rec.calls.borrow(), vec![format!("mount - / - {:#x} -", libc::MS_PRIVATE | libc::MS_REC)]);
    }

    #[test]
    fn a_mount_point_resolving_to_the_root_is_refused() {
        let rec = Recorder { roots: vec!["/abs".into()], ..Default::default() };
        let ops = [Op::Mount {
            src: Some(c("tmpfs")),
            target: Target::Root(r("abs"), Make::Dir),
            fstype: Some(c("tmpfs")),
            flags: 0,
            data: None,
        }];
        assert_eq!(run_ops(&ops, &rec), Err((0, Errno::EBUSY)));
        assert_eq!(*rec.calls.borrow(), vec!["resolve /abs dir"]);
        assert!(rec.open_fds().is_empty());
    }

    #[test]
    fn a_failed_lookup_fails_the_step_and_mounts_nothing() {
        let rec = Recorder { fail: vec![("resolve /data/x".into(), Errno::ELOOP)], ..Default::default() };
        let ops = [Op::Mount {
            src: Some(c("/src")),
            target: Target::Root(r("data/x"), Make::File),
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        }];
        assert_eq!(run_ops(&ops, &rec), Err((0, Errno::ELOOP)));
        assert_eq!(rec.calls.borrow().len(), 1);
    }

    #[test]
    fn mkdir_accepts_existing_and_failure_reports_index() {
        let rec = Recorder {
            fail: vec![("mkdir /a".into(), Errno::EEXIST), ("chdir".into(), Errno::ENOTDIR)],
            ..Default::default()
        };
        let ops = [Op::Mkdir { path: c("/a") }, Op::Chdir { path: c("/a/f") }];
        assert_eq!(run_ops(&ops, &rec), Err((1, Errno::ENOTDIR)));
    }

    #[test]
    fn mask_picks_tmpfs_for_dirs_devnull_for_files_and_skips_missing() {
        let rec = Recorder {
            dirs: vec!["/sys/firmware".into()],
            fail: vec![("resolve /proc/missing".into(), Errno::ENOENT)],
            ..Default::default()
        };
        let ops = [
            Op::Mask { path: r("sys/firmware") },
            Op::Mask { path: r("proc/kcore") },
            Op::Mask { path: r("proc/missing") },
        ];
        run_ops(&ops, &rec).unwrap();
        let calls = rec.calls.borrow();
        assert!(calls[2].starts_with("mount tmpfs @/sys/firmware tmpfs"), "{calls:?}");
        assert!(calls[5].starts_with("mount /dev/null @/proc/kcore -"), "{calls:?}");
        assert_eq!(calls.len(), 7);
        assert!(rec.open_fds().is_empty());
    }

    #[test]
    fn readonly_binds_in_place_then_remounts_and_skips_missing() {
        let rec = Recorder { fail: vec![("resolve /proc/gone".into(), Errno::ENOENT)], ..Default::default() };
        run_ops(&[Op::Readonly { path: r("proc/sys") }, Op::Readonly { path: r("proc/gone") }], &rec).unwrap();
        let calls = rec.calls.borrow();
        assert_eq!(calls[1], format!("mount @/proc/sys @/proc/sys - {:#x} -", libc::MS_BIND | libc::MS_REC));
        assert_eq!(calls[2], "resolve /proc/sys");
        assert!(calls[3].starts_with("mount - @/proc/sys -"));
        assert_eq!(calls.len(), 5);
    }

    #[test]
    fn optional_bind_makes_its_mount_point_and_skips_a_missing_source() {
        let rec = Recorder { fail: vec![("mount /cg".into(), Errno::ENOENT)], ..Default::default() };
        run_ops(&[Op::OptionalBind { src: c("/cg"), target: r("sys/fs/cgroup/memory") }], &rec).unwrap();
        assert_eq!(rec.calls.borrow().len(), 2);
        assert_eq!(rec.calls.borrow()[0], "resolve /sys/fs/cgroup/memory dir");
    }

    #[test]
    fn device_falls_back_to_bind_when_mknod_is_refused() {
        let rec = Recorder { fail: vec![("mknod".into(), Errno::EPERM)], ..Default::default() };
        let op = Op::Device {
            dir: r("dev"),
            name: c("null"),
            mode: libc::S_IFCHR | 0o666,
            dev: libc::makedev(1, 3),
            host: c("/dev/null"),
        };
        run_ops(&[op], &rec).unwrap();
        let calls = rec.calls.borrow();
        assert_eq!(calls[0], "resolve /dev");
        assert!(calls[1].starts_with("mknod @/dev null "));
        assert_eq!(calls[2], "create /dev/null");
        assert!(calls[3].starts_with("mount /dev/null @/dev/null -"));
        assert!(rec.open_fds().is_empty());
    }

    #[test]
    fn describe_names_the_object_as_the_container_sees_it() {
        let op = Op::Mount {
            src: Some(c("/h")),
            target: Target::Root(r("x/y"), Make::Dir),
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        };
        assert_eq!(op.describe(), "bind mount /h on /x/y");
        assert_eq!(Op::Chdir { path: c("/w") }.describe(), "change to working directory /w");
        let op = Op::Symlink { target: c("pts/ptmx"), dir: r("dev"), name: c("ptmx") };
        assert_eq!(op.describe(), "create symlink /dev/ptmx");
        assert_eq!(Op::Mask { path: r(".") }.describe(), "mask /");
        let op = Op::JoinNamespace { nstype: libc::CLONE_NEWNET, path: c("/proc/7/ns/net"), fd: 3 };
        assert_eq!(op.describe(), "join network namespace /proc/7/ns/net");
    }

    #[test]
    fn joining_a_namespace_is_a_setns_on_the_descriptor_the_parent_opened() {
        let rec = Recorder { fail: vec![("setns 4".into(), Errno::EINVAL)], ..Default::default() };
        let ops = [
            Op::JoinNamespace { nstype: libc::CLONE_NEWNET, path: c("/n"), fd: 3 },
            Op::JoinNamespace { nstype: libc::CLONE_NEWUTS, path: c("/u"), fd: 4 },
        ];
        assert_eq!(run_ops(&ops, &rec), Err((1, Errno::EINVAL)));
        assert_eq!(*rec.calls.borrow(), vec!["setns 3 net", "setns 4 uts"]);
    }

    #[test]
    fn fd_paths_are_proc_self_fd() {
        assert_eq!(FdPath::new(0).as_cstr(), c"/proc/self/fd/0");
        assert_eq!(FdPath::new(1234567).as_cstr(), c"/proc/self/fd/1234567");
    }

    // ---- open_in_root against the real kernel, on a tempdir, without root ----

    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    struct Tree {
        _dir: tempfile::TempDir,
        root: PathBuf,
        /// Stands for the host outside the root.
        outside: PathBuf,
        fd: OwnedFd,
    }

    fn tree() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("host");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::create_dir_all(outside.join("etc")).unwrap();
        let fd = nix::fcntl::open(&root, nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY, nix::sys::stat::Mode::empty()).unwrap();
        Tree { _dir: dir, root, outside, fd }
    }

    fn open(t: &Tree, rel: &str, make: Make) -> std::result::Result<PathBuf, Errno> {
        let fd = open_in_root(t.fd.as_raw_fd(), &c(rel), make, false)?;
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap())
    }

    fn entries(p: &Path) -> Vec<String> {
        let mut v: Vec<String> = walk(p).into_iter().map(|e| e.strip_prefix(p).unwrap().display().to_string()).collect();
        v.sort();
        v
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap().path();
            out.push(e.clone());
            if e.is_dir() && !e.is_symlink() {
                out.extend(walk(&e));
            }
        }
        out
    }

    #[test]
    fn absolute_symlinks_resolve_in_the_root() {
        let t = tree();
        symlink(t.outside.join("etc"), t.root.join("data")).unwrap();
        symlink("/etc", t.root.join("data2")).unwrap();
        // an absolute link naming the host's directory is clamped at the root
        assert_eq!(open(&t, "data2/x", Make::Dir).unwrap(), t.root.join("etc/x"));
        assert_eq!(open(&t, "data2/f", Make::File).unwrap(), t.root.join("etc/f"));
        assert!(t.root.join("etc/f").is_file());
        // a link to the host's real path names a missing directory in the root
        assert_eq!(open(&t, "data/x", Make::Dir), Err(Errno::ENOENT));
        assert_eq!(entries(&t.outside), vec!["etc"]);
    }

    #[test]
    fn dotdot_in_a_symlink_stops_at_the_root() {
        let t = tree();
        symlink("../../../../../../etc", t.root.join("escape")).unwrap();
        assert_eq!(open(&t, "escape/sub/x", Make::Dir).unwrap(), t.root.join("etc/sub/x"));
        assert_eq!(entries(&t.outside), vec!["etc"]);
    }

    #[test]
    fn relative_symlinks_inside_the_root_are_followed() {
        let t = tree();
        symlink("usr/lib", t.root.join("lib")).unwrap();
        assert_eq!(open(&t, "lib/foo", Make::Dir).unwrap(), t.root.join("usr/lib/foo"));
        assert_eq!(open(&t, "lib", Make::Nothing).unwrap(), t.root.join("usr/lib"));
    }

    #[test]
    fn dangling_symlinks_are_not_followed_to_make_anything() {
        let t = tree();
        symlink("/nowhere/deep", t.root.join("abs")).unwrap();
        assert_eq!(open(&t, "abs/t", Make::Dir), Err(Errno::ENOENT));
        assert_eq!(open(&t, "abs", Make::File), Err(Errno::ENOENT));
        assert!(!t.root.join("nowhere").exists());
    }

    #[test]
    fn missing_components_are_made_and_existing_ones_kept() {
        let t = tree();
        assert_eq!(open(&t, "a/b//c", Make::Dir).unwrap(), t.root.join("a/b/c"));
        assert_eq!(open(&t, "a/b/c/conf", Make::File).unwrap(), t.root.join("a/b/c/conf"));
        assert!(t.root.join("a/b/c/conf").is_file());
        assert_eq!(open(&t, "etc", Make::Dir).unwrap(), t.root.join("etc"));
        assert_eq!(open(&t, "x/y", Make::Nothing), Err(Errno::ENOENT));
        assert!(!t.root.join("x").exists());
        // a file where a directory is needed
        assert_eq!(open(&t, "a/b/c/conf/z", Make::Dir), Err(Errno::ENOTDIR));
    }

    #[test]
    fn nofollow_refuses_a_symlink_as_the_path_itself() {
        let t = tree();
        symlink("/", t.root.join("proc")).unwrap();
        symlink("usr", t.root.join("u")).unwrap();
        symlink("/gone", t.root.join("dangling")).unwrap();
        let fd = t.fd.as_raw_fd();
        assert_eq!(open_in_root(fd, c"proc", Make::Dir, true), Err(Errno::ELOOP));
        assert_eq!(open_in_root(fd, c"u", Make::Nothing, true), Err(Errno::ELOOP));
        assert_eq!(open_in_root(fd, c"dangling", Make::Dir, true), Err(Errno::ELOOP));
        // on the way to it, a symlink is followed in the root as usual
        for (rel, make) in [(c"u/lib", Make::Nothing), (c"u/new/sys", Make::Dir)] {
            let got = open_in_root(fd, rel, make, true).unwrap();
            unsafe { libc::close(got) };
        }
        assert!(t.root.join("usr/new/sys").is_dir());
    }
}
