//! The digests of a recorded listing, kept in the rule's row: one per
//! chunk of the listing as it streamed in (`diff.rs`), with its number of
//! files. A chunk whose digest
//! the last recorded listing also had is recognised as unchanged without
//! reading a single file row, and a listing that has every chunk of the
//! last one has lost no file.
//!
//! Diffing a listing against the rows is a function of the two. The
//! listing records itself, so repeating the same listing against the
//! rows it left changes nothing; the engine's own steps (claim, download,
//! deliver, fail) keep each row's version and only ever take rows out of
//! the pending states, which a repeat would not act on either. What
//! else could change the diff's answer clears the digest, by triggers
//! (migration 0007), whoever writes: a row deleted (`ferry forget`,
//! retention, a dropped file), a finished row made pending again (`ferry
//! retry`, a restarted download), a file moved back from
//! `failed_move_to`, a version or path edited by hand.
//!
//! A chunk is sorted by path and hashed with SHA-256, so the order a
//! server lists in does not matter within it, and names a partner chooses
//! cannot be made to collide (an order-free sum of per-entry hashes can
//! be).

use super::{Direction, Listed, Refused};

/// The SHA-256 of one chunk.
pub(super) type Digest = [u8; 32];

/// SHA-256 of a deduplicated chunk of one rule's listing.
pub(super) fn of_listing(
    direction: Direction,
    listing: &[&Listed],
    refused: &[&Refused],
) -> Digest {
    let mut entries: Vec<(&Listed, Option<&str>)> = listing
        .iter()
        .map(|f| (*f, None))
        .chain(refused.iter().map(|x| (&x.file, Some(x.error.as_str()))))
        .collect();
    entries.sort_unstable_by(|a, b| a.0.path.cmp(&b.0.path));
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(direction.as_str().as_bytes());
    for (f, error) in entries {
        // Lengths first: no two different lists hash the same bytes.
        ctx.update(&(f.path.len() as u64).to_le_bytes());
        ctx.update(f.path.as_bytes());
        ctx.update(&f.size.to_le_bytes());
        ctx.update(&f.mtime.to_le_bytes());
        ctx.update(&[u8::from(f.date_only)]);
        match error {
            None => ctx.update(&[0]),
            Some(e) => {
                ctx.update(&[1]);
                ctx.update(&(e.len() as u64).to_le_bytes());
                ctx.update(e.as_bytes());
            }
        }
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// A chunk as stored: its digest and how many files it holds.
pub(super) type Chunk = (Digest, u32);

/// Bytes a stored chunk takes: the digest, then the count (little-endian).
const STORED: usize = 36;

/// The chunks of a listing as stored: sorted, back to back.
pub(super) fn encode(chunks: &[Chunk]) -> Vec<u8> {
    let mut sorted = chunks.to_vec();
    sorted.sort_unstable();
    let mut out = Vec::with_capacity(sorted.len() * STORED);
    for (digest, count) in sorted {
        out.extend_from_slice(&digest);
        out.extend_from_slice(&count.to_le_bytes());
    }
    out
}

/// Stored chunks, sorted; `None` for anything else (a listing's token, a
/// digest of an older version): the next listing is compared in full.
pub(super) fn decode(stored: &[u8]) -> Option<Vec<Chunk>> {
    if !stored.len().is_multiple_of(STORED) {
        return None;
    }
    let mut out: Vec<Chunk> = stored
        .chunks_exact(STORED)
        .map(|c| {
            let digest = c[..32].try_into().expect("32 bytes");
            let count = u32::from_le_bytes(c[32..].try_into().expect("4 bytes"));
            (digest, count)
        })
        .collect();
    out.sort_unstable();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::testing::f;

    fn digest(files: &[Listed]) -> Digest {
        let refs: Vec<&Listed> = files.iter().collect();
        of_listing(Direction::Listen, &refs, &[])
    }

    #[test]
    fn the_order_of_a_listing_does_not_matter() {
        let a = [f("a", 1), f("b", 2), f("c/d", 3)];
        let b = [f("c/d", 3), f("a", 1), f("b", 2)];
        assert_eq!(digest(&a), digest(&b));
    }

    #[test]
    fn every_field_counts() {
        let base = digest(&[f("a", 1), f("b", 2)]);
        let mtime = Listed {
            mtime: 11,
            ..f("b", 2)
        };
        let date_only = Listed {
            date_only: true,
            ..f("b", 2)
        };
        for other in [
            vec![f("a", 1)],
            vec![f("a", 1), f("b", 3)],
            vec![f("a", 1), mtime],
            vec![f("a", 1), date_only],
            vec![f("a", 1), f("bb", 2)],
            vec![f("a", 1), f("b", 2), f("c", 0)],
        ] {
            assert_ne!(digest(&other), base, "{other:?}");
        }
        let listing = [f("a", 1)];
        let refs: Vec<&Listed> = listing.iter().collect();
        assert_ne!(
            of_listing(Direction::Send, &refs, &[]),
            of_listing(Direction::Listen, &refs, &[])
        );
        let refused = Refused {
            file: f("b", 2),
            error: "bad".into(),
        };
        assert_ne!(
            of_listing(Direction::Listen, &refs, &[&refused]),
            digest(&[f("a", 1), f("b", 2)]),
            "a refused file is not a file that can be taken"
        );
    }

    #[test]
    fn stored_chunks_come_back_sorted() {
        let (a, b) = (
            (digest(&[f("a", 1)]), 1),
            (digest(&[f("b", 1), f("c", 1)]), 2),
        );
        let stored = encode(&[b, a]);
        let mut want = vec![a, b];
        want.sort_unstable();
        assert_eq!(decode(&stored), Some(want));
        assert_eq!(decode(&[]), Some(vec![]));
        assert_eq!(decode(&stored[..40]), None);
        assert_eq!(decode(&a.0), None, "a digest of the version before");
    }

    #[test]
    fn names_cannot_run_into_each_other() {
        assert_ne!(
            digest(&[f("ab", 1), f("c", 1)]),
            digest(&[f("a", 1), f("bc", 1)])
        );
    }

    use crate::state::{FileFilter, FileState, State};

    impl State {
        async fn digest_of(&self, rule: &str) -> Option<Vec<u8>> {
            on_backend!(self, db => db.listing_digest(rule).await).unwrap()
        }

        /// Lists `files` twice: the second time is recognised by its digest.
        async fn list_twice(&self, files: &[Listed], now: i64) {
            self.record_listing("r", files, now).await.unwrap();
            let out = self.record_listing("r", files, now + 1).await.unwrap();
            assert!(out.new.is_empty() && out.changed.is_empty() && out.vanished.is_empty());
            assert!(self.digest_of("r").await.is_some(), "digest stored");
        }

        async fn id_of(&self, path: &str) -> i64 {
            let f = FileFilter {
                path: Some(path.into()),
                ..Default::default()
            };
            self.files(&f).await.unwrap().last().unwrap().id
        }

        async fn deliver(&self, id: i64, now: i64) {
            self.claim(id, now).await.unwrap();
            self.mark_downloaded(id, 1, "/x", None, now).await.unwrap();
            self.mark_delivered(id, "/x", false, now).await.unwrap();
            self.mark_done(id, now).await.unwrap();
        }
    }

    state_test!(
        the_same_listing_again_is_recognised_and_changes_nothing,
        |s| {
            let files = [f("a", 1), f("b", 2)];
            s.list_twice(&files, 1000).await;
            let before = s.files(&Default::default()).await.unwrap();
            let out = s.record_listing("r", &files, 3000).await.unwrap();
            assert!(out.new.is_empty() && !out.ignored_empty);
            let after = s.files(&Default::default()).await.unwrap();
            assert_eq!(before.len(), after.len());
            // Steps of the pipeline keep the digest: they change no version.
            s.deliver(s.id_of("a").await, 4000).await;
            assert!(s.digest_of("r").await.is_some());
            // Another listing is diffed, and its digest replaces the last.
            let last = s.digest_of("r").await;
            let out = s
                .record_listing("r", &[f("a", 1), f("b", 2), f("c", 3)], 5000)
                .await
                .unwrap();
            assert_eq!(out.new, vec![f("c", 3)]);
            assert!(s.digest_of("r").await.is_some_and(|d| Some(d) != last));
        }
    );

    state_test!(forgetting_a_row_clears_the_digest, |s| {
        s.list_twice(&[f("a", 1)], 1000).await;
        s.deliver(s.id_of("a").await, 2000).await;
        s.forget(&FileFilter::default()).await.unwrap();
        assert_eq!(s.digest_of("r").await, None);
        let out = s.record_listing("r", &[f("a", 1)], 3000).await.unwrap();
        assert_eq!(out.new, vec![f("a", 1)], "a forgotten file is new again");
    });

    state_test!(forgetting_the_newest_version_hands_latest_back, |s| {
        s.record_listing("r", &[f("a", 1)], 1000).await.unwrap();
        s.deliver(s.id_of("a").await, 1500).await;
        let out = s.record_listing("r", &[f("a", 2)], 2000).await.unwrap();
        assert_eq!(out.new, vec![f("a", 2)]);
        let newest = FileFilter {
            id: Some(s.id_of("a").await),
            ..Default::default()
        };
        assert_eq!(s.forget(&newest).await.unwrap(), 1);
        let out = s.record_listing("r", &[f("a", 1)], 3000).await.unwrap();
        assert!(out.new.is_empty(), "the version before is the latest again");
        let out = s.record_listing("r", &[f("a", 2)], 4000).await.unwrap();
        assert_eq!(out.new, vec![f("a", 2)]);
    });

    state_test!(a_retried_file_that_is_gone_is_dropped_again, |s| {
        s.record_listing("r", &[f("a", 1), f("b", 1)], 1000)
            .await
            .unwrap();
        let b = s.id_of("b").await;
        s.claim(b, 1000).await.unwrap();
        s.mark_failed(b, "no", None, 1000).await.unwrap();
        s.list_twice(&[f("a", 1)], 2000).await;
        assert_eq!(s.retry(&FileFilter::default(), 3000).await.unwrap(), 1);
        assert_eq!(s.digest_of("r").await, None, "pending again");
        s.record_listing("r", &[f("a", 1)], 4000).await.unwrap();
        let b_rows = s
            .files(&FileFilter {
                id: Some(b),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            b_rows.is_empty(),
            "b, never started since, is dropped: {b_rows:?}"
        );
    });

    state_test!(a_file_moved_back_for_a_retry_is_diffed_again, |s| {
        s.record_listing("r", &[f("a", 1), f("b", 1)], 1000)
            .await
            .unwrap();
        let b = s.id_of("b").await;
        s.claim(b, 1000).await.unwrap();
        s.mark_failed(b, "no", Some("/failed/b"), 1000)
            .await
            .unwrap();
        s.retry(&FileFilter::default(), 1500).await.unwrap();
        // On its way back: not taken for gone.
        s.list_twice(&[f("a", 1)], 2000).await;
        assert_eq!(s.to_restore("r").await.unwrap().len(), 1);
        // It was not in failed_move_to any more: the listing decides.
        s.restored(b, 3000).await.unwrap();
        assert_eq!(s.digest_of("r").await, None);
        s.record_listing("r", &[f("a", 1)], 4000).await.unwrap();
        let b_rows = s
            .files(&FileFilter {
                id: Some(b),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(b_rows.is_empty(), "{b_rows:?}");
    });

    state_test!(a_download_started_over_is_diffed_again, |s| {
        s.record_listing("r", &[f("a", 1), f("b", 1)], 1000)
            .await
            .unwrap();
        let b = s.id_of("b").await;
        s.claim(b, 1000).await.unwrap();
        s.mark_downloaded(b, 1, "/x/b", None, 1000).await.unwrap();
        s.list_twice(&[f("a", 1)], 2000).await;
        s.restart_download(b, 3000).await.unwrap();
        assert_eq!(s.digest_of("r").await, None);
        let out = s.record_listing("r", &[f("a", 1)], 4000).await.unwrap();
        assert_eq!(out.vanished, vec!["b".to_string()]);
    });

    state_test!(retention_clears_the_digest_when_it_deletes, |s| {
        s.record_listing("r", &[f("a", 1)], 1000).await.unwrap();
        s.deliver(s.id_of("a").await, 1000).await;
        s.list_twice(&[f("b", 1)], 2000).await;
        assert_eq!(s.prune(1500).await.unwrap(), 0, "a missed for too short");
        assert!(s.digest_of("r").await.is_some());
        assert_eq!(s.prune(i64::MAX).await.unwrap(), 1);
        assert_eq!(s.digest_of("r").await, None);
    });

    state_test!(
        a_vanished_file_is_marked_unlisted_by_the_same_listing,
        |s| {
            s.record_listing("r", &[f("a", 1), f("b", 1)], 1000)
                .await
                .unwrap();
            let b = s.id_of("b").await;
            s.claim(b, 1000).await.unwrap();
            let out = s.record_listing("r", &[f("a", 1)], 2000).await.unwrap();
            assert_eq!(out.vanished, vec!["b".to_string()]);
            let row = &s
                .files(&FileFilter {
                    id: Some(b),
                    ..Default::default()
                })
                .await
                .unwrap()[0];
            assert_eq!(row.state, FileState::Failed);
            // So the same listing again has nothing left to change.
            assert!(s.digest_of("r").await.is_some());
        }
    );
}
