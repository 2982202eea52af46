//! Diffing a listing against the database, and picking the files that
//! are due for work. What a listing changes is decided here, once, by
//! [`plan_chunk`] for each chunk of it and [`plan_gone`] for the files it
//! no longer shows; each backend reads the rows and writes the plan, a
//! transaction a chunk (`diff.rs` streams the listing through them).

use super::{Direction, FileRow, FileState, Result, State};
use std::collections::HashMap;

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
    /// Changed or gone while another node works on their row (its lease
    /// runs): left to that node, and looked at again by the next listing.
    pub deferred: Vec<String>,
    /// The rule's rows were read to find files gone from the listing
    /// (`diff.rs` says when that is needed).
    pub looked_for_gone: bool,
}

#[derive(Debug, Clone)]
pub struct Superseded {
    pub id: i64,
    pub path: String,
    pub size: i64,
    pub mtime: i64,
}

/// A row of the rule as a listing is compared against it. Backends read
/// these columns: `restoring` is `failed_moved_to IS NOT NULL`, `unlisted`
/// is `unlisted_since_ms IS NOT NULL`, `elsewhere` is a lease of another
/// node that has not run out (`lease_until_ms > now AND owner <> node`).
#[derive(sqlx::FromRow)]
pub(super) struct Latest {
    id: i64,
    path: String,
    size: i64,
    mtime: i64,
    #[sqlx(try_from = "String")]
    state: FileState,
    attempts: i64,
    restoring: bool,
    unlisted: bool,
    elsewhere: bool,
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

/// When a row is due: the poll's clock and the rule's windows.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    pub now: i64,
    pub stable_for_ms: i64,
    pub min_age_ms: i64,
}

/// Why a started file's row failed when its file left the listing.
pub(super) const VANISHED: &str = "disappeared from the server before it was delivered";

/// The writes one listing needs, for a backend to apply in one
/// transaction, and what to tell the caller.
#[derive(Default)]
pub(super) struct Plan {
    pub outcome: ListingOutcome,
    /// Pending rows whose file changed: the new version, with a fresh
    /// stability window and no attempts.
    pub changed: Vec<(i64, Listed)>,
    /// Pending rows never started whose file is gone: deleted.
    pub dropped: Vec<i64>,
    /// Started rows whose file is gone: failed with [`VANISHED`].
    pub vanished: Vec<i64>,
    /// Finished latest rows whose path the listing misses (`unlisted_since_ms` set).
    pub unlisted: Vec<i64>,
    /// Finished latest rows whose path is listed again (mark cleared).
    pub relisted: Vec<i64>,
    /// Rows found for the chunk's paths that are surely files the last
    /// complete listing showed: pending (not on their way back from
    /// `failed_move_to`, not another node's), or finished and not marked
    /// unlisted. Counted low rather than high: one too few only makes the
    /// listing look for gone files it did not need to (`diff.rs`).
    pub survivors: u64,
}

impl Plan {
    /// Whether applying the plan writes anything.
    pub fn writes(&self) -> bool {
        !(self.changed.is_empty()
            && self.outcome.new.is_empty()
            && self.outcome.refused.is_empty()
            && self.dropped.is_empty()
            && self.vanished.is_empty()
            && self.unlisted.is_empty()
            && self.relisted.is_empty())
    }

    /// New rows: `seen` (new files), or `failed` with the error given
    /// (refused files), borrowed from the outcome rather than copied.
    pub fn insert(&self) -> impl Iterator<Item = (&Listed, Option<&str>)> {
        let new = self.outcome.new.iter().map(|f| (f, None));
        let refused = self.outcome.refused.iter();
        new.chain(refused.map(|x| (&x.file, Some(x.error.as_str()))))
    }
}

