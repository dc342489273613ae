//! The carelens query engine: analysts' SQL to a differentially private release.
//!
//! [`Engine::open`] builds a closed DataFusion session from the catalog (only catalog
//! tables exist; no files, settings or DDL). [`Engine::prepare`] reads the query's DP
//! parameters, plans the SQL, runs the privacy analysis over the `LogicalPlan`, rewrites the
//! released aggregation with person-level contribution bounding and calibrates the noise
//! — all without touching data, so the [`PrivacyCharge`] is known before anything runs.
//! [`PreparedQuery::execute`] then runs the bounded plan, adds noise, applies the
//! disclosure policy and the query's post-processing. The caller charges the ledger in
//! between: the budget is debited before a result exists. What comes out is data
//! ([`Release`], [`Explain`]); `carelens-render` shows it.
//!
//! Layer: above `carelens-privacy` and `carelens-catalog`; below carelens-service, which
//! runs the release protocol (see `docs/architecture.md`). How queries are analysed: `docs/engine.md`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let catalog = carelens_catalog::load(std::path::Path::new("sample-data/carelens.toml"))?;
//! let engine = carelens_engine::Engine::open(&catalog).await?;
//! let query = engine
//!     .prepare("SELECT sex, COUNT(DISTINCT person_id) AS n FROM person GROUP BY sex")
//!     .await?;
//! let explain = query.explain(); // ε, δ, mechanisms and their expected errors, as data
//! println!("epsilon {}", explain.epsilon);
//! // ... charge query.charge() to the ledger (carelens-service does), then:
//! let release = query.execute(&engine).await?;
//! println!("{}", serde_json::to_string_pretty(&release)?);
//! # Ok(())
//! # }
//! ```

mod analysis;
mod bounds;
mod definition;
mod derived;
mod directives;
mod explain;
mod facts;
mod guard;
mod header;
mod identity;
mod keyed_hash;
mod panics;
#[cfg(test)]
mod plan_snapshots;
mod rejection;
mod release;
mod result;
mod rewrite;
mod run;
#[cfg(test)]
mod sampling_tests;
mod session;
mod size;
#[cfg(any(test, feature = "testing"))]
pub mod slt;
mod total;
#[cfg(test)]
mod totality_tests;

use carelens_catalog::{LoadedCatalog, Policy};
use carelens_privacy::{
    AccuracyError, Alpha, Delta, DisclosurePolicy, Epsilon, MechanismError, ParamError,
    PrivacyCharge, number,
};
use carelens_privacy::{Calibration, CalibrationError, PersonCounts, QuantileShape, ReleaseShape};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::LogicalPlan;
use sha2::{Digest, Sha256};

pub use definition::definition_tokens;
pub use directives::QueryOptions;
pub use explain::{Clamp, Explain, Groups, Protection};
pub use header::{Header, query_line};
pub use rejection::{Location, Rejection, RejectionKind};
pub use result::{CellMeta, ColumnMeta, ColumnRole, FORMAT, PrivacySummary, Release};
pub use run::RunLimits;
pub use session::SessionError;
pub use size::{MAX_NESTING, MAX_OPERATORS, MAX_SQL_BYTES, MAX_TOKENS, STACK_BYTES};

use analysis::{Analysis, Analyzer, DpAggregation};
use release::{MAX_PUBLIC_GROUPS, ReleaseInput};
use rewrite::{BoundedPlan, Limits, Source};

