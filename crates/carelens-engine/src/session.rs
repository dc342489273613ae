//! The closed DataFusion session: only the catalog's tables exist, and only one `SELECT`
//! at a time gets planned.
//!
//! DataFusion out of the box can read any file a query names (`SELECT * FROM
//! 'secret.parquet'` once URL tables are on), create tables, copy data out and change its
//! own settings. carelens closes each door twice: the SQL is parsed and checked before
//! planning (one `SELECT`; every table in `FROM` a catalog table or a CTE; no table
//! functions), and the plan is checked again with DataFusion's own `SQLOptions` (no DDL,
//! DML or statements). URL tables and `information_schema` stay off.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use carelens_catalog::{Literal, LoadedCatalog, PublicDomain, TableKind};
use carelens_privacy::Precision;
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::ParquetReadOptions;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    ObjectName, Query, Spanned, Statement, TableFactor, Visit, Visitor,
};

use crate::rejection::{Location, Rejection, RejectionKind};

/// The most values a public domain may hold before carelens treats it as not public.
pub const MAX_DOMAIN_VALUES: usize = 100_000;

/// What the engine knows of one catalog column.
#[derive(Debug, Clone)]
pub(crate) struct ColumnInfo {
    pub bounds: Option<(f64, f64)>,
    pub precision: Option<Precision>,
    pub domain: Option<Arc<Vec<ScalarValue>>>,
    /// The public table's declared unique key, its non-NULL values checked unique.
    pub unique: bool,
}

/// What the engine knows of one catalog table.
#[derive(Debug, Clone)]
pub(crate) struct TableInfo {
    pub kind: TableKind,
    pub max_groups: Option<u32>,
    pub max_rows: Option<u32>,
    pub columns: HashMap<String, ColumnInfo>,
}

/// The catalog as the analysis reads it.
#[derive(Debug, Clone)]
pub(crate) struct CatalogInfo {
    pub person_column: String,
    pub tables: BTreeMap<String, TableInfo>,
}

/// Why the session could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A table's file is not an absolute local path (the catalog resolves every path).
    #[error("a file of table `{table}` is not an absolute local path")]
    Path {
        /// The table.
        table: String,
    },
    /// DataFusion could not register a table or read a public domain.
    #[error("could not open table `{table}`")]
    DataFusion {
        /// The table.
        table: String,
        /// The cause.
        #[source]
        source: DataFusionError,
    },
    /// A `person` table has a person twice, or a row without a person.
    #[error(
        "table `{table}` is declared `kind = \"person\"` but does not hold exactly one row per \
         person; declare it `events` or fix the extract"
    )]
    NotOneRowPerPerson {
        /// The table.
        table: String,
    },
    /// The files no longer match the catalog (a column missing or of another type, files
    /// of a table that differ): refused when the engine opens, before any query is planned
    /// or charged.
    #[error(
        "the extract no longer matches the catalog; nothing was run or spent. Run `carelens \
         catalog` to see what changed, then fix the files or the catalog"
    )]
    Files(#[source] carelens_catalog::CatalogError),
    /// A catalog domain value does not fit its column's type.
    #[error("a domain value of `{table}.{column}` does not fit its type {data_type}")]
    Domain {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its type.
        data_type: DataType,
    },
}

