//! Run a new process inside a running container (`docker exec`).
//!
//! The process is a [`Plan`] like a container's first one, run by the same
//! child code in `spawn`, with nothing to make: the calling thread enters
//! the container's pid namespace around clone (so the child is born there,
//! with no intermediate process to relay its status), the child writes
//! itself into each of the container's cgroups (or is cloned straight into
//! it on cgroup v2), takes on the container's resource limits, enters its
//! other namespaces with one setns on its pidfd, changes to the working
//! directory, switches user and capabilities and execs.
//!
//! Everything about the container is read from its first process (namespaces
//! from /proc/PID/ns, cgroups from /proc/PID/cgroup, limits with prlimit)
//! through one pidfd, checked still alive after the reads, so a recycled
//! pid is never joined.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::Process;

use crate::cgroups::Mode;
use crate::error::{Error, Result};
use crate::ops::{Op, NAMESPACES};
use crate::plan::{cstr, exec_plan, identity_and_caps, rlimit_resource, Join, Plan};
use crate::spawn::{self, Exit, Options, Stdio, WaitOptions};

/// What the parent learnt about the running container.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The container's first process, as a pidfd.
    pub pidfd: RawFd,
    /// The namespaces it does not share with us, as clone flags.
    pub ns_mask: libc::c_int,
    /// On kernels that cannot setns through a pidfd (before 5.8): one
    /// /proc/PID/ns descriptor per namespace in the mask.
    pub ns_fds: Option<Vec<(libc::c_int, RawFd)>>,
    /// Its resource limits: (resource, soft, hard).
    pub rlimits: Vec<(i32, u64, u64)>,
    /// The cgroup.procs files of its cgroups.
    pub cgroup_procs: Vec<PathBuf>,
    /// Its cgroup v2 directory on a pure v2 host (clone3 into it).
    pub cgroup_dir: Option<PathBuf>,
}

/// The namespaces (as clone flags) whose identity differs between the
/// container's process and ours: each entry is (flag, theirs, ours), an
/// inode number or None where the kernel has no such namespace.
pub fn ns_mask(entries: &[(libc::c_int, Option<u64>, Option<u64>)]) -> libc::c_int {
    // Entering a user namespace one is already in is an error (EINVAL), and
    // entering any other namespace one is in is work for nothing.
    entries.iter().filter(|(_, theirs, ours)| theirs.is_some() && theirs != ours).fold(0, |m, (f, _, _)| m | f)
}

/// setns(pidfd, mask) came with Linux 5.8.
pub fn pidfd_setns_supported(release: &str) -> bool {
    let mut it = release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse::<u32>().unwrap_or(0));
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (major, minor) >= (5, 8)
}

/// The cgroup.procs files to write to join the cgroups /proc/PID/cgroup
/// lists, and on pure v2 the directory itself. Hierarchies pinnace does not
/// know (named ones, like name=systemd) are left alone.
pub fn cgroup_files(proc_cgroup: &str, mode: Mode, v1: &[(Vec<String>, PathBuf)], root: &Path) -> (Vec<PathBuf>, Option<PathBuf>) {
    let mut procs = Vec::new();
    let mut dir = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let rel = path.trim_start_matches('/');
        // a path the reader's cgroup namespace cannot see
        if rel.starts_with("..") {
            continue;
        }
        let base = if controllers.is_empty() {
            match mode {
                Mode::V2 => {
                    dir = Some(root.join(rel));
                    Some(root.to_path_buf())
                }
                Mode::Hybrid => Some(root.join("unified")),
                Mode::V1 => None,
            }
        } else {
            let wanted: Vec<&str> = controllers.split(',').collect();
            v1.iter().find(|(c, _)| c.iter().any(|c| wanted.contains(&c.as_str()))).map(|(_, m)| m.clone())
        };
        if let Some(b) = base {
            let f = b.join(rel).join("cgroup.procs");
            if !procs.contains(&f) {
                procs.push(f);
            }
        }
    }
    (procs, dir)
}

