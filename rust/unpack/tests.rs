//! Layers built here with the tar crate (raw headers for the hostile ones),
//! unpacked unprivileged through a recording fake of the privileged seam.

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use sha2::{Digest, Sha256};

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Chown(PathBuf, u32, u32),
    Mknod(PathBuf, u32, u64),
    Xattr(PathBuf, String, Vec<u8>),
}

/// Records what needs privilege; device nodes become empty files so that
/// the rest of the unpacker (chmod, times, duplicates) still sees a name.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<Call>>,
    /// Each file chown sleeps this long: widens the window in which queued
    /// files are not yet on disk.
    slow: Option<std::time::Duration>,
    /// A file chown fails with EIO for this name.
    fail: Option<&'static str>,
}

fn at_fd(fd: BorrowedFd<'_>) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
}

fn at(dir: BorrowedFd<'_>, name: &CStr) -> PathBuf {
    let d = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).unwrap();
    let n = name.to_str().unwrap();
    if n == "." {
        d
    } else {
        d.join(n)
    }
}

impl Privileged for Fake {
    fn chown(&self, dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> nix::Result<()> {
        self.calls.lock().unwrap().push(Call::Chown(at(dir, name), uid, gid));
        Ok(())
    }
    fn mknod(&self, dir: BorrowedFd<'_>, name: &CStr, kind: SFlag, dev: u64) -> nix::Result<()> {
        if kind == SFlag::S_IFIFO {
            nix::sys::stat::mknodat(dir, name, kind, Mode::from_bits_truncate(0o600), 0)?;
        } else {
            nix::fcntl::openat(dir, name, OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY, Mode::from_bits_truncate(0o600))?;
        }
        self.calls.lock().unwrap().push(Call::Mknod(at(dir, name), kind.bits(), dev));
        Ok(())
    }
    fn set_xattr(&self, dir: BorrowedFd<'_>, name: &CStr, key: &CStr, value: &[u8]) -> nix::Result<()> {
        self.calls.lock().unwrap().push(Call::Xattr(at(dir, name), key.to_str().unwrap().into(), value.to_vec()));
        Ok(())
    }
    fn fchown(&self, fd: BorrowedFd<'_>, uid: u32, gid: u32) -> nix::Result<()> {
        let path = at_fd(fd);
        if let Some(d) = self.slow {
            std::thread::sleep(d);
        }
        if self.fail.is_some_and(|f| path.file_name().unwrap() == f) {
            return Err(Errno::EIO);
        }
        self.calls.lock().unwrap().push(Call::Chown(path, uid, gid));
        Ok(())
    }
    fn fset_xattr(&self, fd: BorrowedFd<'_>, key: &CStr, value: &[u8]) -> nix::Result<()> {
        self.calls.lock().unwrap().push(Call::Xattr(at_fd(fd), key.to_str().unwrap().into(), value.to_vec()));
        Ok(())
    }
}

impl Fake {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

fn sha(b: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b);
    hex_digest(h)
}

/// A tar being built; entries may carry names the tar crate's checks refuse.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(2000);
        h.set_mtime(1_600_000_000);
        h
    }

    fn raw(mut self, mut h: tar::Header, data: &[u8]) -> Self {
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        let h = Self::header(name, tar::EntryType::Regular, data.len() as u64, 0o644);
        self.raw(h, data)
    }

    fn dir(self, name: &str, mode: u32) -> Self {
        let h = Self::header(name, tar::EntryType::Directory, 0, mode);
        self.raw(h, &[])
    }

    fn link(self, kind: tar::EntryType, name: &str, target: &str) -> Self {
        let mut h = Self::header(name, kind, 0, 0o777);
        h.as_gnu_mut().unwrap().linkname[..target.len()].copy_from_slice(target.as_bytes());
        self.raw(h, &[])
    }

    fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        self.0.append_pax_extensions(records.iter().map(|(k, v)| (*k, *v))).unwrap();
        self
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

struct Case {
    _tmp: tempfile::TempDir,
    blob: PathBuf,
    dest: PathBuf,
    outside: PathBuf,
}

fn case(blob: &[u8]) -> Case {
    let tmp = tempfile::tempdir().unwrap();
    // dest two levels down so that `../..` from it is still inside the tempdir
    let dest = tmp.path().join("layers/one");
    std::fs::create_dir_all(&dest).unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let blob_path = tmp.path().join("blob");
    std::fs::write(&blob_path, blob).unwrap();
    Case { _tmp: tmp, blob: blob_path, dest, outside }
}