/// Builds the closed session over the files at `data_version` (as the engine read it) and
/// reads the public domains.
pub(crate) async fn open(
    loaded: &LoadedCatalog,
    data_version: &str,
) -> Result<(SessionContext, CatalogInfo), SessionError> {
    // The footers (cheap): every declared column present with its declared type; and a
    // public table's `unique_key` read whole, no value twice (lookups are small).
    // Files changed since a deep check are refused before their footers are read.
    let checked = loaded
        .check_against_record(data_version)
        .map_err(SessionError::Files)?;
    loaded.check_files().map_err(SessionError::Files)?;
    let config = SessionConfig::new()
        .with_information_schema(false)
        .set_bool("datafusion.sql_parser.collect_spans", true)
        .set_bool("datafusion.sql_parser.enable_ident_normalization", true)
        // No statistics from the data at planning time: a plan (its join order, its filter
        // estimates) must not depend on the values in the files, and interval arithmetic
        // over a column's min/max can fail on an extreme value before anything runs.
        .set_bool("datafusion.execution.collect_statistics", false);
    let ctx = SessionContext::new_with_config(config);
    for (table, files) in loaded.tables() {
        register(&ctx, &table.name, files.files()).await?;
    }
    let catalog = loaded.catalog();
    for table in catalog
        .tables
        .iter()
        .filter(|t| t.kind == TableKind::Person)
    {
        // Established by a deep check of these very files, or counted now.
        let established = checked
            .as_ref()
            .is_some_and(|c| c.one_row_per_person.contains(&table.name));
        if !established {
            check_one_row_per_person(&ctx, &table.name, &catalog.dataset.person_column).await?;
        }
    }
    let mut tables = BTreeMap::new();
    for table in &catalog.tables {
        let mut columns = HashMap::new();
        for column in &table.columns {
            let data_type = column.data_type.arrow_type();
            let mut domain = match column.public_domain() {
                Some(PublicDomain::Values(values)) => Some(literal_domain(
                    &values,
                    &data_type,
                    &table.name,
                    &column.name,
                )?),
                Some(PublicDomain::Range { lo, hi }) => {
                    let values: Vec<Literal> = (lo..=hi).map(Literal::Int).collect();
                    Some(literal_domain(
                        &values,
                        &data_type,
                        &table.name,
                        &column.name,
                    )?)
                }
                Some(PublicDomain::From {
                    table: from,
                    column: col,
                }) => distinct_values(&ctx, &from, &col).await?,
                None if table.kind == TableKind::Public => {
                    distinct_values(&ctx, &table.name, &column.name).await?
                }
                None => None,
            };
            if column.nullable
                && let Some(values) = &mut domain
                && !values.iter().any(ScalarValue::is_null)
            {
                let null = ScalarValue::try_from(&data_type).map_err(|_| SessionError::Domain {
                    table: table.name.clone(),
                    column: column.name.clone(),
                    data_type: data_type.clone(),
                })?;
                values.push(null);
            }
            let precision = column.precision.and_then(|p| Precision::new(p).ok());
            columns.insert(
                column.name.clone(),
                ColumnInfo {
                    bounds: column.bounds.map(|[lo, hi]| (lo, hi)),
                    precision,
                    domain: domain.map(Arc::new),
                    unique: table.kind == TableKind::Public
                        && table.unique_key.as_deref() == Some(column.name.as_str()),
                },
            );
        }
        tables.insert(
            table.name.clone(),
            TableInfo {
                kind: table.kind,
                max_groups: table.max_groups,
                max_rows: table.max_rows_per_group,
                columns,
            },
        );
    }
    Ok((
        ctx,
        CatalogInfo {
            person_column: catalog.dataset.person_column.clone(),
            tables,
        },
    ))
}

