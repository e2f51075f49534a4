//! The steps a container's first process performs between clone and exec.
//!
//! The parent turns a runtime spec into a list of [`Op`]s whose every string
//! is already a `CString`; the child walks the list through a [`Sys`] seam.
//! The child runs in a process cloned from a multi-threaded interpreter, so
//! [`run_ops`] allocates nothing, takes no lock and only calls
//! async-signal-safe functions. Tests drive the same walk with a recording
//! fake instead of the kernel.

use std::ffi::{CStr, CString};

use libc::{c_ulong, dev_t, mode_t};
use nix::errno::Errno;

pub type SysResult = std::result::Result<(), Errno>;

/// The syscalls the child makes, behind a seam so the walk is testable.
pub trait Sys {
    fn mount(
        &self,
        src: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: c_ulong,
        data: Option<&CStr>,
    ) -> SysResult;
    fn mkdir(&self, path: &CStr, mode: mode_t) -> SysResult;
    /// Create an empty regular file (a mount point for a file bind).
    fn touch(&self, path: &CStr) -> SysResult;
    fn mknod(&self, path: &CStr, mode: mode_t, dev: dev_t) -> SysResult;
    fn symlink(&self, target: &CStr, link: &CStr) -> SysResult;
    fn is_dir(&self, path: &CStr) -> std::result::Result<bool, Errno>;
    /// chdir(new_root); pivot_root(".", "."); detach the old root; chdir("/").
    fn pivot_root(&self, new_root: &CStr) -> SysResult;
    fn sethostname(&self, name: &CStr) -> SysResult;
    fn setrlimit(&self, resource: i32, soft: u64, hard: u64) -> SysResult;
    fn chdir(&self, path: &CStr) -> SysResult;
    fn loopback_up(&self) -> SysResult;
    /// Attach the root filesystem the parent made as a detached mount.
    fn attach_root(&self, target: &CStr) -> SysResult;
}

/// One step of container setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Mount {
        src: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// mkdir that accepts an existing directory.
    Mkdir { path: CString },
    Touch { path: CString },
    /// A device node; inside a user namespace mknod is refused, so the host's
    /// node is bind-mounted onto an empty file instead.
    Device { path: CString, mode: mode_t, dev: dev_t, host: CString },
    Symlink { target: CString, link: CString },
    /// Hide a path: /dev/null over a file, a read-only tmpfs over a directory.
    Mask { path: CString },
    /// Bind a path onto itself read-only; a missing path is skipped.
    Readonly { path: CString },
    PivotRoot { root: CString },
    /// A read-only bind whose source may be missing (then nothing happens):
    /// a container's cgroup directory, when it has none.
    OptionalBind { src: CString, target: CString },
    /// Remount the (new) root read-only.
    ReadonlyRoot,
    /// Make a mount read-only (after what had to be made inside it).
    RemountReadonly { target: CString },
    Sethostname { name: CString },
    Setrlimit { resource: i32, soft: u64, hard: u64 },
    Chdir { path: CString },
    LoopbackUp,
    /// Attach the detached root mount the parent created (see
    /// `Plan::detached_root`) at `target`.
    AttachRoot { target: CString },
}

fn s(c: &CString) -> String {
    c.to_string_lossy().into_owned()
}

impl Op {
    /// What the step was doing, for the error message the parent prints.
    pub fn describe(&self) -> String {
        match self {
            Op::Mount { src, target, fstype, .. } => match (src, fstype) {
                (_, Some(fs)) => format!("mount {} on {}", s(fs), s(target)),
                (Some(src), None) => format!("bind mount {} on {}", s(src), s(target)),
                (None, None) => format!("remount {}", s(target)),
            },
            Op::Mkdir { path } => format!("create directory {}", s(path)),
            Op::Touch { path } => format!("create mount point {}", s(path)),
            Op::Device { path, .. } => format!("create device {}", s(path)),
            Op::Symlink { link, .. } => format!("create symlink {}", s(link)),
            Op::Mask { path } => format!("mask {}", s(path)),
            Op::Readonly { path } => format!("make {} read-only", s(path)),
            Op::PivotRoot { root } => format!("pivot_root into {}", s(root)),
            Op::OptionalBind { src, target } => format!("bind mount {} on {}", s(src), s(target)),
            Op::ReadonlyRoot => "remount the root filesystem read-only".into(),
            Op::RemountReadonly { target } => format!("remount {} read-only", s(target)),
            Op::Sethostname { name } => format!("set hostname {}", s(name)),
            Op::Setrlimit { resource, .. } => format!("set rlimit {resource}"),
            Op::Chdir { path } => format!("change to working directory {}", s(path)),
            Op::LoopbackUp => "bring up the loopback interface".into(),
            Op::AttachRoot { target } => format!("attach the root filesystem at {}", s(target)),
        }
    }
}

