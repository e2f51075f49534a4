//! Turn an OCI runtime spec into a [`Plan`]: everything the child will do,
//! with every string already converted, so the child allocates nothing.
//!
//! Pure logic apart from `stat` on bind-mount sources; unit-tested on
//! tempdirs without root.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use libc::c_ulong;
use oci_spec::runtime::{LinuxNamespaceType, Mount, Process, Spec};

use crate::cgroups::Resources;
use crate::error::{Error, Result};
use crate::ops::{InRoot, Make, Op, Target};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Capability sets as bit masks (bit N = capability number N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: u32,
}

#[derive(Debug, Clone)]
pub struct ExecPlan {
    /// The command as the user wrote it, for error messages.
    pub arg0: String,
    /// Paths to try in order (the PATH search, done without allocating).
    pub candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub clone_flags: libc::c_int,
    /// Contents for /proc/PID/uid_map and gid_map when a user namespace is made.
    pub id_maps: Option<(String, String)>,
    pub ops: Vec<Op>,
    pub identity: Identity,
    /// None leaves capabilities as they are.
    pub caps: Option<CapSets>,
    pub no_new_privs: bool,
    pub exec: ExecPlan,
    /// A root filesystem the parent makes (as a detached mount, with its own
    /// credentials) for the child to attach: an overlay cannot be mounted
    /// from inside a user namespace over layers owned by the host's root.
    pub detached_root: Option<(CString, Vec<CString>)>,
    /// The container's cgroup (relative to the hierarchy roots) and limits.
    pub cgroup: Option<(PathBuf, Resources)>,
    /// With a cgroup, the child unshares its cgroup namespace itself, after
    /// joining, so that the namespace is rooted at the container's cgroup.
    pub unshare_cgroupns: bool,
    /// Set for a process joining a running container (exec) instead of
    /// making one: nothing is created, so nothing is removed either.
    pub join: Option<Join>,
    /// stdin is a terminal the process should own: it becomes a session
    /// leader with stdin as its controlling terminal (so ^C on it is SIGINT).
    pub terminal: bool,
}

/// What a process joining a running container enters besides what its ops
/// do (the other namespaces are an [`Op::Setns`]).
#[derive(Debug, Clone, Default)]
pub struct Join {
    /// The pid namespace to clone into: the calling thread enters it around
    /// clone (setns(CLONE_NEWPID) only affects children, and a thread may do
    /// it however many threads the process has). A pidfd or a
    /// /proc/PID/ns/pid descriptor the caller keeps open; -1 to stay.
    pub pidns_fd: RawFd,
    /// The cgroup.procs files of every hierarchy the container's process is
    /// in, written "0" by the child before it enters any namespace.
    pub cgroup_procs: Vec<CString>,
    /// On cgroup v2, the directory to clone3(CLONE_INTO_CGROUP) into.
    pub cgroup_dir: Option<PathBuf>,
}

fn resources(r: Option<&oci_spec::runtime::LinuxResources>) -> Resources {
    let Some(r) = r else { return Resources::default() };
    let mut out = Resources::default();
    if let Some(m) = r.memory() {
        out.memory = m.limit();
        out.memory_swap = m.swap();
        out.memory_reservation = m.reservation();
    }
    if let Some(c) = r.cpu() {
        out.cpu_quota = c.quota();
        out.cpu_period = c.period();
        out.cpu_shares = c.shares();
        out.cpuset_cpus = c.cpus().clone();
        out.cpuset_mems = c.mems().clone();
    }
    if let Some(p) = r.pids() {
        out.pids_limit = Some(p.limit());
    }
    if let Some(b) = r.block_io() {
        out.blkio_weight = b.weight();
        let devs = |d: &Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>| {
            d.iter().flatten().map(|t| (t.major(), t.minor(), t.rate())).collect()
        };
        out.read_bps = devs(b.throttle_read_bps_device());
        out.write_bps = devs(b.throttle_write_bps_device());
    }
    out
}

pub(crate) fn cstr(s: impl AsRef<[u8]>) -> Result<CString> {
    CString::new(s.as_ref().to_vec()).map_err(|_| Error::Spec("string contains a NUL byte".into()))
}

fn cpath(p: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    cstr(p.as_os_str().as_bytes())
}

