//! Cohort-request workflow tests: states, four eyes, differencing flags, concurrency, and
//! `audit verify` on request entries.

use std::path::Path;

use carelens_catalog::Role;
use carelens_privacy::{ChargeItem, DefinitionToken, MechanismKind, PrivacyCharge};

use crate::*;

fn budgets() -> Budgets {
    Budgets {
        accounting: carelens_privacy::Accounting::Basic,
        dataset: Amount::budget(20.0, 1e-4),
        users: vec![
            ("rita".into(), Role::Researcher, Amount::budget(5.0, 1e-5)),
            ("ravi".into(), Role::Researcher, Amount::budget(5.0, 1e-5)),
            ("alan".into(), Role::Approver, Amount::budget(1.0, 0.0)),
            ("eve".into(), Role::Admin, Amount::budget(1.0, 0.0)),
        ],
    }
}

fn ledger(dir: &Path) -> Ledger {
    Ledger::open(&dir.join("ledger.sqlite"), budgets()).unwrap()
}

/// Tokens of a whitespace-separated definition; quoted or numeric words are literals.
fn definition(s: &str) -> Vec<DefinitionToken> {
    s.split_whitespace()
        .map(|w| DefinitionToken {
            text: w.to_owned(),
            literal: w.starts_with('\'') || w.chars().all(|c| c.is_ascii_digit()),
        })
        .collect()
}

/// The DP parameters the command line stores at approval (opaque to the ledger).
const PARAMS: &str = "{\"epsilon\":0.5}";

const C1: &str = "select count ( distinct p ) from t where age between 40 and 70 and hba1c > 58";
const C1_57: &str = "select count ( distinct p ) from t where age between 40 and 70 and hba1c > 57";
const C2: &str =
    "select count ( distinct p ) from af left join ac on af.p = ac.p where ac.p is null";

fn submit(ledger: &mut Ledger, user: &str, def: &str) -> Request {
    let tokens = definition(def);
    ledger
        .submit_request(
            user,
            &NewRequest {
                sql: def,
                plan_hash: &format!("plan of {def}"),
                purpose: "feasibility of a trial",
                epsilon: 0.5,
                definition: &tokens,
            },
        )
        .unwrap()
}

fn charge(epsilon: f64) -> PrivacyCharge {
    PrivacyCharge::new(vec![ChargeItem {
        label: "persons".into(),
        mechanism: MechanismKind::DiscreteLaplace,
        epsilon,
        delta: 0.0,
        max_groups: 1,
        per_group_sensitivity: 1,
        scale: 1.0 / epsilon,
        threshold: None,
        rho: None,
    }])
}

/// What the command line does to release: charge, store, mark released.
fn release(ledger: &mut Ledger, user: &str, request: &Request) -> (Request, Amount) {
    let request = ledger.releasable_request(user, request.id).unwrap();
    let epsilon = request.approved_epsilon().unwrap();
    let key = format!("key of {}", request.id);
    let record = QueryRecord {
        sql: &request.sql,
        plan_hash: &request.plan_hash,
        cache_key: &key,
    };
    let (release_seq, spent) = match ledger.charge(user, &record, &charge(epsilon)).unwrap() {
        ChargeOutcome::Charged(receipt) => {
            let stored = ledger.record_release(&receipt, b"{\"n\": 125}").unwrap();
            (stored.release_seq, receipt.amount)
        }
        ChargeOutcome::Cached(stored) => (stored.release_seq, Amount::default()),
        other => panic!("{other:?}"),
    };
    (
        ledger
            .mark_request_released(user, request.id, release_seq)
            .unwrap(),
        spent,
    )
}

fn refusal(err: LedgerError) -> String {
    match err {
        LedgerError::Workflow(refusal) => refusal.to_string(),
        other => panic!("expected a workflow refusal, got {other}"),
    }
}

fn intact(ledger: &Ledger) {
    match ledger.verify().unwrap() {
        Verification::Intact { .. } => {}
        broken => panic!("{broken:?}"),
    }
}