const MS_RO_BIND: c_ulong = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;

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

fn run_op(op: &Op, sys: &dyn Sys) -> SysResult {
    match op {
        Op::Mount { src, target, fstype, flags, data } => {
            let bind = flags & libc::MS_BIND != 0;
            // Propagation flags cannot be combined with anything else.
            let propagation = flags
                & (libc::MS_PRIVATE | libc::MS_SLAVE | libc::MS_SHARED | libc::MS_UNBINDABLE);
            let rest = flags & !propagation;
            if bind {
                sys.mount(src.as_deref(), target, None, rest & (libc::MS_BIND | libc::MS_REC), None)?;
                // A bind ignores every other flag until remounted.
                let extra = rest & !(libc::MS_BIND | libc::MS_REC);
                if extra != 0 {
                    sys.mount(None, target, None, extra | libc::MS_BIND | libc::MS_REMOUNT, None)?;
                }
            } else if rest & !libc::MS_REC != 0 || fstype.is_some() {
                sys.mount(src.as_deref(), target, fstype.as_deref(), rest & !libc::MS_REC, data.as_deref())?;
            }
            if propagation != 0 {
                sys.mount(None, target, None, propagation | (flags & libc::MS_REC), None)?;
            }
            Ok(())
        }
        Op::Mkdir { path } => match sys.mkdir(path, 0o755) {
            Err(Errno::EEXIST) => Ok(()),
            r => r,
        },
        Op::Touch { path } => sys.touch(path),
        Op::Device { path, mode, dev, host } => match sys.mknod(path, *mode, *dev) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(Errno::EPERM) => {
                sys.touch(path)?;
                sys.mount(Some(host), path, None, libc::MS_BIND, None)
            }
            Err(e) => Err(e),
        },
        Op::Symlink { target, link } => match sys.symlink(target, link) {
            Err(Errno::EEXIST) => Ok(()),
            r => r,
        },
        Op::Mask { path } => match sys.is_dir(path) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
            Ok(true) => sys.mount(
                Some(c"tmpfs"),
                path,
                Some(c"tmpfs"),
                libc::MS_RDONLY,
                Some(c"size=0"),
            ),
            Ok(false) => sys.mount(Some(dev_null()), path, None, libc::MS_BIND, None),
        },
        Op::Readonly { path } => match sys.mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => sys.mount(None, path, None, MS_RO_BIND | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, None),
        },
        Op::PivotRoot { root } => sys.pivot_root(root),
        Op::OptionalBind { src, target } => match sys.mount(Some(src), target, None, libc::MS_BIND, None) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => sys.mount(None, target, None, MS_RO_BIND | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, None),
        },
        Op::ReadonlyRoot => sys.mount(None, c"/", None, MS_RO_BIND, None),
        Op::RemountReadonly { target } => {
            sys.mount(None, target, None, MS_RO_BIND | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, None)
        }
        Op::Sethostname { name } => sys.sethostname(name),
        Op::Setrlimit { resource, soft, hard } => sys.setrlimit(*resource, *soft, *hard),
        Op::Chdir { path } => sys.chdir(path),
        Op::LoopbackUp => sys.loopback_up(),
        Op::AttachRoot { target } => sys.attach_root(target),
    }
}

