//! Claims with leases: how several ferry hosts (nodes) share one state
//! database without taking the same file twice. A node claims a bounded
//! chunk of due rows by writing its name, its instance and a lease end
//! into them; it renews the leases while it works and verifies them
//! before every irreversible step; every state change it records is
//! conditional on the row still being its own (fencing). A node that
//! dies loses its rows when the lease runs out, and another resumes them
//! from their recorded state. One node per rule lists the server (the
//! listing turn, a lease on the rule's row). The argument is in
//! ARCHITECTURE.md, "Several hosts".

use super::{Due, Error, FileRow, Result, State};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// When this process last took or confirmed each rule's listing turn, in
/// the database (Unix ms). The turn's lease runs a whole `daemon.lease`
/// from then, and the heartbeat renews it every third of that, so for half
/// a lease the turn is surely still this process's: a rule polled every
/// few seconds asks the database once per half lease, not once per poll
/// (a write each time, the most of an unchanged poll's cost).
#[derive(Clone, Default)]
pub(super) struct Turns(Arc<Mutex<HashMap<String, i64>>>);

impl Turns {
    fn held(&self, rule: &str, now: i64, lease_ms: i64) -> bool {
        let taken = self.0.lock().expect("turns lock").get(rule).copied();
        taken.is_some_and(|t| now >= t && now < t + lease_ms / 2)
    }

    fn taken(&self, rule: &str, now: i64) {
        self.0
            .lock()
            .expect("turns lock")
            .insert(rule.to_string(), now);
    }

    fn forget(&self, rule: &str) {
        self.0.lock().expect("turns lock").remove(rule);
    }

    fn clear(&self) {
        self.0.lock().expect("turns lock").clear();
    }
}

/// This process among the nodes that share the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// `daemon.node`: the owner name of its claims, stable across restarts.
    pub node: String,
    /// A token new at every start: tells a restarted node from its
    /// earlier process (which may only be paused, not dead).
    pub instance: String,
    /// gethostname(2) and the pid, to tell a crashed earlier process of
    /// this node (gone from this host) from a live twin.
    pub host: String,
    pub pid: u32,
    /// `daemon.lease` in milliseconds.
    pub lease_ms: i64,
}

impl Me {
    pub fn new(node: &str, lease: Duration) -> Self {
        let pid = std::process::id();
        Self {
            node: node.to_string(),
            instance: format!("{pid}-{:016x}", fastrand::u64(..)),
            host: crate::config::hostname(),
            pid,
            lease_ms: lease.as_millis() as i64,
        }
    }

    /// When a lease taken or renewed now runs out.
    pub fn lease_until(&self, now: i64) -> i64 {
        now + self.lease_ms
    }
}

/// A node as `ferry status` shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct NodeStatus {
    pub name: String,
    pub instance: String,
    pub host: String,
    pub pid: i64,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    /// Files under a live lease of this instance.
    pub leases: i64,
    /// Rules whose listing turn it holds.
    pub listing: i64,
}

/// Whether the node row names another live process of this node: its
/// heartbeat is fresh and it is not a process of this host that is gone
/// (a crash restarted by systemd within the lease is no twin).
pub fn is_live_twin(me: &Me, row: &NodeStatus, now: i64) -> bool {
    if row.instance == me.instance || row.heartbeat_ms < now - me.lease_ms {
        return false;
    }
    row.host != me.host || pid_alive(row.pid)
}

fn pid_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The ids among `wanted` that `got` lacks: rows this node no longer owns.
pub(super) fn lost(wanted: &[i64], got: &[i64]) -> Result<()> {
    let missing: Vec<i64> = wanted
        .iter()
        .filter(|id| !got.contains(id))
        .copied()
        .collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(Error::Lost(missing)),
    }
}

/// Rows a claim returned, in id order (RETURNING keeps no order).
fn sorted(mut rows: Vec<FileRow>) -> Vec<FileRow> {
    rows.sort_by_key(|r| r.id);
    rows
}

impl State {
    /// Who this process is to the other nodes.
    pub fn me(&self) -> &Me {
        &self.me
    }

