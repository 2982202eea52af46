//! A listing diffed as it streams in, in bounded chunks, so that a
//! directory of a million files is never held whole, neither as the
//! listing nor as its rows.
//!
//! The listing is cut into chunks where a path's fixed hash says so
//! (content-defined: a file added or removed changes the chunk it falls
//! in, the chunks around it stay the same). Each chunk is compared with
//! the latest rows of its own paths, looked up by key, unless the last
//! recorded listing had a chunk with the same digest (`digest.rs`): then
//! nothing in it changed, and no row is read. What left the listing is
//! found once it is complete, from the paths it showed, kept as 128-bit
//! keyed hashes (16 bytes a path); and only when something can have left.
//! The last listing's files that are still listed are those of its chunks
//! found again, and those of its other chunks that the compared chunks
//! found rows for: when these add up to all of its files, nothing left.
//!
//! The stored digests are trusted only while no one else wrote in
//! between: each write of this listing leaves a token of its own in their
//! place, which anything else that changes a row clears (the triggers of
//! migration 0007), and the digests of this listing are stored only over
//! the token or the digests it started from.

use super::digest::{self, Chunk};
use super::{Direction, Listed, ListingOutcome, Refused, Result, State};
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

/// Where a listing is cut: after at least `min` files, at a path whose
/// fixed hash has the bits of `mask` clear, and at `max` files at the
/// latest, so that no choice of names makes a chunk unbounded.
#[derive(Debug, Clone, Copy)]
pub struct Chunking {
    pub min: usize,
    pub mask: u64,
    pub max: usize,
}

impl Chunking {
    /// About 2,300 files a chunk: one lookup statement's worth, and a
    /// hundred chunks' digests (3 KiB) for 250,000 files.
    pub const DEFAULT: Self = Self {
        min: 256,
        mask: 2047,
        max: 8192,
    };

    fn cuts_after(&self, path: &str, len: usize) -> bool {
        len >= self.max || (len >= self.min && fixed_hash(path) & self.mask == 0)
    }
}

/// The same for a path in every run of the same build, so that the chunks
/// of an unchanged directory are the same after a restart. (SipHash with
/// zero keys; a Rust release that changed it would cost one full compare.)
fn fixed_hash(path: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// The paths a listing showed, as two keyed 64-bit hashes: names a partner
/// chooses cannot be made to collide without the keys, and two paths
/// colliding by chance among a million is a 1-in-10^26 event.
struct Seen {
    keys: (RandomState, RandomState),
    set: HashSet<u128>,
}

impl Seen {
    fn new() -> Self {
        Self {
            keys: (RandomState::new(), RandomState::new()),
            set: HashSet::new(),
        }
    }

    fn key(&self, path: &str) -> u128 {
        (u128::from(self.keys.0.hash_one(path)) << 64) | u128::from(self.keys.1.hash_one(path))
    }

    fn insert(&mut self, path: &str) -> bool {
        let key = self.key(path);
        self.set.insert(key)
    }

    fn contains(&self, path: &str) -> bool {
        self.set.contains(&self.key(path))
    }
}

/// What a backend needs to trust the stored digests while it writes: what
/// it should find stored, and the token to leave once it wrote.
pub(super) struct Expect<'a> {
    pub stored: Option<&'a [u8]>,
    pub token: &'a [u8],
}

/// What a backend did with one chunk, or with the files gone.
pub(super) struct Compared {
    pub outcome: ListingOutcome,
    /// The stored digests were as expected when it started.
    pub intact: bool,
    /// Rows found for the chunk's paths that the last complete listing
    /// showed ([`super::listing::Plan::survivors`]).
    pub survivors: u64,
    /// It wrote, and left the token in the digests' place.
    pub wrote: bool,
}

