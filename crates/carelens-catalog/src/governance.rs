//! The governance part of a catalog: the privacy policy, the ledger's location, and the
//! users with their roles and budgets (`[policy]`, `[ledger]`, `[[users]]`).
//!
//! Privacy parameters are the privacy crate's validated newtypes, so a bad ε in the file
//! fails to parse with the same message as in code.

use std::collections::HashMap;

use carelens_privacy::{Delta, DisclosurePolicy, Epsilon, NoiseKind, UnknownPreset};
use serde::{Deserialize, Serialize};

use crate::error::Problem;

/// The privacy policy of the dataset (`[policy]`). Every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// ε of a query that does not ask for one.
    #[serde(default = "default_epsilon")]
    pub epsilon_default: Epsilon,
    /// The most ε one query may ask for; a query above it is rejected, not clipped.
    #[serde(default = "max_epsilon")]
    pub epsilon_max: Epsilon,
    /// The least ε one query may ask for; a query below it is rejected. An ε so small that
    /// the noise drowns any answer buys nothing but a charge, and only a query that fails
    /// would make such a charge worth asking for.
    #[serde(default = "min_epsilon")]
    pub epsilon_min: Epsilon,
    /// δ of a query that needs one (key selection, Gaussian noise) and does not say.
    #[serde(default = "default_delta")]
    pub delta: Delta,
    /// The most δ one query may ask for.
    #[serde(default = "max_delta")]
    pub delta_max: Delta,
    /// Noise for counts and sums.
    #[serde(default)]
    pub noise: NoiseKind,
    /// Suppression and rounding: a preset name (`"nhs"`, `"ons"`, `"none"`) or a table.
    #[serde(default)]
    pub disclosure: DisclosureSetting,
    /// The total ε that may ever be spent on this dataset, by all users together: the
    /// privacy loss to the people in it.
    #[serde(default = "dataset_epsilon")]
    pub dataset_epsilon: Epsilon,
    /// The total δ that may ever be spent on this dataset.
    #[serde(default = "dataset_delta")]
    pub dataset_delta: Delta,
    /// A query that runs longer is stopped; the failure is its answer (charged, and served
    /// again to a retry).
    #[serde(default = "time_limit_seconds")]
    pub time_limit_seconds: u64,
    /// Memory one query's operators may hold, in MiB; sorts and aggregations spill to disk
    /// beyond it, anything else fails like any failure after the charge.
    #[serde(default = "memory_limit_mb")]
    pub memory_limit_mb: u64,
    /// The most rows of a public table that one private row may be joined to, checked
    /// before the charge: a join on a key with few rows per value passes, a cross join in
    /// disguise does not.
    #[serde(default = "max_join_fanout")]
    pub max_join_fanout: u64,
    /// A release, or a failure, is held until the next multiple of this many milliseconds
    /// since the query started running (at most the time limit), so that response times
    /// show only the multiple. 0 turns it off.
    #[serde(default = "response_quantum_ms")]
    pub response_quantum_ms: u64,
}

// Defaults, checked at compile time.
const DEFAULT_EPSILON: Epsilon = Epsilon::constant(1.0);
const MAX_EPSILON: Epsilon = Epsilon::constant(2.0);
const MIN_EPSILON: Epsilon = Epsilon::constant(0.01);
const DEFAULT_DELTA: Delta = Delta::constant(1e-6);
const MAX_DELTA: Delta = Delta::constant(1e-5);
const DATASET_EPSILON: Epsilon = Epsilon::constant(20.0);
const DATASET_DELTA: Delta = Delta::constant(1e-4);

