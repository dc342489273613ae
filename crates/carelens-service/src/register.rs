//! The transparency register: every charge to the dataset's privacy budget — when, by which
//! role, for what stated purpose, at what cost — the cumulative loss against the cap, and
//! the audit log's head, for anyone to read.
//!
//! Which fields of the audit log are public is decided here, once, for every face (the
//! `/register` pages, `carelens register --out`, their CSV and JSON): a [`Register`] holds
//! nothing else. Never published: a user's name, the SQL (its literals may describe
//! someone), plan hashes and cache keys, a result or its hash, why a query failed or was
//! rejected, the DP parameters beyond the ε and δ spent (and ρ, under zCDP accounting, from
//! which the cumulative ε is computed). The purpose is what its author
//! wrote for publication: a query's title when its header is written to be read (a title
//! line and a `What:` paragraph, [`published_title`]) or a request's stated purpose. `docs/register.md` lists the fields and the reasons.

use std::collections::HashMap;

use carelens_ledger::{Amount, AuditEntry, Event, Verification};
use carelens_privacy::{Accounting, DisclosurePolicy};
use serde::Serialize;

use crate::{Service, ServiceError, request_of_key};

/// The register as published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Register {
    /// The dataset's name, as the catalog gives it.
    pub dataset: String,
    /// When the register was made (UTC, to the minute).
    pub made_at: String,
    /// The dataset's lifetime privacy cap: what all releases together may ever spend.
    pub cap: Spend,
    /// How releases add up: basic (ε and δ add), or zCDP (ρ adds, and the total is
    /// converted to ε at the cap's δ) when the policy uses Gaussian noise.
    pub accounting: Accounting,
    /// What the charges below spent together.
    pub spent: Spend,
    /// Every charge to the budget, oldest first.
    pub charges: Vec<Charge>,
    /// Answers given again from an earlier release, at no cost.
    pub answered_again: u64,
    /// Queries the privacy checks or the disclosure policy rejected (nothing spent).
    pub rejected: u64,
    /// Queries refused because a budget could not cover them (nothing spent).
    pub refused: u64,
    /// The audit log as checked when the register was made.
    pub log: LogState,
    /// The small-number rules every release follows.
    pub disclosure: DisclosurePolicy,
}

/// An amount of privacy loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spend {
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
}

impl From<Amount> for Spend {
    fn from(amount: Amount) -> Self {
        Self {
            epsilon: amount.epsilon_value(),
            delta: amount.delta_value(),
        }
    }
}

/// One charge to the privacy budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Charge {
    /// The charge's entry in the audit log.
    pub entry: i64,
    /// The day of the charge (UTC, `YYYY-MM-DD`); the time of day is not published.
    pub date: String,
    /// The role of whoever asked (never their name).
    pub role: String,
    /// Why a release was allowed: an analyst's own query, or a researcher's request that
    /// an approver approved.
    pub basis: Basis,
    /// What its author wrote for publication; `None` when the query had no title.
    pub purpose: Option<String>,
    /// What it cost alone.
    pub spent: Spend,
    /// Its ρ, when releases add up in zCDP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    /// ε spent on the dataset up to and including this charge, as the accounting adds
    /// up.
    pub cumulative_epsilon: f64,
    /// What became of it.
    pub outcome: ChargeStatus,
    /// The release's id (its entry in the audit log), when one was made.
    pub release: Option<i64>,
}

/// Why a charge was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// A query run by a user whose role lets them spend (analysts, approvers, admins).
    Query,
    /// A researcher's request, released after an approver approved it.
    ApprovedRequest,
}

/// What became of a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeStatus {
    /// Its result was released.
    Released,
    /// The query failed after its charge: nothing was released, the budget stays spent.
    Failed,
    /// Charged; its outcome is not logged yet (it is running, or its process stopped).
    Pending,
}

/// The audit log as checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogState {
    /// Whether every entry is intact and in order.
    pub intact: bool,
    /// Number of entries.
    pub entries: i64,
    /// The last entry's number (when intact).
    pub head_seq: i64,
    /// The last entry's hash (when intact): keep it, and check later that the log still
    /// holds it.
    pub head_hash: String,
}

/// The longest title the register publishes; longer ones are cut.
const MAX_TITLE: usize = 120;

