//! Static checks: every rule a catalog must follow that can be decided from the catalog alone,
//! without the file system or the Parquet files.

use std::collections::{HashMap, HashSet};

use crate::error::{Problem, location};
use crate::model::{Catalog, Column, ColumnType, Literal, Table, TableKind};

/// The most values a `domain_range` may cover. Every value of a public domain becomes a
/// released group (with noise), so a huge range is almost certainly a mistake.
pub const MAX_DOMAIN_RANGE: u64 = 10_000;

/// Checks every rule that needs only the catalog, and returns every problem found, in
/// catalog order (dataset, then each table and its columns, then catalog-wide rules).
///
/// An empty list means the catalog is statically valid. [`crate::load`] runs this and then
/// resolves the tables' paths.
pub fn validate(catalog: &Catalog) -> Vec<Problem> {
    let mut problems = Vec::new();
    let person = catalog.dataset.person_column.as_str();

    if catalog.dataset.name.trim().is_empty() {
        problems.push(Problem::new(
            "dataset.name",
            "the dataset name is empty",
            "name the extract, e.g. `name = \"wessex-sample\"`; it is shown in outputs and the audit log",
        ));
    }
    if person.is_empty() {
        problems.push(Problem::new(
            "dataset.person_column",
            "the person column is empty",
            "name the column that identifies a person in every private table, e.g. `person_column = \"person_id\"`",
        ));
    }

    let mut table_counts: HashMap<&str, usize> = HashMap::new();
    for table in &catalog.tables {
        *table_counts.entry(table.name.as_str()).or_default() += 1;
    }
    let mut reported_duplicates = HashSet::new();

    for table in &catalog.tables {
        let name = table.name.as_str();
        let count = table_counts.get(name).copied().unwrap_or(0);
        if count > 1 && reported_duplicates.insert(name) {
            problems.push(Problem::new(
                location::table(name),
                format!("the table name `{name}` is used by {count} tables"),
                "give each table its own name; queries refer to tables by name",
            ));
        }
        check_table(catalog, table, person, &mut problems);
    }

    if !catalog.tables.iter().any(|t| t.kind == TableKind::Person) {
        problems.push(Problem::new(
            "tables",
            "no table has `kind = \"person\"`",
            "declare the one-row-per-person table (demographics, registration) as `kind = \"person\"`; \
             group keys such as age band, sex and locality come from it",
        ));
    }

    crate::governance::check(&catalog.policy, &catalog.users, &mut problems);
    problems
}

/// Whether `name` looks like an SQL identifier: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_table(catalog: &Catalog, table: &Table, person: &str, problems: &mut Vec<Problem>) {
    let name = table.name.as_str();
    if name.is_empty() {
        problems.push(Problem::new(
            location::table(name),
            "the table name is empty",
            "give the table the name queries will use, e.g. `name = \"encounter\"`",
        ));
    } else if !is_identifier(name) {
        problems.push(Problem::new(
            location::table(name),
            format!("the table name `{name}` is not an SQL identifier"),
            "use letters, digits and underscores, starting with a letter or underscore, e.g. `gp_encounter`",
        ));
    }

    check_contribution_bounds(table, problems);
    check_unique_key(table, problems);
    check_person_column(table, person, problems);

    let mut column_counts: HashMap<&str, usize> = HashMap::new();
    for column in &table.columns {
        *column_counts.entry(column.name.as_str()).or_default() += 1;
    }
    let mut reported_duplicates = HashSet::new();
    for column in &table.columns {
        let cname = column.name.as_str();
        let at = location::column(name, cname);
        if cname.is_empty() {
            problems.push(Problem::new(
                &at,
                "the column name is empty",
                "write the column's name exactly as it is in the Parquet file",
            ));
        }
        let count = column_counts.get(cname).copied().unwrap_or(0);
        if count > 1 && reported_duplicates.insert(cname) {
            problems.push(Problem::new(
                &at,
                format!("the column `{cname}` is declared {count} times"),
                "declare each column once",
            ));
        }
        let is_person = !person.is_empty() && cname == person;
        check_column(catalog, column, is_person, &at, problems);
    }
}