/// One listing being recorded: files go in with [`ListingDiff::push`],
/// which compares a chunk each time one is full, and
/// [`ListingDiff::finish`] decides what is gone once the listing is
/// complete. A listing that fails half-way is simply dropped: the chunks
/// compared so far are true (those files exist), nothing is taken for gone,
/// and the digests are not stored.
pub struct ListingDiff {
    state: State,
    rule: String,
    direction: Direction,
    now: i64,
    chunking: Chunking,
    /// The chunks of the last recorded listing, sorted; `None`: compare
    /// every chunk and look for gone files.
    last: Option<Vec<Chunk>>,
    /// What this listing expects to find stored: the digests it read, or
    /// its own token once it wrote.
    stored: Option<Vec<u8>>,
    token: [u8; 16],
    /// Someone else changed rows since this listing started: its digests
    /// must not be stored.
    tainted: bool,
    deferred: bool,
    chunks: Vec<Chunk>,
    /// Files of the last listing found again by the compared chunks.
    survivors: u64,
    seen: Seen,
    chunk: Vec<Listed>,
    refused: Vec<Refused>,
    compared: usize,
}

impl State {
    /// Starts recording a listing of `rule`.
    pub async fn diff_listing(
        &self,
        rule: &str,
        direction: Direction,
        now: i64,
    ) -> Result<ListingDiff> {
        let stored = on_backend!(self, db => db.listing_digest(rule).await)?;
        // Unique per listing (fresh keys each time); 16 bytes, which no
        // set of 32-byte digests can be.
        let token = (u128::from(RandomState::new().hash_one(now)) << 64
            | u128::from(RandomState::new().hash_one(rule)))
        .to_le_bytes();
        Ok(ListingDiff {
            state: self.clone(),
            rule: rule.to_string(),
            direction,
            now,
            chunking: Chunking::DEFAULT,
            last: stored.as_deref().and_then(digest::decode),
            stored,
            token,
            tainted: false,
            deferred: false,
            chunks: Vec::new(),
            survivors: 0,
            seen: Seen::new(),
            chunk: Vec::new(),
            refused: Vec::new(),
            compared: 0,
        })
    }
}

impl ListingDiff {
    /// Other chunk bounds, for tests that need many chunks from few files.
    pub fn with_chunking(mut self, chunking: Chunking) -> Self {
        self.chunking = chunking;
        self
    }

    /// Adds a file the listing shows. A path listed twice (some FTP
    /// servers repeat entries) counts once: the first time. When the file
    /// completes a chunk, the chunk is compared and what it changed
    /// returned.
    pub async fn push(&mut self, file: Listed) -> Result<Option<ListingOutcome>> {
        if !self.seen.insert(&file.path) {
            return Ok(None);
        }
        let cut = self.chunking.cuts_after(&file.path, self.chunk.len() + 1);
        self.chunk.push(file);
        if !cut {
            return Ok(None);
        }
        let files = std::mem::take(&mut self.chunk);
        self.chunk_done(&files, &[]).await.map(Some)
    }

    /// Adds a file the rule would take but ferry cannot (its name is not
    /// UTF-8). Held to the end: a file that can be taken wins over a
    /// refused one of the same path wherever it is listed.
    pub fn refuse(&mut self, refused: Refused) {
        self.refused.push(refused);
    }

    /// Whether the listing showed `path` (so far).
    pub fn saw(&self, path: &str) -> bool {
        self.seen.contains(path)
    }

    /// How many chunks were compared with their rows (not recognised by
    /// their digest).
    pub fn compared(&self) -> usize {
        self.compared
    }

