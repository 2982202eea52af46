//! Diffing a whole listing against the database in one transaction, and
//! picking the files that are due for work.

use super::{Direction, FileRow, FileState, Result, State};
use std::collections::{HashMap, HashSet};

/// One file from a filtered listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the rule's remote_dir.
    pub path: String,
    /// As stored: -1 when the server did not say ([`super::size_to_db`]).
    pub size: i64,
    pub mtime: i64,
    /// The mtime is a bare date ([`crate::remote::Entry::date_only`]).
    pub date_only: bool,
}

/// A listed file the rule would take but ferry cannot (its name is not
/// UTF-8): recorded once per version as `failed`, with why, so that it shows
/// in `ferry files` instead of being skipped silently at every poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub file: Listed,
    pub error: String,
}

/// What a listing changed, for logging one event per state change.
#[derive(Debug, Default)]
pub struct ListingOutcome {
    /// The listing came back empty while files were pending: treated as
    /// unknown, nothing was changed.
    pub ignored_empty: bool,
    pub new: Vec<Listed>,
    pub changed: Vec<Listed>,
    /// Refused files recorded as `failed` by this listing (new versions only).
    pub refused: Vec<Refused>,
    /// Pending files that disappeared after ferry had started on them.
    pub vanished: Vec<String>,
    /// Versions ferry had started downloading that are now replaced or gone:
    /// their partial files can be removed.
    pub superseded: Vec<Superseded>,
}

#[derive(Debug, Clone)]
pub struct Superseded {
    pub id: i64,
    pub path: String,
    pub size: i64,
    pub mtime: i64,
}

#[derive(sqlx::FromRow)]
struct Latest {
    id: i64,
    path: String,
    size: i64,
    mtime: i64,
    #[sqlx(try_from = "String")]
    state: FileState,
    attempts: i64,
    restoring: bool,
    unlisted: bool,
}

impl Latest {
    /// Whether `f` is this row's version: the same size and mtime, or the
    /// same size and a listed bare date that holds the recorded time. UNIX
    /// LIST shows no time of day for files older than six months, and an
    /// FTP server without MDTM then gives only that day's local midnight: a
    /// file recorded while it was listed to the minute must not turn into a
    /// new version (delivered again) when it ages and the listing shows only
    /// its date: compared at the coarser precision, the day.
    fn is_version(&self, f: &Listed) -> bool {
        const DAY: i64 = 86_400;
        self.size == f.size
            && (self.mtime == f.mtime
                || (f.date_only && self.mtime > f.mtime && self.mtime < f.mtime + DAY))
    }

    fn superseded(&self) -> Superseded {
        Superseded {
            id: self.id,
            path: self.path.clone(),
            size: self.size,
            mtime: self.mtime,
        }
    }
}

const VANISHED: &str = "disappeared from the server before it was delivered";

impl State {
    /// Records a complete listing of a rule: new paths and new versions get a
    /// `seen` row, pending rows whose file changed restart their stability
    /// window, pending rows whose file is gone are dropped (never started) or
    /// failed (started). One read and only the needed writes, in one
    /// transaction, so an unchanged directory costs a single query.
    pub async fn record_listing(
        &self,
        rule: &str,
        listing: &[Listed],
        now: i64,
    ) -> Result<ListingOutcome> {
        self.record_listing_with(rule, listing, &[], now).await
    }

    /// [`State::record_listing`] with the files the listing showed but ferry
    /// cannot take. A path listed twice (some FTP servers repeat entries)
    /// counts once: the first time, unless only a later one can be taken.
    pub async fn record_listing_with(
        &self,
        rule: &str,
        listing: &[Listed],
        refused: &[Refused],
        now: i64,
    ) -> Result<ListingOutcome> {
        self.record_listing_in(rule, Direction::Listen, listing, refused, now)
            .await
    }

