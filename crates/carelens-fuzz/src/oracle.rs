//! The oracle: the same query on the sample extract and on the sample plus the extreme
//! person. Neighbouring datasets must give the same kind of outcome — released on both,
//! refused on both — whatever the released numbers are; a difference, or any panic, is
//! a [`Finding`].
//!
//! Each side runs `Engine::prepare` then `PreparedQuery::execute` in its own spawned tokio
//! task, so a panic comes back as a `JoinError` instead of ending the run, and a side that
//! runs past the timeout is aborted and reported as slow.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use carelens_engine::{Engine, QueryError};

use crate::FuzzError;
use crate::extreme;

/// How one run of a query on one extract ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `Engine::prepare` refused it (rejected, or not plannable); the reason.
    Refused(String),
    /// `PreparedQuery::execute` released a result.
    Released,
    /// `PreparedQuery::execute` failed; DataFusion's own message (the fuzzer reads
    /// synthetic data, so it may show it).
    Failed(String),
    /// The engine panicked; the panic message.
    Panicked(String),
    /// It ran past the timeout and was aborted.
    TimedOut,
}

impl Outcome {
    /// One word for the kind of outcome.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Refused(_) => "refused",
            Outcome::Released => "released",
            Outcome::Failed(_) => "failed",
            Outcome::Panicked(_) => "panicked",
            Outcome::TimedOut => "timed out",
        }
    }

    /// The kind and a shape of the message without its values (numbers and quoted text
    /// dropped), to tell one failure from another while shrinking.
    pub fn signature(&self) -> String {
        let message = match self {
            Outcome::Failed(m) | Outcome::Panicked(m) => m.as_str(),
            _ => "",
        };
        // Numbers (with their sign) become `#`, so `2147483647 - x` and `-2147483648 - x`
        // are one shape.
        let mut shape = String::new();
        for c in message
            .chars()
            .take_while(|c| !matches!(c, '\'' | '"' | '`' | '\n'))
        {
            if c.is_ascii_digit() || c == '-' {
                if !shape.ends_with('#') {
                    shape.push('#');
                }
            } else {
                shape.push(c);
            }
            if shape.len() >= 60 {
                break;
            }
        }
        format!("{}: {}", self.class(), shape.trim())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Refused(m) | Outcome::Failed(m) | Outcome::Panicked(m) => {
                write!(f, "{}: {}", self.class(), m)
            }
            _ => f.write_str(self.class()),
        }
    }
}

/// What kind of difference a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// Prepared on the sample, refused with the extreme person.
    Prepare,
    /// Released on one extract and failed on the other.
    Execute,
    /// The engine panicked on either extract.
    Panic,
}

impl FindingKind {
    /// The word used in file names and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Prepare => "prepare",
            FindingKind::Execute => "execute",
            FindingKind::Panic => "panic",
        }
    }
}

/// A query whose outcome depends on the extreme person, or that panics.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What differs.
    pub kind: FindingKind,
    /// The query.
    pub sql: String,
    /// Which variant of the extreme person's person row.
    pub variant: usize,
    /// On the sample extract.
    pub plain: Outcome,
    /// On the sample plus the extreme person.
    pub extreme: Outcome,
    /// The generator's seed and the query's number, when it was generated (before
    /// shrinking).
    pub generated: Option<(u64, u64)>,
}

impl Finding {
    /// The outcome pair and failure shapes: two findings with the same signature are
    /// very likely the same bug.
    pub fn signature(&self) -> String {
        format!(
            "{} | {} | {}",
            self.kind.as_str(),
            self.plain.signature(),
            self.extreme.signature()
        )
    }
}

/// The oracle's judgement of one query.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// `prepare` refused it on the sample: not a query the fuzz pass tests.
    NotAccepted(String),
    /// Released on both extracts.
    Agrees,
    /// Failed on both extracts (after `prepare` accepted it, so after the charge). Not a
    /// difference between neighbours, but a failure some person of the sample may cause.
    FailsOnBoth(String),
    /// One side or both timed out (running time depends on the data: a documented limit).
    Slow {
        /// On the sample.
        plain: Outcome,
        /// With the extreme person.
        extreme: Outcome,
    },
    /// A difference or a panic.
    Finding(Finding),
}