    /// Ends a complete listing: compares the last chunk and the refused
    /// files, takes what is no longer listed for gone, and stores the
    /// listing's digests.
    pub async fn finish(mut self) -> Result<ListingOutcome> {
        let mut out = ListingOutcome::default();
        let files = std::mem::take(&mut self.chunk);
        if !files.is_empty() {
            out.absorb(self.chunk_done(&files, &[]).await?);
        }
        // Each refused path once, and none that a file that can be taken has.
        let mut refused = std::mem::take(&mut self.refused);
        refused.retain(|x| self.seen.insert(&x.file.path));
        if !refused.is_empty() {
            let refs: Vec<&Refused> = refused.iter().collect();
            out.absorb(self.chunk_done(&[], &refs).await?);
        }
        let listed_any = !self.seen.set.is_empty();
        let state = self.state.clone();
        if !listed_any && on_backend!(state, db => db.has_pending(&self.rule).await)? {
            out.ignored_empty = true;
            return Ok(out);
        }
        self.chunks.sort_unstable();
        if self.may_have_lost(listed_any) {
            let (rule, node, now) = (&self.rule, state.me.node.as_str(), self.now);
            let seen = &self.seen;
            let saw = |path: &str| seen.contains(path);
            let expect = self.expect();
            let gone = on_backend!(state, db => db.record_gone(rule, &saw, listed_any, &expect, node, now).await)?;
            out.absorb(self.took(gone));
            out.looked_for_gone = true;
        }
        let unchanged = self.last.as_ref() == Some(&self.chunks);
        if !self.tainted && !self.deferred && !unchanged {
            let encoded = digest::encode(&self.chunks);
            let expect = self.stored.as_deref();
            on_backend!(state, db => db.store_listing_digest(&self.rule, expect, &encoded).await)?;
        }
        Ok(out)
    }

    /// Whether a file the last listing showed can be missing from this
    /// one. Every row a poll could change (pending, or finished and not
    /// marked unlisted) is a file the last complete listing showed: what
    /// it did not show it dropped, failed or marked, and anything that
    /// adds or revives a row since clears its digests. So the files it
    /// showed that are still listed are those of its chunks found again,
    /// and, of its other chunks, those the compared chunks found rows for.
    /// An empty last listing marked nothing: this one looks.
    fn may_have_lost(&self, listed_any: bool) -> bool {
        let Some(last) = &self.last else { return true };
        if last.is_empty() {
            return listed_any;
        }
        let missing: u64 = last
            .iter()
            .filter(|c| self.chunks.binary_search(c).is_err())
            .map(|c| u64::from(c.1))
            .sum();
        missing != self.survivors
    }

    /// Files and refused files that make one chunk: compared with their
    /// rows unless the last listing had the same chunk.
    async fn chunk_done(
        &mut self,
        files: &[Listed],
        refused: &[&Refused],
    ) -> Result<ListingOutcome> {
        let files: Vec<&Listed> = files.iter().collect();
        let d = digest::of_listing(self.direction, &files, refused);
        let count = u32::try_from(files.len() + refused.len()).unwrap_or(u32::MAX);
        self.chunks.push((d, count));
        if self
            .last
            .as_ref()
            .is_some_and(|last| last.binary_search(&(d, count)).is_ok())
        {
            return Ok(ListingOutcome::default());
        }
        self.compared += 1;
        let state = self.state.clone();
        let (rule, dir, node, now) = (&self.rule, self.direction, state.me.node.as_str(), self.now);
        let expect = self.expect();
        let compared = on_backend!(state, db => db.diff_chunk(rule, dir, &files, refused, &expect, node, now).await)?;
        Ok(self.took(compared))
    }

    fn expect(&self) -> Expect<'_> {
        Expect {
            stored: self.stored.as_deref(),
            token: &self.token,
        }
    }

    fn took(&mut self, c: Compared) -> ListingOutcome {
        self.tainted |= !c.intact;
        self.survivors += c.survivors;
        self.deferred |= !c.outcome.deferred.is_empty();
        if c.wrote {
            self.stored = Some(self.token.to_vec());
        }
        c.outcome
    }
}

