//! Matchmaking exclusivity across processes: two "servers" (two pools on one
//! database) form matches from overlapping groups of the same queue at the same time.
//! Every entry lands in at most one match, every match that forms keeps all of its
//! entries, and a losing claim fails whole with a clear error. Run on PostgreSQL (the
//! scale-out deployment) and SQLite.

use std::collections::HashMap;

use store::{Error, Store};
use testkit::db::TestDb;
use testkit::fixtures;

/// Groups of `size` entries over `ids`, starting at `offset`, wrapping around: two
/// different offsets give groups that overlap the other side's.
fn groups(ids: &[i64], size: usize, offset: usize) -> Vec<Vec<i64>> {
    let n = ids.len();
    (0..n / size)
        .map(|g| {
            (0..size)
                .map(|k| ids[(offset + g * size + k) % n])
                .collect()
        })
        .collect()
}

async fn race(a: Store, b: Store) {
    let mut formed: HashMap<i64, Vec<i64>> = HashMap::new();
    for round in 0..8 {
        let (space_id, tier_id, ids) = fixtures::queued_entries(&a, 12, 1).await;
        let side = |store: Store, groups: Vec<Vec<i64>>| {
            tokio::spawn(async move {
                let mut won = Vec::new();
                for g in groups {
                    match store
                        .create_match_leased(space_id, tier_id, 1, "v", &g, Some(("srv", i64::MAX)))
                        .await
                    {
                        Ok(m) => won.push((m.id, g)),
                        Err(Error::Invalid { field, reason }) => {
                            assert_eq!(field, "entry_ids");
                            assert!(reason.contains("is not queued"), "{reason}");
                        }
                        Err(e) => panic!("round {round}: unexpected error {e}"),
                    }
                }
                won
            })
        };
        let ta = side(a.clone(), groups(&ids, 4, 0));
        let tb = side(b.clone(), groups(&ids, 4, 2 + round % 2));
        let (wa, wb) = (ta.await.unwrap(), tb.await.unwrap());
        assert!(
            !wa.is_empty() || !wb.is_empty(),
            "round {round}: nobody won"
        );
        let mut seen = HashMap::new();
        for (match_id, group) in wa.into_iter().chain(wb) {
            for &e in &group {
                assert!(
                    seen.insert(e, match_id).is_none(),
                    "round {round}: entry {e} claimed by two matches"
                );
            }
            formed.insert(match_id, group);
        }
    }
    // What the database holds agrees with what each side believes it won.
    for (match_id, mut group) in formed {
        let mut held: Vec<i64> = a
            .match_entries(match_id)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        held.sort_unstable();
        group.sort_unstable();
        assert_eq!(held, group, "match {match_id} lost an entry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_matchmakers_never_share_an_entry_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let url = testkit::db::database_url_with_name(&testkit::db::postgres_admin_url(), &db.name);
    // A second pool, as a second server process would have.
    let other = Store::open_url(&url).await.unwrap();
    race(db.store.clone(), other.clone()).await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_matchmakers_never_share_an_entry_sqlite() {
    let db = TestDb::sqlite().await;
    let other = Store::open_sqlite(std::path::Path::new(&db.name))
        .await
        .unwrap();
    race(db.store.clone(), other).await;
}
