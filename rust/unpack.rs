//! Layer unpacking: decompress, verify and untar one image layer into its own
//! directory, in the form overlayfs wants for a lowerdir (whiteouts as 0/0
//! character devices, opaque directories as an xattr).
//!
//! Two threads: one reads the blob, hashes it and decompresses it; the
//! caller's thread parses the tar and writes files. Hashing the tar stream
//! (the diff_id) goes to whichever side is lighter: beside the writes for
//! gzip, whose inflating is the single largest cost, beside the decoder for
//! zstd and plain tar. The threads meet in a bounded channel of large
//! recycled buffers, so a pull costs about the slower side, not the sum.
//!
//! The tar crate only parses. Files are created here with *at syscalls relative
//! to directory fds that `openat2(RESOLVE_IN_ROOT)` resolved: symlinks inside
//! the layer resolve as in a chroot of `dest`, and the last component of an
//! entry is never followed, so no entry can write outside `dest`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fchmodat, fstatat, futimens, mkdirat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use sha2::{Digest, Sha256};

/// Bytes per buffer between the two threads, and how many may be in flight:
/// big enough that channel hand-offs cost nothing next to inflating them.
const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 4;
/// Read-ahead on the compressed blob.
const RAW_BUF: usize = 1 << 20;

const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

#[derive(Debug, Clone, thiserror::Error)]
pub enum LayerError {
    /// A syscall on the blob or on the layer directory failed.
    #[error("layer {layer}: {what}: {errno}")]
    Sys { layer: String, what: String, errno: Errno },

    /// The compressed stream or the tar inside it is malformed or truncated.
    #[error("layer {layer} is corrupt: {detail}")]
    Corrupt { layer: String, detail: String },

