//! Writing the extract: Parquet writers fed by the chunk generator, a staging folder, and
//! the final rename that makes a finished extract appear all at once.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;

use crate::SynthError;
use crate::geography::Geography;

/// How chunks are written: zstd, statistics per column chunk, a fixed `created_by` so the
/// files do not depend on which build wrote them.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(512 * 1024))
        .set_created_by("carelens synth".to_owned())
        .build()
}

/// Writes one record batch stream to a Parquet file; returns the number of rows.
pub fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = RecordBatch>,
) -> Result<u64, SynthError> {
    let file = File::create(path).map_err(crate::io("create", path))?;
    let parquet_error = |source| SynthError::Parquet {
        path: path.to_owned(),
        source,
    };
    let mut writer = ArrowWriter::try_new(BufWriter::new(file), schema, Some(writer_properties()))
        .map_err(parquet_error)?;
    let mut rows = 0;
    for batch in batches {
        rows += batch.num_rows() as u64;
        writer.write(&batch).map_err(parquet_error)?;
    }
    writer.close().map_err(parquet_error)?;
    Ok(rows)
}

/// The two public reference tables, from the geography.
pub fn reference_batches(
    geo: &Geography,
    practice_schema: &SchemaRef,
    lsoa_schema: &SchemaRef,
) -> Result<(RecordBatch, RecordBatch), SynthError> {
    let strings = |values: Vec<&str>| Arc::new(StringArray::from(values)) as ArrayRef;
    let practices = &geo.practices;
    let locality_of = |pcn: usize| &geo.localities[geo.pcns[pcn].locality];
    let practice = RecordBatch::try_new(
        practice_schema.clone(),
        vec![
            strings(practices.iter().map(|p| p.code).collect()),
            strings(practices.iter().map(|p| geo.pcns[p.pcn].code).collect()),
            strings(practices.iter().map(|p| geo.pcns[p.pcn].name).collect()),
            strings(practices.iter().map(|p| locality_of(p.pcn).name).collect()),
            strings(
                practices
                    .iter()
                    .map(|p| geo.places[locality_of(p.pcn).place].name)
                    .collect(),
            ),
            strings(
                practices
                    .iter()
                    .map(|p| geo.places[locality_of(p.pcn).place].icb)
                    .collect(),
            ),
        ],
    )?;
    let lsoa = RecordBatch::try_new(
        lsoa_schema.clone(),
        vec![
            strings(geo.lsoas.iter().map(|l| l.code).collect()),
            strings(
                geo.lsoas
                    .iter()
                    .map(|l| geo.localities[l.locality].name)
                    .collect(),
            ),
            Arc::new(Int32Array::from_iter_values(
                geo.lsoas.iter().map(|l| i32::from(l.imd_decile)),
            )),
            strings(geo.lsoas.iter().map(|l| l.rural_urban).collect()),
        ],
    )?;
    Ok((practice, lsoa))
}

/// Runs `produce` for chunks `0..chunks` in parallel windows and streams each chunk's
/// five batches, in chunk order, to one writer thread per table. Returns rows per table.
pub fn write_private_tables<F>(
    paths: [PathBuf; 5],
    schemas: [SchemaRef; 5],
    chunks: u64,
    produce: F,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<[u64; 5], SynthError>
where
    F: Fn(u64) -> Result<([RecordBatch; 5], u64), SynthError> + Sync,
{
    // Enough chunks in flight to keep every core busy while the writers encode.
    let window = (rayon::current_num_threads() as u64 * 2).max(2);
    std::thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut writers = Vec::new();
        for (path, schema) in paths.into_iter().zip(schemas) {
            let (tx, rx) = sync_channel::<RecordBatch>(window as usize);
            senders.push(tx);
            writers.push(scope.spawn(move || write_parquet(&path, schema, rx)));
        }

        let mut produced: Result<(), SynthError> = Ok(());
        let mut done = 0;
        'windows: for start in (0..chunks).step_by(window as usize) {
            let end = (start + window).min(chunks);
            let results: Vec<_> = (start..end).into_par_iter().map(&produce).collect();
            for result in results {
                match result {
                    Ok((batches, persons)) => {
                        for (tx, batch) in senders.iter().zip(batches) {
                            // A closed channel means that writer failed; its error is
                            // reported when it is joined below.
                            if tx.send(batch).is_err() {
                                break 'windows;
                            }
                        }
                        done += persons;
                        progress(done);
                    }
                    Err(e) => {
                        produced = Err(e);
                        break 'windows;
                    }
                }
            }
        }
        drop(senders);

        let mut rows = [0; 5];
        let mut first_error = produced.err();
        for (slot, writer) in rows.iter_mut().zip(writers) {
            match writer.join() {
                Ok(Ok(n)) => *slot = n,
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(SynthError::WriterPanicked);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    })
}

/// Total size in bytes of the files directly in `dir`.
pub fn folder_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
