//! `daemon.state` and `daemon.state_password`: a SQLite file (the default)
//! or a PostgreSQL URL whose password comes as a secret, never in the URL.

use super::{Resolver, Secrets};
use crate::config::model::{PostgresDb, StateDb};
use crate::config::raw::RawDaemon;
use std::path::PathBuf;
use std::str::FromStr;
use toml::Spanned;

const DEFAULT_SQLITE: &str = "/var/lib/ferry/state.db";

impl Resolver<'_> {
    pub(super) fn state_db(&mut self, raw: &RawDaemon) -> StateDb {
        match &raw.state {
            Some(url) if is_postgres_url(url.get_ref()) => self.postgres(url, raw),
            given => {
                if let Some(pw) = &raw.state_password {
                    let msg =
                        "daemon.state_password: only a postgres:// state database takes a password";
                    self.c.at(pw.span(), msg);
                }
                let path = match given {
                    Some(s) => self.local_path("daemon.state", s).unwrap_or_default(),
                    None => PathBuf::from(DEFAULT_SQLITE),
                };
                if let Some(dir) = path.parent() {
                    // The default has no position of its own: report it at the top.
                    let span = given.as_ref().map_or(0..0, Spanned::span);
                    self.writable_dir("daemon.state", Some(span), dir);
                }
                StateDb::Sqlite(path)
            }
        }
    }

    fn postgres(&mut self, url: &Spanned<String>, raw: &RawDaemon) -> StateDb {
        let text = url.get_ref();
        if let Some(why) = password_in_url(text) {
            // Describe, never echo: the URL holds a password.
            let msg = format!(
                "daemon.state: the URL holds a password ({why}); give it as daemon.state_password = {{ env = \"NAME\" }} (or file, credential)"
            );
            self.c.at(url.span(), msg);
        } else if let Err(e) = sqlx::postgres::PgConnectOptions::from_str(text) {
            self.c.at(url.span(), format!("daemon.state: {e}"));
        } else if let Some(mode) = query_value(text, "sslmode")
            && !SSL_MODES.contains(&mode)
        {
            let msg = format!(
                "daemon.state: sslmode \"{mode}\" is not one of {}",
                SSL_MODES.join(", ")
            );
            self.c.at(url.span(), msg);
        }
        // Every command that reads the state needs this one, `ferry files`
        // from an operator's shell included: it is read even when the
        // other secrets are not.
        let saved = std::mem::replace(&mut self.secrets, Secrets::Load);
        let password = raw
            .state_password
            .as_ref()
            .and_then(|pw| self.secret("daemon.state_password", pw));
        self.secrets = saved;
        StateDb::Postgres(PostgresDb {
            url: text.clone(),
            password,
        })
    }
}

/// The `sslmode` values PostgreSQL's clients know.
const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Where a URL carries a password, if it does: after the user
/// (`user:secret@host`) or as a `password=` parameter.
fn password_in_url(url: &str) -> Option<&'static str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
    {
        return Some("user:password@");
    }
    query_value(url, "password").map(|_| "password=")
}

/// The value of query parameter `key`, if the URL has it.
fn query_value<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_password_wherever_the_url_holds_one() {
        assert_eq!(
            password_in_url("postgres://ferry:s3cret@db/ferry"),
            Some("user:password@")
        );
        assert_eq!(
            password_in_url("postgres://ferry@db/ferry?sslmode=require&password=x"),
            Some("password=")
        );
        assert_eq!(password_in_url("postgres://ferry@db:5432/ferry"), None);
        // A colon in the host part (the port) is not a password.
        assert_eq!(password_in_url("postgresql://db:5432/ferry"), None);
    }

    #[test]
    fn reads_query_values() {
        let url = "postgres://ferry@db/ferry?sslmode=verify-full&sslrootcert=/etc/ca.pem";
        assert_eq!(query_value(url, "sslmode"), Some("verify-full"));
        assert_eq!(query_value(url, "sslrootcert"), Some("/etc/ca.pem"));
        assert_eq!(query_value(url, "password"), None);
    }
}