    /// The same database, working as `me` (the daemon's `daemon.node`).
    pub fn with_me(mut self, me: Me) -> Self {
        self.owner = me.instance.as_str().into();
        self.me = std::sync::Arc::new(me);
        self.turns = Turns::default();
        self
    }

    /// Enters this process into the `nodes` table. Refused (returns the
    /// other process's row) while another live process of the same node
    /// name renews its heartbeat: two would take each other's files.
    pub async fn join(&self, now: i64) -> Result<Option<NodeStatus>> {
        let me = &*self.me;
        let nodes = self.nodes(now).await?;
        if let Some(twin) = nodes.into_iter().find(|n| n.name == me.node)
            && is_live_twin(me, &twin, now)
        {
            return Ok(Some(twin));
        }
        on_backend!(self, db => db.join_node(me, now).await)?;
        Ok(None)
    }

    /// Renews this process's heartbeat, its file leases and its listing
    /// turns. `false`: a newer process of this node took the node row
    /// over, so this one must stop working (its writes are fenced off).
    pub async fn heartbeat(&self, now: i64) -> Result<bool> {
        on_backend!(self, db => db.heartbeat(&self.me, now).await)
    }

    /// Takes (or keeps) the listing turn of `rule`: `true` when this node
    /// is to list it now. Free when nobody holds it, when its lease ran
    /// out, or when the holder is this node (a restart takes its own
    /// turn back at once).
    pub async fn take_list_turn(&self, rule: &str, now: i64) -> Result<bool> {
        if self.turns.held(rule, now, self.me.lease_ms) {
            return Ok(true);
        }
        let taken = on_backend!(self, db => db.take_list_turn(&self.me, rule, now).await)?;
        match taken {
            true => self.turns.taken(rule, now),
            false => self.turns.forget(rule),
        }
        Ok(taken)
    }

    /// Rules with files that another process held and whose lease ran
    /// out while they are due: a dead node's work, which this node can
    /// take over now instead of at the rule's next slot.
    pub async fn expired_claims(&self, now: i64) -> Result<Vec<String>> {
        on_backend!(self, db => db.expired_claims(&self.me, now).await)
    }

    /// Claims up to `limit` due rows of `rule` with ids above `after` that
    /// nobody else holds: stable files (the lister's gate passed them)
    /// whose windows are over, and unfinished ones whose owner's lease ran
    /// out.
    pub async fn claim_due_after(
        &self,
        rule: &str,
        due: &Due,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FileRow>> {
        let limit = limit as i64;
        let rows = on_backend!(self, db => db.claim_due(&self.me, rule, due, after, limit).await)?;
        Ok(sorted(rows))
    }

    /// Claims those of `ids` that are still due and free (the lister's
    /// own due rows, read before the claim); returns them as they are now.
    pub async fn claim_rows(&self, ids: &[i64], now: i64) -> Result<Vec<FileRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = on_backend!(self, db => db.claim_rows(&self.me, ids, now).await)?;
        Ok(sorted(rows))
    }

