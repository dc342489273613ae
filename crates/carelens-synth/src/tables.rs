//! Column builders for each table: generators append rows, the writer turns them into
//! Arrow record batches whose schema comes from the catalog.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder,
};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use carelens_catalog::Table;

/// The Arrow schema of a catalog table.
pub fn schema_of(table: &Table) -> SchemaRef {
    Arc::new(Schema::new(
        table
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.arrow_type(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// A record batch of `schema` from named columns. The names must be the schema's, in its
/// order: a builder whose columns drifted from the catalog is an error, even where the
/// types happen to agree.
fn batch(schema: &SchemaRef, columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, ArrowError> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let expected: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if names != expected {
        return Err(ArrowError::SchemaError(format!(
            "columns {names:?} do not match the catalog's {expected:?}"
        )));
    }
    RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, c)| c).collect(),
    )
}

/// One row of the `person` table.
pub struct PersonRow<'a> {
    pub person_id: i64,
    pub year_of_birth: i32,
    pub sex: &'a str,
    pub ethnicity_group: Option<&'a str>,
    pub lsoa21: &'a str,
    pub imd_decile: i32,
    pub practice_code: &'a str,
    pub pcn_code: &'a str,
    pub locality: &'a str,
    pub place: &'a str,
    pub icb: &'a str,
    pub registration_start: i32,
    pub registration_end: Option<i32>,
    pub date_of_death: Option<i32>,
    pub care_home_resident: bool,
    pub efi_category: Option<&'a str>,
}

/// Rows of the `person` table.
#[derive(Default)]
pub struct PersonRows {
    person_id: Int64Builder,
    year_of_birth: Int32Builder,
    sex: StringBuilder,
    ethnicity_group: StringBuilder,
    lsoa21: StringBuilder,
    imd_decile: Int32Builder,
    practice_code: StringBuilder,
    pcn_code: StringBuilder,
    locality: StringBuilder,
    place: StringBuilder,
    icb: StringBuilder,
    registration_start: Date32Builder,
    registration_end: Date32Builder,
    date_of_death: Date32Builder,
    care_home_resident: BooleanBuilder,
    efi_category: StringBuilder,
}

impl PersonRows {
    /// Appends one person.
    pub fn push(&mut self, r: PersonRow<'_>) {
        self.person_id.append_value(r.person_id);
        self.year_of_birth.append_value(r.year_of_birth);
        self.sex.append_value(r.sex);
        self.ethnicity_group.append_option(r.ethnicity_group);
        self.lsoa21.append_value(r.lsoa21);
        self.imd_decile.append_value(r.imd_decile);
        self.practice_code.append_value(r.practice_code);
        self.pcn_code.append_value(r.pcn_code);
        self.locality.append_value(r.locality);
        self.place.append_value(r.place);
        self.icb.append_value(r.icb);
        self.registration_start.append_value(r.registration_start);
        self.registration_end.append_option(r.registration_end);
        self.date_of_death.append_option(r.date_of_death);
        self.care_home_resident.append_value(r.care_home_resident);
        self.efi_category.append_option(r.efi_category);
    }

    /// The rows as a record batch of `schema`.
    pub fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        batch(
            schema,
            vec![
                ("person_id", Arc::new(self.person_id.finish())),
                ("year_of_birth", Arc::new(self.year_of_birth.finish())),
                ("sex", Arc::new(self.sex.finish())),
                ("ethnicity_group", Arc::new(self.ethnicity_group.finish())),
                ("lsoa21", Arc::new(self.lsoa21.finish())),
                ("imd_decile", Arc::new(self.imd_decile.finish())),
                ("practice_code", Arc::new(self.practice_code.finish())),
                ("pcn_code", Arc::new(self.pcn_code.finish())),
                ("locality", Arc::new(self.locality.finish())),
                ("place", Arc::new(self.place.finish())),
                ("icb", Arc::new(self.icb.finish())),
                (
                    "registration_start",
                    Arc::new(self.registration_start.finish()),
                ),
                ("registration_end", Arc::new(self.registration_end.finish())),
                ("date_of_death", Arc::new(self.date_of_death.finish())),
                (
                    "care_home_resident",
                    Arc::new(self.care_home_resident.finish()),
                ),
                ("efi_category", Arc::new(self.efi_category.finish())),
            ],
        )
    }
}

