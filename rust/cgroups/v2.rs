//! cgroup v2: one directory per container in the unified hierarchy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{keyed, mkdir, number, parse_pids, read_file, rmdir, wait_until, write_file, Manager, Resources, Result, Stats};

/// Controllers a container's cgroup needs enabled by its parents.
const WANTED: &[&str] = &["cpu", "cpuset", "io", "memory", "pids"];

pub struct V2 {
    root: PathBuf,
    rel: PathBuf,
}

/// docker/runc's mapping of cpu.shares (2..262144) onto cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// blkio.weight (10..1000) onto io.weight (1..10000), as runc does.
pub fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w.clamp(10, 1000)) - 10) * 9999 / 990
}

impl V2 {
    pub fn new(root: PathBuf, rel: PathBuf) -> Self {
        V2 { root, rel }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.rel)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    /// Enable in `dir`'s subtree what it offers of [`WANTED`]. Controllers the
    /// kernel refuses are left out; the limit that needs one then fails with
    /// the file's name.
    fn enable_controllers(dir: &Path) {
        let Ok(available) = std::fs::read_to_string(dir.join("cgroup.controllers")) else { return };
        let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        for c in WANTED {
            if available.split_whitespace().any(|a| a == *c) && !enabled.split_whitespace().any(|a| a == *c) {
                let _ = write_file(&dir.join("cgroup.subtree_control"), &format!("+{c}"));
            }
        }
    }

    /// Move a process in (the parent side of joining; tests use it).
    pub fn add(&self, pid: i32) -> Result<()> {
        write_file(&self.file("cgroup.procs"), &pid.to_string())
    }

    pub fn freeze(&self, frozen: bool) -> Result<()> {
        write_file(&self.file("cgroup.freeze"), if frozen { "1" } else { "0" })?;
        if frozen && !wait_until(Duration::from_secs(2), || self.events().1) {
            return Err(super::CgroupError::Unsupported(format!("cgroup {}: did not freeze", self.dir().display())));
        }
        Ok(())
    }

    /// (populated, frozen) from cgroup.events.
    pub fn events(&self) -> (bool, bool) {
        let e = self.read("cgroup.events");
        (keyed(&e, "populated") == Some(1), keyed(&e, "frozen") == Some(1))
    }
}

impl Manager for V2 {
    fn create(&self) -> Result<()> {
        let mut cur = self.root.clone();
        for comp in self.rel.components() {
            Self::enable_controllers(&cur);
            cur.push(comp);
            mkdir(&cur)?;
        }
        Ok(())
    }

