//! cgroup v1 (and hybrid hosts): one directory per container in each
//! controller's hierarchy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{keyed, mkdir, number, parse_pids, read_file, rmdir, wait_until, write_file, Manager, Resources, Result, Stats};

/// The controllers whose hierarchies a container joins.
pub const CONTROLLERS: &[&str] = &["memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "freezer"];

/// v1 reports "no limit" as a page-rounded i64::MAX.
const V1_UNLIMITED: u64 = 1 << 62;

pub struct V1 {
    mounts: Vec<(Vec<String>, PathBuf)>,
    rel: PathBuf,
    /// The controllers to join; None for all of [`CONTROLLERS`] (the view
    /// used to read, kill and remove whatever a container joined).
    only: Option<Vec<&'static str>>,
}

/// The v1 controllers a container with limits `r` joins. Each hierarchy costs
/// a mkdir, a join, a bind inside the container and an rmdir on every start,
/// so only what the limits or `stats` need: memory, cpuacct (CPU usage) and
/// pids always; cpu, blkio and cpuset when limits ask for them. freezer is
/// not needed: the container's pid namespace dies with its first process.
pub fn needed(r: &Resources) -> Vec<&'static str> {
    let mut c = vec!["memory", "cpuacct", "pids"];
    if r.cpu_quota.is_some() || r.cpu_period.is_some() || r.cpu_shares.is_some() {
        c.push("cpu");
    }
    if r.blkio_weight.is_some() || !r.read_bps.is_empty() || !r.write_bps.is_empty() {
        c.push("blkio");
    }
    if r.cpuset_cpus.is_some() || r.cpuset_mems.is_some() {
        c.push("cpuset");
    }
    c
}

impl V1 {
    /// `mounts`: (controllers, mount point) for each v1 hierarchy.
    pub fn new(mounts: Vec<(Vec<String>, PathBuf)>, rel: PathBuf) -> Self {
        V1 { mounts, rel, only: None }
    }

    /// Join only `controllers` (see [`needed`]).
    pub fn only(mut self, controllers: Vec<&'static str>) -> Self {
        self.only = Some(controllers);
        self
    }

    fn wanted(&self, controller: &str) -> bool {
        CONTROLLERS.contains(&controller) && self.only.as_ref().is_none_or(|o| o.contains(&controller))
    }

    fn mount_of(&self, controller: &str) -> Option<&PathBuf> {
        if !self.wanted(controller) {
            return None;
        }
        self.mounts.iter().find(|(c, _)| c.iter().any(|x| x == controller)).map(|(_, m)| m)
    }

    /// The container's directory in `controller`'s hierarchy.
    fn dir(&self, controller: &str) -> Option<PathBuf> {
        self.mount_of(controller).map(|m| m.join(&self.rel))
    }

    fn file(&self, controller: &str, name: &str) -> Option<PathBuf> {
        self.dir(controller).map(|d| d.join(name))
    }

    fn read(&self, controller: &str, name: &str) -> String {
        self.file(controller, name).and_then(|f| std::fs::read_to_string(f).ok()).unwrap_or_default()
    }

    fn write(&self, controller: &str, name: &str, data: &str) -> Result<()> {
        match self.file(controller, name) {
            Some(f) => write_file(&f, data),
            None => Err(super::CgroupError::Unsupported(format!(
                "the {controller} cgroup controller is not mounted (needed for {name})"
            ))),
        }
    }

    /// Each hierarchy once (cpu and cpuacct usually share one).
    fn hierarchies(&self) -> Vec<(&Vec<String>, &PathBuf)> {
        self.mounts
            .iter()
            .filter(|(c, _)| c.iter().any(|x| self.wanted(x)))
            .map(|(c, m)| (c, m))
            .collect()
    }

    /// A new cpuset cgroup starts with no cpus and no mems, and no task can
    /// join it then: copy the parent's.
    fn init_cpuset(dir: &Path) -> Result<()> {
        let parent = dir.parent().expect("a cgroup below the mount point");
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let mine = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = read_file(&parent.join(f))?;
                if !theirs.trim().is_empty() {
                    write_file(&dir.join(f), theirs.trim())?;
                }
            }
        }
        Ok(())
    }
}

