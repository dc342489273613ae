-- HbA1c in people with type 2 diabetes: the deciles
-- What: registered adults (17+) on 2025-03-31 with type 2 diabetes and an HbA1c in the 12
-- months before: how many, and the 10th, 20th, ..., 90th percentile of their latest
-- HbA1c (mmol/mol, rounded to whole units and clamped to 20-150).
-- Who: commissioners and diabetes leads (glycaemic control across the population, NICE
-- targets of 48 and 58 mmol/mol).
-- DP: epsilon 1.5 over eleven equal shares: the person count, nine deciles and the number
-- of HbA1c values (not released; it bounds the intervals). Each decile is released by the
-- exponential mechanism over the 131 whole values 20-150 with half of its share, and each
-- end of its 95% interval with a quarter. One value per person (the latest, `rn = 1`),
-- said to the engine with max_rows = 1 (the catalog's limit for observations is 6 rows
-- per person, which would multiply every decile's error by six). On the 20,000-person
-- sample, with about a thousand people in the cohort, the deciles are rough (explain: 95%
-- errors of 100-200 ranks) and the outer deciles' intervals reach the bounds; at epsilon
-- 0.5 every interval would. On the full extract the cohort is over a hundred times larger
-- and epsilon 0.5 would give intervals of a few mmol/mol. Deciles of one value are put in
-- increasing order after release (free post-processing), as are the ends of their
-- intervals. No groups, delta = 0.
-- carelens: epsilon=1.5, max_rows=1
WITH reg AS (
  SELECT p.*, 2025 - p.year_of_birth AS age
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31')),
dm AS (
  SELECT person_id,
         MAX(CASE WHEN NOT is_resolution THEN event_date END) AS last_dx,
         MAX(CASE WHEN is_resolution THEN event_date END)     AS last_res
  FROM condition WHERE condition_group = 'DM_T2' AND event_date <= DATE '2025-03-31'
  GROUP BY person_id),
hb AS (SELECT person_id, LEAST(GREATEST(CAST(ROUND(value_num) AS INT), 20), 150) AS hba1c,
              ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY obs_date DESC) AS rn
       FROM observation WHERE obs_type = 'HBA1C'
         AND obs_date > DATE '2025-03-31' - INTERVAL '12 months' AND obs_date <= DATE '2025-03-31')
SELECT COUNT(DISTINCT r.person_id) AS people,
       PERCENTILE_CONT(0.1) WITHIN GROUP (ORDER BY hb.hba1c) AS p10,
       PERCENTILE_CONT(0.2) WITHIN GROUP (ORDER BY hb.hba1c) AS p20,
       PERCENTILE_CONT(0.3) WITHIN GROUP (ORDER BY hb.hba1c) AS p30,
       PERCENTILE_CONT(0.4) WITHIN GROUP (ORDER BY hb.hba1c) AS p40,
       PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY hb.hba1c) AS p50,
       PERCENTILE_CONT(0.6) WITHIN GROUP (ORDER BY hb.hba1c) AS p60,
       PERCENTILE_CONT(0.7) WITHIN GROUP (ORDER BY hb.hba1c) AS p70,
       PERCENTILE_CONT(0.8) WITHIN GROUP (ORDER BY hb.hba1c) AS p80,
       PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY hb.hba1c) AS p90
FROM reg r JOIN dm d ON d.person_id = r.person_id
JOIN hb ON hb.person_id = r.person_id AND hb.rn = 1
WHERE r.age >= 17 AND d.last_dx IS NOT NULL AND (d.last_res IS NULL OR d.last_res < d.last_dx);
