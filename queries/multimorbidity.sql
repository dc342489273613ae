-- Multimorbidity: adults with 2+ and 4+ long-term conditions by age band and deprivation
-- What: registered adults (18+) on 2025-03-31 with at least 2 and at least 4 of the 16
-- QOF long-term condition groups recorded (unresolved), per age band and IMD decile.
-- Who: public health analysts and commissioners (JSNA, inequalities in multimorbidity).
-- DP: epsilon 0.5 over three person counts; keys constant per person with public
-- domains (every age band x decile shown), delta = 0. Counts of conditions per person are
-- computed inside the person before anything is aggregated.
-- carelens: epsilon=0.5, chart=mltc_2plus
WITH reg AS (
  SELECT p.*, 2025 - p.year_of_birth AS age,
         CASE WHEN 2025 - p.year_of_birth < 18 THEN '0-17' WHEN 2025 - p.year_of_birth < 40 THEN '18-39'
              WHEN 2025 - p.year_of_birth < 65 THEN '40-64' WHEN 2025 - p.year_of_birth < 75 THEN '65-74'
              WHEN 2025 - p.year_of_birth < 85 THEN '75-84' ELSE '85+' END AS age_band
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31')),
ltc AS (
  SELECT person_id, COUNT(DISTINCT condition_group) AS n_ltc FROM condition
  WHERE NOT is_resolution AND event_date <= DATE '2025-03-31'
    AND condition_group IN ('DM_T1','DM_T2','HYP','AST','COPD','CHD','STIA','AF','HF','CKD',
                            'DEP','DEM','SMI','CAN','EPIL','RA')
  GROUP BY person_id)
SELECT r.age_band, r.imd_decile, COUNT(DISTINCT r.person_id) AS population,
       COUNT(DISTINCT CASE WHEN l.n_ltc >= 2 THEN r.person_id END) AS mltc_2plus,
       COUNT(DISTINCT CASE WHEN l.n_ltc >= 4 THEN r.person_id END) AS mltc_4plus
FROM reg r LEFT JOIN ltc l ON l.person_id = r.person_id
WHERE r.age >= 18
GROUP BY r.age_band, r.imd_decile
ORDER BY r.age_band, r.imd_decile;
