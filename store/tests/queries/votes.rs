//! `store`'s votes queries on both engines.

use store::{Error, Store};
use testkit::db::TestDb;
use testkit::fixtures::played_match;

async fn votes_count_once_and_never_on_your_own_match(store: &Store) {
    let played = played_match(store, 3).await;
    let seat_owner = played.user_ids[0];
    assert_eq!(
        store.next_vote(seat_owner).await.unwrap(),
        None,
        "nothing to vote on but your own match"
    );
    let voter = store
        .upsert_user(&format!("0x{}", "cd".repeat(20)))
        .await
        .unwrap()
        .id;
    let offered = store
        .next_vote(voter)
        .await
        .unwrap()
        .expect("a pair to vote on");
    assert!(played.pair_ids.contains(&offered.pair_id));
    // Against the panel: the rejected answer.
    let vote = store
        .record_vote(voter, offered.pair_id, offered.rejected_response_id)
        .await
        .unwrap();
    assert_eq!(vote.agrees, 0);
    assert_eq!(vote.chosen_response_id, offered.rejected_response_id);
    // One vote per round (the fixture has one round).
    assert_eq!(store.next_vote(voter).await.unwrap(), None);
    let again = store
        .record_vote(voter, offered.pair_id, offered.chosen_response_id)
        .await;
    assert!(matches!(again, Err(Error::Duplicate { .. })), "{again:?}");
    let stranger = store
        .upsert_user(&format!("0x{}", "ef".repeat(20)))
        .await
        .unwrap()
        .id;
    let outside = store.record_vote(stranger, offered.pair_id, 999_999).await;
    assert!(
        matches!(
            outside,
            Err(Error::Invalid {
                field: "chosen_response_id",
                ..
            })
        ),
        "{outside:?}"
    );
    let mine = store
        .record_vote(seat_owner, offered.pair_id, offered.chosen_response_id)
        .await;
    assert!(
        matches!(
            mine,
            Err(Error::Invalid {
                field: "pair_id",
                ..
            })
        ),
        "{mine:?}"
    );
    store
        .record_vote(stranger, offered.pair_id, offered.chosen_response_id)
        .await
        .unwrap();
    let agreement = store.vote_agreement().await.unwrap();
    assert_eq!(agreement.len(), 1);
    assert_eq!((agreement[0].votes, agreement[0].agreed), (2, 1));
    let rows = store.export_votes_page(None, 0, 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].chosen, offered.rejected,
        "people's choice, not the panel's"
    );
    assert_eq!(rows[1].chosen, offered.chosen);
    let after = store
        .export_votes_page(Some(played.space_id), rows[0].vote_id, 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
}

#[tokio::test]
async fn votes_on_both_databases() {
    for db in [Some(TestDb::sqlite().await), TestDb::postgres().await]
        .into_iter()
        .flatten()
    {
        votes_count_once_and_never_on_your_own_match(&db.store).await;
    }
}