    /// Renews the leases of `ids` and checks they are still this
    /// process's: called right before an irreversible step (a rename into
    /// `local_dir`, a handler, a remote move or delete, a Send rename).
    /// [`Error::Lost`] names the rows another node owns now.
    pub async fn confirm(&self, ids: &[i64], now: i64) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let got = on_backend!(self, db => db.confirm(&self.me, ids, now).await)?;
        lost(ids, &got)
    }

    /// Ends this process's leases on `ids` (its turn on them is over):
    /// any node may claim them at once.
    pub async fn release(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        on_backend!(self, db => db.release(&self.me, ids).await)
    }

    /// A clean stop: every lease and listing turn of this process ends.
    pub async fn leave(&self) -> Result<()> {
        self.turns.clear();
        on_backend!(self, db => db.leave(&self.me).await)
    }

    /// Every node, its last heartbeat and what it holds now.
    pub async fn nodes(&self, now: i64) -> Result<Vec<NodeStatus>> {
        on_backend!(self, db => db.nodes(now).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FileState;
    use crate::state::testing::stable_files;

    const LEASE: Duration = Duration::from_secs(3);

    /// A second process on the same database, as node `node`.
    fn node(s: &State, node: &str) -> State {
        let mut me = Me::new(node, LEASE);
        me.host = format!("host-of-{node}");
        s.clone().with_me(me)
    }

    fn due(now: i64) -> Due {
        Due {
            now,
            stable_for_ms: 0,
            min_age_ms: 0,
        }
    }

    async fn claim(s: &State, now: i64) -> Vec<i64> {
        let rows = s.claim_due_after("r", &due(now), 0, 1_000).await.unwrap();
        rows.iter().map(|r| r.id).collect()
    }

    state_test!(concurrent_claimers_never_get_the_same_row, |s| {
        let ids = stable_files(&s, 300).await;
        let (a, b) = (node(&s, "a"), node(&s, "b"));
        let (mut got_a, mut got_b) = (Vec::<i64>::new(), Vec::<i64>::new());
        // Each pages on by its last id, as a poll does (a node may claim
        // its own rows again, so without the cursor it would loop).
        loop {
            let d = due(2_000);
            let after = |got: &Vec<i64>| got.last().copied().unwrap_or(0);
            let (x, y) = futures::join!(
                a.claim_due_after("r", &d, after(&got_a), 7),
                b.claim_due_after("r", &d, after(&got_b), 7)
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            if x.is_empty() && y.is_empty() {
                break;
            }
            got_a.extend(x.iter().map(|r| r.id));
            got_b.extend(y.iter().map(|r| r.id));
        }
        assert!(
            got_a.iter().all(|id| !got_b.contains(id)),
            "a row claimed twice"
        );
        let mut all: Vec<i64> = got_a.iter().chain(&got_b).copied().collect();
        all.sort();
        assert_eq!(all, ids);
    });

    // The lister sees a new version of a file another node is fetching:
    // the row stays that node's version (it finishes it, with the bytes
    // it read), the listing is not remembered by its digest, and the
    // next listing after that node is done records the new version as a
    // new file. A file gone meanwhile is left alike. A lease run out is
    // no one's work: the change applies at once.
    state_test!(
        a_listing_leaves_a_changed_file_to_the_node_fetching_it,
        |s| {
            use crate::state::testing::f;
            let ids = stable_files(&s, 3).await;
            let (a, b) = (node(&s, "a"), node(&s, "b"));
            assert_eq!(claim(&a, 2_000).await, ids);
            for &id in &ids {
                assert_eq!(a.claim(id, 2_000).await.unwrap(), 1);
            }
            // f0 replaced, f1 gone, f2 unchanged (sizes are 0, 1, 2).
            let listing = [f("f0", 100), f("f2", 2)];
            let out = b.record_listing("r", &listing, 3_000).await.unwrap();
            assert!(out.changed.is_empty() && out.new.is_empty(), "{out:?}");
            assert!(
                out.vanished.is_empty() && out.superseded.is_empty(),
                "{out:?}"
            );
            let mut deferred = out.deferred.clone();
            deferred.sort();
            assert_eq!(deferred, ["f0", "f1"]);
            // Not remembered: the same listing is diffed again.
            let again = b.record_listing("r", &listing, 3_100).await.unwrap();
            assert_eq!(again.deferred.len(), 2, "{again:?}");
            // a finishes f0 as the version it fetched.
            a.mark_downloaded(ids[0], 0, "/out/f0", Some(1), 3_200)
                .await
                .unwrap();
            a.mark_delivered(ids[0], "/out/f0", true, 3_300)
                .await
                .unwrap();
            let rows = a.files(&Default::default()).await.unwrap();
            let row = rows.iter().find(|r| r.id == ids[0]).unwrap();
            assert_eq!((row.size, row.state), (0, FileState::Done));
            // Past a's lease (until 5,000): f0's new version is a new file, and
            // f1, gone while a held it, is failed as vanished.
            let out = b.record_listing("r", &listing, 5_001).await.unwrap();
            assert!(out.deferred.is_empty(), "{out:?}");
            assert_eq!(
                out.new.iter().map(|l| l.path.as_str()).collect::<Vec<_>>(),
                ["f0"]
            );
            assert_eq!(out.vanished, ["f1"]);
        }
    );

    state_test!(a_lost_row_fences_every_step_of_its_old_owner, |s| {
        let ids = stable_files(&s, 2).await;
        let (a, b) = (node(&s, "a"), node(&s, "b"));
        assert_eq!(claim(&a, 2_000).await, ids);
        assert_eq!(a.claim(ids[0], 2_000).await.unwrap(), 1);
        // a's lease (until 5,000) holds against b...
        assert!(claim(&b, 4_000).await.is_empty());
        // ...and runs out: b takes both rows over and resumes them.
        assert_eq!(claim(&b, 5_001).await, ids);
        assert!(matches!(a.confirm(&ids, 5_002).await, Err(Error::Lost(l)) if l == ids));
        assert!(matches!(
            a.mark_downloaded(ids[0], 0, "/out/f0", Some(1), 5_003)
                .await,
            Err(Error::Lost(_))
        ));
        assert!(matches!(a.claim(ids[1], 5_003).await, Err(Error::Lost(_))));
        assert!(matches!(
            a.schedule_retry(ids[0], "late", 9_000, 0, 5_003).await,
            Err(Error::Lost(_))
        ));
        b.confirm(&ids, 5_004).await.unwrap();
        assert_eq!(b.claim(ids[0], 5_004).await.unwrap(), 2);
        b.mark_downloaded(ids[0], 0, "/out/f0", Some(1), 5_005)
            .await
            .unwrap();
        let row = b.row(ids[0]).await.unwrap().unwrap();
        assert_eq!(row.state, FileState::Downloaded);
        assert_eq!(row.failures, 0, "the old owner's retry was fenced off");
    });

    state_test!(renewals_keep_a_lease_and_release_frees_it_at_once, |s| {
        let ids = stable_files(&s, 3).await;
        let (a, b) = (node(&s, "a"), node(&s, "b"));
        a.join(2_000).await.unwrap();
        assert_eq!(claim(&a, 2_000).await, ids);
        assert!(a.heartbeat(4_000).await.unwrap());
        assert!(claim(&b, 6_000).await.is_empty(), "renewed until 7,000");
        a.release(&ids[..1]).await.unwrap();
        assert_eq!(claim(&b, 6_000).await, ids[..1]);
        let nodes = a.nodes(6_500).await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!((nodes[0].name.as_str(), nodes[0].leases), ("a", 2));
    });

    // A finished row needs no lease: its last step gives it back, so the
    // chunk's release and the renewals have nothing of it to write.
    state_test!(
        a_finished_row_gives_its_lease_back_with_its_last_step,
        |s| {
            let ids = stable_files(&s, 3).await;
            let a = node(&s, "a");
            a.join(2_000).await.unwrap();
            assert_eq!(claim(&a, 2_000).await, ids);
            for &id in &ids[..2] {
                a.claim(id, 2_001).await.unwrap();
            }
            a.mark_delivered(ids[0], "/out/f0", true, 2_002)
                .await
                .unwrap();
            a.mark_delivered(ids[1], "/out/f1", false, 2_002)
                .await
                .unwrap();
            let leases = |now| {
                let a = a.clone();
                async move { a.nodes(now).await.unwrap()[0].leases }
            };
            assert_eq!(
                leases(2_500).await,
                2,
                "a post-action to go, and a row not started"
            );
            a.mark_done(ids[1], 2_003).await.unwrap();
            assert_eq!(leases(2_500).await, 1);
            assert!(a.heartbeat(4_000).await.unwrap());
            assert_eq!(leases(6_500).await, 1, "only the unfinished row is renewed");
        }
    );

    // The `uploaded` step stands in for a confirmation before the rename:
    // fenced like every step, and renewing the lease it finds.
    state_test!(an_uploaded_step_renews_its_rows_lease, |s| {
        let ids = stable_files(&s, 2).await;
        let (a, b) = (node(&s, "a"), node(&s, "b"));
        a.join(2_000).await.unwrap();
        assert_eq!(claim(&a, 2_000).await, ids);
        a.claim(ids[0], 2_001).await.unwrap();
        a.mark_uploaded_with(ids[0], 1, "/out/f0", None, 4_000)
            .await
            .unwrap();
        assert_eq!(
            claim(&b, 6_000).await,
            ids[1..],
            "the uploaded row's lease runs until 7,000, the other's ran out at 5,000"
        );
        let c = node(&s, "c");
        assert_eq!(claim(&c, 7_001).await, ids[..1], "then it runs out too");
    });

    // Likewise `delivered` with a post-action to go: the confirmation
    // before that post-action.
    state_test!(a_delivered_step_renews_the_lease_of_a_row_not_done, |s| {
        let ids = stable_files(&s, 2).await;
        let (a, b) = (node(&s, "a"), node(&s, "b"));
        a.join(2_000).await.unwrap();
        assert_eq!(claim(&a, 2_000).await, ids);
        for &id in &ids {
            a.claim(id, 2_001).await.unwrap();
        }
        a.mark_delivered(ids[0], "/out/f0", false, 4_000)
            .await
            .unwrap();
        a.mark_delivered(ids[1], "/out/f1", true, 4_000)
            .await
            .unwrap();
        assert!(
            claim(&b, 6_000).await.is_empty(),
            "the delivered row's lease runs until 7,000; the done one is not due"
        );
        assert_eq!(a.nodes(6_500).await.unwrap()[0].leases, 1);
    });

    state_test!(a_dead_nodes_expired_claims_name_their_rules, |s| {
        let ids = stable_files(&s, 2).await;
        let (a, b) = (node(&s, "a"), node(&s, "b"));
        assert_eq!(claim(&a, 2_000).await, ids);
        assert!(b.expired_claims(4_000).await.unwrap().is_empty());
        assert_eq!(b.expired_claims(5_001).await.unwrap(), ["r"]);
        assert!(
            a.expired_claims(5_001).await.unwrap().is_empty(),
            "its own rows are no takeover"
        );
        assert_eq!(claim(&b, 5_002).await, ids);
        assert!(b.expired_claims(5_003).await.unwrap().is_empty());
        b.leave().await.unwrap();
        assert!(
            a.expired_claims(9_000).await.unwrap().is_empty(),
            "rows given back at a clean stop are free, not expired"
        );
    });

    state_test!(one_node_lists_a_rule_until_its_turn_runs_out, |s| {
        let (a, b) = (node(&s, "a"), node(&s, "b"));
        assert!(a.join(500).await.unwrap().is_none());
        assert!(a.take_list_turn("r", 1_000).await.unwrap());
        assert!(
            a.take_list_turn("r", 2_000).await.unwrap(),
            "the lister keeps its turn"
        );
        assert!(!b.take_list_turn("r", 2_500).await.unwrap());
        assert!(a.heartbeat(4_000).await.unwrap());
        assert!(
            !b.take_list_turn("r", 6_000).await.unwrap(),
            "renewed until 7,000"
        );
        assert!(b.take_list_turn("r", 7_001).await.unwrap());
        assert!(!a.take_list_turn("r", 7_002).await.unwrap());
        // A restarted `a` (a new instance of the node) is not refused its own
        // rule by a's old turn, and takes b's only when b's ran out.
        let a2 = node(&s, "a");
        assert!(!a2.take_list_turn("r", 7_003).await.unwrap());
        b.leave().await.unwrap();
        assert!(a2.take_list_turn("r", 7_004).await.unwrap());
    });

    state_test!(a_second_live_process_of_a_node_is_refused, |s| {
        let a = node(&s, "a");
        assert!(a.join(1_000).await.unwrap().is_none());
        let twin = node(&s, "a");
        let refused = twin.join(2_000).await.unwrap().expect("refused");
        assert_eq!(refused.instance, a.me().instance);
        // Once a's heartbeat is older than the lease, a new process may start.
        assert!(twin.join(4_001).await.unwrap().is_none());
        assert!(
            !a.heartbeat(4_002).await.unwrap(),
            "the old process learns it was superseded"
        );
        // ... and takes the node's own rows back at once.
        let ids = stable_files(&s, 1).await;
        assert_eq!(claim(&a, 4_003).await, ids);
        assert_eq!(claim(&twin, 4_004).await, ids);
    });
}