/// What the register publishes as a query's purpose: its title, only when its header is
/// one written to be read — a title line and a `What:` paragraph, as the query library's
/// headers are — and cut to [`MAX_TITLE`] characters. Any other first comment line (a
/// note to oneself, commented-out SQL with its literals) is not published.
pub fn published_title(sql: &str) -> Option<String> {
    let header = carelens_engine::Header::parse(sql);
    let written_to_be_read = header.paragraphs.iter().any(|(label, _)| label == "What");
    let title = header.title.trim();
    if !written_to_be_read || title.is_empty() {
        return None;
    }
    Some(if title.chars().count() > MAX_TITLE {
        let cut: String = title.chars().take(MAX_TITLE - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        title.to_owned()
    })
}

impl Service {
    /// The transparency register as of now. Anyone may read it: it holds only the public
    /// fields (see the module's documentation).
    pub async fn register(&self) -> Result<Register, ServiceError> {
        let (entries, purposes, budget, verification, accounting) = self
            .with_ledger(|ledger| {
                Ok((
                    ledger.audit_log(None, None)?,
                    ledger.request_purposes()?,
                    ledger.budget_report(None)?,
                    ledger.verify()?,
                    ledger.accounting(),
                ))
            })
            .await?;
        let cap = budget
            .first()
            .map(|dataset| dataset.budget)
            .unwrap_or_default();
        Ok(build(
            self.catalog.catalog().dataset.name.clone(),
            self.catalog.disclosure().1,
            chrono::Utc::now().format("%Y-%m-%dT%H:%MZ").to_string(),
            Cap {
                amount: cap,
                accounting,
            },
            &entries,
            &purposes.into_iter().collect(),
            verification,
        ))
    }

    /// The number of entries in the audit log: a register made at the same length holds
    /// the same charges (a face may keep one that long).
    pub async fn log_length(&self) -> Result<i64, ServiceError> {
        self.with_ledger(|ledger| ledger.log_length()).await
    }
}

/// The dataset's cap, and how releases add up against it.
struct Cap {
    amount: Amount,
    accounting: Accounting,
}

/// The register of `entries` (the whole log, in order).
fn build(
    dataset: String,
    disclosure: DisclosurePolicy,
    made_at: String,
    cap: Cap,
    entries: &[AuditEntry],
    purposes: &HashMap<i64, String>,
    verification: Verification,
) -> Register {
    let Cap {
        amount: cap,
        accounting,
    } = cap;
    // What became of each charge: its release, or its failure.
    let mut outcomes: HashMap<i64, (ChargeStatus, Option<i64>)> = HashMap::new();
    for entry in entries {
        let outcome = match entry.event {
            Event::Released => (ChargeStatus::Released, Some(entry.seq)),
            Event::Error => (ChargeStatus::Failed, None),
            _ => continue,
        };
        if let Some(charge) = entry.refers_to {
            outcomes.insert(charge, outcome);
        }
    }
    let count = |event: Event| entries.iter().filter(|e| e.event == event).count() as u64;
    let mut spent = carelens_ledger::Spend::default();
    let mut charges = Vec::new();
    for entry in entries.iter().filter(|e| e.event == Event::Charged) {
        let charge = entry.spend();
        spent = spent.plus(charge);
        let request = request_of_key(&entry.cache_key);
        let purpose = match request {
            Some(id) => purposes.get(&id).cloned(),
            None => published_title(&entry.sql),
        }
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
        let (outcome, release) = outcomes
            .get(&entry.seq)
            .copied()
            .unwrap_or((ChargeStatus::Pending, None));
        charges.push(Charge {
            entry: entry.seq,
            date: entry.at.get(..10).unwrap_or(&entry.at).to_owned(),
            role: entry.role.clone(),
            basis: match request {
                Some(_) => Basis::ApprovedRequest,
                None => Basis::Query,
            },
            purpose,
            spent: charge.basic.into(),
            rho: (accounting == Accounting::Zcdp).then(|| charge.zcdp.rho_value()),
            cumulative_epsilon: spent.against(accounting, cap).epsilon_value(),
            outcome,
            release,
        });
    }
    let log = match verification {
        Verification::Intact {
            entries,
            head_seq,
            head_hash,
        } => LogState {
            intact: true,
            entries,
            head_seq,
            head_hash,
        },
        Verification::Broken { .. } => LogState {
            intact: false,
            entries: entries.len() as i64,
            head_seq: 0,
            head_hash: String::new(),
        },
    };
    Register {
        dataset,
        made_at,
        cap: cap.into(),
        accounting,
        spent: spent.against(accounting, cap).into(),
        charges,
        answered_again: count(Event::Cached) + count(Event::CachedFailure),
        rejected: count(Event::Rejected),
        refused: count(Event::Refused),
        log,
        disclosure,
    }
}