/// An absolute in-container path as one relative to the root ("dev/pts";
/// "." for the root), refusing `..`. The child looks it up inside the root,
/// never by joining it onto the root's host path: a symlink in the image
/// must not be followed on the host.
pub fn in_root(dest: &Path) -> Result<InRoot> {
    let mut out = PathBuf::new();
    for c in dest.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::Spec(format!("path {} must not contain '..'", dest.display())))
            }
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    if out.as_os_str().len() >= libc::PATH_MAX as usize {
        return Err(Error::Spec(format!("path {} is too long", dest.display())));
    }
    Ok(InRoot { rel: cpath(&out)?, nofollow: false })
}

/// Every directory from just below `/` down to `path` itself.
fn dir_chain(path: &Path) -> Vec<PathBuf> {
    let mut chain: Vec<PathBuf> = path.ancestors().take_while(|p| *p != Path::new("/")).map(Path::to_path_buf).collect();
    chain.reverse();
    chain
}

/// Mount options split into flags and the data string the filesystem gets.
pub fn parse_mount_options(options: &[String]) -> (c_ulong, String) {
    let mut flags: c_ulong = 0;
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "noatime" => (libc::MS_NOATIME, 0),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "private" => (libc::MS_PRIVATE, 0),
            "rprivate" => (libc::MS_PRIVATE | libc::MS_REC, 0),
            "slave" => (libc::MS_SLAVE, 0),
            "rslave" => (libc::MS_SLAVE | libc::MS_REC, 0),
            "shared" => (libc::MS_SHARED, 0),
            "rshared" => (libc::MS_SHARED | libc::MS_REC, 0),
            "unbindable" => (libc::MS_UNBINDABLE, 0),
            "runbindable" => (libc::MS_UNBINDABLE | libc::MS_REC, 0),
            other => {
                data.push(other);
                (0, 0)
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data.join(","))
}

/// Docker's default device nodes, made in every container's /dev.
const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
    ("/proc/kcore", "core"),
];

pub(crate) fn cap_mask(set: &Option<oci_spec::runtime::Capabilities>) -> Result<u64> {
    let mut mask = 0u64;
    for cap in set.iter().flatten() {
        let name = format!("CAP_{cap}");
        let c = caps::Capability::from_str(&name).map_err(|_| Error::Spec(format!("unknown capability {name}")))?;
        mask |= 1u64 << c.index();
    }
    Ok(mask)
}

pub(crate) fn rlimit_resource(name: &str) -> Result<i32> {
    Ok(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        other => return Err(Error::Spec(format!("unknown rlimit {other}"))),
    } as i32)
}

struct Builder {
    ops: Vec<Op>,
    /// The container's cgroup and the v1 controllers it joins.
    cgroup: Option<(PathBuf, Vec<&'static str>)>,
    /// The host's cgroup layout, for mounts of type "cgroup".
    layout: (crate::cgroups::Mode, Vec<(Vec<String>, PathBuf)>),
}

impl Builder {
    /// A mount of type "cgroup": the container's own cgroups, as runc does.
    /// On v2 a cgroup2 mount (rooted at the container's cgroup when it has
    /// its own cgroup namespace); on v1 a tmpfs holding a bind of the
    /// container's directory in each hierarchy.
    fn cgroup_mount(&mut self, dest: &Path, flags: c_ulong) -> Result<()> {
        use crate::cgroups::Mode;
        let at = in_root(dest)?;
        let base = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let ro = flags & libc::MS_RDONLY;
        if self.layout.0 == Mode::V2 {
            self.ops.push(Op::Mount {
                src: Some(cstr("cgroup2")?),
                target: Target::Root(at, Make::Dir),
                fstype: Some(cstr("cgroup2")?),
                flags: base | ro,
                data: None,
            });
            return Ok(());
        }
        self.ops.push(Op::Mount {
            src: Some(cstr("tmpfs")?),
            target: Target::Root(at.clone(), Make::Dir),
            fstype: Some(cstr("tmpfs")?),
            flags: base,
            data: Some(cstr("mode=755")?),
        });
        if let Some((rel, needed)) = self.cgroup.clone() {
            let hierarchies = self.layout.1.clone();
            for (controllers, mount) in hierarchies {
                let joined = controllers.iter().any(|c| needed.contains(&c.as_str()));
                if !joined {
                    continue;
                }
                let name = controllers.join(",");
                // optional: a host that cannot give the container a cgroup
                // runs it without one (see spawn)
                self.ops.push(Op::OptionalBind { src: cpath(&mount.join(&rel))?, target: in_root(&dest.join(&name))? });
                if controllers.len() > 1 {
                    for c in &controllers {
                        self.ops.push(Op::Symlink { target: cstr(&name)?, dir: at.clone(), name: cstr(c)? });
                    }
                }
            }
        }
        if ro != 0 {
            self.ops.push(Op::RemountReadonly { target: at });
        }
        Ok(())
    }