fn run(c: &Case, opts: &Options) -> (Result<Summary, LayerError>, Fake) {
    let fake = Fake::default();
    let r = unpack_with(&c.blob, &c.dest, opts, &fake);
    (r, fake)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.symlink_metadata().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn unpacks_every_kind_of_entry_with_its_metadata() {
    let tar = Tar::new()
        .dir("./", 0o755)
        .dir("usr/", 0o755)
        .dir("usr/bin/", 0o755)
        .pax(&[("SCHILY.xattr.security.capability", b"\x01\x02\0\x03"), ("SCHILY.xattr.trusted.overlay.redirect", b"/x")])
        .raw(Tar::header("usr/bin/su", tar::EntryType::Regular, 5, 0o4755), b"hello")
        .file("usr/bin/ping", b"pong")
        .link(tar::EntryType::Link, "usr/bin/su2", "usr/bin/su")
        .link(tar::EntryType::Symlink, "usr/bin/sh", "bash")
        .raw(Tar::header("dev/fifo", tar::EntryType::Fifo, 0, 0o640), &[])
        .raw(
            {
                let mut h = Tar::header("dev/null", tar::EntryType::Char, 0, 0o666);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                h
            },
            &[],
        )
        .bytes();
    let blob = gzip(&tar);
    let c = case(&blob);
    let (r, fake) = run(&c, &Options::default());
    let s = r.unwrap();
    assert_eq!(s.diff_id, sha(&tar));
    assert_eq!(s.digest, sha(&blob));
    assert_eq!(s.size, tar.len() as u64);
    assert_eq!(s.disk, 9);
    assert_eq!(s.entries, 9);

    let d = &c.dest;
    let su = std::fs::metadata(d.join("usr/bin/su")).unwrap();
    assert_eq!(std::fs::read(d.join("usr/bin/su")).unwrap(), b"hello");
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!(su.mtime(), 1_600_000_000);
    assert_eq!(su.nlink(), 2);
    assert_eq!(std::fs::metadata(d.join("usr/bin/su2")).unwrap().ino(), su.ino());
    assert_eq!(std::fs::read_link(d.join("usr/bin/sh")).unwrap(), Path::new("bash"));
    assert_eq!(std::fs::symlink_metadata(d.join("usr/bin/sh")).unwrap().mtime(), 1_600_000_000);
    assert!(std::fs::metadata(d.join("dev/fifo")).unwrap().file_type().is_fifo());
    assert_eq!(std::fs::metadata(d.join("dev/fifo")).unwrap().mode() & 0o7777, 0o640);
    // directories keep their own mtime although children were written later
    assert_eq!(std::fs::metadata(d.join("usr/bin")).unwrap().mtime(), 1_600_000_000);
    assert_eq!(std::fs::metadata(d.join("usr/bin")).unwrap().permissions().mode() & 0o7777, 0o755);
    // dev/ was never listed: made 0755
    assert_eq!(std::fs::metadata(d.join("dev")).unwrap().permissions().mode() & 0o7777, 0o755);

    let calls = fake.calls();
    assert!(calls.contains(&Call::Chown(d.join("usr/bin/su"), 1000, 2000)));
    assert!(calls.contains(&Call::Chown(d.join("usr/bin/sh"), 1000, 2000)));
    assert!(calls.contains(&Call::Chown(d.clone(), 1000, 2000)));
    assert!(calls.contains(&Call::Xattr(d.join("usr/bin/su"), "security.capability".into(), b"\x01\x02\0\x03".to_vec())));
    assert!(calls.contains(&Call::Mknod(d.join("dev/null"), libc::S_IFCHR, nix::sys::stat::makedev(1, 3))));
    // the layer may not set overlay's own xattrs
    assert!(!calls.iter().any(|c| matches!(c, Call::Xattr(_, k, _) if k.starts_with("trusted.overlay"))));
}

#[test]
fn whiteouts_become_devices_and_opaque_dirs_an_xattr() {
    let tar = Tar::new()
        .dir("etc/", 0o755)
        .file("etc/.wh.passwd", b"")
        .dir("var/cache/", 0o755)
        .file("var/cache/.wh..wh..opq", b"")
        .file("var/cache/kept", b"k")
        .file("opt/.wh..wh.plnk", b"")
        .file("new/.wh..wh..opq", b"")
        .bytes();
    let c = case(&tar);
    let (r, fake) = run(&c, &Options::default());
    r.unwrap();
    let d = &c.dest;
    let calls = fake.calls();
    assert!(calls.contains(&Call::Mknod(d.join("etc/passwd"), libc::S_IFCHR, 0)));
    assert!(calls.contains(&Call::Chown(d.join("etc/passwd"), 1000, 2000)));
    assert!(calls.contains(&Call::Xattr(d.join("var/cache"), "trusted.overlay.opaque".into(), b"y".to_vec())));
    assert!(calls.contains(&Call::Xattr(d.join("new"), "trusted.overlay.opaque".into(), b"y".to_vec())));
    assert_eq!(
        tree(d),
        ["etc", "etc/passwd", "new", "var", "var/cache", "var/cache/kept"].map(String::from).to_vec()
    );
}

#[test]
fn a_whiteout_does_not_hide_a_file_of_its_own_layer() {
    let tar = Tar::new().file("a", b"mine").file(".wh.a", b"").bytes();
    let c = case(&tar);
    let (r, fake) = run(&c, &Options::default());
    r.unwrap();
    assert_eq!(std::fs::read(c.dest.join("a")).unwrap(), b"mine");
    assert!(!fake.calls().iter().any(|c| matches!(c, Call::Mknod(..))));
}

#[test]
fn parent_dir_escapes_are_refused() {
    for name in ["../x", "a/../../x", "./../outside/x"] {
        let tar = Tar::new().file(name, b"evil").bytes();
        let c = case(&tar);
        let (r, _) = run(&c, &Options::default());
        let e = r.unwrap_err();
        assert!(matches!(e, LayerError::Hostile { .. }), "{name}: {e}");
        assert!(e.to_string().contains("escapes the layer directory"), "{e}");
        assert!(!c.dest.parent().unwrap().join("x").exists());
        assert!(std::fs::read_dir(&c.outside).unwrap().next().is_none());
    }
}

#[test]
fn absolute_paths_land_inside_the_layer() {
    let tar = Tar::new().file("/abs/f", b"x").file("a/./b/../c", b"y").bytes();
    let c = case(&tar);
    run(&c, &Options::default()).0.unwrap();
    assert_eq!(std::fs::read(c.dest.join("abs/f")).unwrap(), b"x");
    assert_eq!(std::fs::read(c.dest.join("a/c")).unwrap(), b"y");
}

#[test]
fn writes_through_symlinks_stay_inside_the_layer() {
    // relative, absolute and dot-dot symlinks, then entries written through them
    let tmp_outside = tempfile::tempdir().unwrap();
    let abs = tmp_outside.path().to_str().unwrap().to_string();
    let tar = Tar::new()
        .link(tar::EntryType::Symlink, "up", "../..")
        .file("up/outside/pwned", b"1")
        .link(tar::EntryType::Symlink, "root", "/")
        .file("root/pwned2", b"2")
        .dir(&format!("{}/", &abs[1..]), 0o755)
        .link(tar::EntryType::Symlink, "abs", &abs)
        .file("abs/pwned3", b"3")
        .bytes();
    let c = case(&tar);
    let (r, _) = run(&c, &Options::default());
    r.unwrap();
    assert!(std::fs::read_dir(&c.outside).unwrap().next().is_none());
    assert!(std::fs::read_dir(tmp_outside.path()).unwrap().next().is_none());
    // chroot semantics: `..` stops at the layer root
    assert_eq!(std::fs::read(c.dest.join("outside/pwned")).unwrap(), b"1");
    assert_eq!(std::fs::read(c.dest.join("pwned2")).unwrap(), b"2");
    assert_eq!(std::fs::read(c.dest.join(&abs[1..]).join("pwned3")).unwrap(), b"3");
}

#[test]
fn a_symlink_to_a_missing_outside_dir_is_not_followed_out() {
    let tmp_outside = tempfile::tempdir().unwrap();
    let target = tmp_outside.path().join("etc");
    std::fs::create_dir(&target).unwrap();
    let tar = Tar::new()
        .link(tar::EntryType::Symlink, "evil", target.to_str().unwrap())
        .file("evil/passwd", b"root::0:0")
        .bytes();
    let c = case(&tar);
    let (r, _) = run(&c, &Options::default());
    assert!(r.is_err());
    assert!(!target.join("passwd").exists());
}

#[test]
fn hardlinks_outside_the_layer_are_refused() {
    let tar = Tar::new().link(tar::EntryType::Link, "x", "../../etc/passwd").bytes();
    let c = case(&tar);
    let e = run(&c, &Options::default()).0.unwrap_err();
    assert!(e.to_string().contains("links to a path outside the layer"), "{e}");

    // through a symlink: resolved in the layer, where there is no such file
    let secret = c.outside.join("secret");
    std::fs::write(&secret, b"s").unwrap();
    let tar = Tar::new()
        .link(tar::EntryType::Symlink, "evil", c.outside.to_str().unwrap())
        .link(tar::EntryType::Link, "x", "evil/secret")
        .bytes();
    std::fs::write(&c.blob, &tar).unwrap();
    let c2 = Case { dest: c.dest.join("fresh"), ..c };
    std::fs::create_dir(&c2.dest).unwrap();
    let (r, _) = run(&c2, &Options::default());
    assert!(r.is_err());
    assert_eq!(std::fs::metadata(&secret).unwrap().nlink(), 1);
    // and a hardlink to a symlink links the symlink, not what it points at
    let tar = Tar::new()
        .link(tar::EntryType::Symlink, "evil", secret.to_str().unwrap())
        .link(tar::EntryType::Link, "x", "evil")
        .bytes();
    let c3 = case(&tar);
    run(&c3, &Options::default()).0.unwrap();
    assert!(std::fs::symlink_metadata(c3.dest.join("x")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::metadata(&secret).unwrap().nlink(), 1);
}

#[test]
fn later_duplicates_win() {
    let tar = Tar::new()
        .file("a", b"first")
        .file("a", b"second")
        .file("d", b"a file")
        .dir("d/", 0o755)
        .file("d/child", b"c")
        .dir("d/", 0o700)
        .dir("gone/", 0o755)
        .file("gone/child", b"c")
        .file("gone", b"now a file")
        .link(tar::EntryType::Symlink, "s", "a")
        .file("s", b"not a link")
        .bytes();
    let c = case(&tar);
    run(&c, &Options::default()).0.unwrap();
    let d = &c.dest;
    assert_eq!(std::fs::read(d.join("a")).unwrap(), b"second");
    assert_eq!(std::fs::read(d.join("d/child")).unwrap(), b"c");
    assert_eq!(std::fs::metadata(d.join("d")).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::read(d.join("gone")).unwrap(), b"now a file");
    assert_eq!(std::fs::read(d.join("s")).unwrap(), b"not a link");
    assert_eq!(std::fs::read(d.join("a")).unwrap(), b"second");
}

#[test]
fn a_directory_replaced_by_a_symlink_is_resolved_anew() {
    // d/ is the cached parent when `d` becomes a symlink; d/y must follow it
    let tar = Tar::new()
        .file("d/x", b"x")
        .dir("e/", 0o755)
        .link(tar::EntryType::Symlink, "d", "e")
        .file("d/y", b"y")
        .bytes();
    let c = case(&tar);
    run(&c, &Options::default()).0.unwrap();
    assert_eq!(std::fs::read(c.dest.join("e/y")).unwrap(), b"y");
    assert!(std::fs::symlink_metadata(c.dest.join("d")).unwrap().file_type().is_symlink());
}

#[test]
fn long_names_and_pax_records_are_read() {
    let long = format!("{}/file", "d".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(&std::fs::metadata("/").unwrap(), tar::HeaderMode::Deterministic);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(2);
    h.set_mode(0o600);
    b.append_data(&mut h, &long, &b"ok"[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_metadata_in_mode(&std::fs::metadata("/").unwrap(), tar::HeaderMode::Deterministic);
    h.set_size(0);
    h.set_entry_type(tar::EntryType::Symlink);
    b.append_link(&mut h, "ln", "x".repeat(200)).unwrap();
    b.append_pax_extensions([("mtime", &b"1700000000.5"[..])]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_metadata_in_mode(&std::fs::metadata("/").unwrap(), tar::HeaderMode::Deterministic);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "t", &b"t"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let c = case(&tar);
    run(&c, &Options::default()).0.unwrap();
    assert_eq!(std::fs::read(c.dest.join(&long)).unwrap(), b"ok");
    assert_eq!(std::fs::read_link(c.dest.join("ln")).unwrap(), Path::new(&"x".repeat(200)));
    let t = std::fs::metadata(c.dest.join("t")).unwrap();
    assert_eq!((t.mtime(), t.mtime_nsec()), (1_700_000_000, 500_000_000));
}

fn big_tar() -> Vec<u8> {
    let mut t = Tar::new();
    for i in 0..50 {
        t = t.file(&format!("f{i}"), &vec![i as u8; 40_000 + i]);
    }
    t.bytes()
}

#[test]
fn multi_member_gzip_is_read_to_its_end() {
    let tar = big_tar();
    let (a, b) = tar.split_at(tar.len() / 2 + 7);
    let blob = [gzip(a), gzip(b)].concat();
    let c = case(&blob);
    let s = run(&c, &Options::default()).0.unwrap();
    assert_eq!(s.diff_id, sha(&tar));
    assert_eq!(s.digest, sha(&blob));
    assert_eq!(s.entries, 50);
    assert_eq!(std::fs::read(c.dest.join("f49")).unwrap(), vec![49u8; 40_049]);
}

#[test]
fn multi_frame_zstd_is_read_to_its_end() {
    let tar = big_tar();
    let (a, b) = tar.split_at(tar.len() / 3);
    let blob = [zstd::encode_all(a, 3).unwrap(), zstd::encode_all(b, 3).unwrap()].concat();
    let c = case(&blob);
    let s = run(&c, &Options::default()).0.unwrap();
    assert_eq!(s.diff_id, sha(&tar));
    assert_eq!(s.size, tar.len() as u64);
    assert_eq!(std::fs::read(c.dest.join("f49")).unwrap(), vec![49u8; 40_049]);
}

#[test]
fn trailing_zeros_count_in_the_diff_id() {
    let mut tar = Tar::new().file("a", b"a").bytes();
    tar.extend(std::iter::repeat_n(0u8, 3 << 20));
    let c = case(&gzip(&tar));
    let s = run(&c, &Options::default()).0.unwrap();
    assert_eq!(s.diff_id, sha(&tar));
    assert_eq!(s.size, tar.len() as u64);
}

#[test]
fn digests_are_checked() {
    let tar = Tar::new().file("a", b"a").bytes();
    let blob = gzip(&tar);
    let c = case(&blob);
    let good = Options { expected_diff_id: Some(sha(&tar)), expected_digest: Some(sha(&blob)), max_size: 0 };
    run(&c, &good).0.unwrap();

    let wrong = format!("sha256:{}", "0".repeat(64));
    let fresh = |c: &Case| {
        let _ = std::fs::remove_dir_all(&c.dest);
        std::fs::create_dir(&c.dest).unwrap();
    };
    fresh(&c);
    let e = run(&c, &Options { expected_diff_id: Some(wrong.clone()), ..good.clone() }).0.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("diff_id mismatch") && msg.contains(&wrong) && msg.contains(&sha(&tar)), "{msg}");
    assert!(msg.starts_with(&format!("layer {}", sha(&blob))), "{msg}");

    fresh(&c);
    let e = run(&c, &Options { expected_digest: Some(wrong.clone()), ..good.clone() }).0.unwrap_err();
    assert!(matches!(e, LayerError::Mismatch { which: "digest", .. }), "{e}");

    let e = run(&c, &Options { expected_digest: Some("md5:abc".into()), ..good }).0.unwrap_err();
    assert!(matches!(e, LayerError::BadDigest { .. }), "{e}");
}

#[test]
fn a_decompression_bomb_stops_at_max_size() {
    let tar = Tar::new().file("zeros", &vec![0u8; 64 << 20]).bytes();
    let blob = gzip(&tar);
    assert!(blob.len() < 1 << 20);
    let c = case(&blob);
    let e = run(&c, &Options { max_size: 4 << 20, ..Default::default() }).0.unwrap_err();
    assert!(matches!(e, LayerError::TooBig { max, .. } if max == 4 << 20), "{e}");
    assert!(e.to_string().ends_with("expands beyond 4194304 bytes"), "{e}");
    // it stopped early: at most the bound plus what was in flight got written
    let written = std::fs::metadata(c.dest.join("zeros")).map(|m| m.len()).unwrap_or(0);
    assert!(written <= (4 << 20) + ((IN_FLIGHT as u64 + 2) * CHUNK as u64), "{written}");
}

#[test]
fn a_truncated_or_corrupt_blob_is_an_error() {
    let blob = gzip(&big_tar());
    let c = case(&blob[..blob.len() / 2]);
    let e = run(&c, &Options::default()).0.unwrap_err();
    assert!(matches!(e, LayerError::Corrupt { .. }), "{e}");

    let tar = big_tar();
    let c = case(&tar[..tar.len() / 2 + 100]);
    let e = run(&c, &Options::default()).0.unwrap_err();
    assert!(matches!(e, LayerError::Corrupt { .. }), "{e}");

    let mut garbage = gzip(&tar);
    let mid = garbage.len() / 2;
    garbage[mid..mid + 64].fill(0xaa);
    let c = case(&garbage);
    assert!(run(&c, &Options::default()).0.is_err());
}

#[test]
fn a_missing_blob_names_its_path_and_errno() {
    let c = case(b"");
    std::fs::remove_file(&c.blob).unwrap();
    let e = run(&c, &Options::default()).0.unwrap_err().to_string();
    assert!(e.contains(&c.blob.display().to_string()) && e.contains("ENOENT"), "{e}");
}

/// The real syscalls, where this runs as root (CI does): owners, setuid
/// after chown, capabilities, device nodes, whiteouts, the opaque xattr.
#[test]
fn as_root_the_host_keeps_owners_devices_and_xattrs() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tar = Tar::new()
        .dir("d/", 0o2775)
        .file("d/.wh..wh..opq", b"")
        .file("d/.wh.gone", b"")
        .pax(&[("SCHILY.xattr.security.capability", b"\x01\0\0\x02\0\x20\0\0\0\0\0\0\0\0\0\0\0\0\0\0")])
        .raw(Tar::header("d/su", tar::EntryType::Regular, 2, 0o4755), b"su")
        .raw(
            {
                let mut h = Tar::header("d/null", tar::EntryType::Char, 0, 0o666);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                h
            },
            &[],
        )
        .link(tar::EntryType::Symlink, "d/ln", "su")
        .bytes();
    let c = case(&tar);
    unpack(&c.blob, &c.dest, &Options::default()).unwrap();
    let d = c.dest.join("d");
    let m = std::fs::metadata(&d).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 2000, 0o2775));
    let su = std::fs::metadata(d.join("su")).unwrap();
    assert_eq!((su.uid(), su.gid(), su.mode() & 0o7777), (1000, 2000, 0o4755));
    let gone = std::fs::symlink_metadata(d.join("gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!((gone.rdev(), gone.uid()), (0, 1000));
    let null = std::fs::metadata(d.join("null")).unwrap();
    assert_eq!((null.rdev(), null.mode() & 0o777), (nix::sys::stat::makedev(1, 3), 0o666));
    assert_eq!(std::fs::symlink_metadata(d.join("ln")).unwrap().uid(), 1000);
    let get = |p: &Path, k: &CStr| {
        let p = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(Errno::last())
        } else {
            Ok(buf[..n as usize].to_vec())
        }
    };
    assert_eq!(get(&d, c"trusted.overlay.opaque").unwrap(), b"y");
    match get(&d.join("su"), c"security.capability") {
        Ok(v) => assert_eq!(v.len(), 20),
        Err(e) => assert_eq!(e, Errno::ENOTSUP),
    }
    assert!(!d.join(".wh..wh..opq").exists());
}

// ------------------------------------------------ files created on workers

fn slow_fake() -> Fake {
    Fake { slow: Some(std::time::Duration::from_millis(3)), ..Default::default() }
}

fn run_workers(c: &Case, workers: usize, fake: &Fake) -> Result<Summary, LayerError> {
    unpack_workers(&c.blob, &c.dest, &Options::default(), fake, workers)
}

/// Everything checkable about a tree without root: kind, content or target,
/// mode, mtime, inode sharing, and what the fake was asked to chown.
fn snapshot(root: &Path, fake: &Fake) -> Vec<String> {
    let mut out = Vec::new();
    let mut inodes = std::collections::HashMap::new();
    for rel in tree(root) {
        let p = root.join(&rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let what = if m.is_dir() {
            "dir".to_string()
        } else if m.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if !m.is_file() {
            format!("{:?}", m.file_type())
        } else {
            let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
            format!("{:x} link-of {first}", Sha256::digest(std::fs::read(&p).unwrap()))
        };
        let mode = if m.file_type().is_symlink() { 0 } else { m.mode() & 0o7777 };
        // directories no entry listed keep the time they were made
        let time = if m.is_dir() && m.mtime() > 1_700_000_001 { "now".into() } else { format!("{}.{}", m.mtime(), m.mtime_nsec()) };
        out.push(format!("{rel} {what} {mode:o} {time}"));
    }
    let mut calls: Vec<String> = fake
        .calls()
        .iter()
        .map(|c| match c {
            Call::Chown(p, u, g) => format!("chown {} {u} {g}", p.strip_prefix(root).unwrap().display()),
            other => format!("{other:?}").replace(root.to_str().unwrap(), ""),
        })
        .collect();
    calls.sort();
    out.extend(calls);
    out
}

/// Unpack `tar` sequentially and on `workers` workers (slowed down); both
/// trees must be the same, and so must the results.
fn same_as_sequential(tar: &[u8], workers: usize) -> Vec<String> {
    let seq = case(tar);
    let seq_fake = Fake::default();
    let seq_r = run_workers(&seq, 0, &seq_fake);
    let par = case(tar);
    let par_fake = slow_fake();
    let par_r = run_workers(&par, workers, &par_fake);
    match (&seq_r, &par_r) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(
            a.to_string().replace(seq.blob.to_str().unwrap(), "BLOB"),
            b.to_string().replace(par.blob.to_str().unwrap(), "BLOB")
        ),
        _ => panic!("sequential {seq_r:?}, parallel {par_r:?}"),
    }
    let a = snapshot(&seq.dest, &seq_fake);
    assert_eq!(a, snapshot(&par.dest, &par_fake));
    a
}

#[test]
fn duplicates_of_queued_files_win() {
    let mut t = Tar::new().dir("d/", 0o755).link(tar::EntryType::Symlink, "l", "d");
    for i in 0..20 {
        t = t.file("d/a", format!("a{i}").as_bytes()).file("d/b", format!("b{i}").as_bytes());
        // the same file through a symlink to its directory
        t = t.file("l/c", format!("c{i}").as_bytes()).file("d/c", format!("cc{i}").as_bytes());
    }
    let tar = t.link(tar::EntryType::Symlink, "d/b", "a").bytes();
    let snap = same_as_sequential(&tar, 3);
    assert!(snap.iter().any(|l| l.starts_with("d/b -> a")), "{snap:?}");
    let c = case(&tar);
    run_workers(&c, 2, &slow_fake()).unwrap();
    assert_eq!(std::fs::read(c.dest.join("d/a")).unwrap(), b"a19");
    assert_eq!(std::fs::read(c.dest.join("d/c")).unwrap(), b"cc19");
}

#[test]
fn a_hardlink_to_a_queued_file_links_the_written_file() {
    let tar = Tar::new()
        .file("bin/perl", b"interpreter")
        .link(tar::EntryType::Link, "bin/perl5", "bin/perl")
        .link(tar::EntryType::Link, "other/perl", "bin/perl")
        .file("bin/perl", b"replaced")
        .link(tar::EntryType::Link, "bin/perl6", "bin/perl")
        .bytes();
    same_as_sequential(&tar, 2);
    let c = case(&tar);
    run_workers(&c, 2, &slow_fake()).unwrap();
    let d = &c.dest;
    let old = std::fs::metadata(d.join("bin/perl5")).unwrap();
    assert_eq!(old.nlink(), 2);
    assert_eq!(std::fs::metadata(d.join("other/perl")).unwrap().ino(), old.ino());
    assert_eq!(std::fs::read(d.join("other/perl")).unwrap(), b"interpreter");
    assert_eq!(std::fs::read(d.join("bin/perl6")).unwrap(), b"replaced");
    assert_eq!(std::fs::metadata(d.join("bin/perl")).unwrap().nlink(), 2);
}

#[test]
fn a_directory_replaced_while_its_files_are_queued() {
    let mut t = Tar::new().dir("gone/", 0o755).dir("gone/sub/", 0o755);
    for i in 0..30 {
        t = t.file(&format!("gone/f{i}"), b"x").file(&format!("gone/sub/g{i}"), b"y");
    }
    let tar = t
        .file("gone", b"now a file")
        .dir("moved/", 0o755)
        .file("moved/a", b"a")
        .link(tar::EntryType::Symlink, "moved", "gone")
        .file("file/", b"")
        .bytes();
    let snap = same_as_sequential(&tar, 4);
    let c = case(&tar);
    run_workers(&c, 4, &slow_fake()).unwrap();
    assert_eq!(std::fs::read(c.dest.join("gone")).unwrap(), b"now a file");
    assert_eq!(tree(&c.dest), ["file", "gone", "moved"].map(String::from).to_vec(), "{snap:?}");
}

#[test]
fn a_queued_file_on_a_later_entry_path_is_no_directory() {
    // sequentially `a` is a file when `a/b` comes: hostile, whether or not a
    // worker has written `a` yet
    let tar = Tar::new().file("a", b"file").file("a/b", b"x").bytes();
    same_as_sequential(&tar, 2);
    let c = case(&tar);
    let e = run_workers(&c, 2, &slow_fake()).unwrap_err();
    assert!(e.to_string().contains("has a parent that is not a directory"), "{e}");
    // nor may a whiteout or a directory of the same name overtake it
    let tar = Tar::new().file("w", b"kept").file(".wh.w", b"").file("x", b"f").dir("x/", 0o755).bytes();
    same_as_sequential(&tar, 2);
}

#[test]
fn many_files_in_many_dirs_as_a_sequential_unpack_makes_them() {
    let mut t = Tar::new().dir("./", 0o755);
    for d in 0..25usize {
        t = t.dir(&format!("d{d}/"), 0o750 + (d % 8) as u32);
        for f in 0..20 {
            let mut h = Tar::header(&format!("d{d}/f{f}"), tar::EntryType::Regular, 0, 0o600 + f as u32);
            let data = vec![(d * f) as u8; (d * 997 + f * 31) % 70_000];
            h.set_size(data.len() as u64);
            h.set_uid(d as u64);
            h.set_gid(f as u64);
            h.set_mtime(1_500_000_000 + (d * 100 + f) as u64);
            t = t.raw(h, &data);
        }
        t = t
            .pax(&[("SCHILY.xattr.user.k", format!("v{d}").as_bytes()), ("mtime", b"1600000000.25")])
            .file(&format!("d{d}/x"), b"with xattr")
            .link(tar::EntryType::Link, &format!("d{d}/h"), &format!("d{d}/f3"))
            .link(tar::EntryType::Symlink, &format!("d{d}/s"), "f1")
            .raw(Tar::header(&format!("d{d}/p"), tar::EntryType::Fifo, 0, 0o640), &[]);
    }
    // a big one streamed by the parser among queued ones
    let tar = t.file("d3/big", &vec![7u8; (LARGE + 5) as usize]).file("d3/after", b"a").bytes();
    let snap = same_as_sequential(&tar, 4);
    assert!(snap.iter().any(|l| l.starts_with("d7/x ") && l.ends_with("1600000000.250000000")), "{snap:?}");
    assert!(snap.contains(&"chown d4/f5 4 5".to_string()));
    assert!(snap.iter().any(|l| l.contains("/d2/x") && l.contains("user.k") ));
    let c = case(&tar);
    let s = run_workers(&c, 4, &Fake::default()).unwrap();
    assert_eq!((s.diff_id, s.disk), (sha(&tar), s.disk));
}

#[test]
fn a_worker_error_is_the_error_and_nothing_hangs() {
    let mut t = Tar::new();
    for i in 0..200 {
        t = t.file(&format!("d{}/f{i}", i % 7), b"data");
    }
    let tar = t.bytes();
    let c = case(&tar);
    let fake = Fake { fail: Some("f57"), ..slow_fake() };
    let e = run_workers(&c, 3, &fake).unwrap_err();
    assert!(matches!(e, LayerError::Sys { errno: Errno::EIO, .. }), "{e}");
    assert!(e.to_string().contains("chown d1/f57"), "{e}");
    // it stopped: not all 200 were written
    assert!(fake.calls().len() < 200);

    // the parser failing mid-way with files queued: its error, workers joined
    let c = case(&tar[..tar.len() / 2 + 100]);
    let e = run_workers(&c, 3, &slow_fake()).unwrap_err();
    assert!(matches!(e, LayerError::Corrupt { .. }), "{e}");
}

#[test]
fn a_blob_can_be_a_pipe_still_being_written() {
    let tar = big_tar();
    for blob in [gzip(&tar), zstd::encode_all(&tar[..], 3).unwrap(), tar.clone()] {
        let (r, w) = nix::unistd::pipe().unwrap();
        let feed = {
            let blob = blob.clone();
            std::thread::spawn(move || {
                let mut w = File::from(w);
                for part in blob.chunks(1000) {
                    w.write_all(part).unwrap();
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            })
        };
        let c = case(b"");
        let path = PathBuf::from(format!("/proc/self/fd/{}", r.as_raw_fd()));
        let opts = Options { expected_digest: Some(sha(&blob)), expected_diff_id: Some(sha(&tar)), max_size: 0 };
        let s = unpack_with(&path, &c.dest, &opts, &Fake::default()).unwrap();
        feed.join().unwrap();
        assert_eq!((s.size, s.entries), (tar.len() as u64, 50));
        assert_eq!(std::fs::read(c.dest.join("f49")).unwrap(), vec![49u8; 40_049]);
    }
}
