//! pinnace's Rust core. The modules are plain Rust; only `python` below
//! knows about Python, and it stays a thin binding.

pub mod cgroups;
pub mod error;
pub mod exec;
pub mod init;
pub mod namespaces;
#[cfg(feature = "net")]
pub mod net;
pub mod ops;
pub mod plan;
pub mod shim;
pub mod spawn;
pub mod store;
#[cfg(feature = "unpack")]
pub mod unpack;

use error::{Error, Result};
use oci_spec::runtime::Spec;

/// Parse a runtime spec (config.json) and plan the child's work.
pub fn plan_from_json(spec_json: &str) -> Result<plan::Plan> {
    let spec: Spec = serde_json::from_str(spec_json).map_err(|e| Error::Spec(e.to_string()))?;
    plan::build(&spec)
}

#[cfg(feature = "python")]
mod python {
    use std::sync::Mutex;
    use std::time::Duration;

    use std::path::{Path, PathBuf};

    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyDict};

    use crate::cgroups::{self, Manager, Stats};
    use crate::error::Error;
    use crate::net::{self, NetError};
    use crate::spawn::{self, Stdio, WaitOptions};
    use crate::unpack;

    const PIPE: i32 = -1;
    const DEVNULL: i32 = -2;

    /// One mapping from the crate's error to `pinnace.errors`.
    fn to_py(py: Python<'_>, e: Error) -> PyErr {
        let class = match &e {
            Error::Spec(_) => "SpecError",
            Error::Exec { .. } => "ExecError",
            Error::Layer(_) => "LayerError",
            Error::Net(NetError::Invalid(_)) => "SpecError",
            Error::Net(NetError::Exists(_)) => "Conflict",
            Error::Sys { .. }
            | Error::Setup { .. }
            | Error::ChildDied(_)
            | Error::Hook(_)
            | Error::Cgroup(_)
            | Error::Net(NetError::Sys { .. }) => "SetupError",
        };
        let made = py.import("pinnace.errors").and_then(|m| {
            let cls = m.getattr(class)?;
            let obj = cls.call1((e.to_string(),))?;
            obj.setattr("exit_code", e.exit_code())?;
            Ok(PyErr::from_value(obj))
        });
        made.unwrap_or_else(|err| err)
    }

    fn stdio(fd: i32) -> PyResult<Stdio> {
        Ok(match fd {
            PIPE => Stdio::Pipe,
            DEVNULL => Stdio::Null,
            fd if fd >= 0 => Stdio::Fd(fd),
            other => return Err(pyo3::exceptions::PyValueError::new_err(format!("bad stdio value {other}"))),
        })
    }

    type ExitTuple<'py> = (
        i32,
        Option<i32>,
        Option<Bound<'py, PyBytes>>,
        Option<Bound<'py, PyBytes>>,
        bool,
        bool,
        Option<Bound<'py, PyDict>>,
        Vec<String>,
    );

    fn stats_dict<'py>(py: Python<'py>, s: &Stats) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        // u64::MAX ("max") becomes None: unlimited
        let lim = |v: u64| if v == u64::MAX { None } else { Some(v) };
        d.set_item("memory_usage", s.memory_usage)?;
        d.set_item("memory_limit", lim(s.memory_limit))?;
        d.set_item("memory_peak", s.memory_peak)?;
        d.set_item("memory_inactive_file", s.memory_inactive_file)?;
        d.set_item("cpu_usage_ns", s.cpu_usage_ns)?;
        d.set_item("cpu_user_ns", s.cpu_user_ns)?;
        d.set_item("cpu_system_ns", s.cpu_system_ns)?;
        d.set_item("cpu_periods", s.cpu_periods)?;
        d.set_item("cpu_throttled_periods", s.cpu_throttled_periods)?;
        d.set_item("cpu_throttled_ns", s.cpu_throttled_ns)?;
        d.set_item("pids_current", s.pids_current)?;
        d.set_item("pids_limit", lim(s.pids_limit))?;
        d.set_item("io_read_bytes", s.io_read_bytes)?;
        d.set_item("io_write_bytes", s.io_write_bytes)?;
        d.set_item("oom_kills", s.oom_kills)?;
        Ok(d)
    }

    fn exit_tuple<'py>(py: Python<'py>, e: spawn::Exit, warnings: Vec<String>) -> PyResult<ExitTuple<'py>> {
        let b = |v: Option<Vec<u8>>| v.map(|v| PyBytes::new(py, &v));
        let stats = e.stats.as_ref().map(|s| stats_dict(py, s)).transpose()?;
        Ok((e.code, e.signal, b(e.stdout), b(e.stderr), e.timed_out, e.oom_killed, stats, warnings))
    }

    fn wait_opts(forward_signals: bool, timeout: Option<f64>, input: Option<Vec<u8>>) -> WaitOptions {
        WaitOptions { forward_signals, timeout: timeout.map(Duration::from_secs_f64), input, keep_cgroup: false }
    }

    /// Run a container to completion: returns
    /// (pid, exit_code, signal, stdout, stderr, timed_out).
    /// `on_spawn(pid, warnings)` is called (with the GIL) as soon as the
    /// process exists. With `keep_cgroup` the emptied cgroup is left for the
    /// caller to remove (`cgroup_destroy`).
    #[pyfunction]
    #[pyo3(signature = (spec_json, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, *, input=None, forward_signals=false, timeout=None, die_with_parent=true, on_spawn=None, keep_cgroup=false))]
    #[allow(clippy::too_many_arguments)]
    fn run<'py>(
        py: Python<'py>,
        spec_json: &str,
        stdin: i32,
        stdout: i32,
        stderr: i32,
        input: Option<Vec<u8>>,
        forward_signals: bool,
        timeout: Option<f64>,
        die_with_parent: bool,
        on_spawn: Option<Py<PyAny>>,
        keep_cgroup: bool,
    ) -> PyResult<(i32, ExitTuple<'py>)> {
        let io = [stdio(stdin)?, stdio(stdout)?, stdio(stderr)?];
        let r = py.detach(|| {
            let plan = crate::plan_from_json(spec_json)?;
            let hook = |pid: i32, warnings: &[String]| match &on_spawn {
                None => Ok(()),
                Some(f) => Python::attach(|py| {
                    f.call1(py, (pid, warnings.to_vec())).map(|_| ()).map_err(|e| Error::Hook(e.to_string()))
                }),
            };
            let w = WaitOptions { keep_cgroup, ..wait_opts(forward_signals, timeout, input) };
            spawn::run(plan, io, spawn::Options { die_with_parent, ..Default::default() }, w, hook)
        });
        match r {
            Ok((pid, exit, warnings)) => Ok((pid, exit_tuple(py, exit, warnings)?)),
            Err(e) => Err(to_py(py, e)),
        }
    }

    /// Run a process in a running container: `process_json` is an OCI
    /// runtime-spec "process" object, `pid` the container's first process.
    /// Returns (pid, exit_code, signal, stdout, stderr, timed_out); with
    /// `detach` it returns once the command has started, with exit_code None.
    #[pyfunction]
    #[pyo3(signature = (pid, process_json, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, *, input=None, timeout=None, forward_signals=false, detach=false))]
    #[allow(clippy::too_many_arguments)]
    fn exec_in<'py>(
        py: Python<'py>,
        pid: i32,
        process_json: &str,
        stdin: i32,
        stdout: i32,
        stderr: i32,
        input: Option<Vec<u8>>,
        timeout: Option<f64>,
        forward_signals: bool,
        detach: bool,
    ) -> PyResult<(i32, Option<i32>, Option<i32>, Option<Bound<'py, PyBytes>>, Option<Bound<'py, PyBytes>>, bool)> {
        let io = [stdio(stdin)?, stdio(stdout)?, stdio(stderr)?];
        let opts = crate::exec::ExecOptions { wait: wait_opts(forward_signals, timeout, input), detach };
        match py.detach(|| crate::exec::exec_in(pid, process_json, io, opts)) {
            Ok((pid, None)) => Ok((pid, None, None, None, None, false)),
            Ok((pid, Some(e))) => {
                let b = |v: Option<Vec<u8>>| v.map(|v| PyBytes::new(py, &v));
                Ok((pid, Some(e.code), e.signal, b(e.stdout), b(e.stderr), e.timed_out))
            }
            Err(e) => Err(to_py(py, e)),
        }
    }

    /// A created container process, parked before exec until `start()`.
    #[pyclass(module = "pinnace._core")]
    struct Process {
        inner: Mutex<spawn::Container>,
        #[pyo3(get)]
        pid: i32,
    }

    #[pymethods]
    impl Process {
        fn start(&self, py: Python<'_>) -> PyResult<()> {
            py.detach(|| self.inner.lock().unwrap().start()).map_err(|e| to_py(py, e))
        }

        #[pyo3(signature = (*, forward_signals=false, timeout=None, input=None))]
        fn wait<'py>(
            &self,
            py: Python<'py>,
            forward_signals: bool,
            timeout: Option<f64>,
            input: Option<Vec<u8>>,
        ) -> PyResult<ExitTuple<'py>> {
            let r = py.detach(|| {
                let mut c = self.inner.lock().unwrap();
                c.wait(wait_opts(forward_signals, timeout, input)).map(|e| (e, c.warnings.clone()))
            });
            match r {
                Ok((e, w)) => exit_tuple(py, e, w),
                Err(e) => Err(to_py(py, e)),
            }
        }

        fn kill(&self, py: Python<'_>, signal: i32) -> PyResult<()> {
            self.inner.lock().unwrap().kill(signal).map_err(|e| to_py(py, e))
        }
    }

    /// Clone a container process and park it before exec.
    #[pyfunction]
    #[pyo3(signature = (spec_json, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, *, die_with_parent=true))]
    fn create(py: Python<'_>, spec_json: &str, stdin: i32, stdout: i32, stderr: i32, die_with_parent: bool) -> PyResult<Process> {
        let io = [stdio(stdin)?, stdio(stdout)?, stdio(stderr)?];
        let r = py.detach(|| {
            let plan = crate::plan_from_json(spec_json)?;
            spawn::create(plan, io, spawn::Options { die_with_parent, ..Default::default() })
        });
        match r {
            Ok(c) => Ok(Process { pid: c.pid, inner: Mutex::new(c) }),
            Err(e) => Err(to_py(py, e)),
        }
    }

    /// The pinnace-shim binary build.rs made, and a hash of its content.
    static SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pinnace-shim"));
    const SHIM_HASH: &str = include_str!(concat!(env!("OUT_DIR"), "/pinnace-shim.hash"));

    /// The path of the pinnace-shim binary in `dir`, written there (0755,
    /// under a temporary name, then renamed) the first time. Its name carries
    /// its content's hash, so an upgrade never replaces a running shim's file.
    #[pyfunction]
    fn shim_path(py: Python<'_>, dir: PathBuf) -> PyResult<String> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = dir.join(format!("pinnace-shim-{SHIM_HASH}"));
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == SHIM.len() as u64) {
            return Ok(path.to_string_lossy().into_owned());
        }
        py.detach(|| {
            std::fs::DirBuilder::new().recursive(true).mode(0o755).create(&dir)?;
            // unique per call: threads of one process may write it at once
            static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = dir.join(format!(".pinnace-shim-{SHIM_HASH}.tmp-{}-{n}", std::process::id()));
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o755).open(&tmp)?;
            f.write_all(SHIM)?;
            drop(f);
            std::fs::rename(&tmp, &path)
        })?;
        Ok(path.to_string_lossy().into_owned())
    }

    /// flock(2) on `fd`: exclusive or shared, waiting (without the GIL) or
    /// not. False when `block` is off and another holds the lock; OSError
    /// otherwise, as fcntl.flock (which the CLI's start would import for this).
    #[pyfunction]
    #[pyo3(signature = (fd, *, exclusive=true, block=true))]
    fn flock(py: Python<'_>, fd: i32, exclusive: bool, block: bool) -> PyResult<bool> {
        let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH } | if block { 0 } else { libc::LOCK_NB };
        py.detach(|| loop {
            if unsafe { libc::flock(fd, op) } == 0 {
                return Ok(true);
            }
            match nix::errno::Errno::last() {
                nix::errno::Errno::EINTR => continue,
                nix::errno::Errno::EWOULDBLOCK if !block => return Ok(false),
                e => return Err(pyo3::exceptions::PyOSError::new_err((e as i32, e.desc()))),
            }
        })
    }

    /// `store::spread_subdirs`: the new subdirectories of `path` go to block
    /// groups of their own (ext2/3/4); False where the filesystem cannot.
    #[pyfunction]
    fn spread_subdirs(path: PathBuf) -> PyResult<bool> {
        crate::store::spread_subdirs(&path)
            .map_err(|e| pyo3::exceptions::PyOSError::new_err((e as i32, e.desc(), path.display().to_string())))
    }

    /// Remove a directory tree (symlinks removed, never followed), without
    /// holding the GIL; a missing path is fine, other errors are ignored as
    /// shutil.rmtree(ignore_errors=True) does.
    #[pyfunction]
    fn remove_tree(py: Python<'_>, path: PathBuf) {
        py.detach(|| {
            if std::fs::remove_dir_all(&path).is_err() {
                // a file, or a partial failure: try what is left
                let _ = std::fs::remove_file(&path);
            }
        })
    }

    /// Unpack one layer blob (gzip, zstd or plain tar, told by its magic bytes)
    /// into the empty directory `dest` as an overlay lowerdir, verifying the
    /// blob's digest and the tar's diff_id when given. Returns
    /// {"diff_id", "digest", "size", "disk", "entries"}.
    #[pyfunction]
    #[pyo3(signature = (blob, dest, *, expected_diff_id=None, expected_digest=None, max_size=0))]
    fn unpack_layer<'py>(
        py: Python<'py>,
        blob: PathBuf,
        dest: PathBuf,
        expected_diff_id: Option<String>,
        expected_digest: Option<String>,
        max_size: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let opts = unpack::Options { expected_diff_id, expected_digest, max_size };
        let s = py.detach(|| unpack::unpack(&blob, &dest, &opts)).map_err(|e| to_py(py, e.into()))?;
        let d = PyDict::new(py);
        d.set_item("diff_id", s.diff_id)?;
        d.set_item("digest", s.digest)?;
        d.set_item("size", s.size)?;
        d.set_item("disk", s.disk)?;
        d.set_item("entries", s.entries)?;
        Ok(d)
    }

    /// "v1", "v2" or "hybrid": how this host's cgroups are laid out.
    #[pyfunction]
    fn cgroup_mode() -> &'static str {
        match cgroups::detect(Path::new(cgroups::CGROUP_ROOT)) {
            cgroups::Mode::V1 => "v1",
            cgroups::Mode::V2 => "v2",
            cgroups::Mode::Hybrid => "hybrid",
        }
    }

    /// `cgroups::prewarm_migration`: a container started a few milliseconds
    /// later joins its v1 cgroups without waiting for the kernel (a no-op on
    /// v2 hosts). Returns at once.
    #[pyfunction]
    fn cgroup_prewarm(py: Python<'_>) {
        py.detach(cgroups::prewarm_migration)
    }

    /// Usage of cgroup `rel` (e.g. "pinnace/ID"); None when it does not exist.
    #[pyfunction]
    fn cgroup_stats<'py>(py: Python<'py>, rel: PathBuf) -> PyResult<Option<Bound<'py, PyDict>>> {
        match py.detach(|| cgroups::open(&rel).stats()) {
            Ok(s) => Ok(Some(stats_dict(py, &s)?)),
            Err(_) => Ok(None),
        }
    }

    #[pyfunction]
    fn cgroup_pids(py: Python<'_>, rel: PathBuf) -> PyResult<Vec<i32>> {
        py.detach(|| cgroups::open(&rel).pids()).map_err(|e| to_py(py, e.into()))
    }

    /// SIGKILL everything in cgroup `rel` (freezing it first on v1).
    #[pyfunction]
    fn cgroup_kill(py: Python<'_>, rel: PathBuf) -> PyResult<()> {
        py.detach(|| cgroups::open(&rel).kill_all()).map_err(|e| to_py(py, e.into()))
    }

    /// Kill what is left in cgroup `rel` and remove it (a missing one is fine).
    #[pyfunction]
    fn cgroup_destroy(py: Python<'_>, rel: PathBuf) -> PyResult<()> {
        py.detach(|| cgroups::open(&rel).destroy()).map_err(|e| to_py(py, e.into()))
    }

    /// Remove `parent` (e.g. "pinnace") from every hierarchy where it is empty.
    #[pyfunction]
    fn cgroup_remove_parent_if_empty(parent: PathBuf) {
        cgroups::open(&parent.join("-")).remove_parent_if_empty();
    }

    /// Names of the cgroups directly below `parent`, in any hierarchy.
    #[pyfunction]
    fn cgroup_children(parent: PathBuf) -> Vec<String> {
        let root = Path::new(cgroups::CGROUP_ROOT);
        let bases: Vec<PathBuf> = match cgroups::detect(root) {
            cgroups::Mode::V2 => vec![root.to_path_buf()],
            _ => cgroups::v1_mounts().into_iter().map(|(_, m)| m).collect(),
        };
        let mut names: Vec<String> = bases
            .iter()
            .filter_map(|b| std::fs::read_dir(b.join(&parent)).ok())
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// A cgroup v2 directory driven directly: the v2 mechanics (cgroup.procs,
    /// cgroup.freeze, cgroup.kill, cgroup.events) on any cgroup2 mount.
    #[pyclass(module = "pinnace._core")]
    struct CgroupV2 {
        inner: cgroups::v2::V2,
    }

    #[pymethods]
    impl CgroupV2 {
        #[new]
        fn new(root: PathBuf, rel: PathBuf) -> Self {
            CgroupV2 { inner: cgroups::v2::V2::new(root, rel) }
        }
        fn create(&self, py: Python<'_>) -> PyResult<()> {
            self.inner.create().map_err(|e| to_py(py, e.into()))
        }
        fn add(&self, py: Python<'_>, pid: i32) -> PyResult<()> {
            self.inner.add(pid).map_err(|e| to_py(py, e.into()))
        }
        fn freeze(&self, py: Python<'_>, frozen: bool) -> PyResult<()> {
            py.detach(|| self.inner.freeze(frozen)).map_err(|e| to_py(py, e.into()))
        }
        /// (populated, frozen)
        fn events(&self) -> (bool, bool) {
            self.inner.events()
        }
        fn pids(&self, py: Python<'_>) -> PyResult<Vec<i32>> {
            self.inner.pids().map_err(|e| to_py(py, e.into()))
        }
        fn kill(&self, py: Python<'_>) -> PyResult<()> {
            py.detach(|| self.inner.kill_all()).map_err(|e| to_py(py, e.into()))
        }
        fn destroy(&self, py: Python<'_>) -> PyResult<()> {
            py.detach(|| self.inner.destroy()).map_err(|e| to_py(py, e.into()))
        }
    }

    fn netns<'a>(fd: i32) -> PyResult<std::os::fd::BorrowedFd<'a>> {
        if fd < 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(format!("bad network namespace descriptor {fd}")));
        }
        // SAFETY: only used during the call, while the caller holds it open;
        // a descriptor that is not open fails its check with EBADF.
        Ok(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
    }

    /// A new network namespace with lo up, as a descriptor (close-on-exec)
    /// the caller owns and closes.
    #[pyfunction]
    fn net_namespace(py: Python<'_>) -> PyResult<i32> {
        use std::os::fd::IntoRawFd;
        py.detach(net::new_namespace).map(|fd| fd.into_raw_fd()).map_err(|e| to_py(py, e.into()))
    }

    /// Make bridge `name` if missing (True if this call made it), put each
    /// address on it and set it up.
    #[pyfunction]
    #[pyo3(signature = (name, addrs=Vec::new(), mtu=0))]
    fn net_bridge(py: Python<'_>, name: &str, addrs: Vec<String>, mtu: u32) -> PyResult<bool> {
        py.detach(|| net::bridge(name, &addrs, mtu)).map_err(|e| to_py(py, e.into()))
    }

    /// Join the network namespace `netns_fd` to `bridge` with a veth pair
    /// (`host_if` here, `ifname` there, with `addrs` and a default route via
    /// `gateway`); returns the MAC address of `ifname`.
    #[pyfunction]
    #[pyo3(signature = (netns_fd, bridge, host_if, ifname, addrs=Vec::new(), gateway=None, mtu=0))]
    #[allow(clippy::too_many_arguments)]
    fn net_attach(
        py: Python<'_>,
        netns_fd: i32,
        bridge: &str,
        host_if: &str,
        ifname: &str,
        addrs: Vec<String>,
        gateway: Option<String>,
        mtu: u32,
    ) -> PyResult<String> {
        let fd = netns(netns_fd)?;
        let a = net::Attach { bridge, host_if, ifname, addrs: &addrs, gateway: gateway.as_deref(), mtu };
        py.detach(|| net::attach(fd, &a)).map_err(|e| to_py(py, e.into()))
    }

    /// Delete `ifname` in the network namespace `netns_fd`; False if absent.
    #[pyfunction]
    fn net_detach(py: Python<'_>, netns_fd: i32, ifname: &str) -> PyResult<bool> {
        let fd = netns(netns_fd)?;
        py.detach(|| net::detach(fd, ifname)).map_err(|e| to_py(py, e.into()))
    }

    /// Delete the link `name` in the caller's network namespace; False if absent.
    #[pyfunction]
    fn net_link_delete(py: Python<'_>, name: &str) -> PyResult<bool> {
        py.detach(|| net::link_delete(name)).map_err(|e| to_py(py, e.into()))
    }

    #[pyfunction]
    fn net_link_exists(py: Python<'_>, name: &str) -> PyResult<bool> {
        py.detach(|| net::link_exists(name)).map_err(|e| to_py(py, e.into()))
    }

    #[pymodule]
    fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(remove_tree, m)?)?;
        m.add_function(wrap_pyfunction!(flock, m)?)?;
        m.add_function(wrap_pyfunction!(spread_subdirs, m)?)?;
        m.add_function(wrap_pyfunction!(shim_path, m)?)?;
        m.add_function(wrap_pyfunction!(unpack_layer, m)?)?;
        m.add_function(wrap_pyfunction!(cgroup_mode, m)?)?;
        m.add_function(wrap_pyfunction!(cgroup_prewarm, m)?)?;
        m.add_function(wrap_pyfunction!(cgroup_stats, m)?)?;
        m.add_function(wrap_pyfunction!(cgroup_pids, m)?)?;
        m.add_function(wrap_pyfunction!(cgroup_kill, m)?)?;
        m.add_function(wrap_pyfunction!(cgroup_destroy, m)?)?;
        m.add_function(wrap_pyfunction!(cgroup_children, m)?)?;
        m.add_function(wrap_pyfunction!(cgroup_remove_parent_if_empty, m)?)?;
        m.add_class::<CgroupV2>()?;
        m.add("PIPE", PIPE)?;
        m.add("DEVNULL", DEVNULL)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add_function(wrap_pyfunction!(run, m)?)?;
        m.add_function(wrap_pyfunction!(create, m)?)?;
        m.add_function(wrap_pyfunction!(exec_in, m)?)?;
        m.add_class::<Process>()?;
        m.add_function(wrap_pyfunction!(net_namespace, m)?)?;
        m.add_function(wrap_pyfunction!(net_bridge, m)?)?;
        m.add_function(wrap_pyfunction!(net_attach, m)?)?;
        m.add_function(wrap_pyfunction!(net_detach, m)?)?;
        m.add_function(wrap_pyfunction!(net_link_delete, m)?)?;
        m.add_function(wrap_pyfunction!(net_link_exists, m)?)?;
        Ok(())
    }
}