#[test]
fn submitted_approved_released_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger(dir.path());
    let request = submit(&mut ledger, "rita", C1);
    assert_eq!(request.state, RequestState::Submitted);
    assert_eq!(request.flag, None);
    assert_eq!(request.approved_epsilon(), None);

    // The approver lowers ε.
    let approved = ledger
        .approve_request(
            "alan",
            request.id,
            Some(0.25),
            PARAMS,
            "cohort definition checked",
        )
        .unwrap();
    assert_eq!(approved.state, RequestState::Approved);
    let decision = approved.decision.clone().unwrap();
    assert_eq!(
        (decision.by.as_str(), decision.epsilon),
        ("alan", Some(0.25))
    );

    let (released, spent) = release(&mut ledger, "rita", &approved);
    assert_eq!(released.state, RequestState::Released);
    assert_eq!(spent.epsilon_value(), 0.25);
    let release_seq = released.release_seq.unwrap();

    // Marking it released again writes nothing; showing it again costs nothing.
    let entries = ledger.audit_log(None, None).unwrap().len();
    let again = ledger
        .mark_request_released("rita", request.id, release_seq)
        .unwrap();
    assert_eq!(again.release_seq, Some(release_seq));
    assert_eq!(ledger.audit_log(None, None).unwrap().len(), entries);
    let stored = ledger.request_release_again("rita", request.id).unwrap();
    assert_eq!(stored.release_seq, release_seq);
    let lines = ledger.budget_report(Some("rita")).unwrap();
    assert_eq!(lines[1].spent.epsilon_value(), 0.25);

    // Every state change is in the log, in order.
    let events: Vec<Event> = ledger
        .audit_log(None, None)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .filter(|e| !matches!(e, Event::Budget))
        .collect();
    assert_eq!(
        events,
        [
            Event::RequestSubmitted,
            Event::RequestApproved,
            Event::Charged,
            Event::Released,
            Event::RequestReleased,
            Event::Cached
        ]
    );
    intact(&ledger);

    // Seen by its requester and by approvers, not by another researcher.
    assert_eq!(ledger.request("alan", request.id).unwrap().id, request.id);
    assert!(matches!(
        ledger.request("ravi", request.id),
        Err(LedgerError::Workflow(
            WorkflowRefusal::UnknownRequest { .. }
        ))
    ));
    assert_eq!(ledger.requests("ravi").unwrap().len(), 0);
    assert_eq!(ledger.requests("eve").unwrap().len(), 1);
}

#[test]
fn four_eyes_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger(dir.path());
    let own = submit(&mut ledger, "alan", C1);
    let message = refusal(
        ledger
            .approve_request("alan", own.id, None, PARAMS, "")
            .unwrap_err(),
    );
    assert!(message.contains("four eyes"), "{message}");
    let message = refusal(ledger.reject_request("alan", own.id, "no").unwrap_err());
    assert!(message.contains("four eyes"), "{message}");
    // A researcher cannot decide at all.
    let message = refusal(
        ledger
            .approve_request("rita", own.id, None, PARAMS, "")
            .unwrap_err(),
    );
    assert!(message.contains("only an approver or admin"), "{message}");
    // Another approver can.
    assert_eq!(
        ledger
            .approve_request("eve", own.id, None, PARAMS, "")
            .unwrap()
            .state,
        RequestState::Approved
    );
    // Only the requester releases; a researcher does not even learn the request exists.
    let message = refusal(ledger.releasable_request("eve", own.id).unwrap_err());
    assert!(message.contains("only its requester"), "{message}");
    assert!(matches!(
        ledger.releasable_request("rita", own.id),
        Err(LedgerError::Workflow(
            WorkflowRefusal::UnknownRequest { .. }
        ))
    ));
    intact(&ledger);
}