    /// An entry tries to reach outside the layer or to replace its root.
    #[error("layer {layer}: entry {entry} {why}")]
    Hostile { layer: String, entry: String, why: &'static str },

    /// The blob or its tar does not hash to what the manifest or config says.
    #[error("layer {layer}: {which} mismatch: {}", mismatch(.layer, .expected, .actual))]
    Mismatch { layer: String, which: &'static str, expected: String, actual: String },

    /// A decompression bomb, or simply a layer larger than the caller allows.
    #[error("layer {layer} expands beyond {max} bytes")]
    TooBig { layer: String, max: u64 },

    /// An expected digest the caller gave is not "sha256:<64 hex>".
    #[error("layer {layer}: unsupported digest {digest}")]
    BadDigest { layer: String, digest: String },
}

/// The layer is named by its blob digest: say the expected one only when it
/// is another (a diff_id), so no message names the same digest twice.
fn mismatch(layer: &str, expected: &str, actual: &str) -> String {
    if layer == expected {
        format!("its content hashes to {actual}")
    } else {
        format!("expected {expected}, got {actual}")
    }
}

#[derive(Debug, Default, Clone)]
pub struct Options {
    pub expected_diff_id: Option<String>,
    pub expected_digest: Option<String>,
    /// Abort once the uncompressed stream is larger than this; 0: no limit.
    pub max_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// "sha256:..." of the uncompressed tar stream.
    pub diff_id: String,
    /// "sha256:..." of the blob as stored.
    pub digest: String,
    /// Bytes of the uncompressed tar stream.
    pub size: u64,
    /// Bytes of regular-file content written.
    pub disk: u64,
    /// Tar members handled (whiteouts and skipped ones included).
    pub entries: u64,
}

/// The operations that need privilege (CAP_CHOWN, CAP_MKNOD, trusted.*
/// xattrs). Everything else is plain *at syscalls on a tempdir, so a fake of
/// this seam lets the whole unpacker run unprivileged under `cargo test`.
/// Most calls name their object as (directory fd, last component); the last
/// component is never followed. Regular files, the bulk of a layer, are
/// handled through their open fd: no lookup at all.
pub trait Privileged: Sync {
    fn chown(&self, dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> nix::Result<()>;
    fn mknod(&self, dir: BorrowedFd<'_>, name: &CStr, kind: SFlag, dev: u64) -> nix::Result<()>;
    fn set_xattr(&self, dir: BorrowedFd<'_>, name: &CStr, key: &CStr, value: &[u8]) -> nix::Result<()>;
    fn fchown(&self, fd: BorrowedFd<'_>, uid: u32, gid: u32) -> nix::Result<()>;
    fn fset_xattr(&self, fd: BorrowedFd<'_>, key: &CStr, value: &[u8]) -> nix::Result<()>;
}

/// The real syscalls.
pub struct Host;

impl Privileged for Host {
    fn chown(&self, dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> nix::Result<()> {
        nix::unistd::fchownat(dir, name, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    fn mknod(&self, dir: BorrowedFd<'_>, name: &CStr, kind: SFlag, dev: u64) -> nix::Result<()> {
        // permission bits are set later, after chown (which would clear setuid)
        nix::sys::stat::mknodat(dir, name, kind, Mode::empty(), dev)
    }

    fn set_xattr(&self, dir: BorrowedFd<'_>, name: &CStr, key: &CStr, value: &[u8]) -> nix::Result<()> {
        // There is no lsetxattr-at before Linux 6.13, and symlinks and device
        // nodes cannot be opened to fsetxattr them. Going through the fd's
        // /proc link pins the directory we resolved safely; lsetxattr does not
        // follow the last component.
        let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        path.extend_from_slice(name.to_bytes());
        let path = CString::new(path).map_err(|_| Errno::EINVAL)?;
        let r = unsafe { libc::lsetxattr(path.as_ptr(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        Errno::result(r).map(drop)
    }

    fn fchown(&self, fd: BorrowedFd<'_>, uid: u32, gid: u32) -> nix::Result<()> {
        fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
    }

    fn fset_xattr(&self, fd: BorrowedFd<'_>, key: &CStr, value: &[u8]) -> nix::Result<()> {
        let r = unsafe { libc::fsetxattr(fd.as_raw_fd(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        Errno::result(r).map(drop)
    }
}

/// Unpack `blob` into the empty directory `dest` with the real syscalls.
pub fn unpack(blob: &Path, dest: &Path, opts: &Options) -> Result<Summary, LayerError> {
    unpack_with(blob, dest, opts, &Host)
}

pub fn unpack_with(blob: &Path, dest: &Path, opts: &Options, ops: &dyn Privileged) -> Result<Summary, LayerError> {
    unpack_workers(blob, dest, opts, ops, default_workers())
}

/// `workers` threads create the regular files; 0: all on the parsing thread.
fn unpack_workers(
    blob: &Path,
    dest: &Path,
    opts: &Options,
    ops: &dyn Privileged,
    workers: usize,
) -> Result<Summary, LayerError> {
    // Errors name the layer by the digest the caller knows it by, else its path.
    let layer = opts.expected_digest.clone().unwrap_or_else(|| blob.display().to_string());
    for d in [&opts.expected_digest, &opts.expected_diff_id].into_iter().flatten() {
        if !is_sha256(d) {
            return Err(LayerError::BadDigest { layer, digest: d.clone() });
        }
    }
    let sys = |what: String, errno: Errno| LayerError::Sys { layer: layer.clone(), what, errno };
    let file = File::open(blob).map_err(|e| sys(format!("open {}", blob.display()), errno_of(&e)))?;
    // Read, not peeked at an offset: the blob may be a pipe, a download
    // still arriving. The bytes go through the blob's hash like all others.
    let mut raw = HashingReader { inner: file, hash: Sha256::new() };
    let mut head = vec![0u8; 4];
    let n = fill(&mut raw, &mut head).map_err(|e| sys(format!("read {}", blob.display()), errno_of(&e)))?;
    head.truncate(n);
    let kind = sniff(&head);
    let hash_in_writer = matches!(kind, Compression::Gzip);
    let root = nix::fcntl::open(dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| sys(format!("open {}", dest.display()), e))?;
    let writer = Writer::new(root, ops, &layer, workers)?;

    let (tx, rx) = sync_channel::<Chunk>(IN_FLIGHT);
    let (back_tx, back_rx) = channel::<Vec<u8>>();
    let (produced, written) = std::thread::scope(|s| {
        let producer = s.spawn(|| produce(raw, head, kind, !hash_in_writer, tx, back_rx, opts.max_size, &layer));
        let hash = hash_in_writer.then(Sha256::new);
        let mut stream = ChannelReader { rx, back: back_tx, cur: Vec::new(), pos: 0, len: 0, hash };
        let written = writer.run(&mut stream);
        let diff_id = stream.hash.map(hex_digest);
        // Hanging up unblocks a producer still sending after a write failure.
        drop(stream.rx);
        let produced = producer.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (produced, written.map(|w| (w, diff_id)))
    });
    // A broken stream is the root cause of whatever the tar parser saw after it.
    let (blob, written, diff_id) = match (produced, written) {
        (Err(e), _) => return Err(e),
        (Ok(_), Err(e)) => return Err(e),
        (Ok(None), Ok(_)) => unreachable!("the writer drains the stream to its end"),
        (Ok(Some(b)), Ok((w, d))) => {
            let d = d.or(b.diff_id.clone()).expect("one side hashes the tar");
            (b, w, d)
        }
    };
    for (which, expected, actual) in
        [("digest", &opts.expected_digest, &blob.digest), ("diff_id", &opts.expected_diff_id, &diff_id)]
    {
        if let Some(expected) = expected {
            if !expected.eq_ignore_ascii_case(actual) {
                return Err(LayerError::Mismatch { layer, which, expected: expected.clone(), actual: actual.clone() });
            }
        }
    }
    Ok(Summary { diff_id, digest: blob.digest, size: blob.size, disk: written.disk, entries: written.entries })
}

fn is_sha256(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn hex_digest(h: Sha256) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in h.finalize() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

// ---------------------------------------------------------------- producer

/// A buffer and how many of its bytes are data.
type Chunk = (Vec<u8>, usize);

/// What the reading side learns: the blob's digest, the tar stream's size.
struct BlobRead {
    digest: String,
    size: u64,
    diff_id: Option<String>,
}

/// Hashes every byte read through it: the blob's digest covers exactly the
/// bytes on disk, whatever the decoder above buffers or leaves unread.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

enum Compression {
    Gzip,
    Zstd,
    None,
}

/// By magic bytes, not media type: registries and old manifests mislabel.
fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Read, hash and decompress; send the tar stream in chunks. Returns
/// None when the writer hung up first (its error then tells why).
#[allow(clippy::too_many_arguments)]
fn produce(
    mut raw: HashingReader<File>,
    head: Vec<u8>,
    kind: Compression,
    hash_tar: bool,
    tx: SyncSender<Chunk>,
    back: Receiver<Vec<u8>>,
    max: u64,
    layer: &str,
) -> Result<Option<BlobRead>, LayerError> {
    let corrupt = |e: io::Error| match e.raw_os_error() {
        Some(n) => LayerError::Sys { layer: layer.to_string(), what: "read blob".into(), errno: Errno::from_raw(n) },
        None => LayerError::Corrupt { layer: layer.to_string(), detail: e.to_string().to_lowercase() },
    };
    let mut buffered = BufReader::with_capacity(RAW_BUF, io::Cursor::new(head).chain(&mut raw));
    let mut diff = hash_tar.then(Sha256::new);
    let mut size = 0u64;
    {
        let mut tar: Box<dyn Read + '_> = match kind {
            // multi-member: a layer may be several gzip streams back to back
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut buffered)),
            // the zstd reader goes on across frames to the end of its input
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(&mut buffered).map_err(corrupt)?),
            Compression::None => Box::new(&mut buffered),
        };
        loop {
            let mut buf = back.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
            let n = fill(&mut tar, &mut buf).map_err(corrupt)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if let Some(h) = diff.as_mut() {
                h.update(&buf[..n]);
            }
            if max > 0 && size > max {
                return Err(LayerError::TooBig { layer: layer.to_string(), max });
            }
            if tx.send((buf, n)).is_err() {
                return Ok(None);
            }
        }
    }
    // Bytes after the compressed stream's end are part of the blob all the same.
    io::copy(&mut buffered, &mut io::sink()).map_err(corrupt)?;
    drop(buffered);
    Ok(Some(BlobRead { digest: hex_digest(raw.hash), size, diff_id: diff.map(hex_digest) }))
}

/// Read until `buf` is full or the stream ends: full chunks keep the number
/// of hand-offs low.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The writer's end of the channel: a Read over the chunks that hands each
/// spent buffer back for reuse, and hashes each as it arrives when asked.
struct ChannelReader {
    rx: Receiver<Chunk>,
    back: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    len: usize,
    hash: Option<Sha256>,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.len {
            let spent = std::mem::take(&mut self.cur);
            if spent.capacity() > 0 {
                let _ = self.back.send(spent);
            }
            match self.rx.recv() {
                Ok((buf, len)) => {
                    if let Some(h) = self.hash.as_mut() {
                        h.update(&buf[..len]);
                    }
                    self.cur = buf;
                    self.len = len;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

// ---------------------------------------------------------------- writer

/// A path inside the layer, cleaned: no "", "." or ".." components.
type Rel = Vec<CString>;

/// A directory as the filesystem knows it: (st_dev, st_ino).
type DirId = (u64, u64);

/// A directory entry by identity, (parent's DirId, name) hashed: two spellings
/// of one path (through a symlink in the layer) are one key. A collision
/// only costs a needless wait.
type Key = u64;

fn key_of(dir: DirId, name: &CStr) -> Key {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    name.to_bytes().hash(&mut h);
    h.finish()
}

/// Regular files are created on a few worker threads: on ext4 creating an
/// inode costs far more kernel time than parsing the tar, and it scales
/// across threads.
const MAX_WORKERS: usize = 4;
/// Bytes of file content queued or being written, at most.
const BUDGET: usize = 64 << 20;
/// Larger files are streamed by the parsing thread itself, not buffered.
const LARGE: u64 = 8 << 20;
/// Counted per job on top of its content, so that a queue of empty files is
/// bounded too.
const JOB_COST: usize = 512;
/// Spent buffers kept for reuse, and the largest kept.
const POOL_MAX: usize = 32;
const POOL_BUF_MAX: usize = 1 << 20;

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, MAX_WORKERS)
}

struct Written {
    disk: u64,
    entries: u64,
}

/// Mode and times of a directory, applied once everything below it is written
/// (writing a child would move its mtime, a read-only mode would block it).
struct DirMeta {
    path: Rel,
    mode: u32,
    mtime: TimeSpec,
}

/// What the tar header says about an entry, PAX overrides applied.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// A regular file to create, its content read ahead. `dir` was resolved
/// safely by the parser; the worker only creates `name` in it.
struct Job {
    dir: Arc<OwnedFd>,
    name: CString,
    raw: Vec<u8>,
    data: Vec<u8>,
    len: usize,
    meta: Meta,
    key: Key,
}

impl Job {
    fn cost(&self) -> usize {
        self.data.len() + JOB_COST
    }
}

/// The parser's and the workers' common state. Every key queued or being
/// written is in `pending`, at most one job per key: the parser waits for a
/// key before it touches that name again, and for all jobs before it removes
/// anything (what goes may be a directory holding pending files).
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    pending: HashSet<Key>,
    busy: usize,
    bytes: usize,
    pool: Vec<Vec<u8>>,
    closed: bool,
    failed: Option<LayerError>,
}

#[derive(Default)]
struct Shared {
    q: Mutex<Queue>,
    /// Workers wait here for a job, the end, or a failure.
    work: Condvar,
    /// The parser waits here for jobs to finish.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.q.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record the first error; everyone stops at the next look.
    fn fail(&self, e: LayerError) {
        let mut q = self.lock();
        q.failed.get_or_insert(e);
        drop(q);
        self.work.notify_all();
        self.done.notify_all();
    }
}

/// Ends the workers on every way out of the parser, a panic included:
/// nothing waits forever on a parser that is gone.
struct CloseOnDrop<'a>(&'a Shared);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        q.closed = true;
        if std::thread::panicking() {
            q.failed.get_or_insert(LayerError::Corrupt { layer: String::new(), detail: "unpacker panicked".into() });
        }
        drop(q);
        self.0.work.notify_all();
    }
}

/// The same for a worker: a panic mid-job must not leave the parser waiting
/// for that job.
struct FailOnPanic<'a>(&'a Shared);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(LayerError::Corrupt { layer: String::new(), detail: "file writer panicked".into() });
        }
    }
}

fn work(shared: &Shared, ops: &dyn Privileged, layer: &str) {
    let _guard = FailOnPanic(shared);
    let mut q = shared.lock();
    loop {
        if q.failed.is_some() {
            return;
        }
        let Some(job) = q.jobs.pop_front() else {
            if q.closed {
                return;
            }
            q = shared.work.wait(q).unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        q.busy += 1;
        drop(q);
        let r = write_job(&job, ops, layer);
        let cost = job.cost();
        let Job { dir, data, key, .. } = job;
        drop(dir);
        q = shared.lock();
        q.busy -= 1;
        q.bytes -= cost;
        q.pending.remove(&key);
        if data.len() <= POOL_BUF_MAX && q.pool.len() < POOL_MAX {
            q.pool.push(data);
        }
        if let Err(e) = r {
            q.failed.get_or_insert(e);
            shared.work.notify_all();
        }
        shared.done.notify_all();
    }
}

fn write_job(job: &Job, ops: &dyn Privileged, layer: &str) -> Result<(), LayerError> {
    let sys = |what: &str, e| sys_err(layer, what, &job.raw, e);
    let dir = job.dir.as_fd();
    let fd = match open_new(dir, &job.name) {
        // Only when `dest` was not empty: the parser removes what this unpack
        // made before it queues a file of the same name.
        Err(Errno::EEXIST) => {
            remove_entry(dir, &job.name).map_err(|e| sys("remove", e))?;
            open_new(dir, &job.name)
        }
        r => r,
    }
    .map_err(|e| sys("create", e))?;
    write_all(fd.as_fd(), &job.data[..job.len]).map_err(|e| sys("write", e))?;
    finish_file(fd.as_fd(), &job.meta, ops, layer, &job.raw)
}

/// A new regular file, never through a symlink or over an existing name.
fn open_new(dir: BorrowedFd<'_>, name: &CStr) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir, name, flags, Mode::from_bits_truncate(0o600))
}

/// Owner, xattrs, mode and times of a file just written, all through its fd.
fn finish_file(fd: BorrowedFd<'_>, meta: &Meta, ops: &dyn Privileged, layer: &str, raw: &[u8]) -> Result<(), LayerError> {
    // chown first: it drops security.capability and setuid bits
    ops.fchown(fd, meta.uid, meta.gid).map_err(|e| sys_err(layer, "chown", raw, e))?;
    for (key, value) in &meta.xattrs {
        match ops.fset_xattr(fd, key, value) {
            // a filesystem without xattrs (or that namespace) cannot keep them
            Ok(()) | Err(Errno::ENOTSUP) => {}
            Err(e) => return Err(sys_err(layer, &format!("set xattr {} on", key.to_string_lossy()), raw, e)),
        }
    }
    fchmod(fd, Mode::from_bits_retain(meta.mode)).map_err(|e| sys_err(layer, "chmod", raw, e))?;
    futimens(fd, &meta.mtime, &meta.mtime).map_err(|e| sys_err(layer, "set times of", raw, e))
}

fn sys_err(layer: &str, what: &str, path: &[u8], errno: Errno) -> LayerError {
    LayerError::Sys { layer: layer.to_string(), what: format!("{what} {}", String::from_utf8_lossy(path)), errno }
}

struct Writer<'a> {
    root: Arc<OwnedFd>,
    root_id: DirId,
    ops: &'a dyn Privileged,
    layer: &'a str,
    /// The last parent directory resolved: entries come grouped by directory.
    /// Any removal forgets it, since what was removed may be that directory
    /// or one on its path (a later entry replacing a directory by a symlink).
    cached: RefCell<Option<(Rel, Arc<OwnedFd>, DirId)>>,
    /// Every name this unpack made (or queued): only these can be in the way
    /// of a later entry, since `dest` starts empty.
    seen: RefCell<HashSet<Key>>,
    /// None: every file is written on this thread.
    shared: Option<Arc<Shared>>,
    workers: usize,
    dirs: Vec<DirMeta>,
    dir_index: HashMap<Rel, usize>,
    buf: Vec<u8>,
    disk: u64,
    entries: u64,
}

impl<'a> Writer<'a> {
    fn new(root: OwnedFd, ops: &'a dyn Privileged, layer: &'a str, workers: usize) -> Result<Self, LayerError> {
        let root_id = dir_id(root.as_fd()).map_err(|e| sys_err(layer, "stat", b".", e))?;
        Ok(Writer {
            root: Arc::new(root),
            root_id,
            ops,
            layer,
            cached: RefCell::new(None),
            seen: RefCell::new(HashSet::new()),
            shared: (workers > 0).then(Default::default),
            workers,
            dirs: Vec::new(),
            dir_index: HashMap::new(),
            buf: vec![0; CHUNK],
            disk: 0,
            entries: 0,
        })
    }

    fn sys(&self, what: impl std::fmt::Display, path: &[u8], errno: Errno) -> LayerError {
        LayerError::Sys { layer: self.layer.to_string(), what: format!("{what} {}", String::from_utf8_lossy(path)), errno }
    }

    fn corrupt(&self, e: io::Error) -> LayerError {
        LayerError::Corrupt { layer: self.layer.to_string(), detail: e.to_string().to_lowercase() }
    }

    fn hostile(&self, entry: &[u8], why: &'static str) -> LayerError {
        LayerError::Hostile { layer: self.layer.to_string(), entry: String::from_utf8_lossy(entry).into_owned(), why }
    }

    fn run(mut self, stream: &mut ChannelReader) -> Result<Written, LayerError> {
        if let Some(shared) = self.shared.clone() {
            let (ops, layer) = (self.ops, self.layer);
            std::thread::scope(|s| {
                for _ in 0..self.workers {
                    let shared = &*shared;
                    s.spawn(move || work(shared, ops, layer));
                }
                let _close = CloseOnDrop(&shared);
                if let Err(e) = self.entries(stream).and_then(|()| self.wait_all()) {
                    shared.fail(e);
                }
            });
            // the workers are gone: the first error, theirs or ours, is the one
            if let Some(e) = shared.lock().failed.take() {
                return Err(e);
            }
        } else {
            self.entries(stream)?;
        }
        self.finish_dirs()?;
        Ok(Written { disk: self.disk, entries: self.entries })
    }

    fn entries(&mut self, stream: &mut ChannelReader) -> Result<(), LayerError> {
        let mut archive = tar::Archive::new(stream);
        for entry in archive.entries().map_err(|e| self.corrupt(e))? {
            let mut entry = entry.map_err(|e| self.corrupt(e))?;
            self.entry(&mut entry)?;
        }
        // Tar padding and trailing blocks are part of the diff_id: read them.
        io::copy(archive.into_inner(), &mut io::sink()).map_err(|e| self.corrupt(e))?;
        Ok(())
    }

    /// Wait until `done` holds, or a worker failed.
    fn wait_until(&self, mut done: impl FnMut(&Queue) -> bool) -> Result<Option<MutexGuard<'_, Queue>>, LayerError> {
        let Some(shared) = &self.shared else { return Ok(None) };
        let mut q = shared.lock();
        loop {
            if let Some(e) = &q.failed {
                return Err(e.clone());
            }
            if done(&q) {
                return Ok(Some(q));
            }
            q = shared.done.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Every queued file written.
    fn wait_all(&self) -> Result<(), LayerError> {
        self.wait_until(|q| q.jobs.is_empty() && q.busy == 0).map(drop)
    }

    /// The file queued under `key`, if any, written: before this thread
    /// touches that name, so that later entries still win.
    fn wait_key(&self, key: Key) -> Result<(), LayerError> {
        if self.shared.is_none() || !self.seen.borrow().contains(&key) {
            return Ok(());
        }
        self.wait_until(|q| !q.pending.contains(&key)).map(drop)
    }

    /// Record that this unpack makes `key`, first waiting for a file queued
    /// under it.
    fn claim(&self, key: Key) -> Result<(), LayerError> {
        self.wait_key(key)?;
        self.seen.borrow_mut().insert(key);
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        if matches!(kind, T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink) {
            return Ok(());
        }
        self.entries += 1;
        let raw_path = entry.path_bytes().into_owned();
        let path = clean(&raw_path).ok_or_else(|| self.hostile(&raw_path, "escapes the layer directory"))?;
        let meta = self.meta(entry)?;

        let Some((name, parent)) = path.split_last() else {
            // "./": the layer root itself; only its metadata can change
            if kind != T::Directory {
                return Err(self.hostile(&raw_path, "would replace the layer root"));
            }
            self.apply_owner_xattrs(self.root.as_fd(), c".", &raw_path, &meta)?;
            self.defer_dir(path, &meta);
            return Ok(());
        };
        let name_bytes = name.as_bytes();

        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(parent, hidden, &raw_path, &meta);
        }

        let (dir_fd, dir_id) = self.parent(parent, &raw_path)?;
        let key = key_of(dir_id, name);
        if matches!(kind, T::Regular | T::Continuous | T::GNUSparse) {
            return self.file(dir_fd, key, name, raw_path, meta, kind == T::GNUSparse, entry);
        }
        self.claim(key)?;
        let dir = dir_fd.as_fd();
        match kind {
            T::Directory => {
                self.mkdir(dir, name, &raw_path)?;
                self.apply_owner_xattrs(dir, name, &raw_path, &meta)?;
                self.defer_dir(path.clone(), &meta);
                Ok(())
            }
            T::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| self.hostile(&raw_path, "is a symlink without a target"))?;
                let target = CString::new(target.into_owned()).map_err(|_| self.hostile(&raw_path, "has a nul byte"))?;
                self.create(dir, name, &raw_path, |d, n| symlinkat(target.as_c_str(), d, n))?;
                self.apply_owner_xattrs(dir, name, &raw_path, &meta)?;
                self.set_times(dir, name, &raw_path, &meta)
            }
            T::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| self.hostile(&raw_path, "is a hardlink without a target"))?;
                self.hardlink(dir, name, &raw_path, &target)
            }
            T::Char | T::Block | T::Fifo => {
                let (flag, dev) = match kind {
                    T::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let h = entry.header();
                        let major = h.device_major().ok().flatten().unwrap_or(0);
                        let minor = h.device_minor().ok().flatten().unwrap_or(0);
                        let flag = if kind == T::Char { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                        (flag, nix::sys::stat::makedev(major.into(), minor.into()))
                    }
                };
                let ops = self.ops;
                self.create(dir, name, &raw_path, |d, n| ops.mknod(d, n, flag, dev))?;
                self.apply_owner_xattrs(dir, name, &raw_path, &meta)?;
                // just made by us, not a symlink: following cannot leave dest
                fchmodat(dir, name.as_c_str(), Mode::from_bits_retain(meta.mode), FchmodatFlags::FollowSymlink)
                    .map_err(|e| self.sys("chmod", &raw_path, e))?;
                self.set_times(dir, name, &raw_path, &meta)
            }
            _ => Err(self.hostile(&raw_path, "has an unsupported tar entry type")),
        }
    }
    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta, LayerError> {
        let h = entry.header();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let bad = |_| LayerError::Corrupt { layer: self.layer.to_string(), detail: format!("bad header for {name}") };
        let (uid, gid, mode) = (h.uid().map_err(bad)?, h.gid().map_err(bad)?, h.mode().map_err(bad)?);
        let mut mtime = TimeSpec::new(h.mtime().map_err(bad)? as i64, 0);
        let mut xattrs = Vec::new();
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let key = ext.key_bytes();
                if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                    // Overlay's own xattrs are ours to set, from whiteouts only:
                    // a layer carrying a redirect or metacopy could reach into
                    // other layers.
                    if x.starts_with(b"trusted.overlay.") || x.starts_with(b"user.overlay.") {
                        continue;
                    }
                    if let Ok(k) = CString::new(x) {
                        xattrs.push((k, ext.value_bytes().to_vec()));
                    }
                } else if key == b"mtime" {
                    if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                        mtime = t;
                    }
                }
            }
        }
        let id = |v: u64| u32::try_from(v).map_err(|_| bad(io::Error::other("id")));
        Ok(Meta { uid: id(uid)?, gid: id(gid)?, mode: mode & 0o7777, mtime, xattrs })
    }

    /// The directory `parent` (a cleaned path), resolved in the layer's root
    /// and created 0755 where missing.
    fn parent(&self, parent: &[CString], raw: &[u8]) -> Result<(Arc<OwnedFd>, DirId), LayerError> {
        if parent.is_empty() {
            return Ok((self.root.clone(), self.root_id));
        }
        if let Some((p, fd, id)) = &*self.cached.borrow() {
            if p.as_slice() == parent {
                return Ok((fd.clone(), *id));
            }
        }
        let fd = self.resolve_dir(parent, raw, true)?;
        let id = dir_id(fd.as_fd()).map_err(|e| self.sys("stat parent of", raw, e))?;
        let fd = Arc::new(fd);
        *self.cached.borrow_mut() = Some((parent.to_vec(), fd.clone(), id));
        Ok((fd, id))
    }

    fn resolve_dir(&self, path: &[CString], raw: &[u8], create: bool) -> Result<OwnedFd, LayerError> {
        let joined = join(path);
        let mut r = open_in_root(self.root.as_fd(), &joined);
        if r.is_err() && self.shared.is_some() {
            // A file still queued may be on this path: answer as a sequential
            // unpack would, once it is there.
            self.wait_all()?;
            r = open_in_root(self.root.as_fd(), &joined);
        }
        match r {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOENT) if create => self.make_dirs(path, raw),
            Err(Errno::ENOTDIR) => Err(self.hostile(raw, "has a parent that is not a directory")),
            Err(e) => Err(self.sys("open parent of", raw, e)),
        }
    }

    /// Slow path, for tars that list a file before its directories: find the
    /// longest existing prefix, then mkdir the rest below it. Only reached
    /// with no file queued.
    fn make_dirs(&self, path: &[CString], raw: &[u8]) -> Result<OwnedFd, LayerError> {
        let mut cur = self.root.try_clone().map_err(|e| self.sys("dup root for", raw, errno_of(&e)))?;
        let mut missing = false;
        for (i, comp) in path.iter().enumerate() {
            if !missing {
                match open_in_root(self.root.as_fd(), &join(&path[..=i])) {
                    Ok(fd) => {
                        cur = fd;
                        continue;
                    }
                    Err(Errno::ENOENT) => missing = true,
                    Err(Errno::ENOTDIR) => return Err(self.hostile(raw, "has a parent that is not a directory")),
                    Err(e) => return Err(self.sys("open parent of", raw, e)),
                }
            }
            let id = dir_id(cur.as_fd()).map_err(|e| self.sys("stat parent of", raw, e))?;
            self.seen.borrow_mut().insert(key_of(id, comp));
            match mkdirat(cur.as_fd(), comp.as_c_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) => {
                    // explicit: the process umask must not decide a layer's modes
                    fchmodat(cur.as_fd(), comp.as_c_str(), Mode::from_bits_truncate(0o755), FchmodatFlags::FollowSymlink)
                        .map_err(|e| self.sys("chmod parent of", raw, e))?;
                }
                // a dangling symlink in the way: creating its target is not our business
                Err(e) => return Err(self.sys("mkdir parent of", raw, e)),
            }
            cur = openat(cur.as_fd(), comp.as_c_str(), dir_flags() | OFlag::O_NOFOLLOW, Mode::empty())
                .map_err(|e| self.sys("open parent of", raw, e))?;
        }
        Ok(cur)
    }

    /// Create `name` with `make`; an existing non-directory (or a directory
    /// when `make` creates something else) is removed first: later tar
    /// entries win.
    fn create(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        raw: &[u8],
        mut make: impl FnMut(BorrowedFd<'_>, &CStr) -> nix::Result<()>,
    ) -> Result<(), LayerError> {
        match make(dir, name) {
            Err(Errno::EEXIST) => {
                self.remove(dir, name, raw)?;
                make(dir, name).map_err(|e| self.sys("create", raw, e))
            }
            r => r.map_err(|e| self.sys("create", raw, e)),
        }
    }

    fn remove(&self, dir: BorrowedFd<'_>, name: &CStr, raw: &[u8]) -> Result<(), LayerError> {
        // what goes may be a directory with files still queued in it
        self.wait_all()?;
        self.cached.borrow_mut().take();
        remove_entry(dir, name).map_err(|e| self.sys("remove", raw, e))
    }

    fn mkdir(&self, dir: BorrowedFd<'_>, name: &CStr, raw: &[u8]) -> Result<(), LayerError> {
        // 0700 until the deferred chmod at the end: nobody else may enter meanwhile
        let make = |d: BorrowedFd<'_>, n: &CStr| mkdirat(d, n, Mode::from_bits_truncate(0o700));
        match make(dir, name) {
            Err(Errno::EEXIST) => match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                // a duplicate directory keeps its contents; its metadata is updated
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Ok(()),
                _ => {
                    self.remove(dir, name, raw)?;
                    make(dir, name).map_err(|e| self.sys("mkdir", raw, e))
                }
            },
            r => r.map_err(|e| self.sys("mkdir", raw, e)),
        }
    }

    /// A regular file: queued for a worker with its content, or, when large
    /// (or with no workers), streamed to disk here.
    #[allow(clippy::too_many_arguments)]
    fn file<R: Read>(
        &mut self,
        dir: Arc<OwnedFd>,
        key: Key,
        name: &CStr,
        raw: Vec<u8>,
        meta: Meta,
        sparse: bool,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), LayerError> {
        if self.seen.borrow().contains(&key) {
            // A duplicate: whatever this unpack put there goes first (after
            // every queued file, since it may be a directory holding some),
            // then the new file is made as if on an empty name.
            self.remove(dir.as_fd(), name, &raw)?;
        }
        self.seen.borrow_mut().insert(key);
        let want = entry.size();
        let Some(shared) = self.shared.clone().filter(|_| want <= LARGE && !sparse) else {
            return self.file_here(dir.as_fd(), name, &raw, &meta, entry);
        };
        let len = want as usize;
        let mut data = shared.lock().pool.pop().unwrap_or_default();
        if data.len() < len {
            data.resize(len, 0);
        }
        let copied = fill(entry, &mut data[..len]).map_err(|e| self.corrupt(e))?;
        if copied < len {
            return Err(self.truncated(&raw, copied as u64, want));
        }
        self.disk += want;
        let job = Job { dir, name: name.to_owned(), raw, data, len, meta, key };
        let cost = job.cost();
        let mut q = self.wait_until(|q| q.bytes == 0 || q.bytes + cost <= BUDGET)?.expect("workers");
        q.bytes += cost;
        q.pending.insert(key);
        q.jobs.push_back(job);
        drop(q);
        shared.work.notify_one();
        Ok(())
    }

    fn file_here<R: Read>(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        raw: &[u8],
        meta: &Meta,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), LayerError> {
        let mut fd = None;
        self.create(dir, name, raw, |d, n| {
            fd = Some(open_new(d, n)?);
            Ok(())
        })?;
        let fd = fd.expect("created");
        let want = entry.size();
        let mut copied = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.corrupt(e)),
            };
            write_all(fd.as_fd(), &self.buf[..n]).map_err(|e| self.sys("write", raw, e))?;
            copied += n as u64;
        }
        if copied < want {
            return Err(self.truncated(raw, copied, want));
        }
        self.disk += copied;
        finish_file(fd.as_fd(), meta, self.ops, self.layer, raw)
    }

    fn truncated(&self, raw: &[u8], copied: u64, want: u64) -> LayerError {
        self.corrupt(io::Error::other(format!("{} is truncated at {copied} of {want} bytes", String::from_utf8_lossy(raw))))
    }

    fn hardlink(&self, dir: BorrowedFd<'_>, name: &CStr, raw: &[u8], target: &[u8]) -> Result<(), LayerError> {
        let target_path = clean(target).ok_or_else(|| self.hostile(raw, "links to a path outside the layer"))?;
        let Some((tname, tparent)) = target_path.split_last() else {
            return Err(self.hostile(raw, "links to the layer root"));
        };
        let tdir = if tparent.is_empty() {
            self.root.try_clone().map_err(|e| self.sys("dup root for", raw, errno_of(&e)))?
        } else {
            self.resolve_dir(tparent, raw, false)?
        };
        // a target still queued is linked once it is written
        let tid = dir_id(tdir.as_fd()).map_err(|e| self.sys("stat target of", raw, e))?;
        self.wait_key(key_of(tid, tname))?;
        // flags 0: the target's last component is linked as it is, never followed
        self.create(dir, name, raw, |d, n| linkat(tdir.as_fd(), tname.as_c_str(), d, n, AtFlags::empty()))
    }

    /// `.wh.NAME` becomes the overlay whiteout for NAME; `.wh..wh..opq` makes
    /// its directory opaque.
    fn whiteout(&mut self, parent: &[CString], hidden: &[u8], raw: &[u8], meta: &Meta) -> Result<(), LayerError> {
        if hidden.starts_with(WHITEOUT_PREFIX) {
            if [WHITEOUT_PREFIX, hidden].concat() == OPAQUE_MARKER {
                let (dir, _) = self.parent(parent, raw)?;
                let (ops, dir) = (self.ops, dir.as_fd());
                return ops.set_xattr(dir, c".", OPAQUE_XATTR, b"y").map_err(|e| self.sys("make opaque", raw, e));
            }
            // other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): nothing for overlay
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.hostile(raw, "is a whiteout of nothing"));
        }
        let name = CString::new(hidden).map_err(|_| self.hostile(raw, "has a nul byte"))?;
        let (dir, id) = self.parent(parent, raw)?;
        self.claim(key_of(id, &name))?;
        let (ops, dir) = (self.ops, dir.as_fd());
        match ops.mknod(dir, &name, SFlag::S_IFCHR, 0) {
            // A whiteout hides lower layers only; an entry of this same layer
            // under that name stays (OCI image spec, "Whiteouts").
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(self.sys("create whiteout", raw, e)),
        }
        ops.chown(dir, &name, meta.uid, meta.gid).map_err(|e| self.sys("chown", raw, e))?;
        Ok(())
    }

    fn apply_owner_xattrs(&self, dir: BorrowedFd<'_>, name: &CStr, raw: &[u8], meta: &Meta) -> Result<(), LayerError> {
        // chown first: it drops security.capability and setuid bits
        self.ops.chown(dir, name, meta.uid, meta.gid).map_err(|e| self.sys("chown", raw, e))?;
        for (key, value) in &meta.xattrs {
            match self.ops.set_xattr(dir, name, key, value) {
                // a filesystem without xattrs (or that namespace) cannot keep them
                Ok(()) | Err(Errno::ENOTSUP) => {}
                Err(e) => {
                    let what = format!("set xattr {} on", key.to_string_lossy());
                    return Err(self.sys(what, raw, e));
                }
            }
        }
        Ok(())
    }

    fn set_times(&self, dir: BorrowedFd<'_>, name: &CStr, raw: &[u8], meta: &Meta) -> Result<(), LayerError> {
        utimensat(dir, name, &meta.mtime, &meta.mtime, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| self.sys("set times of", raw, e))
    }

    fn defer_dir(&mut self, path: Rel, meta: &Meta) {
        let m = DirMeta { path, mode: meta.mode, mtime: meta.mtime };
        // a duplicate directory entry: the later one's metadata wins
        match self.dir_index.get(&m.path) {
            Some(&i) => self.dirs[i] = m,
            None => {
                self.dir_index.insert(m.path.clone(), self.dirs.len());
                self.dirs.push(m);
            }
        }
    }

    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        // Children were listed after their parents: going backwards sets a
        // directory's mode only once nothing below it needs entering.
        for d in self.dirs.iter().rev() {
            let raw = join(&d.path);
            let fd = if d.path.is_empty() {
                self.root.try_clone().map_err(|e| self.sys("dup", b".", errno_of(&e)))?
            } else {
                match open_in_root_nofollow(self.root.as_fd(), &raw) {
                    Ok(fd) => fd,
                    // replaced by a later non-directory entry, or removed
                    Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                    Err(e) => return Err(self.sys("open", &raw, e)),
                }
            };
            fchmod(fd.as_fd(), Mode::from_bits_retain(d.mode)).map_err(|e| self.sys("chmod", &raw, e))?;
            futimens(fd.as_fd(), &d.mtime, &d.mtime).map_err(|e| self.sys("set times of", &raw, e))?;
        }
        Ok(())
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// Resolve `path` below `root` as if `root` were `/`: `..` and absolute
/// symlinks stop at it; /proc magic links are refused outright.
fn open_in_root(root: BorrowedFd<'_>, path: &[u8]) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(dir_flags())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, OsStr::from_bytes(path), how)
}

