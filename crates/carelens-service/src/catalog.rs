//! `GET /catalog` and its like: what a caller may know about the extract.
//!
//! Everyone signed in sees what they need to write a query — the tables, their columns,
//! types, public domains, bounds and the policy — and nothing measured from the data.
//! Row counts and the files' warnings (null counts, undeclared columns) are exact
//! statistics of the extract, released outside the budget; only admins, who run the
//! service and may read the files anyway, see them.

use carelens_catalog::{Column, Policy, Role, TableKind, User};
use carelens_privacy::DisclosurePolicy;
use serde::Serialize;

use crate::{Caller, Service, ServiceError, blocking};

/// The catalog as one caller may see it.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogView {
    /// The dataset's name.
    pub dataset: String,
    /// What the extract is, if the catalog says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The column that identifies a person in every private table.
    pub person_column: String,
    /// The privacy policy: ε and δ per query, noise, limits, the dataset's budget.
    pub policy: Policy,
    /// The disclosure rules every release follows, resolved, and their name.
    pub disclosure: DisclosureView,
    /// The tables, in catalog order.
    pub tables: Vec<TableView>,
    /// The users, their roles and budgets: admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<User>>,
}

/// The disclosure rules with the name they are shown by.
#[derive(Debug, Clone, Serialize)]
pub struct DisclosureView {
    /// The preset's name, or `custom`.
    pub name: String,
    /// The rules.
    pub rules: DisclosurePolicy,
}

/// One table as a caller may see it.
#[derive(Debug, Clone, Serialize)]
pub struct TableView {
    /// The name queries use.
    pub name: String,
    /// Person, events or public.
    pub kind: TableKind,
    /// What the table holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default L0: groups one person may contribute to through this table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_groups: Option<u32>,
    /// Default L∞: rows of one person counted in one group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rows_per_group: Option<u32>,
    /// The declared columns with their privacy metadata.
    pub columns: Vec<Column>,
    /// Rows in the table's files: admins only (an exact count outside the budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// What checking the files found worth knowing: admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

impl Service {
    /// The catalog as `caller` may see it: the declarations for everyone; the files'
    /// row counts and warnings, and the users, for admins only.
    pub async fn catalog_view(&self, caller: &Caller) -> Result<CatalogView, ServiceError> {
        let catalog = self.catalog.catalog();
        let (name, rules) = self.catalog.disclosure();
        let mut tables: Vec<TableView> = catalog
            .tables
            .iter()
            .map(|table| TableView {
                name: table.name.clone(),
                kind: table.kind,
                description: table.description.clone(),
                max_groups: table.max_groups,
                max_rows_per_group: table.max_rows_per_group,
                columns: table.columns.clone(),
                rows: None,
                warnings: None,
            })
            .collect();
        let admin = caller.role == Role::Admin;
        if admin {
            let loaded = self.catalog.clone();
            let report = blocking(move || loaded.check_files())
                .await?
                .map_err(ServiceError::internal)?;
            for (view, checked) in tables.iter_mut().zip(&report.tables) {
                debug_assert_eq!(view.name, checked.name);
                view.rows = Some(checked.rows);
                view.warnings = Some(checked.warnings.iter().map(|w| w.to_string()).collect());
            }
        }
        Ok(CatalogView {
            dataset: catalog.dataset.name.clone(),
            description: catalog.dataset.description.clone(),
            person_column: catalog.dataset.person_column.clone(),
            policy: catalog.policy.clone(),
            disclosure: DisclosureView {
                name: name.to_owned(),
                rules,
            },
            tables,
            users: admin.then(|| catalog.users.clone()),
        })
    }
}
