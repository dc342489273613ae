-- Cohort count: type 2 diabetes, aged 40-70, latest HbA1c above 58 mmol/mol
-- What: registered people aged 40 to 70 on 2025-03-31 with type 2 diabetes whose latest
-- HbA1c in the 12 months to the index date is above 58 mmol/mol. One number.
-- Who: researchers checking feasibility of a glycaemic-control study (in production, a
-- cohort count goes through the request and approval workflow).
-- DP: epsilon 0.5 on one person count: noise scale 2, 95% error about +-6 before
-- rounding to 5, ample for a feasibility decision. No groups, delta = 0.
-- carelens: epsilon=0.5
WITH reg AS (
  SELECT p.*, 2025 - p.year_of_birth AS age
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31')),
t2 AS (SELECT DISTINCT person_id FROM condition WHERE condition_group = 'DM_T2' AND NOT is_resolution
       AND event_date <= DATE '2025-03-31'),
hb AS (SELECT person_id, value_num,
              ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY obs_date DESC) AS rn
       FROM observation WHERE obs_type = 'HBA1C'
         AND obs_date > DATE '2025-03-31' - INTERVAL '12 months' AND obs_date <= DATE '2025-03-31')
SELECT COUNT(DISTINCT r.person_id) AS n
FROM reg r JOIN t2 ON t2.person_id = r.person_id
JOIN hb ON hb.person_id = r.person_id AND hb.rn = 1
WHERE r.age BETWEEN 40 AND 70 AND hb.value_num > 58;
