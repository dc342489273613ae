-- Cohort count: type 2 diabetes, aged 40-70, latest HbA1c above 57 mmol/mol
-- What: the library's cohort_t2dm_high_hba1c.sql with the threshold one lower. Asked
-- after that one, it is flagged as possible differencing (the two counts together could
-- single out the few people at exactly 58): the README's request example shows the flag.
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
WHERE r.age BETWEEN 40 AND 70 AND hb.value_num > 57;