/// The real kernel. `root_fd` is the parent's detached root mount, or -1.
pub struct Kernel {
    pub root_fd: libc::c_int,
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

impl Sys for Kernel {
    fn mount(
        &self,
        src: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: c_ulong,
        data: Option<&CStr>,
    ) -> SysResult {
        // SAFETY: every pointer is a NUL-terminated string or null.
        check(unsafe {
            libc::mount(ptr(src), target.as_ptr(), ptr(fstype), flags, ptr(data).cast())
        })
    }
    fn mkdir(&self, path: &CStr, mode: mode_t) -> SysResult {
        check(unsafe { libc::mkdir(path.as_ptr(), mode) })
    }
    fn touch(&self, path: &CStr) -> SysResult {
        let fd = unsafe {
            libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644)
        };
        if fd < 0 {
            return Err(Errno::last());
        }
        unsafe { libc::close(fd) };
        Ok(())
    }
    fn mknod(&self, path: &CStr, mode: mode_t, dev: dev_t) -> SysResult {
        check(unsafe { libc::mknod(path.as_ptr(), mode, dev) })
    }
    fn symlink(&self, target: &CStr, link: &CStr) -> SysResult {
        check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })
    }
    fn is_dir(&self, path: &CStr) -> std::result::Result<bool, Errno> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        check(unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) })?;
        let st = unsafe { st.assume_init() };
        Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
    }
    fn pivot_root(&self, new_root: &CStr) -> SysResult {
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
    #[derive(Default)]
    pub struct Recorder {
        pub calls: RefCell<Vec<String>>,
        pub fail: Vec<(String, Errno)>,
        pub dirs: Vec<String>,
    }

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
    }

    fn o(c: Option<&CStr>) -> String {
        c.map_or("-".into(), |c| c.to_string_lossy().into_owned())
    }

    impl Sys for Recorder {
        fn mount(&self, src: Option<&CStr>, t: &CStr, fs: Option<&CStr>, flags: c_ulong, d: Option<&CStr>) -> SysResult {
            self.record(format!("mount {} {} {} {:#x} {}", o(src), o(Some(t)), o(fs), flags, o(d)))
        }
        fn mkdir(&self, p: &CStr, _: mode_t) -> SysResult {
            self.record(format!("mkdir {}", o(Some(p))))
        }
        fn touch(&self, p: &CStr) -> SysResult {
            self.record(format!("touch {}", o(Some(p))))
        }
        fn mknod(&self, p: &CStr, m: mode_t, d: dev_t) -> SysResult {
            self.record(format!("mknod {} {:o} {}", o(Some(p)), m, d))
        }
        fn symlink(&self, t: &CStr, l: &CStr) -> SysResult {
            self.record(format!("symlink {} {}", o(Some(t)), o(Some(l))))
        }
        fn is_dir(&self, p: &CStr) -> std::result::Result<bool, Errno> {
            let p = o(Some(p));
            self.record(format!("stat {p}"))?;
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
    }
}

#[cfg(test)]
mod tests {
    use super::fake::Recorder;
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn readonly_bind_is_bind_then_remount() {
        let op = Op::Mount {
            src: Some(c("/src")),
            target: c("/r/dst"),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY,
            data: None,
        };
        let rec = Recorder::default();
        run_ops(&[op], &rec).unwrap();
        let calls = rec.calls.borrow();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0], format!("mount /src /r/dst - {:#x} -", libc::MS_BIND | libc::MS_REC));
        assert_eq!(
            calls[1],
            format!("mount - /r/dst - {:#x} -", libc::MS_RDONLY | libc::MS_BIND | libc::MS_REMOUNT)
        );
    }

    #[test]
    fn propagation_is_a_separate_call() {
        let op = Op::Mount { src: None, target: c("/"), fstype: None, flags: libc::MS_PRIVATE | libc::MS_REC, data: None };
        let rec = Recorder::default();
        run_ops(&[op], &rec).unwrap();
        assert_eq!(*rec.calls.borrow(), vec![format!("mount - / - {:#x} -", libc::MS_PRIVATE | libc::MS_REC)]);
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
            dirs: vec!["/r/sys/firmware".into()],
            fail: vec![("stat /r/proc/missing".into(), Errno::ENOENT)],
            ..Default::default()
        };
        let ops = [
            Op::Mask { path: c("/r/sys/firmware") },
            Op::Mask { path: c("/r/proc/kcore") },
            Op::Mask { path: c("/r/proc/missing") },
        ];
        run_ops(&ops, &rec).unwrap();
        let calls = rec.calls.borrow();
        assert!(calls[1].starts_with("mount tmpfs /r/sys/firmware tmpfs"));
        assert!(calls[3].starts_with("mount /dev/null /r/proc/kcore -"));
        assert_eq!(calls.len(), 5);
    }

    #[test]
    fn device_falls_back_to_bind_when_mknod_is_refused() {
        let rec = Recorder { fail: vec![("mknod".into(), Errno::EPERM)], ..Default::default() };
        let op = Op::Device { path: c("/r/dev/null"), mode: libc::S_IFCHR | 0o666, dev: libc::makedev(1, 3), host: c("/dev/null") };
        run_ops(&[op], &rec).unwrap();
        let calls = rec.calls.borrow();
        assert_eq!(calls[1], "touch /r/dev/null");
        assert!(calls[2].starts_with("mount /dev/null /r/dev/null -"));
    }

    #[test]
    fn describe_names_the_object() {
        let op = Op::Mount { src: Some(c("/h")), target: c("/r/x"), fstype: None, flags: libc::MS_BIND, data: None };
        assert_eq!(op.describe(), "bind mount /h on /r/x");
        assert_eq!(Op::Chdir { path: c("/w") }.describe(), "change to working directory /w");
    }
}