#[test]
fn other_transitions_are_refused_with_the_state_they_are_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger(dir.path());
    let a = submit(&mut ledger, "rita", C1);
    // Not yet approved: cannot be released.
    let message = refusal(ledger.releasable_request("rita", a.id).unwrap_err());
    assert!(
        message.contains("is submitted: it cannot be released"),
        "{message}"
    );
    // A rejection needs a note.
    let message = refusal(ledger.reject_request("alan", a.id, " ").unwrap_err());
    assert!(message.contains("needs a note"), "{message}");
    ledger.reject_request("alan", a.id, "too broad").unwrap();
    for attempt in [
        ledger.approve_request("eve", a.id, None, PARAMS, ""),
        ledger.reject_request("eve", a.id, "again"),
    ] {
        let message = refusal(attempt.unwrap_err());
        assert!(message.contains("is rejected"), "{message}");
    }
    let message = refusal(ledger.releasable_request("rita", a.id).unwrap_err());
    assert!(
        message.contains("is rejected: it cannot be released"),
        "{message}"
    );
    let b = submit(&mut ledger, "rita", C2);
    ledger
        .approve_request("alan", b.id, None, PARAMS, "")
        .unwrap();
    let message = refusal(
        ledger
            .approve_request("eve", b.id, None, PARAMS, "")
            .unwrap_err(),
    );
    assert!(
        message.contains("is approved: it cannot be approved"),
        "{message}"
    );
    assert!(matches!(
        ledger.request("rita", 999),
        Err(LedgerError::Workflow(WorkflowRefusal::UnknownRequest {
            id: 999
        }))
    ));
    // A bad ε is refused, not recorded.
    let c = submit(&mut ledger, "ravi", C2);
    let message = refusal(
        ledger
            .approve_request("alan", c.id, Some(-1.0), PARAMS, "")
            .unwrap_err(),
    );
    assert!(message.contains("not a positive number"), "{message}");
    intact(&ledger);
}

#[test]
fn a_near_duplicate_of_an_earlier_cohort_is_flagged_for_the_approver() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger(dir.path());
    let first = submit(&mut ledger, "rita", C1);
    ledger
        .approve_request("alan", first.id, None, PARAMS, "")
        .unwrap();
    release(&mut ledger, "rita", &first);

    let near = submit(&mut ledger, "rita", C1_57);
    let flag = near.flag.clone().expect("58 → 57 is flagged");
    assert_eq!(flag.earlier, first.id);
    assert!(flag.to_string().contains("58 became 57"), "{flag}");
    // The approver sees it and must say why to approve.
    let shown = ledger.request("alan", near.id).unwrap();
    assert_eq!(shown.flag, Some(flag));
    let message = refusal(
        ledger
            .approve_request("alan", near.id, None, PARAMS, "")
            .unwrap_err(),
    );
    assert!(message.contains("is flagged"), "{message}");
    ledger
        .approve_request(
            "alan",
            near.id,
            None,
            PARAMS,
            "different trial arm; pair reviewed",
        )
        .unwrap();

    // An unrelated cohort, and the same change by another researcher, are not flagged.
    assert_eq!(submit(&mut ledger, "rita", C2).flag, None);
    assert_eq!(submit(&mut ledger, "ravi", C1_57).flag, None);
    intact(&ledger);
}

