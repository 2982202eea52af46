//! The configuration file as written: serde structs that keep every value's
//! span, so that later validation can still point at file:line:col.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub daemon: Option<Spanned<RawDaemon>>,
    #[serde(default)]
    pub servers: BTreeMap<Spanned<String>, Spanned<RawServer>>,
    #[serde(default)]
    pub watch: Vec<Spanned<RawWatch>>,
    #[serde(default)]
    pub send: Vec<Spanned<RawSend>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub state: Option<Spanned<String>>,
    pub state_password: Option<Spanned<RawSecretValue>>,
    pub spool_dir: Option<Spanned<String>>,
    pub max_transfers: Option<Spanned<i64>>,
    pub grace_period: Option<Spanned<String>>,
    pub retention: Option<Spanned<String>>,
    pub metrics: Option<Spanned<String>>,
    pub node: Option<Spanned<String>>,
    pub lease: Option<Spanned<String>>,
}

/// Where a secret comes from; never the secret itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub env: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
    /// A systemd credential name, read from `$CREDENTIALS_DIRECTORY/NAME`.
    pub credential: Option<Spanned<String>>,
}

/// Accepts a table (the only valid form) or a plain value, which resolve
/// refuses with a pointer to the right form instead of a type error.
#[derive(Debug)]
pub enum RawSecretValue {
    Source(RawSecret),
    /// The value is deliberately not kept: it is never echoed anywhere.
    Inline,
}

/// Written by hand: serde's `untagged` buffers the value first, which loses
/// the spans that `RawSecret`'s fields need.
impl<'de> Deserialize<'de> for RawSecretValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawSecretValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table such as { env = \"NAME\" }")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                RawSecret::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawSecretValue::Source)
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(RawSecretValue::Inline)
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(RawSecretValue::Inline)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub protocol: Spanned<String>,
    pub host: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<RawSecretValue>>,
    pub max_sessions: Option<Spanned<i64>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub io_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    /// `http://`, `socks4://` or `socks5://[user@]host:port`.
    pub proxy: Option<Spanned<String>>,
    /// The proxy user's password, as a secret.
    pub proxy_password: Option<Spanned<RawSecretValue>>,
    // SFTP
    pub private_key: Option<Spanned<String>>,
    pub private_key_content: Option<Spanned<RawSecretValue>>,
    pub passphrase: Option<Spanned<RawSecretValue>>,
    pub known_hosts: Option<Spanned<String>>,
    pub host_key: Option<Spanned<StringOrList>>,
    pub insecure_accept_any_host_key: Option<Spanned<bool>>,
    pub follow_symlinks: Option<Spanned<bool>>,
    /// Ask the server for `sha256sum` over an SSH exec channel (`verify = "server"`).
    pub exec_checksum: Option<Spanned<bool>>,
    /// `false`: uploads are not fsynced on the server.
    pub fsync: Option<Spanned<bool>>,
    // FTP / FTPS
    pub mode: Option<Spanned<String>>,
    pub active_ports: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub certificate_sha256: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<Spanned<bool>>,
    pub server_timezone: Option<Spanned<String>>,
    // Every protocol
    pub bandwidth: Option<Spanned<String>>,
    pub bandwidth_schedule: Option<Spanned<Vec<Spanned<String>>>>,
    // Segmented downloads
    pub segments: Option<Spanned<i64>>,
    pub segment_threshold: Option<Spanned<String>>,
    pub segment_below: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<Spanned<i64>>,
    pub first: Option<Spanned<String>>,
    pub max: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    pub name: Spanned<String>,
    pub server: Option<Spanned<String>>,
    pub remote_dir: Spanned<String>,
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    pub recursive: Option<bool>,
    pub interval: Option<Spanned<String>>,
    pub stable_for: Option<Spanned<String>>,
    pub min_age: Option<Spanned<String>>,
    pub min_size: Option<Spanned<i64>>,
    pub max_size: Option<Spanned<i64>>,
    pub ready_marker: Option<Spanned<String>>,
    /// A partner's sidecar checksum file, e.g. `{name}.sha256`.
    pub checksum_file: Option<Spanned<String>>,
    /// `size` (the default) or `server`.
    pub verify: Option<Spanned<String>>,
    pub local_dir: Option<Spanned<String>>,
    pub if_exists: Option<Spanned<String>>,
    pub handler: Option<Spanned<Vec<Spanned<String>>>>,
    pub handler_timeout: Option<Spanned<String>>,
    /// Names of variables passed from ferry's environment to the handler.
    pub handler_env: Option<Spanned<Vec<Spanned<String>>>>,
    pub move_to: Option<Spanned<String>>,
    pub delete: Option<Spanned<bool>>,
    pub failed_move_to: Option<Spanned<String>>,
    pub retry: Option<Spanned<RawRetry>>,
    pub bandwidth: Option<Spanned<String>>,
    pub bandwidth_schedule: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSend {
    pub name: Spanned<String>,
    pub server: Spanned<String>,
    /// The outbox.
    pub local_dir: Spanned<String>,
    pub remote_dir: Spanned<String>,
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    pub recursive: Option<bool>,
    pub rescan: Option<Spanned<String>>,
    pub stable_for: Option<Spanned<String>>,
    pub min_age: Option<Spanned<String>>,
    pub min_size: Option<Spanned<i64>>,
    pub max_size: Option<Spanned<i64>>,
    pub staging_dir: Option<Spanned<String>>,
    pub temp_extension: Option<Spanned<String>>,
    pub if_exists: Option<Spanned<String>>,
    pub create_dirs: Option<bool>,
    pub preserve_mtime: Option<bool>,
    pub verify: Option<Spanned<String>>,
    /// Write `NAME.sha256` beside each uploaded file.
    pub write_checksum_file: Option<bool>,
    /// Compute and record the SHA-256 of the bytes sent (default true).
    pub digest: Option<Spanned<bool>>,
    pub after: Option<Spanned<RawSendAfter>>,
    pub retry: Option<Spanned<RawRetry>>,
    pub bandwidth: Option<Spanned<String>>,
    pub bandwidth_schedule: Option<Spanned<Vec<Spanned<String>>>>,
}

/// What happens to a file in the outbox once sent, or once failed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSendAfter {
    pub move_to: Option<Spanned<String>>,
    pub delete: Option<Spanned<bool>>,
    pub failed_move_to: Option<Spanned<String>>,
}
