//! A Docker API replay at any size: answers captured from a real lab's Engine
//! ([`capture`]), scaled up into a generated swarm ([`Swarm`], e.g. [`Size::SWARM2K`]) and
//! served from a unix socket with the Engine's filters ([`Replay`]) — to measure what a
//! client such as swarm-warden costs at a size no machine here can start for real.

pub mod capture;
mod fixture;
mod serve;

pub use fixture::{Fixture, Size, Swarm};
pub use serve::Replay;

#[cfg(test)]
mod tests;