fn open_in_root_nofollow(root: BorrowedFd<'_>, path: &[u8]) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(dir_flags() | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, OsStr::from_bytes(path), how)
}

/// Clean a tar path lexically as Go's filepath.Clean does (docker and
/// containerd do the same): leading `/` and `.` go, `..` pops. None when `..`
/// climbs above the root.
fn clean(raw: &[u8]) -> Option<Rel> {
    let mut out: Rel = Vec::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(n) => out.push(CString::new(n.as_bytes()).ok()?),
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

fn join(path: &[CString]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.iter().map(|c| c.as_bytes().len() + 1).sum());
    for (i, c) in path.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c.as_bytes());
    }
    out
}

fn parse_pax_time(v: &str) -> Option<TimeSpec> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() { 0 } else { digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32) };
    Some(TimeSpec::new(secs, if secs < 0 { -nanos } else { nanos }))
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Remove `name` below `dir` and everything in it, never following a symlink.
fn remove_dir_all(dir: BorrowedFd<'_>, name: &CStr) -> nix::Result<()> {
    let fd = openat(dir, name, dir_flags() | OFlag::O_NOFOLLOW, Mode::empty())?;
    let keep = fd.try_clone().map_err(|e| errno_of(&e))?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            names.push(n.to_owned());
        }
    }
    for n in names {
        match unlinkat(keep.as_fd(), n.as_c_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(Errno::EISDIR) => remove_dir_all(keep.as_fd(), &n)?,
            Err(e) => return Err(e),
        }
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}


fn dir_id(fd: BorrowedFd<'_>) -> nix::Result<DirId> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// Remove `name` below `dir`, a directory with all it holds; gone already is fine.
fn remove_entry(dir: BorrowedFd<'_>, name: &CStr) -> nix::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => remove_dir_all(dir, name),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
