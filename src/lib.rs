//! ferry: moves files between partners' servers and local systems without
//! losing, doubling or truncating any. See ARCHITECTURE.md for the rooms.

pub mod bandwidth;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod fsx;
pub mod logging;
pub mod metrics;
pub mod progress;
pub mod remote;
pub mod state;
pub mod text;
pub mod watch;
