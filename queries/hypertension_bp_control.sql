-- Hypertension: blood pressure control to the QOF age-dependent target, by PCN
-- What: registered people on the hypertension register on 2025-03-31, and those whose
-- latest systolic and diastolic readings in the last 12 months meet the target (under
-- 80: < 140/90; 80 and over: < 150/90), per primary care network.
-- Who: commissioners and PCNs (cardiovascular prevention, CVDPREVENT).
-- DP: epsilon 0.5 over two person counts. The latest reading is picked inside each person
-- (a window partitioned by the person), so it changes nothing about one person's reach;
-- keys constant per person with a public domain, delta = 0.
-- carelens: epsilon=0.5, chart=controlled
WITH reg AS (
  SELECT p.*, 2025 - p.year_of_birth AS age
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31')),
hyp AS (SELECT DISTINCT person_id FROM condition WHERE condition_group = 'HYP' AND NOT is_resolution),
bp AS (
  SELECT person_id, obs_type, value_num,
         ROW_NUMBER() OVER (PARTITION BY person_id, obs_type ORDER BY obs_date DESC) AS rn
  FROM observation WHERE obs_type IN ('SBP','DBP') AND obs_date > DATE '2025-03-31' - INTERVAL '12 months'),
last_bp AS (
  SELECT person_id, MAX(CASE WHEN obs_type = 'SBP' THEN value_num END) AS sbp,
         MAX(CASE WHEN obs_type = 'DBP' THEN value_num END) AS dbp
  FROM bp WHERE rn = 1 GROUP BY person_id)
SELECT r.pcn_code, COUNT(DISTINCT r.person_id) AS on_register,
       COUNT(DISTINCT CASE WHEN (r.age < 80 AND b.sbp < 140 AND b.dbp < 90)
                            OR (r.age >= 80 AND b.sbp < 150 AND b.dbp < 90) THEN r.person_id END) AS controlled
FROM reg r JOIN hyp h ON h.person_id = r.person_id
LEFT JOIN last_bp b ON b.person_id = r.person_id
GROUP BY r.pcn_code
ORDER BY r.pcn_code;