impl Manager for V1 {
    fn create(&self) -> Result<()> {
        for (controllers, mount) in self.hierarchies() {
            let mut cur = mount.clone();
            for comp in self.rel.components() {
                cur.push(comp);
                mkdir(&cur)?;
                if controllers.iter().any(|c| c == "cpuset") {
                    Self::init_cpuset(&cur)?;
                }
            }
        }
        Ok(())
    }

    fn apply(&self, r: &Resources) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        if let Some(m) = r.memory {
            self.write("memory", "memory.limit_in_bytes", &m.to_string())?;
        }
        if let Some(s) = r.memory_swap {
            match self.file("memory", "memory.memsw.limit_in_bytes") {
                Some(f) if f.exists() => write_file(&f, &s.to_string())?,
                _ => warnings.push(super::NO_SWAP_LIMIT.to_string()),
            }
        }
        if let Some(low) = r.memory_reservation {
            self.write("memory", "memory.soft_limit_in_bytes", &low.to_string())?;
        }
        if r.cpu_quota.is_some() || r.cpu_period.is_some() {
            self.write("cpu", "cpu.cfs_period_us", &r.cpu_period.unwrap_or(100_000).to_string())?;
            self.write("cpu", "cpu.cfs_quota_us", &r.cpu_quota.filter(|q| *q > 0).unwrap_or(-1).to_string())?;
        }
        if let Some(s) = r.cpu_shares {
            self.write("cpu", "cpu.shares", &s.to_string())?;
        }
        if let Some(c) = &r.cpuset_cpus {
            self.write("cpuset", "cpuset.cpus", c)?;
        }
        if let Some(m) = &r.cpuset_mems {
            self.write("cpuset", "cpuset.mems", m)?;
        }
        if let Some(p) = r.pids_limit {
            self.write("pids", "pids.max", &if p > 0 { p.to_string() } else { "max".into() })?;
        }
        if let Some(weight) = r.blkio_weight {
            let file = ["blkio.weight", "blkio.bfq.weight"]
                .into_iter()
                .find(|f| self.file("blkio", f).is_some_and(|p| p.exists()));
            match file {
                Some(f) => self.write("blkio", f, &weight.to_string())?,
                None => warnings.push(super::NO_BLKIO_WEIGHT.to_string()),
            }
        }
        for (maj, min, rate) in &r.read_bps {
            self.write("blkio", "blkio.throttle.read_bps_device", &format!("{maj}:{min} {rate}"))?;
        }
        for (maj, min, rate) in &r.write_bps {
            self.write("blkio", "blkio.throttle.write_bps_device", &format!("{maj}:{min} {rate}"))?;
        }
        Ok(warnings)
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.hierarchies().into_iter().map(|(_, m)| m.join(&self.rel).join("cgroup.procs")).collect()
    }

    fn unified_dir(&self) -> Option<PathBuf> {
        None
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let c = ["pids", "memory", "freezer"].into_iter().find(|c| self.mount_of(c).is_some());
        match c.and_then(|c| self.file(c, "cgroup.procs")) {
            Some(f) => Ok(parse_pids(&read_file(&f)?)),
            None => Ok(Vec::new()),
        }
    }

    fn stats(&self) -> Result<Stats> {
        self.pids()?; // the cgroup must exist
        let mem = self.read("memory", "memory.stat");
        let cpu = self.read("cpu", "cpu.stat");
        let acct = self.read("cpuacct", "cpuacct.stat");
        let tick_ns = 1_000_000_000 / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64);
        let (mut rb, mut wb) = (0, 0);
        let mut io = self.read("blkio", "blkio.throttle.io_service_bytes_recursive");
        if io.is_empty() {
            io = self.read("blkio", "blkio.throttle.io_service_bytes");
        }
        for line in io.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 3 {
                match f[1] {
                    "Read" => rb += f[2].parse::<u64>().unwrap_or(0),
                    "Write" => wb += f[2].parse::<u64>().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let unlimited = |v: u64| if v >= V1_UNLIMITED { u64::MAX } else { v };
        let pids_max = self.read("pids", "pids.max");
        Ok(Stats {
            memory_usage: number(&self.read("memory", "memory.usage_in_bytes")),
            memory_limit: unlimited(number(&self.read("memory", "memory.limit_in_bytes"))),
            memory_peak: number(&self.read("memory", "memory.max_usage_in_bytes")),
            memory_inactive_file: keyed(&mem, "total_inactive_file").or_else(|| keyed(&mem, "inactive_file")).unwrap_or(0),
            cpu_usage_ns: number(&self.read("cpuacct", "cpuacct.usage")),
            cpu_user_ns: keyed(&acct, "user").unwrap_or(0) * tick_ns,
            cpu_system_ns: keyed(&acct, "system").unwrap_or(0) * tick_ns,
            cpu_periods: keyed(&cpu, "nr_periods").unwrap_or(0),
            cpu_throttled_periods: keyed(&cpu, "nr_throttled").unwrap_or(0),
            cpu_throttled_ns: keyed(&cpu, "throttled_time").unwrap_or(0),
            pids_current: number(&self.read("pids", "pids.current")),
            pids_limit: if pids_max.is_empty() { u64::MAX } else { number(&pids_max) },
            io_read_bytes: rb,
            io_write_bytes: wb,
            oom_kills: keyed(&self.read("memory", "memory.oom_control"), "oom_kill").unwrap_or(0),
        })
    }

    fn kill_all(&self) -> Result<()> {
        let freezer = self.file("freezer", "freezer.state").filter(|f| f.exists());
        if let Some(state) = &freezer {
            // frozen, nothing can fork between listing and killing
            write_file(state, "FROZEN")?;
            wait_until(Duration::from_secs(2), || {
                std::fs::read_to_string(state).map(|s| s.trim() == "FROZEN").unwrap_or(true)
            });
        }
        super::kill_pids(&self.pids()?);
        if let Some(state) = &freezer {
            write_file(state, "THAWED")?;
        }
        // without a freezer, keep killing until nothing is left
        wait_until(Duration::from_secs(5), || {
            let pids = self.pids().unwrap_or_default();
            super::kill_pids(&pids);
            pids.is_empty()
        });
        Ok(())
    }

    fn destroy(&self) -> Result<()> {
        if !self.pids().unwrap_or_default().is_empty() {
            self.kill_all()?;
        }
        for (_, mount) in self.hierarchies() {
            rmdir(&mount.join(&self.rel), Duration::from_secs(2))?;
        }
        Ok(())
    }

    fn remove_parent_if_empty(&self) {
        for (_, mount) in &self.mounts {
            let mut parent = self.rel.parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                if std::fs::remove_dir(mount.join(p)).is_err() {
                    break;
                }
                parent = p.parent();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> (tempfile::TempDir, V1) {
        let d = tempfile::tempdir().unwrap();
        let mut mounts = Vec::new();
        for h in ["memory", "cpu,cpuacct", "cpuset", "pids", "blkio", "freezer"] {
            let m = d.path().join(h);
            std::fs::create_dir(&m).unwrap();
            mounts.push((h.split(',').map(String::from).collect(), m));
        }
        std::fs::write(d.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(d.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        (d, V1::new(mounts, PathBuf::from("pinnace/c1")))
    }

    #[test]
    fn create_makes_a_dir_per_hierarchy_and_seeds_cpuset() {
        let (d, m) = fake();
        m.create().unwrap();
        for h in ["memory", "cpu,cpuacct", "cpuset", "pids", "blkio", "freezer"] {
            assert!(d.path().join(h).join("pinnace/c1").is_dir(), "{h}");
        }
        assert_eq!(std::fs::read_to_string(d.path().join("cpuset/pinnace/cpuset.cpus")).unwrap(), "0-1");
        assert_eq!(std::fs::read_to_string(d.path().join("cpuset/pinnace/c1/cpuset.mems")).unwrap(), "0");
        assert_eq!(m.procs_files().len(), 6);
    }

    #[test]
    fn limits_become_v1_files() {
        let (d, m) = fake();
        m.create().unwrap();
        std::fs::write(d.path().join("memory/pinnace/c1/memory.memsw.limit_in_bytes"), "").unwrap();
        std::fs::write(d.path().join("blkio/pinnace/c1/blkio.weight"), "").unwrap();
        let r = Resources {
            memory: Some(100 << 20),
            memory_swap: Some(200 << 20),
            memory_reservation: Some(10 << 20),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpu_shares: Some(512),
            pids_limit: Some(-1),
            blkio_weight: Some(300),
            write_bps: vec![(253, 0, 4096)],
            ..Default::default()
        };
        assert!(m.apply(&r).unwrap().is_empty());
        let f = |h: &str, n: &str| std::fs::read_to_string(d.path().join(h).join("pinnace/c1").join(n)).unwrap();
        assert_eq!(f("memory", "memory.limit_in_bytes"), "104857600");
        assert_eq!(f("memory", "memory.memsw.limit_in_bytes"), "209715200");
        assert_eq!(f("memory", "memory.soft_limit_in_bytes"), "10485760");
        assert_eq!(f("cpu,cpuacct", "cpu.cfs_period_us"), "100000");
        assert_eq!(f("cpu,cpuacct", "cpu.cfs_quota_us"), "50000");
        assert_eq!(f("cpu,cpuacct", "cpu.shares"), "512");
        assert_eq!(f("pids", "pids.max"), "max");
        assert_eq!(f("blkio", "blkio.weight"), "300");
        assert_eq!(f("blkio", "blkio.throttle.write_bps_device"), "253:0 4096");
    }

    #[test]
    fn missing_swap_accounting_is_a_warning() {
        let (_d, m) = fake();
        m.create().unwrap();
        let w = m.apply(&Resources { memory: Some(1 << 20), memory_swap: Some(2 << 20), ..Default::default() }).unwrap();
        assert_eq!(w, vec![crate::cgroups::NO_SWAP_LIMIT.to_string()]);
    }

    #[test]
    fn stats_read_v1_files() {
        let (d, m) = fake();
        m.create().unwrap();
        let put = |h: &str, n: &str, v: &str| std::fs::write(d.path().join(h).join("pinnace/c1").join(n), v).unwrap();
        put("pids", "cgroup.procs", "5\n");
        put("memory", "memory.usage_in_bytes", "1000\n");
        put("memory", "memory.limit_in_bytes", "9223372036854771712\n");
        put("memory", "memory.max_usage_in_bytes", "3000\n");
        put("memory", "memory.stat", "cache 5\ntotal_inactive_file 100\n");
        put("memory", "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
        put("cpu,cpuacct", "cpuacct.usage", "123456\n");
        put("cpu,cpuacct", "cpu.stat", "nr_periods 10\nnr_throttled 6\nthrottled_time 999\n");
        put("pids", "pids.current", "3\n");
        put("pids", "pids.max", "max\n");
        put("blkio", "blkio.throttle.io_service_bytes_recursive", "253:0 Read 10\n253:0 Write 20\n253:0 Total 30\nTotal 30\n");
        let s = m.stats().unwrap();
        assert_eq!((s.memory_usage, s.memory_limit, s.memory_peak, s.memory_inactive_file), (1000, u64::MAX, 3000, 100));
        assert_eq!((s.cpu_usage_ns, s.cpu_periods, s.cpu_throttled_periods, s.cpu_throttled_ns), (123456, 10, 6, 999));
        assert_eq!((s.pids_current, s.pids_limit, s.io_read_bytes, s.io_write_bytes, s.oom_kills), (3, u64::MAX, 10, 20, 2));
    }

    #[test]
    fn only_the_needed_hierarchies_are_joined() {
        let (d, m) = fake();
        let m = m.only(needed(&Resources::default()));
        m.create().unwrap();
        assert!(!d.path().join("cpuset/pinnace").exists());
        assert!(!d.path().join("freezer/pinnace").exists());
        assert!(!d.path().join("blkio/pinnace").exists());
        // cpu is comounted with cpuacct here, so that hierarchy is joined
        assert_eq!(m.procs_files().len(), 3);
        let r = Resources { cpu_quota: Some(1), write_bps: vec![(1, 2, 3)], ..Default::default() };
        assert_eq!(needed(&r), vec!["memory", "cpuacct", "pids", "cpu", "blkio"]);
        m.destroy().unwrap();
        assert!(!d.path().join("memory/pinnace/c1").exists());
        assert!(d.path().join("memory/pinnace").exists());
        m.remove_parent_if_empty();
        assert!(!d.path().join("memory/pinnace").exists());
    }

    #[test]
    fn unmounted_controller_names_itself() {
        let m = V1::new(vec![], PathBuf::from("pinnace/c1"));
        let e = m.apply(&Resources { pids_limit: Some(5), ..Default::default() }).unwrap_err();
        assert_eq!(e.to_string(), "the pids cgroup controller is not mounted (needed for pids.max)");
    }
}
