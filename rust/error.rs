//! One error type for the crate; `lib.rs` maps it once onto `pinnace.errors`.

use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime spec asks for something malformed or unsupported.
    #[error("invalid runtime spec: {0}")]
    Spec(String),

    /// A syscall in the parent (clone, pipe, writing id maps...) failed.
    #[error("{what}: {errno}")]
    Sys { what: String, errno: Errno },

    /// A step inside the child failed before the user's command ran.
    #[error("container setup failed: {what}: {errno}")]
    Setup { what: String, errno: Errno },

    /// The user's command could not be executed (126) or found (127).
    #[error("{message}")]
    Exec { message: String, exit_code: i32 },

    /// Making, limiting or removing the container's cgroup failed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),

    /// A layer blob is corrupt, hostile or does not match its digest.
    #[error(transparent)]
    #[cfg(feature = "unpack")]
    Layer(#[from] crate::unpack::LayerError),

    /// Making or changing links, addresses or routes failed.
    #[error(transparent)]
    #[cfg(feature = "net")]
    Net(#[from] crate::net::NetError),

    /// A caller's hook failed; the message is already complete.
    #[error("{0}")]
    Hook(String),

    /// The child died before it could report anything.
    #[error("container process exited during setup with status {0}")]
    ChildDied(i32),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn sys(what: impl Into<String>, errno: Errno) -> Self {
        Error::Sys { what: what.into(), errno }
    }

    /// The docker-like exit code a CLI should use for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Exec { exit_code, .. } => *exit_code,
            _ => 125,
        }
    }
}