/// Registers `table` as exactly `files` — the files the catalog listed and checked — and
/// never as their folder: DataFusion lists a folder again at every scan, recursively and
/// with names the catalog skips (`_x.parquet`, `.x.parquet`, `k=v/` folders), so a file the
/// checks never saw (a second lookup row for a code declared unique) would be read.
async fn register(
    ctx: &SessionContext,
    table: &str,
    files: &[std::path::PathBuf],
) -> Result<(), SessionError> {
    use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
    use datafusion::execution::options::ReadOptions;
    let err = |source| SessionError::DataFusion {
        table: table.into(),
        source,
    };
    // Each file by its URL, never through `ListingTableUrl::parse`: that reads `[`, `*` or
    // `?` in a local path as a glob, so `p[1].parquet` would stand for `p1.parquet` — a
    // file read twice and the checked one never.
    let urls = files
        .iter()
        .map(|f| {
            let url = url::Url::from_file_path(f).map_err(|()| SessionError::Path {
                table: table.into(),
            })?;
            ListingTableUrl::try_new(url, None).map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = urls.first() else {
        return Err(err(DataFusionError::Plan("a table without files".into())));
    };
    let options = ParquetReadOptions::default()
        .to_listing_options(&ctx.copied_config(), ctx.copied_table_options());
    // Every file has the same schema (`carelens catalog`'s check), so the first one's is
    // the table's.
    let schema = options
        .infer_schema(&ctx.state(), first)
        .await
        .map_err(err)?;
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    let provider = ListingTable::try_new(config).map_err(err)?;
    ctx.register_table(table, std::sync::Arc::new(provider))
        .map_err(err)?;
    Ok(())
}

/// A `person` table must hold one row per person: the analysis treats all its columns as
/// constant per person (L0 = 1 for keys built from them).
async fn check_one_row_per_person(
    ctx: &SessionContext,
    table: &str,
    person: &str,
) -> Result<(), SessionError> {
    let err = |source| SessionError::DataFusion {
        table: table.into(),
        source,
    };
    let sql = format!(
        "SELECT COUNT(*) = COUNT(DISTINCT \"{person}\") AND COUNT(\"{person}\") = COUNT(*) FROM \"{table}\""
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(err)?
        .collect()
        .await
        .map_err(err)?;
    let unique = batches
        .first()
        .filter(|b| b.num_rows() == 1)
        .and_then(|b| ScalarValue::try_from_array(b.column(0), 0).ok())
        == Some(ScalarValue::Boolean(Some(true)));
    if unique {
        Ok(())
    } else {
        Err(SessionError::NotOneRowPerPerson {
            table: table.into(),
        })
    }
}

fn literal_domain(
    values: &[Literal],
    data_type: &DataType,
    table: &str,
    column: &str,
) -> Result<Vec<ScalarValue>, SessionError> {
    values
        .iter()
        .map(|v| {
            let scalar = match v {
                Literal::Bool(b) => ScalarValue::Boolean(Some(*b)),
                Literal::Int(i) => ScalarValue::Int64(Some(*i)),
                Literal::Str(s) => ScalarValue::Utf8(Some(s.clone())),
            };
            scalar.cast_to(data_type).map_err(|_| SessionError::Domain {
                table: table.into(),
                column: column.into(),
                data_type: data_type.clone(),
            })
        })
        .collect()
}

/// The distinct values of a public table's column, or `None` if there are too many.
async fn distinct_values(
    ctx: &SessionContext,
    table: &str,
    column: &str,
) -> Result<Option<Vec<ScalarValue>>, SessionError> {
    let err = |source| SessionError::DataFusion {
        table: table.into(),
        source,
    };
    let frame = ctx
        .table(table)
        .await
        .and_then(|t| t.select_columns(&[column]))
        .and_then(|t| t.distinct())
        .map_err(err)?;
    let batches = frame.collect().await.map_err(err)?;
    let mut values = Vec::new();
    for batch in &batches {
        let array = batch.column(0);
        if values.len() + array.len() > MAX_DOMAIN_VALUES {
            return Ok(None);
        }
        for row in 0..array.len() {
            values.push(ScalarValue::try_from_array(array, row).map_err(err)?);
        }
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Ok(Some(values))
}

/// Parses `sql` and checks it before planning: exactly one `SELECT`, every relation a
/// catalog table or a CTE, no table functions.
pub(crate) fn parse_checked(sql: &str, catalog: &CatalogInfo) -> Result<DFStatement, Rejection> {
    let mut statements = DFParser::parse_sql(sql).map_err(|e| syntax_error(&e.to_string(), sql))?;
    let statement = match (statements.pop_front(), statements.is_empty()) {
        (Some(s), true) => s,
        (None, _) => {
            return Err(Rejection::new(
                RejectionKind::Statement,
                "the file holds no SQL statement",
                "write one SELECT",
            ));
        }
        (Some(_), false) => {
            return Err(Rejection::new(
                RejectionKind::Statement,
                "the file holds more than one SQL statement",
                "put each query in its own file; `carelens run` runs a folder of them",
            ));
        }
    };
    let query = match &statement {
        DFStatement::Statement(s) => match s.as_ref() {
            Statement::Query(q) => q,
            other => return Err(not_a_select(statement_name(other))),
        },
        DFStatement::CreateExternalTable(_) => return Err(not_a_select("CREATE EXTERNAL TABLE")),
        DFStatement::CopyTo(_) => return Err(not_a_select("COPY")),
        DFStatement::Explain(_) => {
            return Err(Rejection::new(
                RejectionKind::Statement,
                "`EXPLAIN` is not run inside queries",
                "use `carelens explain FILE.sql` to see the rewritten plan, its cost and its \
                 expected error without spending budget",
            ));
        }
        DFStatement::Reset(_) => return Err(not_a_select("RESET")),
    };
    let mut guard = RelationGuard::default();
    let _ = query.visit(&mut guard);
    if let Some(rejection) = guard.rejection {
        return Err(rejection);
    }
    for (name, location) in guard.relations {
        let bare = name.0.len() == 1;
        let text = name.to_string();
        // DataFusion lower-cases unquoted identifiers.
        let unquoted = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| {
                if i.quote_style.is_none() {
                    i.value.to_lowercase()
                } else {
                    i.value.clone()
                }
            })
            .unwrap_or_else(|| text.clone());
        if bare && guard.ctes.contains(&unquoted.to_lowercase()) {
            continue;
        }
        if bare && catalog.tables.contains_key(&unquoted) {
            continue;
        }
        let looks_like_path = unquoted.contains('/')
            || unquoted.contains('\\')
            || unquoted.contains('.')
            || unquoted.contains("://");
        let (what, hint) = if looks_like_path {
            (
                format!("`{text}` is a file path; queries may only read catalog tables"),
                "name a table of the catalog (`carelens catalog` lists them)".to_owned(),
            )
        } else {
            (
                format!("table `{text}` is not in the catalog"),
                format!(
                    "the catalog's tables are: {}",
                    catalog
                        .tables
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        };
        return Err(Rejection::new(RejectionKind::Table, what, hint).at(location));
    }
    Ok(statement)
}

/// Checks a plan with DataFusion's own guard: no DDL, DML or statements.
pub(crate) fn verify_plan(plan: &LogicalPlan) -> Result<(), Rejection> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| {
            Rejection::new(
                RejectionKind::Statement,
                first_line(&e.strip_backtrace()),
                "queries may only read; write one SELECT",
            )
        })
}

/// The parser's error as a rejection at its place: `Expected: X, found: Y at Line: L,
/// Column: C` (inside DataFusion's `SQL error: ParserError("…")`) becomes what was
/// expected and found, at line L, column C; `found: EOF`, which the parser reports
/// without a place, is placed just after the last token of `sql`.
fn syntax_error(message: &str, sql: &str) -> Rejection {
    let inner = first_line(message);
    let inner = inner
        .split_once("ParserError(\"")
        .map_or(inner.as_str(), |(_, rest)| rest.trim_end_matches("\")"));
    let (what, location) = match inner.rsplit_once(" at Line: ") {
        Some((what, place)) => {
            let mut numbers = place
                .split(", Column: ")
                .map(|n| n.trim().parse::<u64>().ok());
            let location = match (numbers.next().flatten(), numbers.next().flatten()) {
                (Some(line), Some(column)) if line > 0 => Some(Location { line, column }),
                _ => None,
            };
            (what.to_owned(), location)
        }
        None => (inner.to_owned(), None),
    };
    let location = location.or_else(|| {
        what.ends_with("found: EOF")
            .then(|| crate::rejection::end_location(sql))
            .flatten()
    });
    Rejection::new(
        RejectionKind::Syntax,
        format!("the SQL does not parse: {what}"),
        "check the syntax just before this place: a missing comma, bracket or value, or a \
         keyword used as a name",
    )
    .at(location)
}

fn not_a_select(what: &str) -> Rejection {
    Rejection::new(
        RejectionKind::Statement,
        format!("`{what}` is not allowed: carelens runs read-only SELECT queries"),
        "write one SELECT that aggregates over people; settings, tables and files are \
         managed in the catalog",
    )
}

fn statement_name(statement: &Statement) -> &'static str {
    match statement {
        Statement::Insert(_) => "INSERT",
        Statement::Update { .. } => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::CreateTable(_) => "CREATE TABLE",
        Statement::CreateView { .. } => "CREATE VIEW",
        Statement::Drop { .. } => "DROP",
        Statement::Copy { .. } => "COPY",
        Statement::Set(_) => "SET",
        Statement::ShowVariable { .. } | Statement::ShowTables { .. } => "SHOW",
        Statement::Explain { .. } | Statement::ExplainTable { .. } => "EXPLAIN",
        _ => "this statement",
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// Collects relation names and CTE names; refuses table functions.
#[derive(Default)]
struct RelationGuard {
    ctes: HashSet<String>,
    relations: Vec<(ObjectName, Option<Location>)>,
    rejection: Option<Rejection>,
}

impl Visitor for RelationGuard {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: None,
                sample: Some(_),
                ..
            } => {
                self.rejection = Some(
                    Rejection::new(
                        RejectionKind::Unsupported,
                        format!("TABLESAMPLE on `{name}` is not supported"),
                        "query the whole table; carelens bounds each person's contribution \
                         itself",
                    )
                    .at(location_of(name)),
                );
                ControlFlow::Break(())
            }
            TableFactor::Table {
                name, args: None, ..
            } => {
                self.relations.push((name.clone(), location_of(name)));
                ControlFlow::Continue(())
            }
            TableFactor::Table { name, .. } | TableFactor::Function { name, .. } => {
                self.rejection = Some(
                    Rejection::new(
                        RejectionKind::Table,
                        format!("table function `{name}` is not allowed"),
                        "read catalog tables only",
                    )
                    .at(location_of(name)),
                );
                ControlFlow::Break(())
            }
            TableFactor::TableFunction { .. } | TableFactor::UNNEST { .. } => {
                self.rejection = Some(Rejection::new(
                    RejectionKind::Table,
                    "table functions and UNNEST are not allowed in FROM",
                    "read catalog tables only",
                ));
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

fn location_of(name: &ObjectName) -> Option<Location> {
    let span = name.span();
    (span.start.line > 0).then_some(Location {
        line: span.start.line,
        column: span.start.column,
    })
}
