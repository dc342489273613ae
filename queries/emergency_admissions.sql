-- Emergency admissions per 1,000 registered people by age band and sex
-- What: people registered and alive on 2025-03-31, their emergency admissions in the 12
-- months to that date, and admissions per 1,000 people, per age band and sex.
-- Who: commissioners (urgent and emergency care planning).
-- DP: epsilon 1 (the policy default) over the person count and the admission count. Keys
-- are constant per person (L0 = 1) with public domains: every age band x sex is shown.
-- Admissions count up to max_rows = 3 per person and group: hardly anyone has more than 3
-- emergency admissions in a year, and the catalog's encounter limit of 10 would triple
-- the noise on the admission count. The rate is computed from the protected counts.
-- carelens: epsilon=1, max_rows=3
WITH reg AS (
  SELECT p.*,
         CASE WHEN 2025 - p.year_of_birth < 18 THEN '0-17' WHEN 2025 - p.year_of_birth < 40 THEN '18-39'
              WHEN 2025 - p.year_of_birth < 65 THEN '40-64' WHEN 2025 - p.year_of_birth < 75 THEN '65-74'
              WHEN 2025 - p.year_of_birth < 85 THEN '75-84' ELSE '85+' END AS age_band
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31'))
SELECT r.age_band, r.sex,
       COUNT(DISTINCT r.person_id) AS population,
       COUNT(e.encounter_id) AS emergency_admissions,
       1000.0 * COUNT(e.encounter_id) / COUNT(DISTINCT r.person_id) AS per_1000
FROM reg r LEFT JOIN encounter e
  ON e.person_id = r.person_id AND e.setting = 'APC' AND e.admission_method = 'EMERGENCY'
 AND e.start_date > DATE '2025-03-31' - INTERVAL '12 months' AND e.start_date <= DATE '2025-03-31'
GROUP BY r.age_band, r.sex
ORDER BY r.age_band, r.sex;
