//! The Send direction of the per-file pipeline: the same states, claims,
//! retries and after-actions as a download, with the transfer going out.
//!
//! `downloading` (uploading) -> the file is written under its temporary
//! name on the server, resumed from that file's size, and its size
//! checked; the final name is chosen by `if_exists` and recorded with
//! `downloaded` (uploaded) before the rename; the rename gives the name;
//! `delivered` is recorded; then the local after-action (move or delete in
//! the outbox, which the rule's source session serves) and `done`.
//! ARCHITECTURE.md has the crash table.

use super::Engine;
use super::digest::{Digests, Hasher};
use super::error::FileError;
use super::upload::{self, Named};
use crate::config::{PostAction, Rule, SendIfExists, SendTo};
use crate::remote::{self, ErrorKind, Pool, PooledSession};
use crate::state::{FileRow, FileState, now_ms};
use std::sync::Arc;
use std::time::Instant;

impl Engine {
    /// Moves a send row forward from its state; `stage` tracks how far it got.
    pub(super) async fn advance_send(
        &self,
        rule: &Rule,
        to: &SendTo,
        source: &Arc<Pool>,
        row: &FileRow,
        stage: &mut FileState,
    ) -> Result<(), FileError> {
        let local = remote::join(&rule.remote_dir, &row.path);
        let final_path = remote::join(&to.remote_dir, &row.path);
        let temp = upload::temp_path(to, row, &final_path);
        let dest = self.pool_for(&to.server);
        let mut sent_to = row.sent_to.clone();
        let mut sha256 = row.sha256.clone();
        if stage.is_pending() {
            let mut session = dest.get().await?.limited(self.rule_limit(rule));
            let started = Instant::now();
            let outcome = if to.if_exists == SendIfExists::Append {
                self.append(&mut session, to, row, &local, &final_path)
                    .await?
            } else {
                self.upload(&mut session, to, row, &local, &temp, &final_path)
                    .await?
            };
            let Some((bytes, chosen, digests)) = outcome else {
                return Ok(()); // skipped
            };
            self.state
                .mark_uploaded_with(
                    row.id,
                    row.size as u64,
                    &chosen,
                    digests.sha256_hex(),
                    now_ms(),
                )
                .await?;
            sha256 = digests.sha256_hex().map(str::to_string);
            tracing::info!(
                state = "uploaded",
                bytes,
                size = row.size,
                remote = %chosen,
                duration_ms = started.elapsed().as_millis() as u64,
                transfer_ms = session.streamed().as_millis() as u64,
                "uploaded"
            );
            sent_to = Some(chosen);
            *stage = FileState::Downloaded;
        }
        if *stage == FileState::Downloaded {
            let chosen = sent_to.clone().ok_or_else(|| {
                FileError::temporary(ErrorKind::Other, "uploaded row without a recorded name")
            })?;
            if to.if_exists != SendIfExists::Append {
                self.state.confirm(&[row.id], now_ms()).await?;
                let mut session = dest.get().await?;
                let Some(named) = self
                    .rename_into_place(&mut session, to, row, &temp, &chosen)
                    .await?
                else {
                    return Ok(()); // skipped: the name was taken meanwhile
                };
                // Repeated after a crash until `delivered` is recorded:
                // the sidecar is renamed over its own earlier copy.
                if to.write_checksum_file {
                    match &sha256 {
                        Some(sha) => {
                            upload::write_sidecar(&mut session, to, row, &named, sha).await?
                        }
                        None => {
                            tracing::warn!(remote = %named, "no digest recorded for this upload; no checksum file written")
                        }
                    }
                }
                sent_to = Some(named);
            }
            let finished = rule.after == PostAction::Keep;
            self.state
                .mark_delivered(row.id, &local, finished, now_ms())
                .await?;
            tracing::info!(state = "delivered", remote = %sent_to.as_deref().unwrap_or_default(), size = row.size, "sent");
            *stage = FileState::Delivered;
            if finished {
                tracing::info!(state = "done", "done");
                return Ok(());
            }
        }
        if *stage == FileState::Delivered {
            self.finish_delivered(rule, source, row).await?;
        }
        Ok(())
    }

    /// Upload to the temporary name, then the name check. `None`: skipped.
    async fn upload(
        &self,
        session: &mut PooledSession,
        to: &SendTo,
        row: &FileRow,
        local: &str,
        temp: &str,
        final_path: &str,
    ) -> Result<Option<(u64, String, Digests)>, FileError> {
        let (sent, digests) = upload::to_temp(session, to, local, row, temp, final_path).await?;
        if to.preserve_mtime && !session.set_mtime(temp, row.mtime).await? {
            tracing::debug!(remote = %temp, "the server cannot set times (no MFMT); mtime not kept");
        }
        match upload::choose(session, to.if_exists, final_path).await {
            Ok(Named::To(chosen)) => Ok(Some((sent, chosen, digests))),
            Ok(Named::Skip(taken)) => {
                self.skip(session, to, row, temp, &taken).await?;
                Ok(None)
            }
            Err(e) => {
                // `error`: the upload is of no use any more.
                self.remove_temp(session, to, temp).await;
                Err(e)
            }
        }
    }