/// Decides what one chunk of a listing (deduplicated) changes, given the
/// latest row of each of its paths that has one (`latest = 1`; the versions
/// they replaced are history, never read here). Files gone from the
/// listing are decided once it is complete, by [`plan_gone`].
pub(super) fn plan_chunk(rows: &[Latest], listing: &[&Listed], refused: &[&Refused]) -> Plan {
    let latest: HashMap<&str, &Latest> = rows.iter().map(|r| (r.path.as_str(), r)).collect();
    let mut plan = Plan {
        survivors: rows
            .iter()
            .filter(|r| {
                if r.state.is_pending() {
                    !r.restoring && !r.elsewhere
                } else {
                    !r.unlisted
                }
            })
            .count() as u64,
        ..Plan::default()
    };
    let out = &mut plan.outcome;
    for &f in listing {
        let row = latest.get(f.path.as_str());
        // Finished and listed again: the retention clock stops.
        if let Some(r) = row.filter(|r| !r.state.is_pending() && r.unlisted) {
            plan.relisted.push(r.id);
        }
        match row {
            Some(r) if r.is_version(f) => {}
            // Another node is working on this row's version: changing it
            // under that node would have it finish the row, as done, with
            // the old bytes, and the new version would never be fetched.
            // Left to it; the next listing sees the file again.
            Some(r) if r.state.is_pending() && r.elsewhere => {
                out.deferred.push(r.path.clone());
            }
            Some(r) if r.state.is_pending() => {
                if r.attempts > 0 {
                    out.superseded.push(r.superseded());
                }
                plan.changed.push((r.id, f.clone()));
                out.changed.push(f.clone());
            }
            _ => out.new.push(f.clone()),
        }
    }
    for &x in refused {
        let row = latest.get(x.file.path.as_str());
        if let Some(r) = row.filter(|r| !r.state.is_pending() && r.unlisted) {
            plan.relisted.push(r.id);
        }
        match row {
            Some(r) if r.is_version(&x.file) => {}
            _ => out.refused.push(x.clone()),
        }
    }
    plan
}

/// What a complete listing changes about the rows streaming past that it
/// did not show ([`plan_gone`] for each); only the plan is kept.
pub(super) async fn plan_gone_rows<S>(
    mut rows: S,
    saw: &(dyn Fn(&str) -> bool + Sync),
    listed_any: bool,
) -> Result<Plan>
where
    S: futures::Stream<Item = std::result::Result<Latest, sqlx::Error>> + Unpin,
{
    use futures::TryStreamExt;
    let mut plan = Plan::default();
    while let Some(r) = rows.try_next().await? {
        if !saw(&r.path) {
            plan_gone(&mut plan, &r, listed_any);
        }
    }
    Ok(plan)
}

/// Adds to `plan` what a complete listing that misses `r`'s path changes
/// about it: a pending row is dropped (never started), failed as vanished
/// (started) or left to the node working on it; a finished one is marked
/// unlisted, unless the listing was empty: that may be a server's hiccup
/// and says nothing. Retention prunes a latest row only once its path has
/// been missing that long (`retention.rs`). A requeued file on its way
/// back from failed_move_to is not gone.
pub(super) fn plan_gone(plan: &mut Plan, r: &Latest, listed_any: bool) {
    let out = &mut plan.outcome;
    if !r.state.is_pending() {
        if listed_any && !r.unlisted {
            plan.unlisted.push(r.id);
        }
    } else if r.restoring {
    } else if r.elsewhere {
        out.deferred.push(r.path.clone());
    } else if r.attempts == 0 {
        plan.dropped.push(r.id);
    } else {
        plan.vanished.push(r.id);
        out.vanished.push(r.path.clone());
        out.superseded.push(r.superseded());
    }
}

/// Rows (or ids) per statement that carries many of them.
pub(super) const SLICE: usize = 2000;

impl State {
    /// Records a complete listing of a rule: new paths and new versions get a
    /// `seen` row, pending rows whose file changed restart their stability
    /// window, pending rows whose file is gone are dropped (never started) or
    /// failed (started). Only the needed reads and writes (`diff.rs`), so an
    /// unchanged directory costs a single query.
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
    /// rows carry it. The whole listing at once, through a [`ListingDiff`]
    /// (a poll streams its listing into one instead).
    ///
    /// [`ListingDiff`]: super::ListingDiff
    pub async fn record_listing_in(
        &self,
        rule: &str,
        direction: Direction,
        listing: &[Listed],
        refused: &[Refused],
        now: i64,
    ) -> Result<ListingOutcome> {
        let mut diff = self.diff_listing(rule, direction, now).await?;
        let mut out = ListingOutcome::default();
        for f in listing {
            if let Some(chunk) = diff.push(f.clone()).await? {
                out.absorb(chunk);
            }
        }
        for x in refused {
            diff.refuse(x.clone());
        }
        out.absorb(diff.finish().await?);
        Ok(out)
    }

