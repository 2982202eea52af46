//! Configuration: the TOML file (`raw`), its validation (`resolve`) and the
//! runtime model the rest of ferry uses (`model`).

mod error;
mod known_hosts;
mod model;
mod raw;
mod resolve;
mod secret;
mod syntax;

pub use error::{ConfigError, ConfigErrors};
pub use known_hosts::{KnownHosts, Verdict};
pub use model::*;
pub use resolve::{HANDLER_PLACEHOLDERS, Secrets, hostname, load, load_with, parse};
pub use secret::{Secret, SecretKey};
