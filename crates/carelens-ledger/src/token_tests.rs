//! API tokens: accepted until they expire or are revoked, every issue and revocation in
//! the log, and the token table held to the log by `audit verify`.

use std::path::Path;

use carelens_catalog::Role;
use rusqlite::Connection;

use crate::*;

fn budgets() -> Budgets {
    Budgets {
        accounting: carelens_privacy::Accounting::Basic,
        dataset: Amount::budget(20.0, 1e-4),
        users: vec![
            ("ann".into(), Role::Analyst, Amount::budget(5.0, 1e-5)),
            ("eve".into(), Role::Admin, Amount::budget(1.0, 0.0)),
        ],
    }
}

fn ledger(dir: &Path) -> Ledger {
    Ledger::open(&dir.join("ledger.sqlite"), budgets()).unwrap()
}

const NOW: &str = "2026-12-03T10:00:00.000000Z";
const LATER: &str = "2027-03-03T10:00:00.000000Z";
const HASH: &str = "4a5b6c";

fn intact(ledger: &Ledger) -> bool {
    matches!(ledger.verify().unwrap(), Verification::Intact { .. })
}

#[test]
fn a_token_is_accepted_until_it_expires_or_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger(dir.path());
    let token = ledger.issue_token("ann", HASH, LATER).unwrap();
    assert_eq!(
        (token.user.as_str(), token.revoked_at.as_deref()),
        ("ann", None)
    );
    assert_eq!(
        ledger.token_user(HASH, NOW).unwrap().as_deref(),
        Some("ann")
    );
    assert_eq!(ledger.token_user("other", NOW).unwrap(), None, "unknown");
    assert_eq!(ledger.token_user(HASH, LATER).unwrap(), None, "expired");

    let revoked = ledger.revoke_token(token.id).unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(ledger.token_user(HASH, NOW).unwrap(), None, "revoked");
    // Revoking again changes nothing.
    assert_eq!(ledger.revoke_token(token.id).unwrap(), revoked);
    assert!(matches!(
        ledger.revoke_token(999),
        Err(LedgerError::UnknownToken { id: 999 })
    ));
    assert!(matches!(
        ledger.issue_token("mallory", "x", LATER),
        Err(LedgerError::UnknownUser { .. })
    ));
    assert_eq!(ledger.tokens(Some("ann")).unwrap(), [revoked]);
    assert!(ledger.tokens(Some("eve")).unwrap().is_empty());

    let log = ledger.audit_log(None, Some("ann")).unwrap();
    let kinds: Vec<Event> = log.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [Event::Budget, Event::TokenIssued, Event::TokenRevoked],
        "one entry each, none for the repeated revocation"
    );
    assert!(
        log.iter()
            .all(|e| !e.params.contains(HASH) && !e.detail.contains(HASH)),
        "the log does not hold the token's hash"
    );
    assert!(intact(&ledger));
}

#[test]
fn the_token_table_cannot_be_changed_around_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger(dir.path());
    let token = ledger.issue_token("ann", HASH, LATER).unwrap();
    let path = dir.path().join("ledger.sqlite");
    let raw = Connection::open(&path).unwrap();
    for tamper in [
        "UPDATE tokens SET user = 'eve'",
        "UPDATE tokens SET expires_at = '2099-01-01T00:00:00Z'",
        "DELETE FROM tokens",
    ] {
        assert!(raw.execute(tamper, []).is_err(), "{tamper} was allowed");
    }
    ledger.revoke_token(token.id).unwrap();
    assert!(
        raw.execute(
            "UPDATE tokens SET revoked_seq = NULL, revoked_at = NULL",
            []
        )
        .is_err(),
        "un-revoking was allowed"
    );
    assert!(intact(&ledger));
    // A token slipped into the table without its entry is found.
    raw.execute(
        "INSERT INTO tokens (token_hash, user, issued_seq, issued_at, expires_at) \
         VALUES ('feed', 'eve', 1, ?1, ?2)",
        [NOW, LATER],
    )
    .unwrap();
    match ledger.verify().unwrap() {
        Verification::Broken { problem, .. } => {
            assert!(problem.contains("token table"), "{problem}");
        }
        intact => panic!("not noticed: {intact:?}"),
    }
}