    /// Removes an upload's temporary file that will never be renamed. A
    /// refusal on this session (seen once from ProFTPD over FTPS, under
    /// load) is tried once more on another one, where a slot is free: a
    /// stray temporary name on a partner's server is theirs to clean up.
    async fn remove_temp(&self, session: &mut PooledSession, to: &SendTo, temp: &str) {
        let Err(e) = session.remove(temp).await else {
            return;
        };
        tracing::info!(remote = %temp, error = %e, "cannot remove the temporary file; trying another session");
        let again = match self.pool_for(&to.server).try_get().await {
            Some(Ok(mut other)) => other.remove(temp).await,
            Some(Err(e)) => Err(e),
            None => Err(e),
        };
        if let Err(e) = again {
            tracing::warn!(remote = %temp, error = %e, "left a temporary file on the server");
        }
    }

    async fn skip(
        &self,
        session: &mut PooledSession,
        to: &SendTo,
        row: &FileRow,
        temp: &str,
        taken: &str,
    ) -> Result<(), FileError> {
        self.remove_temp(session, to, temp).await;
        let why = format!("not sent: {taken} exists on the server (if_exists = \"skip\")");
        self.state.mark_skipped(row.id, &why, now_ms()).await?;
        tracing::info!(state = "skipped", remote = %taken, "skipped: the name is taken on the server");
        Ok(())
    }

    /// `append`: the remote size before the first byte is recorded first,
    /// so whatever a repeat finds beyond it is this file's and is never
    /// sent twice. Writes go at explicit offsets (SFTP, REST+STOR) or, where
    /// the server refuses REST, APPE right after a size check.
    async fn append(
        &self,
        session: &mut PooledSession,
        to: &SendTo,
        row: &FileRow,
        local: &str,
        final_path: &str,
    ) -> Result<Option<(u64, String, Digests)>, FileError> {
        let size = row.size as u64;
        let now = upload::remote_size(session, final_path).await?;
        let current = now.map(|s| s.unwrap_or(0)).unwrap_or(0);
        let base = match row.append_base {
            Some(b) => b as u64,
            None => {
                self.state
                    .set_append_base(row.id, current, final_path, now_ms())
                    .await?;
                current
            }
        };
        if current < base {
            return Err(FileError::permanent(
                ErrorKind::Other,
                format!(
                    "{final_path} shrank to {current} bytes from {base} while this file was being appended; not appending again (check the partner's file, then `ferry retry`)"
                ),
            ));
        }
        let done = current - base;
        if done > size {
            return Err(FileError::permanent(
                ErrorKind::Other,
                format!(
                    "{final_path} grew by {done} bytes since the append began, more than this file's {size}: someone else writes to it"
                ),
            ));
        }
        let dirs = [remote::parent(final_path)];
        let mut hasher = Hasher::unless_off(to.digest, false);
        let sent = if done < size || now.is_none() {
            upload::write(
                session,
                to,
                local,
                row,
                final_path,
                done,
                upload::write_mode(base + done, false, to),
                &dirs,
                &mut hasher,
            )
            .await?
        } else {
            upload::hash_local(&mut hasher, local, size).await?;
            0
        };
        upload::still_same(local, row)?;
        if to.verify_size {
            match upload::remote_size(session, final_path).await? {
                Some(Some(n)) if n != base + size => {
                    return Err(FileError::temporary(
                        ErrorKind::Other,
                        format!(
                            "{final_path} has {n} bytes after the append, expected {}; the next attempt continues from there",
                            base + size
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(Some((sent, final_path.to_string(), hasher.finish())))
    }

    /// Renames the upload to its recorded name. A temporary name that is
    /// gone on a repeat was renamed before a crash or stop (only this step
    /// removes it after `uploaded`). A name taken since the choice is
    /// chosen again (`unique`) or ends the file as the policy says.
    pub(super) async fn rename_into_place(
        &self,
        session: &mut PooledSession,
        to: &SendTo,
        row: &FileRow,
        temp: &str,
        chosen: &str,
    ) -> Result<Option<String>, FileError> {
        let overwrite = to.if_exists == SendIfExists::Overwrite;
        let mut target = chosen.to_string();
        for _ in 0..10 {
            match session.rename(temp, &target, overwrite).await {
                Ok(()) => return Ok(Some(target)),
                Err(e) if e.kind == ErrorKind::NotFound => {
                    if upload::remote_size(session, temp).await?.is_some() {
                        // The target's directory is missing.
                        return Err(e.into());
                    }
                    tracing::info!(remote = %target, "the temporary name is gone: renamed before a restart");
                    return Ok(Some(target));
                }
                Err(e) if e.kind == ErrorKind::AlreadyExists && !overwrite => {
                    let final_path = remote::join(&to.remote_dir, &row.path);
                    let next = match to.if_exists {
                        SendIfExists::Unique => {
                            Named::To(upload::choose_free(session, &final_path).await?)
                        }
                        _ => match upload::choose(session, to.if_exists, &final_path).await {
                            Ok(next) => next,
                            Err(e) => {
                                // `error`: the name was taken after the
                                // upload; its bytes are of no use now.
                                if e.kind == ErrorKind::AlreadyExists {
                                    self.remove_temp(session, to, temp).await;
                                }
                                return Err(e);
                            }
                        },
                    };
                    match next {
                        Named::To(next) => {
                            self.state
                                .mark_uploaded(row.id, row.size as u64, &next, now_ms())
                                .await?;
                            target = next;
                        }
                        Named::Skip(taken) => {
                            self.skip(session, to, row, temp, &taken).await?;
                            return Ok(None);
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(FileError::temporary(
            ErrorKind::AlreadyExists,
            format!("no free name for {chosen} on the server after 10 tries"),
        ))
    }
}