/// Why a query produced no release.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The privacy analysis or the policy refused it.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// DataFusion could not plan it (a syntax or name error).
    #[error("the query could not be planned")]
    Plan(#[source] DataFusionError),
    /// Running it failed. DataFusion's message is not shown or chained: it can quote a
    /// value from a row (a failed cast names the text it could not cast), so only the kind
    /// of failure is reported.
    #[error("the query failed while running ({}); details are withheld because they could show values from records", failure_kind(.0))]
    Execute(DataFusionError),
    /// It ran longer than the policy allows and was stopped.
    #[error("the query ran longer than the time limit of {} s and was stopped", .0.as_secs())]
    TimeLimit(std::time::Duration),
    /// Something inside DataFusion panicked; the details are withheld like an execution
    /// error's.
    #[error("the query failed while running (an internal fault); details are withheld")]
    Panicked,
    /// A mechanism could not be calibrated or run.
    #[error("a privacy mechanism failed")]
    Mechanism(#[from] MechanismError),
    /// A quantile could not be calibrated or released (the message names no value).
    #[error("a quantile could not be calibrated or released: {0}")]
    Quantile(#[from] carelens_privacy::QuantileError),
    /// A parameter was out of range.
    #[error("a privacy parameter is out of range")]
    Param(#[from] ParamError),
    /// An interval could not be computed.
    #[error("an error interval could not be computed")]
    Accuracy(#[from] AccuracyError),
    /// ε split over this many mechanisms is too small to represent.
    #[error("epsilon is too small to split over this query's aggregates")]
    EpsilonTooSmall,
    /// The extract's files changed while the query ran (found by the check after the
    /// run): what was computed may come from files nobody checked, so it is not released.
    #[error(
        "the extract's files changed while the query ran, so its answer is not released \
         (the charge stands: the query ran); once `carelens catalog` has checked the new \
         files, restart the server or run the command again"
    )]
    ExtractChangedDuringRun,
    /// A bug in carelens.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<CalibrationError> for QueryError {
    fn from(err: CalibrationError) -> Self {
        match err {
            CalibrationError::Param(ParamError::BadWeights { .. }) => QueryError::EpsilonTooSmall,
            CalibrationError::Param(e) => QueryError::Param(e),
            CalibrationError::Mechanism(e) => QueryError::Mechanism(e),
            CalibrationError::Quantile(e) => QueryError::Quantile(e),
        }
    }
}

impl QueryError {
    /// Whether the query was refused (exit code 1) rather than failed (exit code 2).
    pub fn is_rejection(&self) -> bool {
        matches!(self, QueryError::Rejected(_))
    }
}

/// The closed session and what the analysis needs from the catalog.
pub struct Engine {
    ctx: SessionContext,
    /// The extract's version when the engine opened and checked it.
    data_version: String,
    catalog: session::CatalogInfo,
    policy: Policy,
    disclosure: DisclosurePolicy,
    disclosure_name: String,
    limits: RunLimits,
}

/// The DP parameters a query runs with, after defaults and caps. An approved request
/// stores them, and its release must run with exactly these (compared as this struct).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueryParams {
    /// ε of the release.
    pub epsilon: Epsilon,
    /// δ available to the release (charged only if used).
    pub delta: Delta,
    /// L0.
    pub max_groups: u32,
    /// L∞.
    pub max_rows: u32,
}

/// One noise mechanism of a prepared query, as `explain` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MechanismSummary {
    /// What it measures (`distinct persons per group`, an aggregate's text).
    pub label: String,
    /// Its share of ε.
    pub epsilon: f64,
    /// The most one person changes its column, over all groups, in the value's units.
    pub sensitivity: f64,
    /// The noise scale in the value's units.
    pub noise_scale: f64,
    /// Half-width of the noise's 95% interval in the value's units, before rounding; for
    /// a quantile, in ranks (see `error_unit`).
    pub error_95: Option<f64>,
    /// What `sensitivity`, `noise_scale` and `error_95` count.
    #[serde(default)]
    pub error_unit: ErrorUnit,
}

/// What a mechanism's error is counted in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorUnit {
    /// The released value's own units.
    #[default]
    Value,
    /// Ranks in the group: a quantile's 95% error says how many of the group's values can
    /// lie between the released value and the true quantile.
    Rank,
}

/// A query analysed, rewritten and calibrated; nothing has run yet.
pub struct PreparedQuery {
    sql: String,
    analysed: LogicalPlan,
    plan_hash: String,
    kind: Prepared,
}