    fn mount(&mut self, m: &Mount) -> Result<()> {
        let dest = m.destination();
        let mut at = in_root(dest)?;
        let (mut flags, data) = parse_mount_options(m.options().as_deref().unwrap_or(&[]));
        let typ = m.typ().clone().unwrap_or_default();
        if typ == "cgroup" {
            return self.cgroup_mount(dest, flags);
        }
        // An image could otherwise point /proc or /sys at a directory where
        // procfs or sysfs would be harmful (runc refuses the same).
        at.nofollow = typ == "proc" || typ == "sysfs";
        if typ == "bind" {
            flags |= libc::MS_BIND;
        }
        let bind = flags & libc::MS_BIND != 0;
        let src = m.source().as_ref();
        let src_is_dir = match (bind, src) {
            (true, Some(s)) => std::fs::metadata(s)
                .map_err(|e| {
                    let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0));
                    Error::Spec(format!("bind source {}: {}", s.display(), errno.desc().to_lowercase()))
                })?
                .is_dir(),
            (true, None) => return Err(Error::Spec(format!("bind mount on {} has no source", m.destination().display()))),
            _ => true,
        };
        let make = if src_is_dir { Make::Dir } else { Make::File };
        self.ops.push(Op::Mount {
            src: src.map(|s| cpath(s)).transpose()?,
            target: Target::Root(at.clone(), make),
            fstype: if bind { None } else { Some(cstr(&typ)?) },
            flags,
            data: if data.is_empty() { None } else { Some(cstr(&data)?) },
        });
        if m.destination() == Path::new("/dev") && !bind {
            for (name, major, minor) in DEFAULT_DEVICES {
                self.ops.push(Op::Device {
                    dir: at.clone(),
                    name: cstr(name)?,
                    mode: libc::S_IFCHR | 0o666,
                    dev: libc::makedev(*major, *minor),
                    host: cstr(format!("/dev/{name}"))?,
                });
            }
            for (target, link) in DEV_SYMLINKS {
                self.ops.push(Op::Symlink { target: cstr(target)?, dir: at.clone(), name: cstr(link)? });
            }
        }
        Ok(())
    }
}

