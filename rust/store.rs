//! Helpers for pinnace's on-disk store (the store itself is Python's).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

/// ext2/3/4's "top of directory hierarchies" flag (chattr +T).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Have the filesystem spread the new subdirectories of `dir` over its block
/// groups (ext2/3/4's Orlov allocator does so below a directory flagged as
/// a top of hierarchies: FS_TOPDIR_FL, `chattr +T`), rather than crowd them
/// into the group of `dir`. Returns whether the flag is set now.
///
/// Why a container start cares: ext4 without a journal does not hand out an
/// inode freed within the last minute (five while its table block is dirty)
/// and steps over each such inode of the group, one buffer lookup apiece,
/// for every new file. Every container makes and removes a dozen inodes
/// below its directory, so in one crowded group each start slowed down with
/// the number of starts (measured: 3.5 -> 7 ms in-process); spread, the
/// groups it lands in hold few. A filesystem without the flag says so
/// (ENOTTY, EOPNOTSUPP...): Ok(false).
pub fn spread_subdirs(dir: &Path) -> nix::Result<bool> {
    let fd: OwnedFd = open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut flags: libc::c_int = 0;
    // SAFETY: both ioctls read or write one int through the pointer given.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } < 0 {
        return unsupported(Errno::last());
    }
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(true);
    }
    flags |= FS_TOPDIR_FL;
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } < 0 {
        return unsupported(Errno::last());
    }
    Ok(true)
}

fn unsupported(e: Errno) -> nix::Result<bool> {
    match e {
        Errno::ENOTTY | Errno::EOPNOTSUPP | Errno::EINVAL | Errno::ENOSYS => Ok(false),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_gets_the_flag_or_says_it_cannot() {
        // tmpfs (or whatever holds the tempdir) may lack the flag: both are fine
        let d = tempfile::tempdir().unwrap();
        let set = spread_subdirs(d.path()).unwrap();
        assert_eq!(spread_subdirs(d.path()).unwrap(), set);
        assert!(spread_subdirs(&d.path().join("missing")).is_err());
    }
}
