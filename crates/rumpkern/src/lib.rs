//! rumpkern: the kernel shim every rumpfs driver is written against.
//!
//! Drivers (`crates/fs-*`) depend on this crate only. It provides what a
//! NetBSD file system expects from its kernel: [`Errno`], locks, kthreads,
//! the buffer cache, the vnode layer, VFS/mount, namei, creds, uio and the
//! genfs helpers. Everything host-specific goes through `rumpuser`.

pub mod buf;
pub mod bytes;
pub mod cred;
pub mod dev;
pub mod errno;
pub mod genfs;
pub mod kthread;
pub mod lock;
pub mod namei;
pub mod types;
pub mod uio;
pub mod vfs;
pub mod vnode;

pub use buf::{Buf, BufCache, BufStats};
pub use cred::Cred;
pub use kthread::{kthread_create, KThread, Syncer};
pub use lock::{KCondvar, KMutex, KRwLock, RW_READER, RW_WRITER};
pub use errno::{Errno, KResult};
pub use types::*;
pub use uio::{Uio, UioRw};
pub use vfs::{FsType, Mount, MountArgs, VfsOps, WriteRoom};
pub use vnode::{DirFiller, Vnode, VnodeOps, VnodeRef};