/// The plan for `process` (an OCI runtime-spec "process" object) joining
/// the container `t` describes.
pub fn build(process: &Process, t: &Target) -> Result<Plan> {
    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(Error::Spec(format!("working directory {} is not absolute", cwd.display())));
    }
    let mut ops = Vec::new();
    // Limits first, while still in our user namespace: raising a hard limit
    // needs CAP_SYS_RESOURCE there.
    let mut rlimits = t.rlimits.clone();
    for r in process.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ()).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let res = rlimit_resource(&name)?;
        rlimits.retain(|(x, _, _)| *x != res);
        rlimits.push((res, r.soft(), r.hard()));
    }
    ops.extend(rlimits.into_iter().map(|(resource, soft, hard)| Op::Setrlimit { resource, soft, hard }));
    // The pid namespace is entered by the parent's thread around clone.
    let mask = t.ns_mask & !libc::CLONE_NEWPID;
    match &t.ns_fds {
        None if mask != 0 => ops.push(Op::Setns { fd: t.pidfd, nstype: mask }),
        None => {}
        // the user namespace first: the others belong to it
        Some(fds) => {
            for (flag, _) in NAMESPACES {
                if let Some((_, fd)) = fds.iter().find(|(f, _)| f == flag && mask & f != 0) {
                    ops.push(Op::Setns { fd: *fd, nstype: *flag });
                }
            }
        }
    }
    ops.push(Op::Chdir { path: cstr(cwd.as_os_str().as_encoded_bytes())? });

    let (identity, caps) = identity_and_caps(process)?;
    let pidns_fd = match (&t.ns_fds, t.ns_mask & libc::CLONE_NEWPID != 0) {
        (_, false) => -1,
        (None, true) => t.pidfd,
        (Some(fds), true) => fds.iter().find(|(f, _)| *f == libc::CLONE_NEWPID).map_or(-1, |(_, fd)| *fd),
    };
    use std::os::unix::ffi::OsStrExt;
    Ok(Plan {
        clone_flags: 0,
        id_maps: None,
        ops,
        identity,
        caps,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        exec: exec_plan(process.args().as_deref().unwrap_or(&[]), process.env().as_deref().unwrap_or(&[]))?,
        detached_root: None,
        cgroup: None,
        unshare_cgroupns: false,
        join: Some(Join {
            pidns_fd,
            cgroup_procs: t.cgroup_procs.iter().map(|p| cstr(p.as_os_str().as_bytes())).collect::<Result<Vec<CString>>>()?,
            cgroup_dir: t.cgroup_dir.clone(),
        }),
        terminal: process.terminal().unwrap_or(false),
    })
}

/// The descriptors behind a [`Target`], open until the process has exec'd.
pub struct Opened {
    pub target: Target,
    pidfd: OwnedFd,
    _ns: Vec<OwnedFd>,
    pid: i32,
}