fn check_contribution_bounds(table: &Table, problems: &mut Vec<Problem>) {
    for (key, value) in [
        ("max_groups", table.max_groups),
        ("max_rows_per_group", table.max_rows_per_group),
    ] {
        let Some(value) = value else { continue };
        let at = location::table_field(&table.name, key);
        match table.kind {
            TableKind::Events => {
                if value < 1 {
                    problems.push(Problem::new(
                        at,
                        format!("`{key}` is 0; a person would contribute nothing"),
                        format!("set `{key}` to 1 or more, or remove it to use the query's default"),
                    ));
                }
            }
            TableKind::Person => problems.push(Problem::new(
                at,
                format!("`{key}` is only for events tables"),
                format!(
                    "remove `{key}`: a person table contributes one row per person, so one group and one row"
                ),
            )),
            TableKind::Public => problems.push(Problem::new(
                at,
                format!("`{key}` is only for events tables"),
                format!("remove `{key}`: a public table has no people whose contributions need bounding"),
            )),
        }
    }
}

/// `unique_key` names a declared column of a public table. (That its values are unique is
/// checked against the file when the engine opens the extract.)
fn check_unique_key(table: &Table, problems: &mut Vec<Problem>) {
    let Some(key) = &table.unique_key else { return };
    let at = location::table_field(&table.name, "unique_key");
    if table.kind != TableKind::Public {
        problems.push(Problem::new(
            at,
            "`unique_key` is only for public tables",
            "remove `unique_key`: private tables are keyed by the person column",
        ));
    } else if table.column(key).is_none() {
        problems.push(Problem::new(
            at,
            format!("`unique_key` names `{key}`, which is not a declared column"),
            "name one of the table's columns, e.g. its code column",
        ));
    }
}

fn check_person_column(table: &Table, person: &str, problems: &mut Vec<Problem>) {
    if person.is_empty() {
        return; // reported once, at dataset.person_column
    }
    let declared = table.column(person);
    match (table.kind, declared) {
        (TableKind::Person | TableKind::Events, None) => problems.push(Problem::new(
            location::table(&table.name),
            format!(
                "the {} table does not declare the person column `{person}`",
                table.kind.as_str()
            ),
            format!(
                "add `{{ name = \"{person}\", type = \"Int64\" }}` to its columns, or make it \
                 `kind = \"public\"` if it holds no person data"
            ),
        )),
        (TableKind::Person | TableKind::Events, Some(column)) => {
            let at = location::column(&table.name, person);
            if column.data_type != ColumnType::Int64 {
                problems.push(Problem::new(
                    &at,
                    format!("the person column must be Int64, not {}", column.data_type),
                    "store the person as a 64-bit integer pseudonym and declare `type = \"Int64\"`",
                ));
            }
            if column.nullable {
                problems.push(Problem::new(
                    &at,
                    "the person column must not be nullable",
                    "remove `nullable = true`: every row of a private table must belong to a person",
                ));
            }
        }
        (TableKind::Public, Some(_)) => problems.push(Problem::new(
            location::column(&table.name, person),
            format!("a public table must not have the person column `{person}`"),
            "make the table `kind = \"events\"` if its rows belong to people; \
             otherwise drop the column from the catalog and the extract",
        )),
        (TableKind::Public, None) => {}
    }
}

