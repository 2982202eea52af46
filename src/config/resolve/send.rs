//! Resolving `[[send]]` rules. A send rule is read as a watch rule over its
//! outbox on this machine (so listing, stability, retries and the local
//! after-actions are the Listen pipeline's own), plus [`SendTo`]: where
//! and how its files are uploaded.

use super::{Resolver, server::local_server};
use crate::config::model::*;
use crate::config::raw::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// Names that common writers use while a file is not finished, never sent:
/// dot-files, `*.part`, `*.tmp`, `*~` (ferry's own temporary names are
/// skipped by every listing anyway).
pub const DEFAULT_EXCLUDES: [&str; 4] = [".*", "*.part", "*.tmp", "*~"];

impl Resolver<'_> {
    pub(super) fn send_rule(
        &mut self,
        servers: &BTreeMap<String, Arc<Server>>,
        raw: RawSend,
    ) -> Option<Rule> {
        let name = raw.name.get_ref().clone();
        self.check_name(raw.name.span(), "send.name", &name);
        let field = |f: &str| format!("send \"{name}\": {f}");
        let server = self.named_server(servers, &field("server"), &raw.server);
        let outbox = self.local_path(&field("local_dir"), &raw.local_dir);
        if let Some(dir) = &outbox {
            self.writable_dir(&field("local_dir"), Some(raw.local_dir.span()), dir);
        }
        let remote_dir = self.remote_dir(&field("remote_dir"), &raw.remote_dir, server.as_deref());
        let mut exclude = raw.exclude.clone();
        exclude.extend(
            DEFAULT_EXCLUDES
                .iter()
                .map(|g| Spanned::new(raw.name.span(), g.to_string())),
        );
        let filter = self.filter(&field(""), &raw.include, &exclude);
        let interval = self.duration(
            &field("rescan"),
            raw.rescan.as_ref(),
            Duration::from_secs(60),
        );
        if let Some(i) = &raw.rescan
            && interval == Some(Duration::ZERO)
        {
            let msg = format!("{}: must be longer than 0s", field("rescan"));
            self.c.at(i.span(), msg);
        }
        let stable_for = self.duration(
            &field("stable_for"),
            raw.stable_for.as_ref(),
            Duration::from_secs(5),
        );
        let min_age = self.duration(&field("min_age"), raw.min_age.as_ref(), Duration::ZERO);
        let (min_size, max_size) =
            self.sizes(&field(""), raw.min_size.as_ref(), raw.max_size.as_ref());
        let temp = self.upload_temp(&field(""), &raw, server.as_deref());
        let if_exists = self.send_if_exists(&field("if_exists"), raw.if_exists.as_ref());
        let verify = self.verify_server(
            &field("verify"),
            raw.verify.as_ref(),
            &["size", "none", "server"],
            server.as_deref(),
        );
        // `server` checks the size too: the digest covers it.
        let verify_size = verify.map(|_| raw.verify.as_ref().is_none_or(|r| r.get_ref() != "none"));
        let verify_server = verify.map(|v| v == Some(true));
        let write_checksum_file = raw.write_checksum_file.unwrap_or(false);
        if let Some(v) = &raw.if_exists
            && v.get_ref() == "append"
            && (write_checksum_file || verify_server == Some(true))
        {
            let msg = format!(
                "{}: \"append\" cannot be combined with write_checksum_file or verify = \"server\": the server's file is more than the bytes sent",
                field("if_exists")
            );
            self.c.at(v.span(), msg);
        }
        let digest = raw.digest.as_ref().is_none_or(|d| *d.get_ref());
        if let Some(d) = &raw.digest
            && !digest
            && (write_checksum_file || verify_server == Some(true))
        {
            let msg = format!(
                "{}: false cannot be combined with write_checksum_file or verify = \"server\": both need the digest of the bytes sent",
                field("digest")
            );
            self.c.at(d.span(), msg);
        }
        let (after, failed_move_to) = self.send_after(&field("after."), &raw, outbox.as_deref())?;
        let retry = self.retry(&field("retry"), raw.retry.as_ref());
        let bandwidth = self.bandwidth(
            &field(""),
            raw.bandwidth.as_ref(),
            raw.bandwidth_schedule.as_ref(),
        );
        let outbox = outbox?.to_string_lossy().into_owned();
        Some(Rule {
            name: name.clone(),
            server: Arc::new(local_server()),
            remote_dir: crate::remote::normalize(&outbox),
            filter: filter?,
            recursive: raw.recursive.unwrap_or(false),
            interval: interval?,
            stable_for: stable_for?,
            min_age: min_age?,
            min_size,
            max_size,
            ready_marker: None,
            checksum_file: None,
            verify_server: false,
            local_dir: None,
            if_exists: IfExists::default(),
            handler: None,
            after,
            failed_move_to,
            retry: retry?,
            send: Some(SendTo {
                server: server?,
                remote_dir: remote_dir?,
                temp: temp?,
                if_exists: if_exists?,
                create_dirs: raw.create_dirs.unwrap_or(false),
                preserve_mtime: raw.preserve_mtime.unwrap_or(false),
                verify_size: verify_size?,
                verify_server: verify_server?,
                write_checksum_file,
                digest,
            }),
            bandwidth: bandwidth?,
        })
    }

    fn upload_temp(
        &mut self,
        field: &str,
        raw: &RawSend,
        server: Option<&Server>,
    ) -> Option<UploadTemp> {
        match (&raw.staging_dir, &raw.temp_extension) {
            (Some(s), Some(_)) => {
                let msg =
                    format!("{field}staging_dir: give staging_dir or temp_extension, not both");
                self.c.at(s.span(), msg);
                None
            }
            (Some(s), None) => self
                .remote_dir(&format!("{field}staging_dir"), s, server)
                .map(UploadTemp::Staging),
            (None, Some(e)) => {
                let ext = e.get_ref();
                if ext.len() < 2 || !ext.starts_with('.') || ext.contains(['/', '\0']) {
                    let msg = format!(
                        "{field}temp_extension: \"{ext}\" must start with '.' and be a name ending, e.g. \".part\""
                    );
                    self.c.at(e.span(), msg);
                    return None;
                }
                Some(UploadTemp::Extension(ext.clone()))
            }
            (None, None) => Some(UploadTemp::Hidden),
        }
    }

    fn send_if_exists(
        &mut self,
        field: &str,
        raw: Option<&Spanned<String>>,
    ) -> Option<SendIfExists> {
        self.policy(field, raw, &SendIfExists::ALL, SendIfExists::as_str)
    }

    /// `after = { move_to | delete, failed_move_to }`: local directories,
    /// never the outbox itself (a moved file would be sent again).
    fn send_after(
        &mut self,
        field: &str,
        raw: &RawSend,
        outbox: Option<&std::path::Path>,
    ) -> Option<(PostAction, Option<String>)> {
        let empty = RawSendAfter::default();
        let after = raw.after.as_ref().map_or(&empty, |a| a.get_ref());
        let dir = |r: &mut Self, f: &str, d: &Spanned<String>| -> Option<String> {
            let path = r.local_path(&format!("{field}{f}"), d)?;
            if Some(path.as_path()) == outbox {
                let msg = format!("{field}{f}: is the outbox itself");
                r.c.at(d.span(), msg);
                return None;
            }
            r.writable_dir(&format!("{field}{f}"), Some(d.span()), &path);
            Some(path.to_string_lossy().into_owned())
        };
        let delete = after.delete.as_ref().is_some_and(|d| *d.get_ref());
        let action = match (&after.move_to, delete) {
            (Some(m), true) => {
                let msg = format!("{field}move_to: cannot be used together with delete = true");
                self.c.at(m.span(), msg);
                None
            }
            (Some(m), false) => dir(self, "move_to", m).map(PostAction::MoveTo),
            (None, true) => Some(PostAction::Delete),
            (None, false) => Some(PostAction::Keep),
        };
        let failed = match &after.failed_move_to {
            Some(d) => Some(dir(self, "failed_move_to", d)?),
            None => None,
        };
        Some((action?, failed))
    }
}