/// Rows of the `condition` table.
#[derive(Default)]
pub struct ConditionRows {
    person_id: Int64Builder,
    code_system: StringBuilder,
    code: StringBuilder,
    condition_group: StringBuilder,
    event_date: Date32Builder,
    is_resolution: BooleanBuilder,
    source_setting: StringBuilder,
}

impl ConditionRows {
    /// Appends one coded diagnosis or resolution.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        person_id: i64,
        (code_system, code): (&str, &str),
        group: &str,
        date: i32,
        is_resolution: bool,
        source: &str,
    ) {
        self.person_id.append_value(person_id);
        self.code_system.append_value(code_system);
        self.code.append_value(code);
        self.condition_group.append_value(group);
        self.event_date.append_value(date);
        self.is_resolution.append_value(is_resolution);
        self.source_setting.append_value(source);
    }

    /// The rows as a record batch of `schema`.
    pub fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        batch(
            schema,
            vec![
                ("person_id", Arc::new(self.person_id.finish())),
                ("code_system", Arc::new(self.code_system.finish())),
                ("code", Arc::new(self.code.finish())),
                ("condition_group", Arc::new(self.condition_group.finish())),
                ("event_date", Arc::new(self.event_date.finish())),
                ("is_resolution", Arc::new(self.is_resolution.finish())),
                ("source_setting", Arc::new(self.source_setting.finish())),
            ],
        )
    }
}

/// One row of the `encounter` table.
pub struct EncounterRow<'a> {
    pub encounter_id: i64,
    pub person_id: i64,
    pub setting: &'a str,
    pub start_date: i32,
    pub end_date: Option<i32>,
    pub admission_method: Option<&'a str>,
    pub attendance_status: Option<&'a str>,
    pub provider_code: &'a str,
    pub primary_diag_icd10: Option<&'a str>,
    pub los_days: Option<i32>,
    pub service_type: Option<&'a str>,
    pub cost_gbp: f64,
}

/// Rows of the `encounter` table.
#[derive(Default)]
pub struct EncounterRows {
    encounter_id: Int64Builder,
    person_id: Int64Builder,
    setting: StringBuilder,
    start_date: Date32Builder,
    end_date: Date32Builder,
    admission_method: StringBuilder,
    attendance_status: StringBuilder,
    provider_code: StringBuilder,
    primary_diag_icd10: StringBuilder,
    los_days: Int32Builder,
    service_type: StringBuilder,
    cost_gbp: Float64Builder,
}

impl EncounterRows {
    /// Appends one encounter.
    pub fn push(&mut self, r: EncounterRow<'_>) {
        self.encounter_id.append_value(r.encounter_id);
        self.person_id.append_value(r.person_id);
        self.setting.append_value(r.setting);
        self.start_date.append_value(r.start_date);
        self.end_date.append_option(r.end_date);
        self.admission_method.append_option(r.admission_method);
        self.attendance_status.append_option(r.attendance_status);
        self.provider_code.append_value(r.provider_code);
        self.primary_diag_icd10.append_option(r.primary_diag_icd10);
        self.los_days.append_option(r.los_days);
        self.service_type.append_option(r.service_type);
        self.cost_gbp.append_value(r.cost_gbp);
    }

    /// The rows as a record batch of `schema`.
    pub fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        batch(
            schema,
            vec![
                ("encounter_id", Arc::new(self.encounter_id.finish())),
                ("person_id", Arc::new(self.person_id.finish())),
                ("setting", Arc::new(self.setting.finish())),
                ("start_date", Arc::new(self.start_date.finish())),
                ("end_date", Arc::new(self.end_date.finish())),
                ("admission_method", Arc::new(self.admission_method.finish())),
                (
                    "attendance_status",
                    Arc::new(self.attendance_status.finish()),
                ),
                ("provider_code", Arc::new(self.provider_code.finish())),
                (
                    "primary_diag_icd10",
                    Arc::new(self.primary_diag_icd10.finish()),
                ),
                ("los_days", Arc::new(self.los_days.finish())),
                ("service_type", Arc::new(self.service_type.finish())),
                ("cost_gbp", Arc::new(self.cost_gbp.finish())),
            ],
        )
    }
}

