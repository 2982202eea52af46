//! Segmented downloads' progress (`state/segments.rs`).

use super::Db;
use crate::state::Result;
use crate::state::segments::{PlannedFor, Segment};

type Row = (i64, i64, i64, i64, i64, i64);

impl Db {
    pub async fn segments(&self, file_id: i64) -> Result<Vec<(PlannedFor, Segment)>> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT size, mtime, segment, start_byte, end_byte, done_bytes FROM segments
             WHERE file_id = ? ORDER BY segment",
        )
        .bind(file_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    pub async fn plan_segments(
        &self,
        file_id: i64,
        version: PlannedFor,
        plan: &[Segment],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM segments WHERE file_id = ?")
            .bind(file_id)
            .execute(&mut *tx)
            .await?;
        for s in plan {
            sqlx::query(
                "INSERT INTO segments (file_id, size, mtime, segment, start_byte, end_byte, done_bytes)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(file_id)
            .bind(version.size as i64)
            .bind(version.mtime)
            .bind(i64::from(s.index))
            .bind(s.start as i64)
            .bind(s.end as i64)
            .bind(s.done as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn record_segment(&self, file_id: i64, index: u32, done: u64) -> Result<()> {
        sqlx::query("UPDATE segments SET done_bytes = ? WHERE file_id = ? AND segment = ?")
            .bind(done as i64)
            .bind(file_id)
            .bind(i64::from(index))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn clear_segments(&self, file_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM segments WHERE file_id = ?")
            .bind(file_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn from_row((size, mtime, index, start, end, done): Row) -> (PlannedFor, Segment) {
    let version = PlannedFor {
        size: size as u64,
        mtime,
    };
    let segment = Segment {
        index: index as u32,
        start: start as u64,
        end: end as u64,
        done: done as u64,
    };
    (version, segment)
}