enum Prepared {
    Public,
    Private(Box<PrivatePlan>),
}

/// The rewritten plan of a private query and its charge.
struct PrivatePlan {
    dp: DpAggregation,
    bounded: BoundedPlan,
    mechanisms: Calibration,
    limits: Limits,
    params: QueryParams,
    domains: Option<Vec<Vec<ScalarValue>>>,
    charge: PrivacyCharge,
    /// How the ledger's budgets compose this charge (the policy's noise decides).
    accounting: carelens_privacy::Accounting,
}

impl Engine {
    /// The extract's version ([`LoadedCatalog::data_version`]) when the engine opened and
    /// checked its files: a query is charged only while the files are still these.
    pub fn data_version(&self) -> &str {
        &self.data_version
    }

    /// Opens the catalog's tables in a closed session and reads the public domains.
    pub async fn open(loaded: &LoadedCatalog) -> Result<Self, SessionError> {
        panics::install();
        let data_version = loaded.data_version().map_err(SessionError::Files)?;
        let (ctx, catalog) = session::open(loaded, &data_version).await?;
        let policy = loaded.catalog().policy.clone();
        let (disclosure_name, disclosure) = loaded.disclosure();
        let disclosure_name = disclosure_name.to_owned();
        Ok(Self {
            ctx,
            data_version,
            catalog,
            disclosure,
            disclosure_name,
            limits: RunLimits {
                memory_bytes: usize::try_from(policy.memory_limit_mb.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
                time: std::time::Duration::from_secs(policy.time_limit_seconds),
                max_join_fanout: policy.max_join_fanout,
                quantum: std::time::Duration::from_millis(policy.response_quantum_ms),
            },
            policy,
        })
    }

    /// The memory and time one query may use while it runs.
    pub fn run_limits(&self) -> RunLimits {
        self.limits
    }

    /// Sets the memory and time one query may use while it runs.
    pub fn set_run_limits(&mut self, limits: RunLimits) {
        self.limits = limits;
    }

    /// The disclosure policy releases are made under: its name and its rules.
    pub fn disclosure(&self) -> (&str, DisclosurePolicy) {
        (&self.disclosure_name, self.disclosure)
    }

    /// Reads the DP parameters, plans and analyses `sql`, rewrites it and calibrates the
    /// noise. Spends nothing and reads no data.
    pub async fn prepare(&self, sql: &str) -> Result<PreparedQuery, QueryError> {
        let secret = carelens_privacy::selection_secret()?;
        self.prepare_keyed(sql, secret, None).await
    }

    /// [`Engine::prepare`] with ε set from outside the query, as an approver set it for a
    /// cohort request; the policy's cap still applies. The plan hash does not change.
    pub async fn prepare_with_epsilon(
        &self,
        sql: &str,
        epsilon: f64,
    ) -> Result<PreparedQuery, QueryError> {
        let secret = carelens_privacy::selection_secret()?;
        self.prepare_keyed(sql, secret, Some(epsilon)).await
    }

    /// [`Engine::prepare`] with a chosen group-sampling secret, so that two preparations
    /// bound the same persons' groups the same way (tests of the bounding compare plans
    /// over neighbouring datasets). Not in normal builds: the secret is always fresh there.
    #[cfg(any(test, feature = "testing"))]
    pub async fn prepare_with_secret(
        &self,
        sql: &str,
        secret: &str,
    ) -> Result<PreparedQuery, QueryError> {
        self.prepare_keyed(sql, secret.to_owned(), None).await
    }

    async fn prepare_keyed(
        &self,
        sql: &str,
        secret: String,
        epsilon: Option<f64>,
    ) -> Result<PreparedQuery, QueryError> {
        size::check(sql)?;
        let mut directives = directives::parse(sql)?;
        if epsilon.is_some() {
            directives.options.epsilon = epsilon;
        }
        let statement = session::parse_checked(&directives.sql, &self.catalog)?;
        let state = self.ctx.state();
        let plan_error = |e| plan_error(e, &directives.sql);
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(plan_error)?;
        session::verify_plan(&plan)?;
        total::check_written_types(&plan)?;
        let plan = total::guard_divisors(plan).map_err(plan_error)?;
        let analysed = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
            .map_err(plan_error)?;
        let analysed = total::try_casts(analysed).map_err(plan_error)?;
        let plan_hash = identity::plan_hash(&analysed)?;
        let analyzer = Analyzer {
            catalog: &self.catalog,
        };
        let analysis = analyzer.analyze(&analysed)?;
        total::check_column_types(&analysed)?;
        if let Analysis::Private(_) = &analysis {
            let joins = bounds::public_joins(&analysed, &|p| analyzer.reads_private(p));
            bounds::check_fanouts(&self.ctx, &joins, self.limits.max_join_fanout).await?;
        }
        let kind = match analysis {
            Analysis::Public => Prepared::Public,
            Analysis::Private(dp) => Prepared::Private(Box::new(self.plan_private(
                *dp,
                directives.options,
                &secret,
            )?)),
        };
        // Plan it physically now, so a query DataFusion cannot run fails before it is
        // charged, not after.
        if let Prepared::Private(p) = &kind {
            state
                .create_physical_plan(&p.bounded.plan)
                .await
                .map_err(plan_error)?;
            for histogram in &p.bounded.histograms {
                state
                    .create_physical_plan(&histogram.plan)
                    .await
                    .map_err(plan_error)?;
            }
        }
        Ok(PreparedQuery {
            sql: sql.to_owned(),
            analysed,
            plan_hash,
            kind,
        })
    }

    fn plan_private(
        &self,
        dp: DpAggregation,
        options: QueryOptions,
        secret: &str,
    ) -> Result<PrivatePlan, QueryError> {
        let params = self.params(options, &dp)?;
        let sample_groups = !dp.keys.iter().all(|k| k.constant);
        let limits = Limits {
            max_groups: if sample_groups { params.max_groups } else { 1 },
            max_rows: params.max_rows,
            sample_groups,
        };
        // The rewritten plan is carelens's own: no place in the analyst's SQL to point at.
        let bounded = rewrite::bound(&dp, limits, secret).map_err(|e| plan_error(e, ""))?;
        // Totals across persons are exact 64-bit integer sums: keep them far from overflow
        // for any population up to 10^8 people.
        const MAX_PER_GROUP: u64 = (1u64 << 62) / 100_000_000;
        if let Some(part) = bounded.parts.iter().find(|p| p.per_group > MAX_PER_GROUP) {
            return Err(Rejection::new(
                RejectionKind::Parameter,
                format!(
                    "`{}`: its bounds times max_rows are too wide for exact integer sums",
                    part.label
                ),
                "narrow the bounds with `LEAST(GREATEST(x, lo), hi)`, lower max_rows, or \
                 declare a coarser `precision` for the column",
            )
            .into());
        }
        let domains: Option<Vec<Vec<ScalarValue>>> = dp
            .keys
            .iter()
            .map(|k| k.domain.as_ref().map(|d| d.as_ref().clone()))
            .collect();
        let domains = domains.filter(|d| {
            d.iter()
                .try_fold(1usize, |acc, x| acc.checked_mul(x.len()))
                .is_some_and(|n| n <= MAX_PUBLIC_GROUPS)
        });
        if params.delta.is_zero() && domains.is_none() {
            return Err(Rejection::new(
                RejectionKind::Parameter,
                "delta = 0, but the group keys are not all public, so the groups released \
                 must be chosen by DP key selection, which needs delta > 0",
                "allow a small delta (e.g. `-- carelens: delta=1e-6`), or group by keys with \
                 public domains (`carelens catalog` shows them)",
            )
            .into());
        }
        if params.delta.is_zero() && self.policy.noise == carelens_privacy::NoiseKind::Gaussian {
            return Err(Rejection::new(
                RejectionKind::Parameter,
                "delta = 0, but the policy's Gaussian noise needs delta > 0",
                "allow a small delta (e.g. `-- carelens: delta=1e-6`)",
            )
            .into());
        }
        let per_group: Vec<u64> = bounded.parts.iter().map(|p| p.per_group).collect();
        let quantiles: Vec<QuantileShape> = bounded
            .quantiles
            .iter()
            .map(|q| {
                let histogram = &bounded.histograms[q.histogram];
                QuantileShape {
                    grid: histogram.grid.clone(),
                    alpha: q.alpha,
                    values_per_person: histogram.values_per_person,
                }
            })
            .collect();
        // What the person counts are for decides their share of ε (calibration.rs).
        let persons = if bounded.sources.contains(&Source::Persons) {
            PersonCounts::Released
        } else if self.disclosure.suppress_at_or_below.is_none() {
            PersonCounts::Unused
        } else if bounded.parts.iter().all(|p| p.is_count) && bounded.quantiles.is_empty() {
            PersonCounts::SuppressCounts
        } else {
            PersonCounts::SuppressSums
        };
        let shape = ReleaseShape {
            noise: self.policy.noise,
            public_keys: domains.is_some(),
            persons,
            max_groups: limits.max_groups,
            parts: &per_group,
            quantiles: &quantiles,
            interval_counts: bounded.histograms.len(),
        };
        let mechanisms = carelens_privacy::calibrate(&shape, params.epsilon, params.delta)?;
        let charge = mechanisms.charge(bounded.part_labels());
        Ok(PrivatePlan {
            dp,
            bounded,
            mechanisms,
            limits,
            params,
            domains,
            charge,
            accounting: carelens_privacy::Accounting::for_noise(self.policy.noise),
        })
    }

    /// Defaults from the policy and the tables read; ε below the policy's minimum and
    /// values above a cap are rejected.
    fn params(&self, options: QueryOptions, dp: &DpAggregation) -> Result<QueryParams, Rejection> {
        let cap = |what: &str, value: f64, max: f64| {
            if value > max {
                Err(Rejection::new(
                    RejectionKind::Parameter,
                    format!(
                        "{what} = {} is above the policy's cap of {}",
                        number(value),
                        number(max)
                    ),
                    format!(
                        "ask for {what} of at most {}; the information governance team sets the cap",
                        number(max)
                    ),
                ))
            } else if value <= 0.0 && what == "epsilon" {
                Err(Rejection::new(
                    RejectionKind::Parameter,
                    "epsilon must be greater than 0",
                    "e.g. `-- carelens: epsilon=0.5`",
                ))
            } else if value < 0.0 {
                Err(Rejection::new(
                    RejectionKind::Parameter,
                    format!("{what} cannot be negative"),
                    "e.g. `delta=1e-6`",
                ))
            } else {
                Ok(value)
            }
        };
        let epsilon = cap(
            "epsilon",
            options
                .epsilon
                .unwrap_or(self.policy.epsilon_default.value()),
            self.policy.epsilon_max.value(),
        )?;
        // A charge too small to answer anything usefully is refused as a parameter, so
        // that nobody can buy cheap charges whose only outcome worth having is a failure.
        let epsilon_min = self.policy.epsilon_min.value();
        if epsilon < epsilon_min {
            return Err(Rejection::new(
                RejectionKind::Parameter,
                format!(
                    "epsilon = {} is below the policy's minimum of {}",
                    number(epsilon),
                    number(epsilon_min)
                ),
                format!(
                    "ask for epsilon of at least {}, e.g. `-- carelens: epsilon={}`; less gives \
                     answers too noisy to use. The information governance team sets the minimum",
                    number(epsilon_min),
                    number(epsilon_min)
                ),
            ));
        }
        let delta = cap(
            "delta",
            options.delta.unwrap_or(self.policy.delta.value()),
            self.policy.delta_max.value(),
        )?;
        let tables = || {
            dp.input
                .tables
                .iter()
                .filter_map(|t| self.catalog.tables.get(t))
        };
        let max_groups = options
            .max_groups
            .or_else(|| tables().filter_map(|t| t.max_groups).max())
            .unwrap_or(1);
        let max_rows = options
            .max_rows
            .or_else(|| tables().filter_map(|t| t.max_rows).max())
            .unwrap_or(1);
        const MAX_LIMIT: u32 = 1_000;
        if max_groups > MAX_LIMIT || max_rows > MAX_LIMIT {
            return Err(Rejection::new(
                RejectionKind::Parameter,
                format!("max_groups and max_rows may be at most {MAX_LIMIT}"),
                "smaller limits mean less noise; most people have few rows per group",
            ));
        }
        let out_of_range = |e: ParamError| {
            Rejection::new(
                RejectionKind::Parameter,
                e.to_string(),
                "e.g. `-- carelens: epsilon=0.5, delta=1e-6`",
            )
        };
        Ok(QueryParams {
            epsilon: Epsilon::new(epsilon).map_err(out_of_range)?,
            delta: Delta::new(delta).map_err(out_of_range)?,
            max_groups,
            max_rows,
        })
    }
}

/// What kind of failure `e` is, without its message: only whether the extract could be
/// read. Anything else is one fixed text, so the kind of failure cannot depend on a row.
fn failure_kind(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::IoError(_)
        | DataFusionError::ParquetError(_)
        | DataFusionError::ObjectStore(_) => "the extract could not be read",
        DataFusionError::ResourcesExhausted(_) => "out of memory",
        _ => "an execution error",
    }
}