    /// Rows of `rule` that have work to do now: pending rows past their
    /// stability window and min_age, and rows a crash or stop left half-way
    /// (downloading, downloaded, delivered), in each case once any retry delay
    /// has passed. All of them at once: for tests and small callers; a poll
    /// takes them in chunks ([`State::due_after`]).
    pub async fn due(
        &self,
        rule: &str,
        now: i64,
        stable_for_ms: i64,
        min_age_ms: i64,
    ) -> Result<Vec<FileRow>> {
        let all = Due {
            now,
            stable_for_ms,
            min_age_ms,
        };
        self.due_after(rule, &all, 0, usize::MAX).await
    }

    /// At most `limit` of the rows [`State::due`] returns, those with an id
    /// above `after`, in id order. A poll pages through them by the last id
    /// it got, so it never holds more than one chunk of rows, and a row left
    /// due (held, waiting for its marker, abandoned at a stop) is not
    /// fetched twice in one poll.
    pub async fn due_after(
        &self,
        rule: &str,
        due: &Due,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FileRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_backend!(self, db => db.due_after(rule, due, after, limit).await)
    }

    /// Marks `seen` rows as having passed the stability gate.
    pub async fn mark_stable(&self, ids: &[i64], now: i64) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        on_backend!(self, db => db.mark_stable(ids, now).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, size: i64, mtime: i64) -> Listed {
        Listed {
            path: path.into(),
            size,
            mtime,
            date_only: false,
        }
    }

    state_test!(new_unchanged_and_changed_files, |s| {
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
    });

