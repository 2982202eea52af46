//! Splitting a file's bytes into the ranges of a segmented download.

use crate::state::Segment;

/// Ranges start on multiples of this from the first, so reads line up
/// with the server's and the local file system's blocks.
const ALIGN: u64 = 1024 * 1024;

/// `count` ranges of about equal length covering `[from, size)`, fewer
/// when the bytes left are too few to give each range [`ALIGN`].
pub fn plan(from: u64, size: u64, count: usize) -> Vec<Segment> {
    let total = size.saturating_sub(from);
    let count = count.max(1) as u64;
    let step = total.div_ceil(count).div_ceil(ALIGN).max(1) * ALIGN;
    let mut out = Vec::new();
    let mut start = from;
    while start < size || out.is_empty() {
        let end = start.saturating_add(step).min(size).max(start);
        out.push(Segment {
            index: out.len() as u32,
            start,
            end,
            done: 0,
        });
        start = end;
        if end >= size {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn spans(p: &[Segment]) -> Vec<(u64, u64)> {
        p.iter().map(|s| (s.start, s.end)).collect()
    }

    #[test]
    fn equal_aligned_ranges_cover_the_rest_of_the_file() {
        let p = plan(0, 40 * MIB, 4);
        assert_eq!(
            spans(&p),
            vec![
                (0, 10 * MIB),
                (10 * MIB, 20 * MIB),
                (20 * MIB, 30 * MIB),
                (30 * MIB, 40 * MIB)
            ]
        );
        assert_eq!(p.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 1, 2, 3]);
        // An odd size: the last range takes what is left.
        let p = plan(0, 10 * MIB + 5, 4);
        assert_eq!(p.last().unwrap().end, 10 * MIB + 5);
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn a_prefix_already_there_is_not_planned_again() {
        let p = plan(3 * MIB, 11 * MIB, 2);
        assert_eq!(spans(&p), vec![(3 * MIB, 7 * MIB), (7 * MIB, 11 * MIB)]);
    }

    #[test]
    fn few_bytes_make_few_ranges() {
        assert_eq!(spans(&plan(0, MIB + 1, 8)), vec![(0, MIB), (MIB, MIB + 1)]);
        assert_eq!(spans(&plan(0, 100, 4)), vec![(0, 100)]);
        // Nothing left: one empty range at the end, so the last range still
        // shows a file that grew.
        assert_eq!(spans(&plan(100, 100, 4)), vec![(100, 100)]);
    }
}