/// A planning error: an unknown column becomes a rejection with its place in the SQL
/// (DataFusion's, else the name's first appearance in `sql`) and DataFusion's suggestion
/// (logged at no cost, exit 1, like any rejection); anything else stays an error.
fn plan_error(e: DataFusionError, sql: &str) -> QueryError {
    let root = e.find_root().to_string();
    let message = root.strip_prefix("Schema error: ").unwrap_or(&root);
    if !message.starts_with("No field named ") {
        return QueryError::Plan(e);
    }
    let first = message
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    let (what, suggestion) = match first.split_once(". Did you mean ") {
        Some((what, name)) => (what, Some(name.trim_end_matches('?'))),
        None => (first, None),
    };
    let column = what.trim_start_matches("No field named ");
    let hint = match suggestion {
        Some(name) => {
            format!("did you mean {name}? `carelens catalog` lists every table's columns")
        }
        None => "check the spelling and the table it belongs to; `carelens catalog` lists every \
                 table's columns"
            .to_owned(),
    };
    let location = e
        .diagnostic()
        .and_then(|d| d.span)
        .filter(|span| span.start.line > 0)
        .map(|span| Location {
            line: span.start.line,
            column: span.start.column,
        })
        .or_else(|| {
            let name = column.rsplit('.').next().unwrap_or(column);
            rejection::word_location(sql, name.trim_matches('"'))
        });
    QueryError::Rejected(
        Rejection::new(
            RejectionKind::Name,
            format!("there is no column `{column}` here"),
            hint,
        )
        .at(location),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl PreparedQuery {
    /// What releasing this query costs; empty for a query over public tables only.
    pub fn charge(&self) -> PrivacyCharge {
        match &self.kind {
            Prepared::Public => PrivacyCharge::new(Vec::new()),
            Prepared::Private(p) => p.charge.clone(),
        }
    }

    /// SHA-256 of the analysed plan: equal for queries that mean the same.
    pub fn plan_hash(&self) -> &str {
        &self.plan_hash
    }

    /// The SQL as written.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The release-cache key: the analysed plan, the DP parameters and the data version.
    pub fn cache_key(&self, data_version: &str) -> String {
        let params = match &self.kind {
            Prepared::Public => "public".to_owned(),
            Prepared::Private(p) => serde_json::to_string(&p.params).unwrap_or_default(),
        };
        let mut hasher = Sha256::new();
        for part in [self.plan_hash.as_str(), &params, data_version] {
            identity::field(&mut hasher, part.as_bytes());
        }
        hex(hasher.finalize().as_slice())
    }

    /// The DP parameters, for a private query.
    pub fn params(&self) -> Option<QueryParams> {
        match &self.kind {
            Prepared::Public => None,
            Prepared::Private(p) => Some(p.params),
        }
    }

    /// The bounded (rewritten) plan, for a private query.
    pub fn rewritten_plan(&self) -> Option<&LogicalPlan> {
        match &self.kind {
            Prepared::Public => None,
            Prepared::Private(p) => Some(&p.bounded.plan),
        }
    }

    /// The histogram plans of the query's quantiles (one per quantile argument), each
    /// outputting the keys, a candidate's index and the number of values on it.
    pub fn histogram_plans(&self) -> Vec<&LogicalPlan> {
        match &self.kind {
            Prepared::Public => Vec::new(),
            Prepared::Private(p) => p.bounded.histograms.iter().map(|h| &h.plan).collect(),
        }
    }

    /// Runs the query and releases its protected result. Charge the ledger first.
    pub async fn execute(&self, engine: &Engine) -> Result<Release, QueryError> {
        match &self.kind {
            Prepared::Public => self.execute_public(engine).await,
            Prepared::Private(p) => {
                let started = tokio::time::Instant::now();
                let result = release::release(
                    &engine.ctx,
                    ReleaseInput {
                        dp: &p.dp,
                        bounded: &p.bounded,
                        mechanisms: &p.mechanisms,
                        limits: p.limits,
                        domains: p.domains.clone(),
                        policy: engine.disclosure,
                        policy_name: engine.disclosure_name.clone(),
                        analysed: &self.analysed,
                        run_limits: engine.limits,
                        started,
                    },
                )
                .await;
                // Failures too: how long a query took to fail is as telling as how long it
                // took to succeed.
                run::hold(started, engine.limits).await;
                result
            }
        }
    }

    async fn execute_public(&self, engine: &Engine) -> Result<Release, QueryError> {
        let batches = engine
            .ctx
            .execute_logical_plan(self.analysed.clone())
            .await
            .map_err(QueryError::Execute)?
            .collect()
            .await
            .map_err(QueryError::Execute)?;
        let schema = self.analysed.schema();
        let columns: Vec<ColumnMeta> = schema
            .fields()
            .iter()
            .map(|f| ColumnMeta {
                name: f.name().clone(),
                role: ColumnRole::Public,
                data_type: release::wire_type(f.data_type()),
            })
            .collect();
        let mut rows = Vec::new();
        for batch in &batches {
            for r in 0..batch.num_rows() {
                let mut row = std::collections::BTreeMap::new();
                for (i, c) in columns.iter().enumerate() {
                    let v = ScalarValue::try_from_array(batch.column(i), r)
                        .map_err(QueryError::Execute)?;
                    row.insert(c.name.clone(), release::to_json(&v));
                }
                rows.push(row);
            }
        }
        let cells = vec![Default::default(); rows.len()];
        Ok(Release {
            format: FORMAT.into(),
            release_id: None,
            columns,
            rows,
            cells,
            privacy: PrivacySummary {
                epsilon: 0.0,
                delta: 0.0,
                max_groups: 0,
                max_rows: 0,
                key_selection: false,
                disclosure: engine.disclosure_name.clone(),
                marker: engine.disclosure.marker.as_str().to_owned(),
            },
            notes: vec![
                "the query reads only public reference tables: no noise, no privacy cost"
                    .to_owned(),
            ],
        })
    }

    /// The limits and the charge items, one line each (for snapshot tests).
    #[cfg(test)]
    fn explain_limits(&self) -> String {
        use std::fmt::Write as _;

        let Prepared::Private(p) = &self.kind else {
            return "public".to_owned();
        };
        let mut out = format!(
            "L0 {} (sampled: {}), L-inf {}, public keys: {}\n",
            p.limits.max_groups,
            p.limits.sample_groups,
            p.limits.max_rows,
            p.domains.is_some()
        );
        for item in p.charge.items() {
            let _ = writeln!(
                out,
                "{}: {:?} epsilon {} per-group {} scale {}",
                item.label,
                item.mechanism,
                number(item.epsilon),
                item.per_group_sensitivity,
                number(item.scale)
            );
        }
        out
    }

    /// The value of one integer unit of each charge item, in the item order.
    /// Every mechanism the release uses, with its share of ε, sensitivity, noise scale and
    /// expected 95% error in the value's own units (none for a public query).
    pub fn mechanisms(&self) -> Vec<MechanismSummary> {
        let Prepared::Private(p) = &self.kind else {
            return Vec::new();
        };
        // A quantile's three charge items: its value, its interval's low and high ends.
        let n_noise = p.charge.items().len() - 3 * p.mechanisms.quantiles.len();
        let selections = p
            .mechanisms
            .quantiles
            .iter()
            .flat_map(|q| [&q.value, &q.low, &q.high]);
        let quantiles = p
            .charge
            .items()
            .iter()
            .skip(n_noise)
            .zip(selections)
            .map(|(item, q)| {
                // Scores count `den` per value of rank; shown in values of rank.
                let per_value = q.denominator() as f64;
                MechanismSummary {
                    label: item.label.clone(),
                    epsilon: item.epsilon,
                    sensitivity: item.max_groups as f64 * item.per_group_sensitivity as f64
                        / per_value,
                    noise_scale: item.scale / per_value,
                    // An interval's end is aimed R ranks from the quantile: how far from
                    // it the end may lie is R plus the end's own error.
                    error_95: Some(q.offset().unsigned_abs() as f64 + q.rank_error(0.05)),
                    error_unit: ErrorUnit::Rank,
                }
            });
        p.charge
            .items()
            .iter()
            .take(n_noise)
            .zip(self.units(p))
            .map(|(item, unit)| {
                let dist = match item.mechanism {
                    carelens_privacy::MechanismKind::DiscreteGaussian => {
                        carelens_privacy::NoiseDistribution::DiscreteGaussian { scale: item.scale }
                    }
                    _ => carelens_privacy::NoiseDistribution::DiscreteLaplace { scale: item.scale },
                };
                MechanismSummary {
                    label: item.label.clone(),
                    epsilon: item.epsilon,
                    sensitivity: item.max_groups as f64 * item.per_group_sensitivity as f64 * unit,
                    noise_scale: item.scale * unit,
                    error_95: dist
                        .half_width(Alpha::FIVE_PERCENT)
                        .ok()
                        .map(|h| h as f64 * unit),
                    error_unit: ErrorUnit::Value,
                }
            })
            .chain(quantiles)
            .collect()
    }

    /// Each charge item's unit: the person count's (if the release has one), then each
    /// part's.
    fn units(&self, p: &PrivatePlan) -> Vec<f64> {
        let mut units = Vec::new();
        if p.mechanisms.persons_role.is_some() {
            units.push(1.0);
        }
        units.extend(p.bounded.parts.iter().map(|part| part.precision.unit()));
        units
    }
}

#[cfg(test)]
mod error_tests {
    use datafusion::arrow::error::ArrowError;

    use super::*;

    #[test]
    fn execution_errors_never_show_datafusion_messages() {
        let cast = DataFusionError::ArrowError(
            Box::new(ArrowError::CastError(
                "Cannot cast string 'E01012345' to Int32".into(),
            )),
            None,
        );
        let shown = QueryError::Execute(cast).to_string();
        assert!(!shown.contains("E01012345"), "{shown}");
        assert!(shown.contains("an execution error"), "{shown}");
        assert!(
            std::error::Error::source(&QueryError::Execute(DataFusionError::Execution(
                "row value".into()
            )))
            .is_none()
        );
    }
}