/// Rows of the `medication` table.
#[derive(Default)]
pub struct MedicationRows {
    person_id: Int64Builder,
    issue_date: Date32Builder,
    bnf_code: StringBuilder,
    drug_class: StringBuilder,
    quantity: Int32Builder,
}

impl MedicationRows {
    /// Appends one prescription issue.
    pub fn push(&mut self, person_id: i64, date: i32, bnf_code: &str, class: &str, quantity: i32) {
        self.person_id.append_value(person_id);
        self.issue_date.append_value(date);
        self.bnf_code.append_value(bnf_code);
        self.drug_class.append_value(class);
        self.quantity.append_value(quantity);
    }

    /// The rows as a record batch of `schema`.
    pub fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        batch(
            schema,
            vec![
                ("person_id", Arc::new(self.person_id.finish())),
                ("issue_date", Arc::new(self.issue_date.finish())),
                ("bnf_code", Arc::new(self.bnf_code.finish())),
                ("drug_class", Arc::new(self.drug_class.finish())),
                ("quantity", Arc::new(self.quantity.finish())),
            ],
        )
    }
}

/// Rows of the `observation` table.
#[derive(Default)]
pub struct ObservationRows {
    person_id: Int64Builder,
    obs_date: Date32Builder,
    obs_type: StringBuilder,
    value_num: Float64Builder,
    value_code: StringBuilder,
}

impl ObservationRows {
    /// Appends one numeric measurement.
    pub fn number(&mut self, person_id: i64, date: i32, obs_type: &str, value: f64) {
        self.person_id.append_value(person_id);
        self.obs_date.append_value(date);
        self.obs_type.append_value(obs_type);
        self.value_num.append_value(value);
        self.value_code.append_null();
    }

    /// Appends one coded observation (smoking status).
    pub fn coded(&mut self, person_id: i64, date: i32, obs_type: &str, code: &str) {
        self.person_id.append_value(person_id);
        self.obs_date.append_value(date);
        self.obs_type.append_value(obs_type);
        self.value_num.append_null();
        self.value_code.append_value(code);
    }

    /// The rows as a record batch of `schema`.
    pub fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        batch(
            schema,
            vec![
                ("person_id", Arc::new(self.person_id.finish())),
                ("obs_date", Arc::new(self.obs_date.finish())),
                ("obs_type", Arc::new(self.obs_type.finish())),
                ("value_num", Arc::new(self.value_num.finish())),
                ("value_code", Arc::new(self.value_code.finish())),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ENCOUNTER, PERSON, extract_catalog};

    #[test]
    fn builders_match_the_catalog_column_for_column() {
        let catalog = extract_catalog(1, 1);
        let schema = |name| schema_of(catalog.table(name).unwrap());
        assert_eq!(
            PersonRows::default()
                .finish(&schema(PERSON))
                .unwrap()
                .num_rows(),
            0
        );
        ConditionRows::default()
            .finish(&schema("condition"))
            .unwrap();
        EncounterRows::default().finish(&schema(ENCOUNTER)).unwrap();
        MedicationRows::default()
            .finish(&schema("medication"))
            .unwrap();
        ObservationRows::default()
            .finish(&schema("observation"))
            .unwrap();
    }

    #[test]
    fn a_builder_against_another_tables_schema_is_refused() {
        let catalog = extract_catalog(1, 1);
        let wrong = schema_of(catalog.table("medication").unwrap());
        let err = ObservationRows::default().finish(&wrong).unwrap_err();
        assert!(
            err.to_string().contains("do not match the catalog"),
            "{err}"
        );
    }
}
