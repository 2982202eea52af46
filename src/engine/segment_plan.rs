//! Splitting a file's bytes into the ranges of a segmented download.

use crate::state::Segment;

/// Ranges start on multiples of this from the first, so reads line up
/// with the server's and the local file system's blocks.
const ALIGN: u64 = 1024 * 1024;

/// `count` ranges of about equal length covering `[from, size)`, fewer
/// when the bytes left are too few to give each range [`ALIGN`].
pub fn plan(from: u64, size: u64, count: usize) -> Vec<Segment> {
    let total = size.saturating_sub(from);
    let step = total.div_ceil(count.max(1) as u64).div_ceil(ALIGN).max(1) * ALIGN;
    steps(from, size, step, usize::MAX)
}

/// The ranges of a split whose first range, `[start, end)`, a probe's
/// stream is still reading with `left` bytes to go: behind it, ranges for
/// the `count - 1` other sessions, each about one session's share of what
/// is left, then a last, shorter one that the lead's session takes when
/// its own range is done, so all `count` sessions end together.
pub fn with_lead(start: u64, end: u64, size: u64, count: usize, left: u64) -> Vec<Segment> {
    let others = count.max(2) - 1;
    let share = (size.saturating_sub(end) + left) / (others as u64 + 1);
    let rest = if share <= left || end >= size {
        // The lead's range is a share or more already: the others split
        // the rest evenly.
        plan(end, size, others)
    } else {
        let step = ((share + ALIGN / 2) / ALIGN).max(1) * ALIGN;
        steps(end, size, step, others + 1)
    };
    let lead = Segment {
        index: 0,
        start,
        end,
        done: 0,
    };
    let mut all = vec![lead];
    all.extend(rest);
    for (i, s) in all.iter_mut().enumerate() {
        s.index = i as u32;
    }
    all
}

/// Ranges of `step` bytes from `from`, at most `at_most` of them, the last
/// taking whatever is left up to `size`. At least one: an empty range at
/// `size` when nothing is left, so the last range still shows a file that
/// grew.
fn steps(from: u64, size: u64, step: u64, at_most: usize) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let end = if out.len() + 1 >= at_most {
            size
        } else {
            at.saturating_add(step).min(size)
        }
        .max(at);
        out.push(Segment {
            index: out.len() as u32,
            start: at,
            end,
            done: 0,
        });
        at = end;
        if at >= size {
            return out;
        }
    }
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

    #[test]
    fn a_lead_range_gets_a_short_second_range_so_all_sessions_end_together() {
        // 4 sessions; the lead has 5 MiB of its 6 MiB left, 34 MiB follow:
        // each session's share is (34 + 5) / 4 = 9.75 MiB, 10 aligned.
        let p = with_lead(0, 6 * MIB, 40 * MIB, 4, 5 * MIB);
        assert_eq!(
            spans(&p),
            vec![
                (0, 6 * MIB),
                (6 * MIB, 16 * MIB),
                (16 * MIB, 26 * MIB),
                (26 * MIB, 36 * MIB),
                (36 * MIB, 40 * MIB)
            ]
        );
        assert_eq!(
            p.iter().map(|s| s.index).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn a_lead_range_of_a_share_or_more_leaves_the_rest_to_the_others() {
        let p = with_lead(MIB, 9 * MIB, 15 * MIB, 4, 8 * MIB);
        assert_eq!(
            spans(&p),
            vec![
                (MIB, 9 * MIB),
                (9 * MIB, 11 * MIB),
                (11 * MIB, 13 * MIB),
                (13 * MIB, 15 * MIB)
            ]
        );
        // The lead reaches the end: one empty range after it still shows a
        // file that grew.
        let p = with_lead(0, 4 * MIB, 4 * MIB, 4, MIB);
        assert_eq!(spans(&p), vec![(0, 4 * MIB), (4 * MIB, 4 * MIB)]);
    }
}