    fn apply(&self, r: &Resources) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let w = |name: &str, data: &str| write_file(&self.file(name), data);
        if let Some(m) = r.memory {
            w("memory.max", &m.to_string())?;
        }
        if let Some(s) = r.memory_swap {
            // docker's --memory-swap is memory + swap; v2 limits swap alone
            let swap = match (s, r.memory) {
                (-1, _) => "max".to_string(),
                (s, Some(m)) => (s - m).max(0).to_string(),
                (s, None) => s.to_string(),
            };
            if self.file("memory.swap.max").exists() {
                w("memory.swap.max", &swap)?;
            } else {
                warnings.push(super::NO_SWAP_LIMIT.to_string());
            }
        }
        if let Some(low) = r.memory_reservation {
            w("memory.low", &low.to_string())?;
        }
        if r.cpu_quota.is_some() || r.cpu_period.is_some() {
            let quota = r.cpu_quota.filter(|q| *q > 0).map_or("max".to_string(), |q| q.to_string());
            w("cpu.max", &format!("{quota} {}", r.cpu_period.unwrap_or(100_000)))?;
        }
        if let Some(s) = r.cpu_shares {
            w("cpu.weight", &shares_to_weight(s).to_string())?;
        }
        if let Some(c) = &r.cpuset_cpus {
            w("cpuset.cpus", c)?;
        }
        if let Some(m) = &r.cpuset_mems {
            w("cpuset.mems", m)?;
        }
        if let Some(p) = r.pids_limit {
            w("pids.max", &if p > 0 { p.to_string() } else { "max".into() })?;
        }
        if let Some(weight) = r.blkio_weight {
            if self.file("io.bfq.weight").exists() {
                w("io.bfq.weight", &weight.to_string())?;
            } else if self.file("io.weight").exists() {
                w("io.weight", &format!("default {}", blkio_to_io_weight(weight)))?;
            } else {
                warnings.push(super::NO_BLKIO_WEIGHT.to_string());
            }
        }
        for (maj, min, rate) in &r.read_bps {
            w("io.max", &format!("{maj}:{min} rbps={rate}"))?;
        }
        for (maj, min, rate) in &r.write_bps {
            w("io.max", &format!("{maj}:{min} wbps={rate}"))?;
        }
        Ok(warnings)
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        vec![self.file("cgroup.procs")]
    }

    fn unified_dir(&self) -> Option<PathBuf> {
        Some(self.dir())
    }

    fn pids(&self) -> Result<Vec<i32>> {
        Ok(parse_pids(&read_file(&self.file("cgroup.procs"))?))
    }

    fn stats(&self) -> Result<Stats> {
        read_file(&self.file("cgroup.procs"))?; // the cgroup must exist
        let mem = self.read("memory.stat");
        let cpu = self.read("cpu.stat");
        let (mut rb, mut wb) = (0, 0);
        for line in self.read("io.stat").lines() {
            for kv in line.split_whitespace().skip(1) {
                match kv.split_once('=') {
                    Some(("rbytes", v)) => rb += v.parse::<u64>().unwrap_or(0),
                    Some(("wbytes", v)) => wb += v.parse::<u64>().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let limit = self.read("memory.max");
        let pids_max = self.read("pids.max");
        Ok(Stats {
            memory_usage: number(&self.read("memory.current")),
            memory_limit: if limit.is_empty() { u64::MAX } else { number(&limit) },
            memory_peak: number(&self.read("memory.peak")),
            memory_inactive_file: keyed(&mem, "inactive_file").unwrap_or(0),
            cpu_usage_ns: keyed(&cpu, "usage_usec").unwrap_or(0) * 1000,
            cpu_user_ns: keyed(&cpu, "user_usec").unwrap_or(0) * 1000,
            cpu_system_ns: keyed(&cpu, "system_usec").unwrap_or(0) * 1000,
            cpu_periods: keyed(&cpu, "nr_periods").unwrap_or(0),
            cpu_throttled_periods: keyed(&cpu, "nr_throttled").unwrap_or(0),
            cpu_throttled_ns: keyed(&cpu, "throttled_usec").unwrap_or(0) * 1000,
            pids_current: number(&self.read("pids.current")),
            pids_limit: if pids_max.is_empty() { u64::MAX } else { number(&pids_max) },
            io_read_bytes: rb,
            io_write_bytes: wb,
            oom_kills: keyed(&self.read("memory.events"), "oom_kill").unwrap_or(0),
        })
    }

    fn kill_all(&self) -> Result<()> {
        if !self.dir().exists() {
            return Ok(());
        }
        if self.file("cgroup.kill").exists() {
            write_file(&self.file("cgroup.kill"), "1")?;
        } else {
            // before 5.14: freeze so nothing forks while we kill
            self.freeze(true)?;
            super::kill_pids(&self.pids()?);
            self.freeze(false)?;
        }
        wait_until(Duration::from_secs(5), || !self.events().0);
        Ok(())
    }

    fn destroy(&self) -> Result<()> {
        if !self.dir().exists() {
            return Ok(());
        }
        if self.events().0 {
            self.kill_all()?;
        }
        rmdir(&self.dir(), Duration::from_secs(2))
    }

    fn remove_parent_if_empty(&self) {
        let mut parent = self.rel.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            if std::fs::remove_dir(self.root.join(p)).is_err() {
                break;
            }
            parent = p.parent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> (tempfile::TempDir, V2) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.controllers"), "cpuset cpu io memory pids hugetlb").unwrap();
        std::fs::write(d.path().join("cgroup.subtree_control"), "").unwrap();
        let m = V2::new(d.path().to_path_buf(), PathBuf::from("pinnace/c1"));
        (d, m)
    }

    #[test]
    fn create_makes_the_parent_and_enables_controllers() {
        let (d, m) = fake();
        m.create().unwrap();
        assert!(d.path().join("pinnace/c1").is_dir());
        // a plain file stands in for the kernel's: the last write wins
        assert_eq!(std::fs::read_to_string(d.path().join("cgroup.subtree_control")).unwrap(), "+pids");
    }

    #[test]
    fn limits_become_v2_files() {
        let (d, m) = fake();
        m.create().unwrap();
        let r = Resources {
            memory: Some(100 << 20),
            memory_swap: Some(300 << 20),
            memory_reservation: Some(50 << 20),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpu_shares: Some(1024),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(20),
            read_bps: vec![(8, 0, 1_048_576)],
            ..Default::default()
        };
        std::fs::write(d.path().join("pinnace/c1/memory.swap.max"), "max").unwrap();
        m.apply(&r).unwrap();
        let f = |n: &str| std::fs::read_to_string(d.path().join("pinnace/c1").join(n)).unwrap();
        assert_eq!(f("memory.max"), "104857600");
        assert_eq!(f("memory.swap.max"), "209715200");
        assert_eq!(f("memory.low"), "52428800");
        assert_eq!(f("cpu.max"), "50000 100000");
        assert_eq!(f("cpu.weight"), "39");
        assert_eq!(f("cpuset.cpus"), "0");
        assert_eq!(f("pids.max"), "20");
        assert_eq!(f("io.max"), "8:0 rbps=1048576");
    }

    #[test]
    fn unlimited_values_and_missing_weight_support() {
        let (d, m) = fake();
        m.create().unwrap();
        m.apply(&Resources { pids_limit: Some(0), cpu_period: Some(100_000), ..Default::default() }).unwrap();
        let f = |n: &str| std::fs::read_to_string(d.path().join("pinnace/c1").join(n)).unwrap();
        assert_eq!(f("pids.max"), "max");
        assert_eq!(f("cpu.max"), "max 100000");
        let warnings = m.apply(&Resources { blkio_weight: Some(500), ..Default::default() }).unwrap();
        assert_eq!(warnings, vec![crate::cgroups::NO_BLKIO_WEIGHT.to_string()]);
    }

    #[test]
    fn stats_read_v2_files() {
        let (d, m) = fake();
        m.create().unwrap();
        let dir = d.path().join("pinnace/c1");
        for (n, v) in [
            ("cgroup.procs", "12\n13\n"),
            ("memory.current", "2048\n"),
            ("memory.max", "max\n"),
            ("memory.peak", "4096\n"),
            ("memory.stat", "anon 10\ninactive_file 512\n"),
            ("cpu.stat", "usage_usec 7\nuser_usec 5\nsystem_usec 2\nnr_periods 9\nnr_throttled 4\nthrottled_usec 3\n"),
            ("pids.current", "2\n"),
            ("pids.max", "20\n"),
            ("io.stat", "8:0 rbytes=100 wbytes=50 rios=1 wios=1\n8:16 rbytes=1 wbytes=2\n"),
            ("memory.events", "low 0\noom 1\noom_kill 1\n"),
        ] {
            std::fs::write(dir.join(n), v).unwrap();
        }
        let s = m.stats().unwrap();
        assert_eq!(m.pids().unwrap(), vec![12, 13]);
        assert_eq!(
            s,
            Stats {
                memory_usage: 2048,
                memory_limit: u64::MAX,
                memory_peak: 4096,
                memory_inactive_file: 512,
                cpu_usage_ns: 7000,
                cpu_user_ns: 5000,
                cpu_system_ns: 2000,
                cpu_periods: 9,
                cpu_throttled_periods: 4,
                cpu_throttled_ns: 3000,
                pids_current: 2,
                pids_limit: 20,
                io_read_bytes: 101,
                io_write_bytes: 52,
                oom_kills: 1,
            }
        );
    }

    #[test]
    fn weights_follow_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }
}