fn default_epsilon() -> Epsilon {
    DEFAULT_EPSILON
}
fn max_epsilon() -> Epsilon {
    MAX_EPSILON
}
fn min_epsilon() -> Epsilon {
    MIN_EPSILON
}
fn default_delta() -> Delta {
    DEFAULT_DELTA
}
fn max_delta() -> Delta {
    MAX_DELTA
}
fn dataset_epsilon() -> Epsilon {
    DATASET_EPSILON
}
fn dataset_delta() -> Delta {
    DATASET_DELTA
}
fn time_limit_seconds() -> u64 {
    300
}
fn memory_limit_mb() -> u64 {
    4096
}
fn max_join_fanout() -> u64 {
    1000
}
fn response_quantum_ms() -> u64 {
    1000
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            epsilon_default: default_epsilon(),
            epsilon_max: max_epsilon(),
            epsilon_min: min_epsilon(),
            delta: default_delta(),
            delta_max: max_delta(),
            noise: NoiseKind::default(),
            disclosure: DisclosureSetting::default(),
            dataset_epsilon: dataset_epsilon(),
            dataset_delta: dataset_delta(),
            time_limit_seconds: time_limit_seconds(),
            memory_limit_mb: memory_limit_mb(),
            max_join_fanout: max_join_fanout(),
            response_quantum_ms: response_quantum_ms(),
        }
    }
}

/// `disclosure = "nhs"` or `[policy.disclosure]` with every rule spelled out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DisclosureSetting {
    /// A preset: `nhs`, `ons` or `none`.
    Preset(String),
    /// Explicit rules.
    Custom(DisclosurePolicy),
}

impl Default for DisclosureSetting {
    fn default() -> Self {
        DisclosureSetting::Preset("nhs".to_owned())
    }
}

impl DisclosureSetting {
    /// The rules this setting names.
    pub fn resolve(&self) -> Result<DisclosurePolicy, UnknownPreset> {
        match self {
            DisclosureSetting::Preset(name) => DisclosurePolicy::preset(name),
            DisclosureSetting::Custom(policy) => Ok(*policy),
        }
    }
}

/// Where the ledger lives (`[ledger]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// The SQLite file, relative to the catalog's folder.
    pub path: String,
}

/// The ledger's path when the catalog does not say, relative to the catalog's folder.
pub const DEFAULT_LEDGER_PATH: &str = ".carelens/ledger.sqlite";

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs queries within their own budget.
    Analyst,
    /// Asks for approved cohort counts.
    Researcher,
    /// Approves researchers' requests; sees every user's budget and the whole audit log.
    Approver,
    /// Administers the dataset; sees every user's budget and the whole audit log.
    Admin,
}

