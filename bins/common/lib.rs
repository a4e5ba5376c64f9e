//! Shared front-end code of the rumpfs commands: the file server command
//! ([`server`]: command line, checks, daemonizing, signals), the split of
//! `-o` lists between p2k and the driver ([`options`]), and going to the
//! background only once the mount is live ([`daemon`]), the fs-utils
//! commands ([`fsu`]) and the registry of built-in drivers ([`drivers`]).
//! The mains in `bins/` are one call into this crate.

pub mod daemon;
pub mod drivers;
pub mod fsu;
pub mod options;
pub mod server;
