//! Namespaces named by path (OCI `linux.namespaces[].path`): opened and
//! checked by the parent, entered by the child with setns.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::error::{Error, Result};

/// ioctl(NS_GET_NSTYPE): the CLONE_NEW* flag of the namespace an nsfs file
/// refers to (Linux 4.11).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// The namespace types a container may join by path. pid would have to be
/// entered by the parent around clone, user before anything else is made and
/// mount instead of making the root filesystem: none of that is done yet.
pub const JOINABLE: &[libc::c_int] = &[libc::CLONE_NEWNET, libc::CLONE_NEWIPC, libc::CLONE_NEWUTS, libc::CLONE_NEWCGROUP];

/// The runtime spec's name for a namespace type ("network" for CLONE_NEWNET).
pub fn type_name(nstype: libc::c_int) -> &'static str {
    match nstype {
        libc::CLONE_NEWNET => "network",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWTIME => "time",
        _ => "unknown",
    }
}

/// The type of namespace `fd` refers to; ENOTTY (or EINVAL) for a file that
/// is not a namespace.
pub fn nstype_of(fd: &OwnedFd) -> std::result::Result<libc::c_int, Errno> {
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(r)
}

/// Whether `fd` is a namespace of type `nstype`, as a message naming `what`
/// when it is not.
pub fn check_type(fd: &OwnedFd, nstype: libc::c_int, what: &str) -> std::result::Result<(), String> {
    match nstype_of(fd) {
        Ok(t) if t == nstype => Ok(()),
        Ok(t) => Err(format!("{what} is a {} namespace, not a {} namespace", type_name(t), type_name(nstype))),
        Err(Errno::ENOTTY) | Err(Errno::EINVAL) => Err(format!("{what} is not a namespace")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// Open `path` (close-on-exec) and check it is a namespace of type `nstype`.
pub fn open(path: &Path, nstype: libc::c_int) -> Result<OwnedFd> {
    let name = type_name(nstype);
    let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .map_err(|e| Error::sys(format!("open {name} namespace {}", path.display()), e))?;
    check_type(&fd, nstype, &format!("{name} namespace path {}", path.display())).map_err(Error::Spec)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespaces_open_with_their_type_and_others_are_refused() {
        // reading /proc/self/ns needs no privilege
        assert!(open(Path::new("/proc/self/ns/net"), libc::CLONE_NEWNET).is_ok());
        assert!(open(Path::new("/proc/self/ns/uts"), libc::CLONE_NEWUTS).is_ok());
        let e = open(Path::new("/proc/self/ns/uts"), libc::CLONE_NEWNET).unwrap_err().to_string();
        assert_eq!(e, "invalid runtime spec: network namespace path /proc/self/ns/uts is a uts namespace, not a network namespace");
        let e = open(Path::new("/proc/self/status"), libc::CLONE_NEWIPC).unwrap_err().to_string();
        assert_eq!(e, "invalid runtime spec: ipc namespace path /proc/self/status is not a namespace");
        let e = open(Path::new("/nonexistent/ns"), libc::CLONE_NEWNET).unwrap_err().to_string();
        assert!(e.starts_with("open network namespace /nonexistent/ns: ENOENT"), "{e}");
    }
}