impl ListingOutcome {
    /// Adds what another chunk of the same listing changed.
    pub fn absorb(&mut self, other: ListingOutcome) {
        self.ignored_empty |= other.ignored_empty;
        self.looked_for_gone |= other.looked_for_gone;
        self.new.extend(other.new);
        self.changed.extend(other.changed);
        self.refused.extend(other.refused);
        self.vanished.extend(other.vanished);
        self.superseded.extend(other.superseded);
        self.deferred.extend(other.deferred);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cut_by_content_within_bounds() {
        let c = Chunking {
            min: 2,
            mask: 3,
            max: 6,
        };
        let paths: Vec<String> = (0..400).map(|i| format!("file-{i}")).collect();
        let cuts = |paths: &[String]| {
            let (mut len, mut out) = (0, Vec::new());
            for p in paths {
                len += 1;
                if c.cuts_after(p, len) {
                    out.push(p.clone());
                    len = 0;
                }
            }
            out
        };
        let all = cuts(&paths);
        assert!(all.len() > 400 / 6, "every chunk is at most 6 files");
        // One file more near the start: the cuts after its chunk are the
        // same paths, so the chunks after it keep their digests.
        let mut more = paths.clone();
        more.insert(3, "new".into());
        let again = cuts(&more);
        assert!(again.ends_with(&all[all.len() / 2..]), "{all:?}\n{again:?}");
    }

    #[test]
    fn seen_paths_are_told_apart() {
        let mut s = Seen::new();
        assert!(s.insert("a") && s.insert("b") && !s.insert("a"));
        assert!(s.contains("b") && !s.contains("c"));
    }

    use crate::state::testing::f;
    use crate::state::{FileFilter, FileState};

    /// Small chunks, so that a few hundred files make dozens of them.
    const SMALL: Chunking = Chunking {
        min: 2,
        mask: 7,
        max: 16,
    };

    fn files(n: usize) -> Vec<Listed> {
        (0..n).map(|i| f(&format!("f{i:03}"), 1)).collect()
    }

    /// Records `listing` in small chunks; what it changed, and how many
    /// chunks were compared with their rows.
    async fn record(s: &State, listing: &[Listed], now: i64) -> (ListingOutcome, usize) {
        let mut diff = s
            .diff_listing("r", Direction::Listen, now)
            .await
            .unwrap()
            .with_chunking(SMALL);
        let mut out = ListingOutcome::default();
        for file in listing {
            if let Some(o) = diff.push(file.clone()).await.unwrap() {
                out.absorb(o);
            }
        }
        let compared = diff.compared();
        out.absorb(diff.finish().await.unwrap());
        (out, compared)
    }

    async fn deliver_all(s: &State, now: i64) {
        for r in s.due("r", now, 0, 0).await.unwrap() {
            s.claim(r.id, now).await.unwrap();
            s.mark_delivered(r.id, "/x", false, now).await.unwrap();
            s.mark_done(r.id, now).await.unwrap();
        }
    }

    state_test!(an_unchanged_listing_reads_no_chunk, |s| {
        let all = files(300);
        let (out, compared) = record(&s, &all, 1000).await;
        assert_eq!(out.new.len(), 300);
        assert!(compared > 20, "{compared} chunks");
        let (out, compared) = record(&s, &all, 2000).await;
        assert!(out.new.is_empty() && out.changed.is_empty());
        assert_eq!(compared, 0);
        // Listed in another order, the chunks are others, the rows the same.
        let mut reversed = all.clone();
        reversed.reverse();
        let (out, compared) = record(&s, &reversed, 3000).await;
        assert!(out.new.is_empty() && out.changed.is_empty() && out.vanished.is_empty());
        assert!(compared > 0);
        assert_eq!(s.files(&FileFilter::default()).await.unwrap().len(), 300);
    });

    state_test!(a_new_file_costs_its_own_chunk, |s| {
        let all = files(300);
        record(&s, &all, 1000).await;
        let mut more = all.clone();
        more.insert(150, f("f150-new", 7));
        let (out, compared) = record(&s, &more, 2000).await;
        assert_eq!(out.new, vec![f("f150-new", 7)]);
        assert!(compared <= 3, "{compared} chunks compared for one new file");
        assert!(!out.looked_for_gone, "every file listed before is found");
        // f010 changed, f150-new gone again: found although every other
        // chunk is known.
        let changed = [&all[..10], &[f("f010", 2)], &all[11..]].concat();
        let (out, _) = record(&s, &changed, 3000).await;
        assert_eq!(out.changed, vec![f("f010", 2)]);
        assert!(out.looked_for_gone, "f150-new is missing");
        let (out, _) = record(&s, &changed, 4000).await;
        assert!(out.new.is_empty() && out.changed.is_empty());
        assert!(!out.looked_for_gone);
        // One file gone and one added in the same chunk: still found.
        let swapped = [&changed[..20], &[f("f020-new", 1)], &changed[21..]].concat();
        let (out, _) = record(&s, &swapped, 5000).await;
        assert_eq!(out.new, vec![f("f020-new", 1)]);
        assert!(out.looked_for_gone);
        let rows = s.files(&FileFilter::default()).await.unwrap();
        assert!(rows.iter().all(|r| r.path != "f020"), "dropped");
        let rows = s.files(&FileFilter::default()).await.unwrap();
        assert!(rows.iter().all(|r| r.path != "f150-new"), "dropped");
        assert_eq!(rows.len(), 300);
    });

    state_test!(a_file_gone_from_the_middle_is_found, |s| {
        let all = files(300);
        record(&s, &all, 1000).await;
        deliver_all(&s, 1000).await;
        let mut fewer = all.clone();
        let gone = fewer.remove(123);
        record(&s, &fewer, 2000).await;
        // Only the missing file's row is marked unlisted: retention prunes
        // it and keeps the 299 still listed.
        assert_eq!(s.prune(i64::MAX).await.unwrap(), 1);
        let rows = s.files(&FileFilter::default()).await.unwrap();
        assert_eq!(rows.len(), 299);
        assert!(rows.iter().all(|r| r.path != gone.path));
        // A started file that goes is failed as vanished.
        s.record_listing("r", &[f("late", 1)], 3000).await.unwrap();
        let late = s.due("r", 3000, 0, 0).await.unwrap()[0].id;
        s.claim(late, 3000).await.unwrap();
        let (out, _) = record(&s, &fewer, 4000).await;
        assert_eq!(out.vanished, vec!["late".to_string()]);
    });

    state_test!(a_listing_cut_short_is_not_trusted_later, |s| {
        let all = files(300);
        record(&s, &all, 1000).await;
        // A listing that shows more files, then fails before its end.
        let mut diff = s
            .diff_listing("r", Direction::Listen, 2000)
            .await
            .unwrap()
            .with_chunking(SMALL);
        for file in files(300)
            .into_iter()
            .chain((0..50).map(|i| f(&format!("x{i}"), 1)))
        {
            diff.push(file).await.unwrap();
        }
        drop(diff);
        let x_rows = |rows: Vec<crate::state::FileRow>| {
            rows.iter().filter(|r| r.path.starts_with('x')).count()
        };
        assert!(
            x_rows(s.files(&FileFilter::default()).await.unwrap()) > 0,
            "some chunks were recorded"
        );
        // The first listing again: every chunk known, yet the files of the
        // cut-short listing are found gone (never started: dropped).
        record(&s, &all, 3000).await;
        assert_eq!(x_rows(s.files(&FileFilter::default()).await.unwrap()), 0);
    });

    state_test!(rows_changed_meanwhile_keep_the_digests_out, |s| {
        let all = files(300);
        record(&s, &all, 1000).await;
        deliver_all(&s, 1000).await;
        let mut diff = s
            .diff_listing("r", Direction::Listen, 2000)
            .await
            .unwrap()
            .with_chunking(SMALL);
        // While the listing runs, someone forgets a file it will skip.
        let f5 = FileFilter {
            path: Some("f005".into()),
            ..FileFilter::default()
        };
        assert_eq!(s.forget(&f5).await.unwrap(), 1);
        for file in all.iter().cloned().chain([f("new", 1)]) {
            diff.push(file).await.unwrap();
        }
        diff.finish().await.unwrap();
        // The next listing does not trust that one's digests: the forgotten
        // file is new again.
        let (out, _) = record(&s, &[all.clone(), vec![f("new", 1)]].concat(), 3000).await;
        assert_eq!(out.new, vec![f("f005", 1)]);
        let rows = s.files(&FileFilter::default()).await.unwrap();
        assert_eq!(
            rows.iter().filter(|r| r.state == FileState::Done).count(),
            299
        );
    });
}