    state_test!(a_changed_file_forgets_the_old_versions_digest, |s| {
        s.record_listing("r", &[f("a", 1, 10)], 1000).await.unwrap();
        let all = crate::state::FileFilter::default();
        let id = s.files(&all).await.unwrap()[0].id;
        s.claim(id, 2000).await.unwrap();
        let old = "ab".repeat(32);
        s.mark_downloaded_with(id, 1, "/o/a", None, Some(&old), 3000)
            .await
            .unwrap();
        assert_eq!(s.files(&all).await.unwrap()[0].sha256, Some(old));
        // Sent back to fetch (or send) it again, as when its temporary
        // file was lost, and the file changed before the retry: the
        // digest was the old bytes'.
        s.restart_download(id, 3000).await.unwrap();
        s.schedule_retry(id, "temporary file lost", 3500, 0, 3000)
            .await
            .unwrap();
        let out = s.record_listing("r", &[f("a", 5, 11)], 4000).await.unwrap();
        assert_eq!(out.changed, vec![f("a", 5, 11)]);
        let rows = s.files(&all).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].sha256, None);
    });

    state_test!(due_rows_come_in_chunks_after_the_last_id, |s| {
        let listing: Vec<Listed> = (0..10).map(|i| f(&format!("p{i}"), 1, 10)).collect();
        s.record_listing("r", &listing, 1000).await.unwrap();
        // One row not yet stable, which no chunk returns.
        let more = [listing.clone(), vec![f("late", 1, 10)]].concat();
        s.record_listing("r", &more, 1900).await.unwrap();
        let due = Due {
            now: 2000,
            stable_for_ms: 500,
            min_age_ms: 0,
        };
        let (mut after, mut seen) = (0, Vec::new());
        loop {
            let chunk = s.due_after("r", &due, after, 4).await.unwrap();
            assert!(chunk.len() <= 4);
            let Some(last) = chunk.last() else { break };
            after = last.id;
            seen.extend(chunk.into_iter().map(|r| r.path));
        }
        let want: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
        assert_eq!(seen, want, "each due row once, in id order");
        assert_eq!(s.due("r", 2000, 500, 0).await.unwrap().len(), 10);
    });

    state_test!(only_the_latest_version_of_a_path_is_compared, |s| {
        let done = |s: State, now: i64| async move {
            for r in s.due("r", now, 0, 0).await.unwrap() {
                s.claim(r.id, now).await.unwrap();
                s.mark_delivered(r.id, "/x/a", false, now).await.unwrap();
                s.mark_done(r.id, now).await.unwrap();
            }
        };
        s.record_listing("r", &[f("a", 1, 10)], 1000).await.unwrap();
        done(s.clone(), 1000).await;
        let out = s.record_listing("r", &[f("a", 2, 20)], 2000).await.unwrap();
        assert_eq!(out.new.len(), 1);
        done(s.clone(), 2000).await;
        // Forgetting the latest version makes the one before it the latest.
        let v2 = s.files(&Default::default()).await.unwrap()[1].id;
        let only_v2 = crate::state::FileFilter {
            id: Some(v2),
            ..Default::default()
        };
        assert_eq!(s.forget(&only_v2).await.unwrap(), 1);
        let out = s.record_listing("r", &[f("a", 1, 10)], 3000).await.unwrap();
        assert!(out.new.is_empty(), "v1 is the latest again: {out:?}");
        let out = s.record_listing("r", &[f("a", 2, 20)], 4000).await.unwrap();
        assert_eq!(out.new, vec![f("a", 2, 20)]);
    });

    state_test!(
        a_listing_that_drops_the_time_of_day_keeps_the_version,
        |s| {
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
    );

    state_test!(
        an_empty_listing_while_files_are_pending_changes_nothing,
        |s| {
            s.record_listing("r", &[f("a", 1, 10)], 1000).await.unwrap();
            let out = s.record_listing("r", &[], 2000).await.unwrap();
            assert!(out.ignored_empty);
            assert_eq!(s.due("r", 5000, 0, 0).await.unwrap().len(), 1);
        }
    );

    state_test!(a_delivered_file_that_changes_is_a_new_version, |s| {
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
    });

    state_test!(vanished_files_are_dropped_or_failed, |s| {
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
            .files(&crate::state::FileFilter {
                state: Some(FileState::Failed),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].last_error.as_deref(), Some(VANISHED));
        let all = s.files(&Default::default()).await.unwrap();
        assert_eq!(all.len(), 2, "a was never started and is simply forgotten");
    });

    state_test!(bulk_inserted_paths_survive_exactly, |s| {
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
    });

    state_test!(a_path_listed_twice_is_one_row, |s| {
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
    });

    state_test!(refused_files_fail_once_per_version, |s| {
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
    });

    state_test!(unknown_sizes_are_stored_as_minus_one, |s| {
        let unknown = [f("u", crate::state::size_to_db(None), 10)];
        s.record_listing("r", &unknown, 1000).await.unwrap();
        let out = s.record_listing("r", &unknown, 2000).await.unwrap();
        assert!(out.new.is_empty() && out.changed.is_empty(), "same version");
        let row = &s.due("r", 3000, 0, 0).await.unwrap()[0];
        assert_eq!((row.size, row.version().size), (-1, None));
    });

    /// Two nodes record the same rule's listing at the same moment: the
    /// rule's row lock makes them take turns, so each new file gets one
    /// row, never one per node.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_listing_one_rule_insert_each_file_once() {
        let (a, b) = crate::state::testing::postgres_twice().await;
        // The rule's row exists already, as it does after a first poll.
        a.record_listing("r", &[], 500).await.unwrap();
        let mut listing = Vec::new();
        let mut new = 0;
        for round in 0..4 {
            listing.extend((0..100).map(|i| f(&format!("f{round}-{i}"), 1, 10)));
            let now = 1000 + round;
            let (x, y) = tokio::join!(
                a.record_listing("r", &listing, now),
                b.record_listing("r", &listing, now)
            );
            new += x.unwrap().new.len() + y.unwrap().new.len();
        }
        assert_eq!(new, 400);
        assert_eq!(a.files(&Default::default()).await.unwrap().len(), 400);
    }
}
