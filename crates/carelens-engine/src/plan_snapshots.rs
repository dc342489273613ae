//! Snapshot tests of rewritten plans (insta, like DataFusion's
//! `assert_optimized_plan_equal!`): a change to contribution bounding shows up as a diff of
//! `src/snapshots/*.snap` in review.

use crate::Engine;

const SECRET: &str = "00000000000000000000000000000000";

async fn rewritten(sql: &str) -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sample-data/carelens.toml");
    let catalog = carelens_catalog::load(&path).unwrap();
    let engine = Engine::open(&catalog).await.unwrap();
    let prepared = engine.prepare_with_secret(sql, SECRET).await.unwrap();
    format!(
        "{}\n\n{}",
        prepared.rewritten_plan().unwrap().display_indent(),
        prepared.explain_limits()
    )
}

#[tokio::test]
async fn person_constant_keys_need_no_group_sampling() {
    insta::assert_snapshot!(
        "person_constant",
        rewritten("SELECT sex, COUNT(DISTINCT person_id) AS people, COUNT(ethnicity_group) AS known FROM person GROUP BY sex").await
    );
}

#[tokio::test]
async fn event_keys_are_sampled_to_l0_groups_per_person() {
    insta::assert_snapshot!(
        "event_keys",
        rewritten(
            "SELECT setting, COUNT(*) AS n, SUM(cost_gbp) AS cost FROM encounter GROUP BY setting"
        )
        .await
    );
}

#[tokio::test]
async fn means_are_a_capped_numerator_over_a_capped_count() {
    insta::assert_snapshot!(
        "mean",
        rewritten("SELECT p.place, AVG(e.los_days) AS mean_los FROM encounter e JOIN person p ON p.person_id = e.person_id GROUP BY p.place").await
    );
}

#[tokio::test]
async fn conditional_person_counts_over_a_left_join() {
    insta::assert_snapshot!(
        "conditional_persons",
        rewritten(
            "SELECT p.locality, COUNT(DISTINCT p.person_id) AS people, \
             COUNT(DISTINCT CASE WHEN e.setting = 'AE' THEN e.person_id END) AS ae_people \
             FROM person p LEFT JOIN encounter e ON e.person_id = p.person_id GROUP BY p.locality"
        )
        .await
    );
}