fn check_column(
    catalog: &Catalog,
    column: &Column,
    is_person: bool,
    at: &str,
    problems: &mut Vec<Problem>,
) {
    let ty = column.data_type;
    let mut problem = |message: String, hint: &str| {
        problems.push(Problem::new(at, message, hint));
    };

    if is_person {
        let declared: Vec<&str> = [
            ("bounds", column.bounds.is_some()),
            ("precision", column.precision.is_some()),
            ("domain", column.domain.is_some()),
            ("domain_from", column.domain_from.is_some()),
            ("domain_range", column.domain_range.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if !declared.is_empty() {
            problem(
                format!(
                    "the person column cannot have {}",
                    declared
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "remove them: the person column is never summed or grouped by, only used to \
                 count and join people",
            );
        }
        return;
    }

    if let Some([lo, hi]) = column.bounds {
        if !ty.is_numeric() {
            problem(
                format!("`bounds` are only for numeric columns, and this one is {ty}"),
                "remove `bounds`, or declare the column Int32, Int64 or Float64 if it holds numbers",
            );
        } else if !lo.is_finite() || !hi.is_finite() {
            problem(
                format!("bounds must be finite numbers (got [{lo}, {hi}])"),
                "write the smallest and largest values a row may count with, e.g. `bounds = [0, 365]`",
            );
        } else if lo > hi {
            problem(
                format!("bounds are reversed (lo {lo} > hi {hi})"),
                "write bounds as [lo, hi] with lo <= hi",
            );
        } else if ty != ColumnType::Float64 && (lo.fract() != 0.0 || hi.fract() != 0.0) {
            problem(
                format!("bounds of an integer column must be whole numbers (got [{lo}, {hi}])"),
                "round the bounds outwards to whole numbers, e.g. `bounds = [0, 365]`",
            );
        }
    }

    if let Some(precision) = column.precision {
        if !ty.is_numeric() {
            problem(
                format!("`precision` is only for numeric columns, and this one is {ty}"),
                "remove `precision`; it is the fixed-point step used to sum numbers",
            );
        } else if !precision.is_finite() || precision <= 0.0 {
            problem(
                format!("precision must be a finite number greater than 0 (got {precision})"),
                "write the step sums are kept to, e.g. `precision = 0.01` for pounds and pence",
            );
        }
    }

    let declared_domains: Vec<&str> = [
        ("domain", column.domain.is_some()),
        ("domain_from", column.domain_from.is_some()),
        ("domain_range", column.domain_range.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    if declared_domains.len() > 1 {
        problem(
            format!(
                "a column may declare only one public domain, and this one has {}",
                declared_domains
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            "keep one of `domain`, `domain_from` and `domain_range`",
        );
    }

    if let Some(values) = &column.domain {
        check_domain(ty, values, &mut problem);
    }
    if let Some(range) = column.domain_range {
        check_domain_range(ty, range, &mut problem);
    }
    if let Some(from) = &column.domain_from {
        check_domain_from(catalog, ty, from, &mut problem);
    }
}

fn check_domain(ty: ColumnType, values: &[Literal], problem: &mut impl FnMut(String, &str)) {
    if values.is_empty() {
        problem(
            "`domain` is empty".to_owned(),
            "list every value the column can take, e.g. `domain = [\"F\", \"M\", \"I\", \"U\"]`, or remove `domain`",
        );
        return;
    }

    let (kind, hint) = match ty {
        ColumnType::Utf8 => (
            "strings",
            "write the values as strings, e.g. `domain = [\"F\", \"M\"]`",
        ),
        ColumnType::Int32 => (
            "integers that fit in Int32",
            "write whole numbers between -2147483648 and 2147483647, or declare the column Int64",
        ),
        ColumnType::Int64 => (
            "integers",
            "write the values as whole numbers, e.g. `domain = [1, 2, 3]`",
        ),
        ColumnType::Boolean => ("booleans", "write `domain = [true, false]`"),
        ColumnType::Float64 | ColumnType::Date32 => {
            problem(
                format!(
                    "`domain` is only for Utf8, Int32, Int64 and Boolean columns, and this one is {ty}"
                ),
                "remove `domain`; group by a derived string or integer column with a domain, or use \
                 `domain_from` a public table",
            );
            return;
        }
    };
    let fits = |value: &Literal| match (ty, value) {
        (ColumnType::Utf8, Literal::Str(_)) => true,
        (ColumnType::Int64, Literal::Int(_)) => true,
        (ColumnType::Int32, Literal::Int(i)) => i32::try_from(*i).is_ok(),
        (ColumnType::Boolean, Literal::Bool(_)) => true,
        _ => false,
    };
    let wrong: Vec<&Literal> = values.iter().filter(|v| !fits(v)).collect();
    if !wrong.is_empty() {
        problem(
            format!(
                "domain values must be {kind} for a {ty} column, but {} {} not",
                list_literals(&wrong),
                if wrong.len() == 1 { "is" } else { "are" }
            ),
            hint,
        );
    }

    let mut seen = HashSet::new();
    let mut repeated = Vec::new();
    for value in values {
        if !seen.insert(value) && !repeated.contains(&value) {
            repeated.push(value);
        }
    }
    if !repeated.is_empty() {
        problem(
            format!("`domain` lists {} more than once", list_literals(&repeated)),
            "list each value once",
        );
    }
}

fn list_literals(values: &[&Literal]) -> String {
    const SHOWN: usize = 5;
    let mut out = values
        .iter()
        .take(SHOWN)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > SHOWN {
        out.push_str(&format!(" and {} more", values.len() - SHOWN));
    }
    out
}

fn check_domain_range(ty: ColumnType, [lo, hi]: [i64; 2], problem: &mut impl FnMut(String, &str)) {
    match ty {
        ColumnType::Int32 | ColumnType::Int64 => {}
        _ => {
            problem(
                format!("`domain_range` is only for Int32 and Int64 columns, and this one is {ty}"),
                "remove `domain_range`, or list the values with `domain = [...]`",
            );
            return;
        }
    }
    if lo > hi {
        problem(
            format!("domain_range is reversed (lo {lo} > hi {hi})"),
            "write domain_range as [lo, hi] with lo <= hi",
        );
        return;
    }
    if ty == ColumnType::Int32 && (i32::try_from(lo).is_err() || i32::try_from(hi).is_err()) {
        problem(
            format!("domain_range [{lo}, {hi}] does not fit in an Int32 column"),
            "keep both ends between -2147483648 and 2147483647, or declare the column Int64",
        );
    }
    let size = i128::from(hi) - i128::from(lo) + 1;
    if size > i128::from(MAX_DOMAIN_RANGE) {
        problem(
            format!(
                "domain_range [{lo}, {hi}] has {size} values, more than the {MAX_DOMAIN_RANGE} allowed"
            ),
            "every value of a public domain becomes a released group; narrow the range, or leave \
             the domain out so groups are chosen by DP key selection",
        );
    }
}

fn check_domain_from(
    catalog: &Catalog,
    ty: ColumnType,
    from: &str,
    problem: &mut impl FnMut(String, &str),
) {
    let public_tables = || {
        let names: Vec<&str> = catalog
            .tables
            .iter()
            .filter(|t| t.kind == TableKind::Public)
            .map(|t| t.name.as_str())
            .collect();
        if names.is_empty() {
            "the catalog has no public tables; add a lookup table with `kind = \"public\"`"
                .to_owned()
        } else {
            format!("name a column of a public table: {}", names.join(", "))
        }
    };

    let Some((table_name, column_name)) = from
        .split_once('.')
        .filter(|(t, c)| !t.is_empty() && !c.is_empty())
    else {
        problem(
            format!("domain_from `{from}` is not of the form `table.column`"),
            &format!(
                "write e.g. `domain_from = \"practice_lookup.pcn_code\"`; {}",
                public_tables()
            ),
        );
        return;
    };
    let Some(table) = catalog.table(table_name) else {
        problem(
            format!(
                "domain_from `{from}` names the table `{table_name}`, which is not in the catalog"
            ),
            &public_tables(),
        );
        return;
    };
    if table.kind != TableKind::Public {
        problem(
            format!(
                "domain_from `{from}` names the {} table `{table_name}`; a domain must come from a public table",
                table.kind.as_str()
            ),
            &format!(
                "values read from private data would reveal who is in it; {}",
                public_tables()
            ),
        );
        return;
    }
    let Some(column) = table.column(column_name) else {
        problem(
            format!("domain_from `{from}`: the table `{table_name}` has no column `{column_name}`"),
            &format!(
                "name one of its columns: {}",
                table
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        return;
    };
    let compatible = column.data_type == ty
        || matches!(
            (column.data_type, ty),
            (ColumnType::Int32, ColumnType::Int64) | (ColumnType::Int64, ColumnType::Int32)
        );
    if !compatible {
        problem(
            format!(
                "domain_from `{from}` is a {} column, but this column is {ty}",
                column.data_type
            ),
            "take the domain from a column of the same type (Int32 and Int64 mix)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, Literal};
    use crate::test_support::{assert_problem, valid_catalog};

    /// Validates the sample catalog after `edit`, and returns its problems.
    fn problems_after(edit: impl FnOnce(&mut Catalog)) -> Vec<Problem> {
        let mut catalog = valid_catalog();
        edit(&mut catalog);
        validate(&catalog)
    }

    fn table<'a>(catalog: &'a mut Catalog, name: &str) -> &'a mut Table {
        catalog.tables.iter_mut().find(|t| t.name == name).unwrap()
    }

    fn column<'a>(catalog: &'a mut Catalog, table_name: &str, name: &str) -> &'a mut Column {
        table(catalog, table_name)
            .columns
            .iter_mut()
            .find(|c| c.name == name)
            .unwrap()
    }

    #[test]
    fn valid_catalog_has_no_problems() {
        assert_eq!(validate(&valid_catalog()), vec![]);
    }

    #[test]
    fn example_in_docs_is_valid() {
        let docs = include_str!("../../../docs/catalog.md");
        let (_, rest) = docs.split_once("```toml\n").unwrap();
        let (example, _) = rest.split_once("```").unwrap();
        let catalog: Catalog = toml::from_str(example).unwrap();
        assert_eq!(validate(&catalog), vec![]);
    }

    #[test]
    fn empty_person_column_is_rejected() {
        let problems = problems_after(|c| c.dataset.person_column.clear());
        assert_problem(&problems, "dataset.person_column", "person column is empty");
    }

    #[test]
    fn empty_dataset_name_is_rejected() {
        let problems = problems_after(|c| c.dataset.name = " ".to_owned());
        assert_problem(&problems, "dataset.name", "dataset name is empty");
    }

    #[test]
    fn duplicate_table_names_are_rejected_once() {
        let problems = problems_after(|c| {
            let copy = c.table("encounter").unwrap().clone();
            c.tables.push(copy);
        });
        assert_problem(&problems, "tables.encounter", "used by 2 tables");
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn empty_table_name_is_rejected() {
        let problems = problems_after(|c| table(c, "practice_lookup").name.clear());
        assert_problem(&problems, "tables.\"\"", "table name is empty");
    }

    #[test]
    fn table_name_that_is_not_an_identifier_is_rejected() {
        let problems = problems_after(|c| table(c, "encounter").name = "gp encounter".to_owned());
        assert_problem(
            &problems,
            "tables.\"gp encounter\"",
            "not an SQL identifier",
        );
        let problems = problems_after(|c| table(c, "encounter").name = "1encounter".to_owned());
        assert_problem(&problems, "tables.\"1encounter\"", "not an SQL identifier");
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("a"));
        assert!(is_identifier("_a1_B"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("1a"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier("é"));
    }

    #[test]
    fn duplicate_column_names_are_rejected() {
        let problems = problems_after(|c| {
            let t = table(c, "encounter");
            let copy = t.column("setting").unwrap().clone();
            t.columns.push(copy);
        });
        assert_problem(
            &problems,
            "tables.encounter.columns.setting",
            "declared 2 times",
        );
    }

    #[test]
    fn empty_column_name_is_rejected() {
        let problems = problems_after(|c| column(c, "encounter", "setting").name.clear());
        assert_problem(
            &problems,
            "tables.encounter.columns.\"\"",
            "column name is empty",
        );
    }

    #[test]
    fn private_table_without_person_column_is_rejected() {
        let problems = problems_after(|c| {
            table(c, "encounter").columns.remove(0);
        });
        assert_problem(
            &problems,
            "tables.encounter",
            "events table does not declare the person column `person_id`",
        );
        let problems = problems_after(|c| {
            table(c, "person").columns.remove(0);
        });
        assert_problem(
            &problems,
            "tables.person",
            "person table does not declare the person column",
        );
    }

    #[test]
    fn person_column_must_be_int64() {
        let problems =
            problems_after(|c| column(c, "encounter", "person_id").data_type = ColumnType::Utf8);
        assert_problem(
            &problems,
            "tables.encounter.columns.person_id",
            "must be Int64, not Utf8",
        );
    }

    #[test]
    fn person_column_must_not_be_nullable() {
        let problems = problems_after(|c| column(c, "person", "person_id").nullable = true);
        assert_problem(
            &problems,
            "tables.person.columns.person_id",
            "must not be nullable",
        );
    }

    #[test]
    fn public_table_with_person_column_is_rejected() {
        let problems = problems_after(|c| {
            table(c, "practice_lookup")
                .columns
                .push(Column::new("person_id", ColumnType::Int64));
        });
        assert_problem(
            &problems,
            "tables.practice_lookup.columns.person_id",
            "public table must not have the person column",
        );
    }

    #[test]
    fn catalog_without_person_table_is_rejected() {
        let problems = problems_after(|c| table(c, "person").kind = TableKind::Events);
        assert_problem(&problems, "tables", "no table has `kind = \"person\"`");
    }

    #[test]
    fn a_unique_key_is_a_declared_column_of_a_public_table() {
        let problems = problems_after(|c| {
            table(c, "practice_lookup").unique_key = Some("practice_code".into());
        });
        assert!(problems.is_empty(), "{problems:?}");
        let problems = problems_after(|c| {
            table(c, "practice_lookup").unique_key = Some("practise_code".into());
        });
        assert_problem(
            &problems,
            "tables.practice_lookup.unique_key",
            "`unique_key` names `practise_code`, which is not a declared column",
        );
        let problems = problems_after(|c| table(c, "person").unique_key = Some("sex".into()));
        assert_problem(
            &problems,
            "tables.person.unique_key",
            "`unique_key` is only for public tables",
        );
    }

    #[test]
    fn zero_contribution_bounds_are_rejected() {
        let problems = problems_after(|c| table(c, "encounter").max_groups = Some(0));
        assert_problem(
            &problems,
            "tables.encounter.max_groups",
            "`max_groups` is 0",
        );
        let problems = problems_after(|c| table(c, "encounter").max_rows_per_group = Some(0));
        assert_problem(
            &problems,
            "tables.encounter.max_rows_per_group",
            "`max_rows_per_group` is 0",
        );
    }

    #[test]
    fn contribution_bounds_only_on_events_tables() {
        let problems = problems_after(|c| table(c, "person").max_groups = Some(2));
        assert_problem(
            &problems,
            "tables.person.max_groups",
            "only for events tables",
        );
        assert!(problems[0].hint.contains("one row per person"));
        let problems = problems_after(|c| table(c, "practice_lookup").max_rows_per_group = Some(2));
        assert_problem(
            &problems,
            "tables.practice_lookup.max_rows_per_group",
            "only for events tables",
        );
    }

    #[test]
    fn bounds_on_non_numeric_column_are_rejected() {
        let problems =
            problems_after(|c| column(c, "encounter", "setting").bounds = Some([0.0, 1.0]));
        assert_problem(
            &problems,
            "tables.encounter.columns.setting",
            "`bounds` are only for numeric columns, and this one is Utf8",
        );
    }

    #[test]
    fn bounds_must_be_finite() {
        let problems = problems_after(|c| {
            column(c, "encounter", "cost_gbp").bounds = Some([0.0, f64::INFINITY])
        });
        assert_problem(
            &problems,
            "tables.encounter.columns.cost_gbp",
            "must be finite",
        );
        let problems =
            problems_after(|c| column(c, "encounter", "cost_gbp").bounds = Some([f64::NAN, 1.0]));
        assert_problem(
            &problems,
            "tables.encounter.columns.cost_gbp",
            "must be finite",
        );
    }

    #[test]
    fn reversed_bounds_are_rejected() {
        let problems =
            problems_after(|c| column(c, "encounter", "cost_gbp").bounds = Some([100.0, 0.0]));
        assert_eq!(
            problems,
            vec![Problem::new(
                "tables.encounter.columns.cost_gbp",
                "bounds are reversed (lo 100 > hi 0)",
                "write bounds as [lo, hi] with lo <= hi",
            )]
        );
    }

    #[test]
    fn fractional_bounds_on_integer_column_are_rejected() {
        let problems =
            problems_after(|c| column(c, "encounter", "los_days").bounds = Some([0.0, 0.5]));
        assert_problem(
            &problems,
            "tables.encounter.columns.los_days",
            "must be whole numbers",
        );
    }

    #[test]
    fn precision_on_non_numeric_column_is_rejected() {
        let problems =
            problems_after(|c| column(c, "encounter", "care_home").precision = Some(1.0));
        assert_problem(
            &problems,
            "tables.encounter.columns.care_home",
            "`precision` is only for numeric columns",
        );
    }

    #[test]
    fn precision_must_be_positive_and_finite() {
        for bad in [0.0, -0.01, f64::NAN, f64::INFINITY] {
            let problems =
                problems_after(|c| column(c, "encounter", "cost_gbp").precision = Some(bad));
            assert_problem(
                &problems,
                "tables.encounter.columns.cost_gbp",
                "precision must be a finite number greater than 0",
            );
        }
    }

    #[test]
    fn empty_domain_is_rejected() {
        let problems = problems_after(|c| column(c, "person", "sex").domain = Some(vec![]));
        assert_problem(&problems, "tables.person.columns.sex", "`domain` is empty");
    }

    #[test]
    fn duplicate_domain_values_are_rejected() {
        let problems = problems_after(|c| {
            column(c, "person", "sex").domain = Some(vec![
                Literal::Str("F".into()),
                Literal::Str("M".into()),
                Literal::Str("F".into()),
                Literal::Str("F".into()),
            ]);
        });
        assert_problem(
            &problems,
            "tables.person.columns.sex",
            "`domain` lists \"F\" more than once",
        );
    }

    #[test]
    fn domain_values_must_have_the_column_type() {
        let problems = problems_after(|c| {
            column(c, "person", "sex").domain =
                Some(vec![Literal::Str("F".into()), Literal::Int(1)]);
        });
        assert_problem(
            &problems,
            "tables.person.columns.sex",
            "domain values must be strings for a Utf8 column, but 1 is not",
        );

        let problems = problems_after(|c| {
            let col = column(c, "person", "imd_decile");
            col.domain_range = None;
            col.domain = Some(vec![Literal::Int(1), Literal::Int(i64::from(i32::MAX) + 1)]);
        });
        assert_problem(
            &problems,
            "tables.person.columns.imd_decile",
            "integers that fit in Int32",
        );

        let problems = problems_after(|c| {
            column(c, "encounter", "care_home").domain =
                Some(vec![Literal::Bool(true), Literal::Str("false".into())]);
        });
        assert_problem(
            &problems,
            "tables.encounter.columns.care_home",
            "must be booleans for a Boolean column, but \"false\" is not",
        );

        let problems = problems_after(|c| {
            column(c, "encounter", "person_id").name = "encounter_id".to_owned();
            table(c, "encounter")
                .columns
                .push(Column::new("person_id", ColumnType::Int64));
            column(c, "encounter", "encounter_id").domain = Some(vec![Literal::Str("1".into())]);
        });
        assert_problem(
            &problems,
            "tables.encounter.columns.encounter_id",
            "must be integers for a Int64 column",
        );
    }

    #[test]
    fn domain_on_float_or_date_column_is_rejected() {
        let problems = problems_after(|c| {
            column(c, "encounter", "start_date").domain = Some(vec![Literal::Int(1)])
        });
        assert_problem(
            &problems,
            "tables.encounter.columns.start_date",
            "`domain` is only for Utf8, Int32, Int64 and Boolean columns, and this one is Date32",
        );
    }

    #[test]
    fn domain_range_only_on_integer_columns() {
        let problems =
            problems_after(|c| column(c, "person", "pcn_code").domain_range = Some([1, 2]));
        assert_problem(
            &problems,
            "tables.person.columns.pcn_code",
            "`domain_range` is only for Int32 and Int64 columns",
        );
    }

    #[test]
    fn reversed_domain_range_is_rejected() {
        let problems =
            problems_after(|c| column(c, "person", "imd_decile").domain_range = Some([10, 1]));
        assert_problem(
            &problems,
            "tables.person.columns.imd_decile",
            "domain_range is reversed (lo 10 > hi 1)",
        );
    }

    #[test]
    fn domain_range_is_at_most_ten_thousand_values() {
        let ok =
            problems_after(|c| column(c, "person", "imd_decile").domain_range = Some([1, 10_000]));
        assert_eq!(ok, vec![]);
        let problems =
            problems_after(|c| column(c, "person", "imd_decile").domain_range = Some([0, 10_000]));
        assert_problem(
            &problems,
            "tables.person.columns.imd_decile",
            "has 10001 values, more than the 10000 allowed",
        );
        // No overflow at the extremes.
        let problems = problems_after(|c| {
            let col = column(c, "person", "imd_decile");
            col.data_type = ColumnType::Int64;
            col.domain_range = Some([i64::MIN, i64::MAX]);
        });
        assert_problem(
            &problems,
            "tables.person.columns.imd_decile",
            "values, more than",
        );
    }

    #[test]
    fn domain_range_must_fit_int32() {
        let problems = problems_after(|c| {
            column(c, "person", "imd_decile").domain_range =
                Some([i64::from(i32::MAX), i64::from(i32::MAX) + 1]);
        });
        assert_problem(
            &problems,
            "tables.person.columns.imd_decile",
            "does not fit in an Int32 column",
        );
    }

    #[test]
    fn malformed_domain_from_is_rejected() {
        for bad in ["practice_lookup", "practice_lookup.", ".pcn_code"] {
            let problems =
                problems_after(|c| column(c, "person", "pcn_code").domain_from = Some(bad.into()));
            assert_problem(
                &problems,
                "tables.person.columns.pcn_code",
                "is not of the form `table.column`",
            );
        }
    }

    #[test]
    fn domain_from_unknown_table_is_rejected() {
        let problems = problems_after(|c| {
            column(c, "person", "pcn_code").domain_from = Some("pcn_lookup.pcn_code".into());
        });
        assert_problem(
            &problems,
            "tables.person.columns.pcn_code",
            "names the table `pcn_lookup`, which is not in the catalog",
        );
        assert!(
            problems[0].hint.contains("practice_lookup"),
            "{:?}",
            problems[0]
        );
    }

    #[test]
    fn domain_from_private_table_is_rejected() {
        let problems = problems_after(|c| {
            column(c, "encounter", "setting").domain = None;
            column(c, "encounter", "setting").domain_from = Some("person.sex".into());
        });
        assert_problem(
            &problems,
            "tables.encounter.columns.setting",
            "names the person table `person`; a domain must come from a public table",
        );
    }

    #[test]
    fn domain_from_unknown_column_is_rejected() {
        let problems = problems_after(|c| {
            column(c, "person", "pcn_code").domain_from = Some("practice_lookup.pcn".into());
        });
        assert_problem(
            &problems,
            "tables.person.columns.pcn_code",
            "the table `practice_lookup` has no column `pcn`",
        );
    }

    #[test]
    fn domain_from_incompatible_type_is_rejected() {
        let problems = problems_after(|c| {
            let col = column(c, "person", "imd_decile");
            col.domain_range = None;
            col.domain_from = Some("practice_lookup.pcn_code".into());
        });
        assert_problem(
            &problems,
            "tables.person.columns.imd_decile",
            "domain_from `practice_lookup.pcn_code` is a Utf8 column, but this column is Int32",
        );
        // Int32 and Int64 mix.
        let ok = problems_after(|c| {
            table(c, "practice_lookup")
                .columns
                .push(Column::new("imd_decile", ColumnType::Int64));
            let col = column(c, "person", "imd_decile");
            col.domain_range = None;
            col.domain_from = Some("practice_lookup.imd_decile".into());
        });
        assert_eq!(ok, vec![]);
    }

    #[test]
    fn more_than_one_domain_is_rejected() {
        let problems = problems_after(|c| {
            column(c, "person", "imd_decile").domain = Some(vec![Literal::Int(1)]);
        });
        assert_problem(
            &problems,
            "tables.person.columns.imd_decile",
            "only one public domain, and this one has `domain` and `domain_range`",
        );
    }

    #[test]
    fn person_column_has_no_bounds_or_domain() {
        let problems = problems_after(|c| {
            let col = column(c, "encounter", "person_id");
            col.bounds = Some([0.0, 1.0]);
            col.domain_range = Some([1, 3]);
        });
        assert_problem(
            &problems,
            "tables.encounter.columns.person_id",
            "the person column cannot have `bounds`, `domain_range`",
        );
    }

    #[test]
    fn every_problem_is_collected_in_catalog_order() {
        let problems = problems_after(|c| {
            c.dataset.person_column.clear();
            column(c, "person", "sex").domain = Some(vec![]);
            column(c, "encounter", "cost_gbp").bounds = Some([100.0, 0.0]);
            table(c, "practice_lookup").max_groups = Some(1);
        });
        let locations: Vec<&str> = problems.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(
            locations,
            [
                "dataset.person_column",
                "tables.person.columns.sex",
                "tables.encounter.columns.cost_gbp",
                "tables.practice_lookup.max_groups",
            ]
        );
    }
}