/// Build the plan for `spec`. `root` is the rootfs path (already absolute).
pub fn build(spec: &Spec) -> Result<Plan> {
    let root = spec.root().as_ref().ok_or_else(|| Error::Spec("spec has no root".into()))?;
    let rootfs = root.path().clone();
    if !rootfs.is_absolute() {
        return Err(Error::Spec(format!("root path {} is not absolute", rootfs.display())));
    }
    let process = spec.process().as_ref().ok_or_else(|| Error::Spec("spec has no process".into()))?;
    let linux = spec.linux().as_ref();

    let mut clone_flags = 0;
    let mut seen = 0;
    // Namespaces joined by path: entered first thing, before any mount (a
    // sysfs shows the devices of its mounter's network namespace).
    let mut joins = Vec::new();
    for ns in linux.and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        let flag = match ns.typ() {
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::User => libc::CLONE_NEWUSER,
            LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
            LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
        };
        let name = crate::namespaces::type_name(flag);
        if seen & flag != 0 {
            return Err(Error::Spec(format!("the {name} namespace is listed more than once")));
        }
        seen |= flag;
        match ns.path() {
            None => clone_flags |= flag,
            Some(p) if !crate::namespaces::JOINABLE.contains(&flag) => {
                return Err(Error::Spec(format!("joining an existing {name} namespace ({}) is not supported", p.display())))
            }
            Some(p) if !p.is_absolute() => {
                return Err(Error::Spec(format!("{name} namespace path {} is not absolute", p.display())))
            }
            Some(p) => joins.push(Op::JoinNamespace { nstype: flag, path: cpath(p)?, fd: -1 }),
        }
    }
    if !joins.is_empty() && clone_flags & libc::CLONE_NEWUSER != 0 {
        // The child, root of its new user namespace only, may not enter
        // namespaces the host's user namespace owns.
        return Err(Error::Spec("joining an existing namespace together with a new user namespace is not supported".into()));
    }
    if clone_flags & libc::CLONE_NEWNS == 0 {
        return Err(Error::Spec("a mount namespace is required".into()));
    }
    let cgroup = match linux.and_then(|l| l.cgroups_path().as_ref()) {
        None => None,
        Some(p) => {
            let rel = p.strip_prefix("/").unwrap_or(p).to_path_buf();
            if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(Error::Spec(format!("cgroupsPath {} must name a cgroup below the root", p.display())));
            }
            Some((rel, resources(linux.and_then(|l| l.resources().as_ref()))))
        }
    };
    let unshare_cgroupns = cgroup.is_some() && clone_flags & libc::CLONE_NEWCGROUP != 0;
    if unshare_cgroupns {
        clone_flags &= !libc::CLONE_NEWCGROUP;
    }

    let id_maps = if clone_flags & libc::CLONE_NEWUSER != 0 {
        let fmt = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| -> String {
            maps.into_iter().flatten().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect()
        };
        let l = linux.expect("namespaces come from linux");
        let (u, g) = (fmt(l.uid_mappings().as_ref()), fmt(l.gid_mappings().as_ref()));
        if u.is_empty() || g.is_empty() {
            return Err(Error::Spec("a user namespace needs uidMappings and gidMappings".into()));
        }
        Some((u, g))
    } else {
        None
    };

    let needs_layout = spec.mounts().iter().flatten().any(|m| m.typ().as_deref() == Some("cgroup"));
    let layout = if needs_layout {
        crate::cgroups::layout().clone()
    } else {
        (crate::cgroups::Mode::V2, Vec::new())
    };
    let mut b = Builder {
        ops: joins,
        cgroup: cgroup.as_ref().map(|(rel, r)| (rel.clone(), crate::cgroups::v1::needed(r))),
        layout,
    };
    // Nothing we mount may leak back to the host.
    b.ops.push(Op::Mount {
        src: None,
        target: Target::Host(cstr("/")?),
        fstype: None,
        flags: libc::MS_REC | libc::MS_PRIVATE,
        data: None,
    });
    if clone_flags & libc::CLONE_NEWNET != 0 {
        b.ops.push(Op::LoopbackUp);
    }

    let mounts = spec.mounts().as_deref().unwrap_or(&[]);
    let root_c = cpath(&rootfs)?;
    let mut detached_root = None;
    match mounts.iter().find(|m| m.destination() == Path::new("/")) {
        Some(m) if clone_flags & libc::CLONE_NEWUSER != 0 => {
            let typ = m.typ().clone().unwrap_or_default();
            let options = m.options().iter().flatten().flat_map(|o| o.split(',')).map(cstr).collect::<Result<_>>()?;
            detached_root = Some((cstr(&typ)?, options));
            b.ops.push(Op::AttachRoot { target: root_c.clone() });
        }
        Some(m) => {
            let (flags, data) = parse_mount_options(m.options().as_deref().unwrap_or(&[]));
            b.ops.push(Op::Mount {
                src: m.source().as_ref().map(|s| cpath(s)).transpose()?,
                target: Target::Host(root_c.clone()),
                fstype: m.typ().as_ref().map(cstr).transpose()?,
                flags,
                data: if data.is_empty() { None } else { Some(cstr(&data)?) },
            })
        }
        // pivot_root needs the new root to be a mount point.
        None => b.ops.push(Op::Mount {
            src: Some(root_c.clone()),
            target: Target::Host(root_c.clone()),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
        }),
    }
    // From here on every path of the container's is looked up from the
    // root as the image built it, never through the host's path to it.
    b.ops.push(Op::OpenRoot { path: root_c.clone() });
    for m in mounts.iter().filter(|m| m.destination() != Path::new("/")) {
        b.mount(m)?;
    }
    for p in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten() {
        b.ops.push(Op::Mask { path: in_root(Path::new(p))? });
    }
    for p in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten() {
        b.ops.push(Op::Readonly { path: in_root(Path::new(p))? });
    }
    b.ops.push(Op::PivotRoot { root: root_c });
    if root.readonly().unwrap_or(false) {
        b.ops.push(Op::ReadonlyRoot);
    }
    if let Some(h) = spec.hostname() {
        // as runc: in a uts namespace of its own, or in the one it joins
        if seen & libc::CLONE_NEWUTS != 0 {
            b.ops.push(Op::Sethostname { name: cstr(h)? });
        }
    }
    for r in process.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ()).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        b.ops.push(Op::Setrlimit { resource: rlimit_resource(&name)?, soft: r.soft(), hard: r.hard() });
    }
    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(Error::Spec(format!("working directory {} is not absolute", cwd.display())));
    }
    // Like docker, create a missing working directory (inside the new root:
    // no path of the host's is reachable any more).
    for dir in dir_chain(cwd) {
        b.ops.push(Op::Mkdir { path: cpath(&dir)? });
    }
    b.ops.push(Op::Chdir { path: cpath(cwd)? });

    let (identity, caps) = identity_and_caps(process)?;

    let exec = exec_plan(process.args().as_deref().unwrap_or(&[]), process.env().as_deref().unwrap_or(&[]))?;
    Ok(Plan {
        clone_flags,
        id_maps,
        ops: b.ops,
        identity,
        caps,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        exec,
        detached_root,
        cgroup,
        unshare_cgroupns,
        join: None,
        terminal: process.terminal().unwrap_or(false),
    })
}