fn sys_err(what: String, e: std::io::Error) -> Error {
    Error::sys(what, Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

fn not_running(pid: i32) -> Error {
    Error::sys(format!("container process {pid}"), Errno::ESRCH)
}

impl Opened {
    /// Read what joining the container whose first process is `pid` needs.
    pub fn open(pid: i32) -> Result<Self> {
        if pid <= 0 {
            return Err(Error::Spec(format!("bad container process id {pid}")));
        }
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(Error::sys(format!("container process {pid}"), Errno::last()));
        }
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let ino = |p: String| std::fs::metadata(p).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let entries: Vec<_> =
            NAMESPACES.iter().map(|(f, n)| (*f, ino(format!("/proc/{pid}/ns/{n}")), ino(format!("/proc/self/ns/{n}")))).collect();
        let ns_mask = ns_mask(&entries);
        let ns_fds = if pidfd_setns_supported(&kernel_release()) {
            None
        } else {
            let mut v = Vec::new();
            for (f, n) in NAMESPACES.iter().filter(|(f, _)| ns_mask & f != 0) {
                let path = format!("/proc/{pid}/ns/{n}");
                let fd = nix::fcntl::open(path.as_str(), nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
                    .map_err(|e| Error::sys(format!("open {path}"), e))?;
                v.push((*f, fd));
            }
            Some(v)
        };
        let mut rlimits = Vec::new();
        for res in 0..=libc::RLIMIT_RTTIME as i32 {
            let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if unsafe { libc::prlimit(pid, res as _, std::ptr::null(), &mut old) } == 0 {
                rlimits.push((res, old.rlim_cur, old.rlim_max));
            } else if Errno::last() == Errno::ESRCH {
                return Err(not_running(pid));
            }
        }
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|e| sys_err(format!("read /proc/{pid}/cgroup"), e))?;
        let (mode, v1) = crate::cgroups::layout();
        let (cgroup_procs, cgroup_dir) = cgroup_files(&cg, *mode, v1, Path::new(crate::cgroups::CGROUP_ROOT));
        let o = Opened {
            target: Target {
                pidfd: pidfd.as_raw_fd(),
                ns_mask,
                ns_fds: ns_fds.as_ref().map(|v| v.iter().map(|(f, fd)| (*f, fd.as_raw_fd())).collect()),
                rlimits,
                cgroup_procs,
                cgroup_dir,
            },
            pidfd,
            _ns: ns_fds.into_iter().flatten().map(|(_, fd)| fd).collect(),
            pid,
        };
        // All of the above was read by pid: it must still be the same process.
        o.check_alive()?;
        Ok(o)
    }

    fn check_alive(&self) -> Result<()> {
        let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.pidfd.as_raw_fd(), 0, 0usize, 0u32) };
        if r < 0 {
            return Err(not_running(self.pid));
        }
        Ok(())
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

#[derive(Debug, Default)]
pub struct ExecOptions {
    pub wait: WaitOptions,
    /// Start it and return its pid without waiting.
    pub detach: bool,
}

/// Run `process_json` (an OCI "process" object) in the container whose
/// first process is `pid`. Returns the new process's pid and, unless
/// detached, how it ended.
pub fn exec_in(pid: i32, process_json: &str, stdio: [Stdio; 3], opts: ExecOptions) -> Result<(i32, Option<Exit>)> {
    let process: Process = serde_json::from_str(process_json).map_err(|e| Error::Spec(format!("process: {e}")))?;
    if opts.detach && stdio.contains(&Stdio::Pipe) {
        return Err(Error::Spec("a detached process cannot have its output captured".into()));
    }
    let opened = Opened::open(pid)?;
    let plan = build(&process, &opened.target)?;
    // A foreground exec dies with its caller, as the container's first
    // process does; a detached one lives on.
    let sopts = Options { die_with_parent: !opts.detach, terminal: false };
    let r = if opts.detach {
        spawn::spawn(plan, stdio, sopts, true).and_then(|mut c| {
            c.await_exec()?;
            Ok((c.detach(), None))
        })
    } else {
        spawn::run(plan, stdio, sopts, opts.wait, |_, _| Ok(())).map(|(p, e, _)| (p, Some(e)))
    };
    match r {
        // The container ended under us (its pid namespace is dying): say so.
        Err(Error::Sys { .. }) | Err(Error::ChildDied(_)) if opened.check_alive().is_err() => Err(not_running(pid)),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(json: serde_json::Value) -> Process {
        let mut v = serde_json::json!({"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]});
        for (k, x) in json.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn target() -> Target {
        Target {
            pidfd: 7,
            ns_mask: libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS,
            rlimits: vec![(libc::RLIMIT_NOFILE as i32, 1024, 4096)],
            cgroup_procs: vec![PathBuf::from("/sys/fs/cgroup/pinnace/c/cgroup.procs")],
            ..Default::default()
        }
    }

    #[test]
    fn mask_holds_only_namespaces_that_differ() {
        let m = ns_mask(&[
            (libc::CLONE_NEWUSER, Some(1), Some(1)),
            (libc::CLONE_NEWNS, Some(2), Some(3)),
            (libc::CLONE_NEWNET, Some(4), Some(4)),
            (libc::CLONE_NEWPID, Some(5), Some(6)),
            (libc::CLONE_NEWTIME, None, None),
        ]);
        assert_eq!(m, libc::CLONE_NEWNS | libc::CLONE_NEWPID);
    }

    #[test]
    fn pidfd_setns_needs_5_8() {
        assert!(pidfd_setns_supported("6.18.44-fc-v657"));
        assert!(pidfd_setns_supported("5.8.0"));
        assert!(!pidfd_setns_supported("5.4.0-150-generic"));
        assert!(!pidfd_setns_supported("4.19"));
    }

    #[test]
    fn plan_sets_limits_then_joins_then_changes_directory() {
        let p = process(serde_json::json!({"cwd": "/work", "rlimits": [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]}));
        let plan = build(&p, &target()).unwrap();
        let d: Vec<String> = plan.ops.iter().map(Op::describe).collect();
        assert_eq!(
            d,
            [
                format!("set rlimit {}", libc::RLIMIT_NOFILE),
                format!("set rlimit {}", libc::RLIMIT_CORE),
                "join the container's namespaces (mnt, uts)".into(),
                "change to working directory /work".into(),
            ]
        );
        // pid is the parent's to enter, through the same pidfd
        assert!(matches!(plan.ops[2], Op::Setns { fd: 7, nstype } if nstype == libc::CLONE_NEWNS | libc::CLONE_NEWUTS));
        let j = plan.join.unwrap();
        assert_eq!(j.pidns_fd, 7);
        assert_eq!(j.cgroup_procs, [cstr("/sys/fs/cgroup/pinnace/c/cgroup.procs").unwrap()]);
        // nothing to make: no new namespaces, no cgroup of its own
        assert_eq!(plan.clone_flags, 0);
        assert!(plan.cgroup.is_none() && !plan.unshare_cgroupns && plan.id_maps.is_none());
    }

    #[test]
    fn spec_limits_override_the_inherited_ones() {
        let p = process(serde_json::json!({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]}));
        let plan = build(&p, &target()).unwrap();
        let lims: Vec<_> = plan.ops.iter().filter_map(|o| match o {
            Op::Setrlimit { resource, soft, hard } => Some((*resource, *soft, *hard)),
            _ => None,
        }).collect();
        assert_eq!(lims, [(libc::RLIMIT_NOFILE as i32, 10, 20)]);
    }

    #[test]
    fn without_pidfd_setns_each_namespace_is_joined_user_first() {
        let t = Target {
            ns_mask: libc::CLONE_NEWNET | libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNS,
            ns_fds: Some(vec![(libc::CLONE_NEWNET, 10), (libc::CLONE_NEWPID, 11), (libc::CLONE_NEWNS, 12), (libc::CLONE_NEWUSER, 13)]),
            ..target()
        };
        let plan = build(&process(serde_json::json!({})), &t).unwrap();
        let joins: Vec<(RawFd, libc::c_int)> = plan.ops.iter().filter_map(|o| match o {
            Op::Setns { fd, nstype } => Some((*fd, *nstype)),
            _ => None,
        }).collect();
        assert_eq!(joins, [(13, libc::CLONE_NEWUSER), (12, libc::CLONE_NEWNS), (10, libc::CLONE_NEWNET)]);
        assert_eq!(plan.join.unwrap().pidns_fd, 11);
    }

    #[test]
    fn same_namespaces_need_no_setns() {
        let t = Target { ns_mask: 0, ..target() };
        let plan = build(&process(serde_json::json!({})), &t).unwrap();
        assert!(!plan.ops.iter().any(|o| matches!(o, Op::Setns { .. })));
        assert_eq!(plan.join.unwrap().pidns_fd, -1);
    }

    #[test]
    fn identity_capabilities_and_command_come_from_the_process() {
        let p = process(serde_json::json!({
            "args": ["ls", "-l"], "env": ["PATH=/a:/b"],
            "user": {"uid": 1000, "gid": 100, "additionalGids": [5, 6]},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
            "noNewPrivileges": true}));
        let plan = build(&p, &target()).unwrap();
        assert_eq!((plan.identity.uid, plan.identity.gid, plan.identity.groups.clone()), (1000, 100, vec![5, 6]));
        assert_eq!(plan.caps.unwrap().bounding, 1 << 5);
        assert!(plan.no_new_privs);
        assert_eq!(plan.exec.candidates, [cstr("/a/ls").unwrap(), cstr("/b/ls").unwrap()]);
    }

    #[test]
    fn relative_cwd_is_refused_and_a_terminal_is_planned() {
        assert!(build(&process(serde_json::json!({"cwd": "work"})), &target()).is_err());
        assert!(build(&process(serde_json::json!({"terminal": true})), &target()).unwrap().terminal);
    }

    #[test]
    fn cgroup_files_follow_proc_pid_cgroup() {
        let root = Path::new("/sys/fs/cgroup");
        let (p, d) = cgroup_files("0::/pinnace/c\n", Mode::V2, &[], root);
        assert_eq!(p, [PathBuf::from("/sys/fs/cgroup/pinnace/c/cgroup.procs")]);
        assert_eq!(d, Some(PathBuf::from("/sys/fs/cgroup/pinnace/c")));
        let v1 = vec![
            (vec!["cpu".to_string(), "cpuacct".to_string()], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")),
            (vec!["memory".to_string()], PathBuf::from("/sys/fs/cgroup/memory")),
        ];
        let text = "12:memory:/pinnace/c\n4:cpu,cpuacct:/pinnace/c\n1:name=systemd:/user.slice\n0::/user.slice\n";
        let (p, d) = cgroup_files(text, Mode::Hybrid, &v1, root);
        assert_eq!(
            p,
            [
                PathBuf::from("/sys/fs/cgroup/memory/pinnace/c/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/pinnace/c/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/unified/user.slice/cgroup.procs"),
            ]
        );
        assert_eq!(d, None);
    }
}
