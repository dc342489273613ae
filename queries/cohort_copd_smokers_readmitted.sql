-- Cohort count: current smokers with COPD and 2+ COPD emergency admissions in 24 months
-- What: registered people on 2025-03-31 with COPD, whose latest smoking status is
-- current, with two or more emergency admissions with a J44 primary diagnosis in the 24
-- months before. One number.
-- Who: researchers checking feasibility of a pulmonary rehabilitation and smoking
-- cessation study.
-- DP: epsilon 0.5 on one person count: noise scale 2, 95% error about +-6 before
-- rounding to 5. The cohort is small; a result of 7 or fewer is suppressed, which itself
-- answers the feasibility question. No groups, delta = 0.
-- carelens: epsilon=0.5
WITH reg AS (
  SELECT p.*, 2025 - p.year_of_birth AS age
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31')),
copd AS (SELECT DISTINCT person_id FROM condition WHERE condition_group = 'COPD' AND NOT is_resolution),
smk AS (SELECT person_id, value_code,
               ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY obs_date DESC) AS rn
        FROM observation WHERE obs_type = 'SMOKING'),
adm AS (SELECT person_id, COUNT(*) AS n_adm FROM encounter
        WHERE setting = 'APC' AND admission_method = 'EMERGENCY' AND primary_diag_icd10 LIKE 'J44%'
          AND start_date > DATE '2025-03-31' - INTERVAL '24 months'
        GROUP BY person_id)
SELECT COUNT(DISTINCT r.person_id) AS n
FROM reg r JOIN copd c ON c.person_id = r.person_id
JOIN smk s ON s.person_id = r.person_id AND s.rn = 1 AND s.value_code = 'CURRENT'
JOIN adm a ON a.person_id = r.person_id AND a.n_adm >= 2;
