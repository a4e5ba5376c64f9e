//! Block devices as drivers see them: the rumpuser device interface,
//! re-exported so that drivers need no dependency on rumpuser.

pub use rumpuser::BlockDevice;