    /// [`State::record_listing_with`] for a rule of either direction: new
    /// rows carry it.
    pub async fn record_listing_in(
        &self,
        rule: &str,
        direction: Direction,
        listing: &[Listed],
        refused: &[Refused],
        now: i64,
    ) -> Result<ListingOutcome> {
        let (listing, refused) = dedupe(listing, refused);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<Latest> = sqlx::query_as(
            "SELECT id, path, size, mtime, state, attempts, failed_moved_to IS NOT NULL AS restoring,
                    unlisted_since_ms IS NOT NULL AS unlisted
             FROM files WHERE rule = ? ORDER BY id",
        )
        .bind(rule)
        .fetch_all(&mut *tx)
        .await?;
        // Later rows are later versions: keep the last one per path.
        let latest: HashMap<&str, &Latest> = rows.iter().map(|r| (r.path.as_str(), r)).collect();
        let mut out = ListingOutcome::default();
        if listing.is_empty() && refused.is_empty() && latest.values().any(|r| r.state.is_pending())
        {
            out.ignored_empty = true;
            return Ok(out);
        }
        for f in &listing {
            match latest.get(f.path.as_str()) {
                Some(r) if r.is_version(f) => {}
                Some(r) if r.state.is_pending() => {
                    if r.attempts > 0 {
                        out.superseded.push(r.superseded());
                    }
                    sqlx::query(
                        "UPDATE files SET size = ?, mtime = ?, state = 'seen', stable_since_ms = ?,
                         attempts = 0, failures = 0, held = NULL, next_attempt_ms = NULL, bytes_done = 0,
                         last_error = NULL, local_path = NULL, local_inode = NULL,
                         updated_at_ms = ? WHERE id = ?",
                    )
                    .bind(f.size)
                    .bind(f.mtime)
                    .bind(now)
                    .bind(now)
                    .bind(r.id)
                    .execute(&mut *tx)
                    .await?;
                    out.changed.push((*f).clone());
                }
                _ => out.new.push((*f).clone()),
            }
        }
        for x in &refused {
            match latest.get(x.file.path.as_str()) {
                Some(r) if r.is_version(&x.file) => {}
                _ => out.refused.push((*x).clone()),
            }
        }
        let rows = out.new.iter().map(|f| (f, None));
        let failed = out
            .refused
            .iter()
            .map(|x| (&x.file, Some(x.error.as_str())));
        let rows: Vec<_> = rows.chain(failed).collect();
        insert_new(&mut tx, rule, direction, &rows, now).await?;
        let listed: HashSet<&str> = listing.iter().map(|f| f.path.as_str()).collect();
        for r in latest
            .values()
            // A requeued file on its way back from failed_move_to is not gone.
            .filter(|r| r.state.is_pending() && !r.restoring && !listed.contains(r.path.as_str()))
        {
            if r.attempts == 0 {
                sqlx::query("DELETE FROM files WHERE id = ?")
                    .bind(r.id)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query("UPDATE files SET state = 'failed', last_error = ?, updated_at_ms = ? WHERE id = ?")
                    .bind(VANISHED)
                    .bind(now)
                    .bind(r.id)
                    .execute(&mut *tx)
                    .await?;
                out.vanished.push(r.path.clone());
                out.superseded.push(r.superseded());
            }
        }
        if !listing.is_empty() {
            mark_unlisted(&mut tx, &latest, &listed, now).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Rows of `rule` that have work to do now: pending rows past their
    /// stability window and min_age, and rows a crash or stop left half-way
    /// (downloading, downloaded, delivered), in each case once any retry delay
    /// has passed.
    pub async fn due(
        &self,
        rule: &str,
        now: i64,
        stable_for_ms: i64,
        min_age_ms: i64,
    ) -> Result<Vec<FileRow>> {
        let rows = sqlx::query_as(
            "SELECT * FROM files WHERE rule = ?1
               AND (next_attempt_ms IS NULL OR next_attempt_ms <= ?2)
               AND ( state IN ('downloading', 'downloaded', 'delivered')
                  OR (state IN ('seen', 'stable') AND stable_since_ms <= ?2 - ?3 AND first_seen_ms <= ?2 - ?4))
             ORDER BY id",
        )
        .bind(rule)
        .bind(now)
        .bind(stable_for_ms)
        .bind(min_age_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Marks `seen` rows as having passed the stability gate.
    pub async fn mark_stable(&self, ids: &[i64], now: i64) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for slice in ids.chunks(INSERT_SLICE) {
            sqlx::query(
                "UPDATE files SET state = 'stable', updated_at_ms = ?1
                 WHERE state = 'seen' AND id IN (SELECT value FROM json_each(?2))",
            )
            .bind(now)
            .bind(serde_json::to_string(slice).expect("ids serialize"))
            .execute(&mut *tx)
            .await?;
        }
        Ok(tx.commit().await?)
    }
}

/// The listing with each path once, and the refused files whose path no
/// file that can be taken has.
fn dedupe<'a>(
    listing: &'a [Listed],
    refused: &'a [Refused],
) -> (Vec<&'a Listed>, Vec<&'a Refused>) {
    let mut seen = HashSet::new();
    let files: Vec<&Listed> = listing
        .iter()
        .filter(|f| seen.insert(f.path.as_str()))
        .collect();
    let refused = refused
        .iter()
        .filter(|x| seen.insert(x.file.path.as_str()))
        .collect();
    (files, refused)
}

/// Keeps `unlisted_since_ms` of the finished latest rows true to this
/// listing: set when their path is missing, cleared when it is back. Only
/// changes are written, so an unchanged directory costs nothing here.
/// Retention prunes a latest row only once its path has been missing that
/// long (`retention.rs`). An empty listing says nothing (it may be a
/// server's hiccup) and is not used.
async fn mark_unlisted(
    tx: &mut sqlx::SqliteConnection,
    latest: &HashMap<&str, &Latest>,
    listed: &HashSet<&str>,
    now: i64,
) -> Result<()> {
    let (mut gone, mut back) = (Vec::new(), Vec::new());
    for r in latest.values().filter(|r| !r.state.is_pending()) {
        match (listed.contains(r.path.as_str()), r.unlisted) {
            (false, false) => gone.push(r.id),
            (true, true) => back.push(r.id),
            _ => {}
        }
    }
    for (ids, at) in [(gone, Some(now)), (back, None)] {
        for slice in ids.chunks(INSERT_SLICE) {
            sqlx::query(
                "UPDATE files SET unlisted_since_ms = ?1 WHERE id IN (SELECT value FROM json_each(?2))",
            )
            .bind(at)
            .bind(serde_json::to_string(slice).expect("ids serialize"))
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

/// Rows (or ids) per statement that carries them as JSON.
pub(super) const INSERT_SLICE: usize = 2000;

/// Inserts the rows of new files with one statement per slice: `seen`, or
/// `failed` with the error given. A first poll of a directory with many
/// files would otherwise spend most of its time handing single inserts to
/// SQLite's thread.
async fn insert_new(
    tx: &mut sqlx::SqliteConnection,
    rule: &str,
    direction: Direction,
    new: &[(&Listed, Option<&str>)],
    now: i64,
) -> Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    // In slices: SQLite parses the whole JSON text of a statement at once.
    for slice in new.chunks(INSERT_SLICE) {
        let rows: Vec<(&str, i64, i64, Option<&str>)> = slice
            .iter()
            .map(|(f, error)| (f.path.as_str(), f.size, f.mtime, *error))
            .collect();
        sqlx::query(
            "INSERT INTO files (rule, path, size, mtime, state, first_seen_ms, stable_since_ms, updated_at_ms, last_error, direction)
             SELECT ?1, value ->> 0, value ->> 1, value ->> 2,
                    CASE WHEN value ->> 3 IS NULL THEN 'seen' ELSE 'failed' END, ?2, ?2, ?2, value ->> 3, ?4
             FROM json_each(?3)",
        )
        .bind(rule)
        .bind(now)
        .bind(serde_json::to_string(&rows).expect("listing serializes"))
        .bind(direction.as_str())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::testing::state;

    fn f(path: &str, size: i64, mtime: i64) -> Listed {
        Listed {
            path: path.into(),
            size,
            mtime,
            date_only: false,
        }
    }

    #[tokio::test]
    async fn new_unchanged_and_changed_files() {
        let (_d, s) = state().await;
        let out = s
            .record_listing("r", &[f("a", 1, 10), f("b", 2, 10)], 1000)
            .await
            .unwrap();
        assert_eq!(out.new.len(), 2);
        let out = s
            .record_listing("r", &[f("a", 1, 10), f("b", 2, 10)], 2000)
            .await
            .unwrap();
        assert!(out.new.is_empty() && out.changed.is_empty());
        let out = s
            .record_listing("r", &[f("a", 5, 11), f("b", 2, 10)], 3000)
            .await
            .unwrap();
        assert_eq!(out.changed, vec![f("a", 5, 11)]);
        assert!(
            out.superseded.is_empty(),
            "a was never started: no partial to remove"
        );
        // The change restarted a's stability window only.
        let due = s.due("r", 3500, 1000, 0).await.unwrap();
        assert_eq!(
            due.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            vec!["b"]
        );
        let due = s.due("r", 4000, 1000, 0).await.unwrap();
        assert_eq!(due.len(), 2);
    }

    #[tokio::test]
    async fn a_listing_that_drops_the_time_of_day_keeps_the_version() {
        let (_d, s) = state().await;
        // 2026-06-02 18:00 local (+02:00); later listed as a bare date.
        let minute = 1_780_416_000;
        let midnight = minute - 16 * 3600;
        s.record_listing("r", &[f("a", 7, minute)], 1000)
            .await
            .unwrap();
        let bare = Listed {
            date_only: true,
            ..f("a", 7, midnight)
        };
        let out = s.record_listing("r", &[bare], 2000).await.unwrap();
        assert!(out.new.is_empty() && out.changed.is_empty(), "{out:?}");
        // The same time listed exactly (local, SFTP, MLSD) is another
        // version; so is an earlier time, or the next day's bare date.
        let next_day = Listed {
            date_only: true,
            ..f("a", 7, midnight + 86_400)
        };
        for l in [f("a", 7, midnight), f("a", 7, minute - 60), next_day] {
            let out = s
                .record_listing("r", std::slice::from_ref(&l), 3000)
                .await
                .unwrap();
            let t = l.mtime;
            assert_eq!(out.changed.len(), 1, "{t}");
            s.record_listing("r", &[f("a", 7, minute)], 4000)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn an_empty_listing_while_files_are_pending_changes_nothing() {
        let (_d, s) = state().await;
        s.record_listing("r", &[f("a", 1, 10)], 1000).await.unwrap();
        let out = s.record_listing("r", &[], 2000).await.unwrap();
        assert!(out.ignored_empty);
        assert_eq!(s.due("r", 5000, 0, 0).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_delivered_file_that_changes_is_a_new_version() {
        let (_d, s) = state().await;
        s.record_listing("r", &[f("a", 1, 10)], 1000).await.unwrap();
        let id = s.due("r", 1000, 0, 0).await.unwrap()[0].id;
        s.claim(id, 1000).await.unwrap();
        s.mark_downloaded(id, 1, "/x/a", None, 1000).await.unwrap();
        s.mark_delivered(id, "/x/a", false, 1000).await.unwrap();
        s.mark_done(id, 1000).await.unwrap();
        let out = s.record_listing("r", &[f("a", 1, 10)], 2000).await.unwrap();
        assert!(
            out.new.is_empty(),
            "an unchanged delivered file is never new again"
        );
        let out = s.record_listing("r", &[f("a", 2, 10)], 3000).await.unwrap();
        assert_eq!(out.new, vec![f("a", 2, 10)]);
        // And a revert to the first version is new again too.
        let due = s.due("r", 3000, 0, 0).await.unwrap();
        s.claim(due[0].id, 3000).await.unwrap();
        s.mark_failed(due[0].id, "x", None, 3000).await.unwrap();
        let out = s.record_listing("r", &[f("a", 1, 10)], 4000).await.unwrap();
        assert_eq!(out.new.len(), 1);
    }

    #[tokio::test]
    async fn vanished_files_are_dropped_or_failed() {
        let (_d, s) = state().await;
        s.record_listing("r", &[f("a", 1, 10), f("b", 1, 10), f("c", 1, 10)], 1000)
            .await
            .unwrap();
        let b = s
            .due("r", 1000, 0, 0)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.path == "b")
            .unwrap();
        s.claim(b.id, 1000).await.unwrap();
        let out = s.record_listing("r", &[f("c", 1, 10)], 2000).await.unwrap();
        assert_eq!(out.vanished, vec!["b".to_string()]);
        assert_eq!(out.superseded.len(), 1, "b's partial download can go");
        assert_eq!(out.superseded[0].id, b.id);
        let failed = s
            .files(&super::super::FileFilter {
                state: Some(FileState::Failed),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].last_error.as_deref(), Some(VANISHED));
        let all = s.files(&Default::default()).await.unwrap();
        assert_eq!(all.len(), 2, "a was never started and is simply forgotten");
    }

    #[tokio::test]
    async fn bulk_inserted_paths_survive_exactly() {
        let (_d, s) = state().await;
        let odd = [
            "a \"quoted\" name",
            "back\\slash",
            "dir/é ü ø.csv",
            "-leading dash",
            "tab\there",
            "emoji 📦",
        ];
        let listing: Vec<Listed> = odd.iter().map(|p| f(p, 7, 99)).collect();
        let out = s.record_listing("r", &listing, 1000).await.unwrap();
        assert_eq!(out.new.len(), odd.len());
        let rows = s.files(&crate::state::FileFilter::default()).await.unwrap();
        let mut got: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
        let mut want = odd.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert!(
            rows.iter()
                .all(|r| r.size == 7 && r.mtime == 99 && r.first_seen_ms == 1000)
        );
        // The same listing again changes nothing.
        let out = s.record_listing("r", &listing, 2000).await.unwrap();
        assert!(out.new.is_empty() && out.changed.is_empty());
    }

    #[tokio::test]
    async fn a_path_listed_twice_is_one_row() {
        let (_d, s) = state().await;
        let twice = [f("a", 1, 10), f("b", 2, 10), f("a", 1, 10)];
        let out = s.record_listing("r", &twice, 1000).await.unwrap();
        assert_eq!(out.new, vec![f("a", 1, 10), f("b", 2, 10)]);
        assert_eq!(s.files(&Default::default()).await.unwrap().len(), 2);
        // Repeated with another version: the first one listed counts.
        let out = s
            .record_listing("r", &[f("a", 1, 10), f("a", 9, 11)], 2000)
            .await
            .unwrap();
        assert!(out.new.is_empty() && out.changed.is_empty());
    }

    #[tokio::test]
    async fn refused_files_fail_once_per_version() {
        let (_d, s) = state().await;
        let bad = |size| Refused {
            file: f("bad\\xff.csv", size, 10),
            error: crate::remote::NOT_UTF8.into(),
        };
        for now in [1000, 2000, 3000] {
            let out = s
                .record_listing_with("r", &[f("a", 1, 10)], &[bad(3)], now)
                .await
                .unwrap();
            assert_eq!(out.refused.len(), usize::from(now == 1000), "at {now}");
        }
        let rows = s.files(&Default::default()).await.unwrap();
        let failed: Vec<_> = rows
            .iter()
            .filter(|r| r.state == FileState::Failed)
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].path, "bad\\xff.csv");
        assert_eq!(
            failed[0].last_error.as_deref(),
            Some(crate::remote::NOT_UTF8)
        );
        assert!(
            s.due("r", 9000, 0, 0)
                .await
                .unwrap()
                .iter()
                .all(|r| r.path == "a"),
            "a refused file is never due"
        );
        // A new version of it is recorded once more; a file that can be
        // taken wins over a refused one of the same path.
        let out = s
            .record_listing_with("r", &[], &[bad(4)], 4000)
            .await
            .unwrap();
        assert_eq!(out.refused.len(), 1);
        let out = s
            .record_listing_with("r", &[f("bad\\xff.csv", 5, 10)], &[bad(5)], 5000)
            .await
            .unwrap();
        assert!(out.refused.is_empty());
        assert_eq!(out.new.len(), 1);
    }

    #[tokio::test]
    async fn unknown_sizes_are_stored_as_minus_one() {
        let (_d, s) = state().await;
        let unknown = [f("u", super::super::size_to_db(None), 10)];
        s.record_listing("r", &unknown, 1000).await.unwrap();
        let out = s.record_listing("r", &unknown, 2000).await.unwrap();
        assert!(out.new.is_empty() && out.changed.is_empty(), "same version");
        let row = &s.due("r", 3000, 0, 0).await.unwrap()[0];
        assert_eq!((row.size, row.version().size), (-1, None));
    }
}