#[test]
fn pending_requests_count_and_the_flag_is_rechecked_when_deciding() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger(dir.path());
    // Two near-duplicates submitted back to back, before either is decided.
    let a = submit(&mut ledger, "rita", C1);
    let b = submit(&mut ledger, "rita", C1_57);
    assert_eq!(b.flag.as_ref().map(|f| f.earlier), Some(a.id));
    // The earlier one is flagged too, now that the later one exists.
    let shown = ledger.request("alan", a.id).unwrap();
    assert_eq!(shown.flag.as_ref().map(|f| f.earlier), Some(b.id));
    let message = refusal(
        ledger
            .approve_request("alan", a.id, None, PARAMS, "")
            .unwrap_err(),
    );
    assert!(message.contains("is flagged"), "{message}");
    // A rejected request no longer counts.
    ledger
        .reject_request("alan", b.id, "one threshold only")
        .unwrap();
    assert_eq!(ledger.request("alan", a.id).unwrap().flag, None);
    ledger
        .approve_request("alan", a.id, None, PARAMS, "")
        .unwrap();
    // The same definition again is a repeat, flagged too.
    let again = submit(&mut ledger, "rita", C1);
    assert_eq!(
        again.flag.map(|f| f.difference),
        Some(carelens_privacy::Difference::Repeat)
    );
    // An approver may lower the cost, not raise it.
    let c = submit(&mut ledger, "ravi", C2);
    let message = refusal(
        ledger
            .approve_request("alan", c.id, Some(0.9), PARAMS, "")
            .unwrap_err(),
    );
    assert!(message.contains("not raise it"), "{message}");
    intact(&ledger);
}

#[test]
fn concurrent_releases_of_one_request_release_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let mut ledger = ledger(dir.path());
    let request = submit(&mut ledger, "rita", C1);
    ledger
        .approve_request("alan", request.id, None, PARAMS, "")
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            let request = request.clone();
            std::thread::spawn(move || {
                let mut ledger = Ledger::open(&path, budgets()).unwrap();
                release(&mut ledger, "rita", &request).0
            })
        })
        .collect();
    let released: Vec<Request> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let first = released[0].release_seq;
    assert!(
        released
            .iter()
            .all(|r| r.release_seq == first && r.state == RequestState::Released)
    );
    let log = ledger.audit_log(None, None).unwrap();
    let count = |event| log.iter().filter(|e| e.event == event).count();
    assert_eq!(count(Event::RequestReleased), 1);
    assert_eq!(count(Event::Released), 1);
    assert_eq!(
        ledger.budget_report(Some("rita")).unwrap()[1]
            .spent
            .epsilon_value(),
        0.5,
        "charged once"
    );
    intact(&ledger);
}

#[test]
fn verify_catches_a_request_approved_by_its_requester() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger(dir.path());
    let request = submit(&mut ledger, "rita", C1);
    // Written around the workflow's checks, as a forger with the file would.
    let conn = rusqlite::Connection::open(dir.path().join("ledger.sqlite")).unwrap();
    crate::audit::append(
        &conn,
        Event::RequestApproved,
        &crate::audit::NewEntry {
            user: "rita",
            role: "researcher",
            params: "{\"epsilon\": 0.5, \"note\": \"\"}",
            refers_to: Some(request.id),
            ..Default::default()
        },
    )
    .unwrap();
    match ledger.verify().unwrap() {
        Verification::Broken { problem, .. } => {
            assert!(problem.contains("out of order"), "{problem}")
        }
        intact => panic!("{intact:?}"),
    }
}

/// `verify` checks that a request was released with a run of the approved query: a
/// request marked released with the release of another plan (as a faulty or forged
/// release step would write it) breaks the log there.
#[test]
fn a_request_released_with_another_query_breaks_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger(dir.path());
    let request = submit(&mut ledger, "rita", C1);
    ledger
        .approve_request("alan", request.id, None, PARAMS, "")
        .unwrap();
    let record = QueryRecord {
        sql: C2,
        plan_hash: "plan of another query",
        cache_key: "key of another query",
    };
    let ChargeOutcome::Charged(receipt) = ledger.charge("rita", &record, &charge(0.5)).unwrap()
    else {
        panic!("not charged")
    };
    let stored = ledger.record_release(&receipt, b"{\"n\": 125}").unwrap();
    intact(&ledger);
    let released = ledger
        .mark_request_released("rita", request.id, stored.release_seq)
        .unwrap();
    assert_eq!(released.state, RequestState::Released);
    match ledger.verify().unwrap() {
        Verification::Broken { problem, .. } => {
            assert!(problem.contains("another query"), "{problem}")
        }
        intact => panic!("a request released with another query passed: {intact:?}"),
    }
}
