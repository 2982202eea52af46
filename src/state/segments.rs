//! Progress of segmented downloads: one row per byte range of a file
//! version, holding how much of that range is durable in the temporary
//! file. The temporary file may have holes, so only these rows say what
//! arrived (ARCHITECTURE.md, "Segmented downloads").

use super::{Result, State};

/// One byte range `[start, end)` of a file and the bytes from `start`
/// already durable in the temporary file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub index: u32,
    pub start: u64,
    pub end: u64,
    pub done: u64,
}

impl Segment {
    /// Where the next byte of this range goes.
    pub fn next(&self) -> u64 {
        self.start + self.done
    }

    /// Bytes of the range still to fetch.
    pub fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.next())
    }
}

/// The file version the ranges were planned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedFor {
    pub size: u64,
    pub mtime: i64,
}

impl State {
    /// The ranges recorded for `file_id` when they were planned for this
    /// version; empty when none were, or only for another version.
    pub async fn segments(&self, file_id: i64, version: PlannedFor) -> Result<Vec<Segment>> {
        let rows = on_backend!(self, db => db.segments(file_id).await)?;
        if rows.iter().any(|(v, _)| *v != version) {
            return Ok(Vec::new());
        }
        Ok(rows.into_iter().map(|(_, s)| s).collect())
    }

    /// Replaces whatever ranges `file_id` had with `plan`, in one
    /// transaction: committed before the first byte of a range is written.
    pub async fn plan_segments(
        &self,
        file_id: i64,
        version: PlannedFor,
        plan: &[Segment],
    ) -> Result<()> {
        on_backend!(self, db => db.plan_segments(file_id, version, plan).await)
    }

    /// `done` bytes of range `index` are durable in the temporary file.
    /// The caller fsynced the file first.
    pub async fn record_segment(&self, file_id: i64, index: u32, done: u64) -> Result<()> {
        on_backend!(self, db => db.record_segment(file_id, index, done).await)
    }

    /// Forgets the ranges of `file_id`: its download is complete (and
    /// fsynced), or its temporary file is gone or was started again.
    pub async fn clear_segments(&self, file_id: i64) -> Result<()> {
        on_backend!(self, db => db.clear_segments(file_id).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::now_ms;
    use crate::state::testing::f;

    fn seg(index: u32, start: u64, end: u64, done: u64) -> Segment {
        Segment {
            index,
            start,
            end,
            done,
        }
    }

    async fn file_id(s: &State) -> i64 {
        s.record_listing("r", &[f("big.bin", 100)], now_ms())
            .await
            .unwrap();
        s.due("r", now_ms(), 0, 0).await.unwrap()[0].id
    }

    state_test!(progress_is_kept_per_range_and_version, |s| {
        let id = file_id(&s).await;
        let v = PlannedFor {
            size: 100,
            mtime: 10,
        };
        assert!(s.segments(id, v).await.unwrap().is_empty());
        let plan = [seg(0, 0, 50, 0), seg(1, 50, 100, 0)];
        s.plan_segments(id, v, &plan).await.unwrap();
        s.record_segment(id, 1, 20).await.unwrap();
        s.record_segment(id, 0, 5).await.unwrap();
        assert_eq!(
            s.segments(id, v).await.unwrap(),
            vec![seg(0, 0, 50, 5), seg(1, 50, 100, 20)]
        );
        // Another version's ranges are not this one's progress.
        let other = PlannedFor {
            size: 100,
            mtime: 11,
        };
        assert!(s.segments(id, other).await.unwrap().is_empty());
        // A new plan replaces the old one whole.
        s.plan_segments(id, other, &[seg(0, 0, 100, 0)])
            .await
            .unwrap();
        assert_eq!(
            s.segments(id, other).await.unwrap(),
            vec![seg(0, 0, 100, 0)]
        );
        s.clear_segments(id).await.unwrap();
        assert!(s.segments(id, other).await.unwrap().is_empty());
    });

    state_test!(ranges_go_with_their_file_row, |s| {
        let id = file_id(&s).await;
        let v = PlannedFor {
            size: 100,
            mtime: 10,
        };
        s.plan_segments(id, v, &[seg(0, 0, 100, 40)]).await.unwrap();
        s.forget(&crate::state::FileFilter::default())
            .await
            .unwrap();
        assert!(s.segments(id, v).await.unwrap().is_empty());
    });
}