/// The two sides of the comparison: the sample extract and its extreme copies. Cloning
/// shares the engines.
#[derive(Clone)]
pub struct Oracle {
    plain: Arc<Engine>,
    extremes: Vec<Arc<Engine>>,
    timeout: Duration,
}

fn message(e: &QueryError) -> String {
    match e {
        QueryError::Execute(inner) | QueryError::Plan(inner) => inner.to_string(),
        QueryError::Rejected(r) => format!("{} ({})", r.what, r.kind),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "the task was cancelled".to_owned();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

async fn open_engine(catalog: &Path) -> Result<Arc<Engine>, FuzzError> {
    let loaded = carelens_catalog::load(catalog)?;
    let mut engine = Engine::open(&loaded).await?;
    // The response quantum only delays answers; whether a query succeeds does not depend
    // on it, and without it a pass judges twice the queries in the same time.
    engine.set_run_limits(carelens_engine::RunLimits {
        quantum: std::time::Duration::ZERO,
        ..engine.run_limits()
    });
    Ok(Arc::new(engine))
}

impl Oracle {
    /// Opens the sample extract of `sample_catalog` and writes `variants` extreme copies
    /// of it (at most [`extreme::VARIANTS`]) under `work`, one folder each.
    pub async fn open(
        sample_catalog: &Path,
        work: &Path,
        variants: usize,
        timeout: Duration,
    ) -> Result<Self, FuzzError> {
        let plain = open_engine(sample_catalog).await?;
        let mut extremes = Vec::new();
        for variant in 0..variants.clamp(1, extreme::VARIANTS) {
            let dir = work.join(format!("extreme-{variant}"));
            let catalog = extreme::write_extract(sample_catalog, &dir, variant)?;
            extremes.push(open_engine(&catalog).await?);
        }
        Ok(Self {
            plain,
            extremes,
            timeout,
        })
    }

    /// How many extreme extracts there are.
    pub fn variants(&self) -> usize {
        self.extremes.len()
    }

    /// Prepares and executes `sql` on `engine` in a task of its own.
    async fn run(&self, engine: &Arc<Engine>, sql: &str) -> Outcome {
        let engine = Arc::clone(engine);
        let sql = sql.to_owned();
        let task = tokio::spawn(async move {
            let prepared = match engine.prepare(&sql).await {
                Ok(p) => p,
                Err(e) => return Outcome::Refused(message(&e)),
            };
            match prepared.execute(&engine).await {
                Ok(_) => Outcome::Released,
                Err(e) => Outcome::Failed(message(&e)),
            }
        });
        let abort = task.abort_handle();
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Outcome::Panicked(panic_message(e)),
            Err(_) => {
                abort.abort();
                Outcome::TimedOut
            }
        }
    }

    /// Runs `sql` on the sample and on extreme extract `variant` (modulo their number),
    /// at the same time, and compares.
    pub async fn judge(&self, sql: &str, variant: usize) -> Verdict {
        let variant = variant % self.extremes.len();
        let (plain, extreme) = tokio::join!(
            self.run(&self.plain, sql),
            self.run(&self.extremes[variant], sql)
        );
        compare(sql, variant, plain, extreme)
    }
}

/// The verdict on a pair of outcomes, the sample's first.
pub fn compare(sql: &str, variant: usize, plain: Outcome, extreme: Outcome) -> Verdict {
    let finding = |kind| {
        Verdict::Finding(Finding {
            kind,
            sql: sql.to_owned(),
            variant,
            plain: plain.clone(),
            extreme: extreme.clone(),
            generated: None,
        })
    };
    match (&plain, &extreme) {
        (Outcome::Panicked(_), _) | (_, Outcome::Panicked(_)) => finding(FindingKind::Panic),
        (Outcome::Refused(reason), _) => Verdict::NotAccepted(reason.clone()),
        (_, Outcome::Refused(_)) => finding(FindingKind::Prepare),
        (Outcome::TimedOut, _) | (_, Outcome::TimedOut) => Verdict::Slow {
            plain: plain.clone(),
            extreme: extreme.clone(),
        },
        (Outcome::Released, Outcome::Released) => Verdict::Agrees,
        (Outcome::Failed(m), Outcome::Failed(_)) => Verdict::FailsOnBoth(m.clone()),
        _ => finding(FindingKind::Execute),
    }
}
