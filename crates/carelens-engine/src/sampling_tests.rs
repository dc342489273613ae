//! L0 sampling on the sample extract: the bounded plan keeps exactly each person's first L0
//! groups in the order of the keyed hash (checked against the same rule written as plain
//! SQL), and the groups people keep are chosen independently per person.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{ScalarUDF, Signature, Volatility};

use crate::Engine;
use crate::keyed_hash::{KeyedHash, sip_key};

const SECRETS: [&str; 5] = [
    "00000000000000000000000000000000",
    "0123456789abcdef0123456789abcdef",
    "ffffffffffffffffffffffffffffffff",
    "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5",
    "carelens-sampling-test-secret-05",
];

async fn engine() -> Engine {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sample-data/carelens.toml");
    let catalog = carelens_catalog::load(&path).expect("sample catalog");
    Engine::open(&catalog).await.expect("sample engine")
}

/// A session over the engine's `encounter` table with `keyed_hash` under `secret`.
async fn session(engine: &Engine, secret: &str) -> SessionContext {
    let ctx = SessionContext::new();
    let encounter = engine
        .ctx
        .table_provider("encounter")
        .await
        .expect("encounter");
    ctx.register_table("encounter", encounter)
        .expect("register encounter");
    ctx.register_udf(ScalarUDF::new_from_impl(KeyedHash {
        key: sip_key(secret),
        signature: Signature::variadic_any(Volatility::Immutable),
    }));
    ctx
}

async fn rows(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run")
}

/// `key → (sum of the first part, persons)` from batches of (key, part, persons).
fn by_key(batches: &[RecordBatch]) -> BTreeMap<String, (i64, i64)> {
    let mut out = BTreeMap::new();
    for b in batches {
        let keys = datafusion::arrow::compute::cast(
            b.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .expect("keys as text");
        let keys = keys.as_string::<i32>();
        for r in 0..b.num_rows() {
            let int = |c: usize| {
                let a = datafusion::arrow::compute::cast(
                    b.column(c),
                    &datafusion::arrow::datatypes::DataType::Int64,
                )
                .expect("an integer column");
                a.as_primitive::<Int64Type>().value(r)
            };
            let key = if keys.is_null(r) {
                "NULL".to_owned()
            } else {
                keys.value(r).to_owned()
            };
            out.insert(key, (int(1), int(2)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bounded_plan_keeps_each_persons_first_groups_in_hash_order() {
    let engine = engine().await;
    for max_groups in [1, 2] {
        let sql = format!(
            "-- carelens: max_groups={max_groups}\n\
             SELECT setting, COUNT(*) AS n FROM encounter GROUP BY setting"
        );
        for secret in SECRETS {
            let prepared = engine
                .prepare_with_secret(&sql, secret)
                .await
                .expect("prepare");
            let limits = prepared.explain().private.expect("private");
            assert!(limits.groups_sampled && limits.max_groups == max_groups);
            let plan = prepared.rewritten_plan().expect("bounded plan").clone();
            let ctx = session(&engine, secret).await;
            let bounded = ctx
                .execute_logical_plan(plan)
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run");
            let reference = rows(
                &ctx,
                &format!(
                    "SELECT setting, SUM(c), COUNT(*) FROM ( \
                       SELECT setting, c, ROW_NUMBER() OVER (PARTITION BY person_id \
                         ORDER BY keyed_hash(person_id, setting), setting) AS rk \
                       FROM (SELECT person_id, setting, LEAST(COUNT(*), {}) AS c \
                             FROM encounter GROUP BY person_id, setting)) \
                     WHERE rk <= {max_groups} GROUP BY setting",
                    limits.max_rows
                ),
            )
            .await;
            let (bounded, reference) = (by_key(&bounded), by_key(&reference));
            assert!(bounded.len() > 3, "{bounded:?}");
            assert_eq!(bounded, reference, "L0 {max_groups}, secret {secret}");
        }
    }
}

/// Among the people whose rows are in exactly two settings, A and B, the share who keep A
/// is ½ for each person independently, so the number keeping A has variance n/4. Were the
/// order of the groups the same for every person (a hash of the groups alone), all n would
/// keep the same one: a count of 0 or n, variance n²/4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_with_the_same_two_groups_keep_one_or_the_other_independently() {
    let engine = engine().await;
    for secret in SECRETS {
        let ctx = session(&engine, secret).await;
        let batches = rows(
            &ctx,
            "WITH pairs AS ( \
               SELECT person_id, MIN(setting) AS a, MAX(setting) AS b FROM encounter \
               GROUP BY person_id HAVING COUNT(DISTINCT setting) = 2), \
             common AS ( \
               SELECT a, b FROM pairs GROUP BY a, b ORDER BY COUNT(*) DESC, a, b LIMIT 1) \
             SELECT CAST(COUNT(*) AS BIGINT) AS n, \
                    CAST(SUM(CASE WHEN keyed_hash(p.person_id, p.a) < keyed_hash(p.person_id, p.b) \
                                  THEN 1 ELSE 0 END) AS BIGINT) AS kept_a \
             FROM pairs p JOIN common c ON p.a = c.a AND p.b = c.b",
        )
        .await;
        let b = &batches[0];
        let n = b.column(0).as_primitive::<Int64Type>().value(0);
        let kept_a = b.column(1).as_primitive::<Int64Type>().value(0);
        assert!(n >= 400, "too few people with the commonest pair: {n}");
        // Binomial(n, ½): 6 standard deviations either side (probability < 2e-9).
        let sd = (n as f64 / 4.0).sqrt();
        let off = (kept_a as f64 - n as f64 / 2.0).abs();
        assert!(
            off <= 6.0 * sd,
            "secret {secret}: {kept_a} of {n} kept the first group ({off} from n/2, sd {sd})"
        );
    }
}
