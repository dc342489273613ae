//! One chunk of people and all their records, generated independently of every other
//! chunk so that chunks can be made in parallel and the extract is the same whatever the
//! number of threads.

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use rand::SeedableRng;

use crate::geography::Geography;
use crate::ids::{pseudonym, splitmix64};
use crate::person::{Population, draw_person};
use crate::records::{Context, Distributions, ENCOUNTERS_PER_PERSON, Sinks, write_records};
use crate::sampling::SynthRng;
use crate::tables::{
    ConditionRows, EncounterRows, MedicationRows, ObservationRows, PersonRow, PersonRows,
};

/// People per chunk. Part of the extract's definition: changing it changes every extract.
pub const CHUNK_PERSONS: u64 = 10_000;

/// The shared, read-only inputs of chunk generation.
pub struct Generator<'a> {
    pub seed: u64,
    pub persons: u64,
    pub geo: &'a Geography,
    pub population: Population,
    pub dist: Distributions,
    /// Arrow schemas of the five private tables, from the catalog.
    pub schemas: [arrow::datatypes::SchemaRef; 5],
}

impl Generator<'_> {
    /// Number of chunks in the extract.
    pub fn chunks(&self) -> u64 {
        self.persons.div_ceil(CHUNK_PERSONS)
    }

    /// Persons in chunk `chunk`.
    pub fn persons_in(&self, chunk: u64) -> u64 {
        (self.persons - chunk * CHUNK_PERSONS).min(CHUNK_PERSONS)
    }

    /// Generates chunk number `chunk`: the rows of the five private tables, in table order
    /// (person, condition, encounter, medication, observation).
    pub fn chunk(&self, chunk: u64) -> Result<[RecordBatch; 5], ArrowError> {
        let mut rng = SynthRng::seed_from_u64(splitmix64(self.seed ^ splitmix64(chunk)));
        let encounter_key = splitmix64(self.seed ^ 0x656e_636f_756e_7465); // "encounte"
        let mut person_rows = PersonRows::default();
        let mut condition = ConditionRows::default();
        let mut encounter = EncounterRows::default();
        let mut medication = MedicationRows::default();
        let mut observation = ObservationRows::default();
        let first = chunk * CHUNK_PERSONS;
        for index in first..first + self.persons_in(chunk) {
            let id = pseudonym(self.seed, index);
            let person = draw_person(&mut rng, self.geo, &self.population, id);
            let loc = &self.geo.localities[person.locality];
            let place = &self.geo.places[loc.place];
            let practice = &self.geo.practices[person.practice];
            person_rows.push(PersonRow {
                person_id: id,
                year_of_birth: person.year_of_birth,
                sex: person.sex,
                ethnicity_group: person.ethnicity,
                lsoa21: person.lsoa,
                imd_decile: i32::from(person.imd_decile),
                practice_code: practice.code,
                pcn_code: self.geo.pcns[practice.pcn].code,
                locality: loc.name,
                place: place.name,
                icb: place.icb,
                registration_start: person.registration_start,
                registration_end: person.registration_end,
                date_of_death: person.date_of_death,
                care_home_resident: person.care_home,
                efi_category: person.efi,
            });
            let mut ctx = Context {
                rng: &mut rng,
                geo: self.geo,
                dist: &self.dist,
                person: &person,
                encounter_key,
                encounter_base: index * ENCOUNTERS_PER_PERSON,
            };
            write_records(
                &mut ctx,
                &mut Sinks {
                    condition: &mut condition,
                    encounter: &mut encounter,
                    medication: &mut medication,
                    observation: &mut observation,
                },
            );
        }
        let [
            s_person,
            s_condition,
            s_encounter,
            s_medication,
            s_observation,
        ] = &self.schemas;
        Ok([
            person_rows.finish(s_person)?,
            condition.finish(s_condition)?,
            encounter.finish(s_encounter)?,
            medication.finish(s_medication)?,
            observation.finish(s_observation)?,
        ])
    }
}