impl Role {
    /// The spelling in the catalog and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Analyst => "analyst",
            Role::Researcher => "researcher",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Whether the role oversees others: every budget and the whole audit log.
    pub fn oversees(self) -> bool {
        matches!(self, Role::Approver | Role::Admin)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user and their budget (`[[users]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The name given with `--user` or `CARELENS_USER`.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The total ε they may spend.
    pub epsilon: Epsilon,
    /// The total δ they may spend.
    #[serde(default = "zero_delta")]
    pub delta: Delta,
}

fn zero_delta() -> Delta {
    Delta::ZERO
}

/// Static checks of the governance sections, appended to `problems`.
pub(crate) fn check(policy: &Policy, users: &[User], problems: &mut Vec<Problem>) {
    for (key, value, hint) in [
        (
            "time_limit_seconds",
            policy.time_limit_seconds,
            "e.g. `time_limit_seconds = 300`",
        ),
        (
            "memory_limit_mb",
            policy.memory_limit_mb,
            "e.g. `memory_limit_mb = 4096`",
        ),
        (
            "max_join_fanout",
            policy.max_join_fanout,
            "e.g. `max_join_fanout = 1000`",
        ),
    ] {
        if value == 0 {
            problems.push(Problem::new(
                format!("policy.{key}"),
                format!("`{key}` must be at least 1"),
                hint,
            ));
        }
    }
    if policy.response_quantum_ms > policy.time_limit_seconds.saturating_mul(1000) {
        problems.push(Problem::new(
            "policy.response_quantum_ms",
            format!(
                "the response quantum of {} ms is longer than the time limit of {} s",
                policy.response_quantum_ms, policy.time_limit_seconds
            ),
            "lower `response_quantum_ms` (1000 is the default; 0 turns it off)",
        ));
    }
    if policy.epsilon_min > policy.epsilon_default {
        problems.push(Problem::new(
            "policy.epsilon_min",
            format!(
                "the per-query minimum epsilon {} is above the default {}",
                policy.epsilon_min.value(),
                policy.epsilon_default.value()
            ),
            "lower `epsilon_min` or raise `epsilon_default`",
        ));
    }
    if policy.epsilon_default > policy.epsilon_max {
        problems.push(Problem::new(
            "policy.epsilon_default",
            format!(
                "the default epsilon {} is above the per-query maximum {}",
                policy.epsilon_default.value(),
                policy.epsilon_max.value()
            ),
            "lower `epsilon_default` or raise `epsilon_max`",
        ));
    }
    if policy.delta > policy.delta_max {
        problems.push(Problem::new(
            "policy.delta",
            format!(
                "the default delta {} is above the per-query maximum {}",
                policy.delta.value(),
                policy.delta_max.value()
            ),
            "lower `delta` or raise `delta_max`",
        ));
    }
    if let Err(e) = policy.disclosure.resolve() {
        problems.push(Problem::new(
            "policy.disclosure",
            e.to_string(),
            "write `disclosure = \"nhs\"`, or a `[policy.disclosure]` table (docs/catalog.md)",
        ));
    }
    if policy.epsilon_max > policy.dataset_epsilon {
        problems.push(Problem::new(
            "policy.epsilon_max",
            format!(
                "one query may spend epsilon {}, more than the whole dataset budget {}",
                policy.epsilon_max.value(),
                policy.dataset_epsilon.value()
            ),
            "lower `epsilon_max` or raise `dataset_epsilon`",
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for user in users {
        let location = format!("users.{}", user.name);
        let valid_name = !user.name.is_empty()
            && user
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid_name {
            problems.push(Problem::new(
                location.clone(),
                format!("user name {:?} is empty or has characters other than letters, digits, `.`, `_` and `-`", user.name),
                "use a login-like name such as `j.smith`",
            ));
        }
        let count = seen.entry(user.name.as_str()).or_default();
        *count += 1;
        if *count == 2 {
            problems.push(Problem::new(
                location,
                format!("user `{}` is listed more than once", user.name),
                "list each user once; merge their budgets",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Policy, Vec<User>), String> {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            policy: Policy,
            #[serde(default)]
            users: Vec<User>,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        Ok((doc.policy, doc.users))
    }

    fn problems(text: &str) -> Vec<Problem> {
        let (policy, users) = parse(text).unwrap();
        let mut out = Vec::new();
        check(&policy, &users, &mut out);
        out
    }

    #[test]
    fn an_empty_policy_takes_the_defaults() {
        let (policy, users) = parse("").unwrap();
        assert_eq!(policy, Policy::default());
        assert_eq!(policy.disclosure.resolve().unwrap(), DisclosurePolicy::NHS);
        assert!(users.is_empty());
        assert!(problems("").is_empty());
    }

    #[test]
    fn run_limits_default_and_are_checked() {
        let policy = parse("").unwrap().0;
        assert_eq!(
            (
                policy.time_limit_seconds,
                policy.memory_limit_mb,
                policy.max_join_fanout,
                policy.response_quantum_ms
            ),
            (300, 4096, 1000, 1000)
        );
        let found = problems("[policy]\ntime_limit_seconds = 0\nmax_join_fanout = 0\n");
        let locations: Vec<&str> = found.iter().map(|p| p.location.as_str()).collect();
        // A zero time limit also makes the default quantum too long.
        assert_eq!(
            locations,
            [
                "policy.time_limit_seconds",
                "policy.max_join_fanout",
                "policy.response_quantum_ms"
            ],
            "{found:?}"
        );
        let found = problems("[policy]\ntime_limit_seconds = 2\nresponse_quantum_ms = 2001\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].location, "policy.response_quantum_ms");
        assert!(problems("[policy]\nresponse_quantum_ms = 0\n").is_empty());
        assert!(parse("[policy]\nmemory_limit_mb = -1\n").is_err());
    }

    #[test]
    fn policy_and_users_parse_with_validated_values() {
        let (policy, users) = parse(
            r#"
            [policy]
            epsilon_default = 0.5
            noise = "gaussian"
            disclosure = "ons"
            dataset_epsilon = 50.0

            [[users]]
            name = "a.analyst"
            role = "analyst"
            epsilon = 5.0
            delta = 1e-5
            "#,
        )
        .unwrap();
        assert_eq!(policy.epsilon_default.value(), 0.5);
        assert_eq!(policy.noise, NoiseKind::Gaussian);
        assert_eq!(policy.disclosure.resolve().unwrap(), DisclosurePolicy::ONS);
        assert_eq!(users[0].role, Role::Analyst);
        assert_eq!(users[0].delta.value(), 1e-5);
    }

    #[test]
    fn custom_disclosure_rules_parse() {
        let (policy, _) = parse(
            r#"
            [policy.disclosure]
            suppress_at_or_below = 9
            rounding = { method = "midpoint6" }
            zero = "show"
            marker = "redacted"
            "#,
        )
        .unwrap();
        let rules = policy.disclosure.resolve().unwrap();
        assert_eq!(rules.suppress_at_or_below, Some(9));
        assert_eq!(rules.marker.as_str(), "[REDACTED]");
    }

    #[test]
    fn bad_values_are_refused_with_the_rule() {
        let e = parse("[[users]]\nname = \"x\"\nrole = \"analyst\"\nepsilon = 0\n").unwrap_err();
        assert!(e.contains("epsilon must be greater than 0"), "{e}");
        let e = parse("[[users]]\nname = \"x\"\nrole = \"boss\"\nepsilon = 1\n").unwrap_err();
        assert!(e.contains("unknown variant `boss`"), "{e}");
        let e = parse("[policy]\ndelta = 1.5\n").unwrap_err();
        assert!(
            e.contains("delta must be at least 0 and less than 1"),
            "{e}"
        );
    }

    #[test]
    fn epsilon_min_defaults_to_a_hundredth_and_must_be_positive_and_at_most_the_default() {
        assert_eq!(parse("").unwrap().0.epsilon_min.value(), 0.01);
        let e = parse("[policy]\nepsilon_min = 0\n").unwrap_err();
        assert!(e.contains("epsilon must be greater than 0"), "{e}");
        let e = parse("[policy]\nepsilon_min = -0.5\n").unwrap_err();
        assert!(e.contains("epsilon must be greater than 0"), "{e}");
        assert!(problems("[policy]\nepsilon_min = 0.1\nepsilon_default = 0.1\n").is_empty());
        let found = problems("[policy]\nepsilon_min = 0.5\nepsilon_default = 0.25\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].location, "policy.epsilon_min");
        let text = found[0].to_string();
        assert!(
            text.contains("minimum epsilon 0.5 is above the default 0.25")
                && text.contains("lower `epsilon_min` or raise `epsilon_default`"),
            "{text}"
        );
        // Above the maximum too (and so above the default): one problem, about the minimum.
        let found = problems("[policy]\nepsilon_min = 3.0\n");
        let locations: Vec<&str> = found.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(locations, ["policy.epsilon_min"], "{found:?}");
    }

    #[test]
    fn inconsistent_policies_and_duplicate_users_are_problems() {
        let found = problems(
            r#"
            [policy]
            epsilon_default = 3.0
            epsilon_max = 2.0
            disclosure = "strict"
            [[users]]
            name = "a"
            role = "admin"
            epsilon = 1.0
            [[users]]
            name = "a"
            role = "analyst"
            epsilon = 1.0
            [[users]]
            name = "bad name"
            role = "analyst"
            epsilon = 1.0
            "#,
        );
        let locations: Vec<&str> = found.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(
            locations,
            [
                "policy.epsilon_default",
                "policy.disclosure",
                "users.a",
                "users.bad name"
            ],
            "{found:?}"
        );
    }
}