/// Who the process runs as and with which capabilities (None: leave them be),
/// from a runtime-spec "process" object: the same for a new container and an exec.
pub fn identity_and_caps(process: &Process) -> Result<(Identity, Option<CapSets>)> {
    let user = process.user();
    let identity = Identity {
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask().unwrap_or(0o022),
    };
    let caps = match process.capabilities() {
        None => None,
        Some(c) => Some(CapSets {
            bounding: cap_mask(c.bounding())?,
            effective: cap_mask(c.effective())?,
            permitted: cap_mask(c.permitted())?,
            inheritable: cap_mask(c.inheritable())?,
            ambient: cap_mask(c.ambient())?,
        }),
    };
    Ok((identity, caps))
}

/// The PATH search is done here, as a list of candidates, because the child
/// must not allocate while it tries them.
pub fn exec_plan(args: &[String], env: &[String]) -> Result<ExecPlan> {
    let arg0 = args.first().ok_or_else(|| Error::Spec("no command given".into()))?.clone();
    if arg0.is_empty() {
        return Err(Error::Spec("the command is an empty string".into()));
    }
    let candidates = if arg0.contains('/') {
        vec![cstr(&arg0)?]
    } else {
        let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| cstr(format!("{}/{}", d.trim_end_matches('/'), arg0)))
            .collect::<Result<_>>()?
    };
    Ok(ExecPlan {
        arg0,
        candidates,
        argv: args.iter().map(cstr).collect::<Result<_>>()?,
        envp: env.iter().map(cstr).collect::<Result<_>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn base(extra: serde_json::Value) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "/r"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                         "env": ["PATH=/usr/bin:/bin"]},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "network"}]}
        });
        merge(&mut v, extra);
        v
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), &b) {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(x) if x.is_object() && v.is_object() => merge(x, v.clone()),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }

    #[test]
    fn path_search_makes_candidates_in_order() {
        let e = exec_plan(&["ls".into(), "-l".into()], &["PATH=/a:/b/".into()]).unwrap();
        assert_eq!(e.candidates, vec![cstr("/a/ls").unwrap(), cstr("/b/ls").unwrap()]);
        let e = exec_plan(&["./x".into()], &[]).unwrap();
        assert_eq!(e.candidates, vec![cstr("./x").unwrap()]);
        assert!(exec_plan(&[], &[]).is_err());
    }

    #[test]
    fn mount_options_split_into_flags_and_data() {
        let (f, d) = parse_mount_options(&["nosuid".into(), "mode=755".into(), "ro".into(), "size=64k".into()]);
        assert_eq!(f, libc::MS_NOSUID | libc::MS_RDONLY);
        assert_eq!(d, "mode=755,size=64k");
        let (f, _) = parse_mount_options(&["ro".into(), "rw".into()]);
        assert_eq!(f, 0);
    }

    #[test]
    fn paths_in_the_root_are_relative_and_refuse_dotdot() {
        assert_eq!(in_root(Path::new("/a/./b")).unwrap().rel, cstr("a/b").unwrap());
        assert_eq!(in_root(Path::new("/")).unwrap().rel, cstr(".").unwrap());
        assert!(in_root(Path::new("/a/../../etc")).is_err());
    }

    #[test]
    fn plan_orders_rootfs_mounts_masks_pivot_and_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let s = spec(base(serde_json::json!({
            "hostname": "box",
            "root": {"path": "/r", "readonly": true},
            "process": {"cwd": "/work/dir"},
            "mounts": [
                {"destination": "/", "type": "overlay", "source": "overlay", "options": ["lowerdir=/l,upperdir=/u,workdir=/w"]},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
                {"destination": "/etc/conf", "type": "bind", "source": file, "options": ["ro"]}
            ],
            "linux": {"maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                      "namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "network"}, {"type": "uts"}]}
        })));
        let plan = build(&s).unwrap();
        let d: Vec<String> = plan.ops.iter().map(Op::describe).collect();
        assert_eq!(d[0], "remount /");
        assert_eq!(d[1], "bring up the loopback interface");
        assert_eq!(d[2], "mount overlay on /r");
        assert_eq!(d[3], "open the root filesystem /r");
        assert_eq!(d[4], "mount tmpfs on /dev");
        assert!(matches!(&plan.ops[4], Op::Mount { target: Target::Root(p, Make::Dir), .. } if p.rel.as_bytes() == b"dev"));
        assert!(d.contains(&"create device /dev/null".to_string()));
        assert!(d.contains(&"create symlink /dev/ptmx".to_string()));
        let i = d.iter().position(|x| x.starts_with("bind mount") && x.ends_with(" on /etc/conf")).unwrap();
        // a file bind: the mount point is made as a file, its directories as directories
        assert!(matches!(&plan.ops[i], Op::Mount { target: Target::Root(_, Make::File), .. }));
        let p = d.iter().position(|x| x == "pivot_root into /r").unwrap();
        assert_eq!(d[p - 2], "mask /proc/kcore");
        assert_eq!(d[p - 1], "make /proc/sys read-only");
        assert_eq!(
            &d[p + 1..],
            &[
                "remount the root filesystem read-only",
                "set hostname box",
                "create directory /work",
                "create directory /work/dir",
                "change to working directory /work/dir"
            ]
        );
        assert_eq!(plan.clone_flags, libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWNET | libc::CLONE_NEWUTS);
        assert!(plan.id_maps.is_none());
    }

    #[test]
    fn root_without_overlay_is_bound_onto_itself() {
        let plan = build(&spec(base(serde_json::json!({})))).unwrap();
        assert_eq!(plan.ops[2].describe(), "bind mount /r on /r");
    }

    #[test]
    fn capabilities_become_masks() {
        let s = spec(base(serde_json::json!({"process": {"capabilities": {
            "bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"]}}})));
        let c = build(&s).unwrap().caps.unwrap();
        assert_eq!(c.bounding, (1 << 0) | (1 << 5));
        assert_eq!(c.effective, 1 << 5);
        assert_eq!(c.permitted, 0);
    }

    #[test]
    fn user_namespace_needs_maps() {
        let s = spec(base(serde_json::json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "user"}]}})));
        assert!(matches!(build(&s), Err(Error::Spec(_))));
        let s = spec(base(serde_json::json!({"linux": {
            "namespaces": [{"type": "mount"}, {"type": "user"}],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}})));
        let p = build(&s).unwrap();
        assert_eq!(p.id_maps.unwrap().0, "0 100000 65536\n");
    }

    #[test]
    fn cgroup_path_and_resources_come_from_the_spec() {
        let s = spec(base(serde_json::json!({"linux": {
            "namespaces": [{"type": "mount"}, {"type": "cgroup"}],
            "cgroupsPath": "/pinnace/c1",
            "resources": {"memory": {"limit": 1048576, "swap": -1}, "cpu": {"quota": 50000, "period": 100000},
                          "pids": {"limit": 10},
                          "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 100}]}}}})));
        let p = build(&s).unwrap();
        let (rel, r) = p.cgroup.unwrap();
        assert_eq!(rel, PathBuf::from("pinnace/c1"));
        assert_eq!((r.memory, r.memory_swap, r.cpu_quota, r.pids_limit), (Some(1048576), Some(-1), Some(50000), Some(10)));
        assert_eq!((r.blkio_weight, r.read_bps.clone()), (Some(500), vec![(8, 0, 100)]));
        // joined first, then the namespace: it must be rooted at the new cgroup
        assert!(p.unshare_cgroupns);
        assert_eq!(p.clone_flags & libc::CLONE_NEWCGROUP, 0);
        let bad = spec(base(serde_json::json!({"linux": {"cgroupsPath": "../escape"}})));
        assert!(build(&bad).is_err());
    }

    #[test]
    fn proc_and_sysfs_refuse_a_symlink_as_their_mount_point() {
        let s = spec(base(serde_json::json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs"},
            {"destination": "/data", "type": "tmpfs", "source": "tmpfs"}]})));
        let strict: Vec<bool> = build(&s)
            .unwrap()
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::Mount { target: Target::Root(p, _), .. } => Some(p.nofollow),
                _ => None,
            })
            .collect();
        assert_eq!(strict, vec![true, true, false]);
    }

    #[test]
    fn namespace_paths_are_joined_first_and_not_made() {
        let s = spec(base(serde_json::json!({
            "hostname": "box",
            "mounts": [{"destination": "/sys", "type": "sysfs", "source": "sysfs"}],
            "linux": {"namespaces": [
                {"type": "mount"}, {"type": "pid"},
                {"type": "network", "path": "/proc/7/ns/net"},
                {"type": "uts", "path": "/proc/7/ns/uts"},
                {"type": "ipc", "path": "/run/ipc"},
                {"type": "cgroup", "path": "/proc/7/ns/cgroup"}]}})));
        let plan = build(&s).unwrap();
        assert_eq!(plan.clone_flags, libc::CLONE_NEWNS | libc::CLONE_NEWPID);
        let d: Vec<String> = plan.ops.iter().map(Op::describe).collect();
        assert_eq!(
            &d[..5],
            [
                "join network namespace /proc/7/ns/net",
                "join uts namespace /proc/7/ns/uts",
                "join ipc namespace /run/ipc",
                "join cgroup namespace /proc/7/ns/cgroup",
                "remount /",
            ]
        );
        assert!(plan.ops[..4].iter().all(|o| matches!(o, Op::JoinNamespace { fd: -1, .. })));
        // the joined network namespace is its owner's to set up
        assert!(!d.contains(&"bring up the loopback interface".to_string()));
        // as runc: a hostname in the spec is set in the uts namespace joined
        assert!(d.contains(&"set hostname box".to_string()));
        assert!(!plan.unshare_cgroupns);
    }

    #[test]
    fn namespace_paths_that_cannot_be_joined_are_spec_errors() {
        let err = |namespaces: serde_json::Value, extra: serde_json::Value| {
            let mut v = base(serde_json::json!({"linux": {"namespaces": namespaces}}));
            merge(&mut v, extra);
            build(&spec(v)).unwrap_err().to_string()
        };
        let none = serde_json::json!({});
        for (typ, name) in [("pid", "pid"), ("user", "user"), ("mount", "mount"), ("time", "time")] {
            let e = err(serde_json::json!([{"type": "mount"}, {"type": typ, "path": "/proc/1/ns/x"}]), none.clone());
            assert!(
                e == format!("invalid runtime spec: joining an existing {name} namespace (/proc/1/ns/x) is not supported")
                    || (typ == "mount" && e.contains("listed more than once")),
                "{e}"
            );
        }
        let e = err(serde_json::json!([{"type": "mount"}, {"type": "network", "path": "ns/net"}]), none.clone());
        assert_eq!(e, "invalid runtime spec: network namespace path ns/net is not absolute");
        let e = err(serde_json::json!([{"type": "mount"}, {"type": "network"}, {"type": "network", "path": "/n"}]), none);
        assert_eq!(e, "invalid runtime spec: the network namespace is listed more than once");
        let e = err(
            serde_json::json!([{"type": "mount"}, {"type": "user"}, {"type": "network", "path": "/n"}]),
            serde_json::json!({"linux": {"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                                         "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}}),
        );
        assert!(e.contains("together with a new user namespace"), "{e}");
    }

    #[test]
    fn missing_bind_source_is_a_spec_error() {
        let s = spec(base(serde_json::json!({"mounts": [
            {"destination": "/x", "type": "bind", "source": "/definitely/not/here"}]})));
        let e = build(&s).unwrap_err().to_string();
        assert!(e.contains("/definitely/not/here"), "{e}");
    }
}
