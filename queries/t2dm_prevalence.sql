-- Recorded type 2 diabetes prevalence by locality and deprivation quintile
-- What: adults 17+ registered and alive on 2025-03-31, those with recorded type 2
-- diabetes (a diagnosis not followed by a resolution code), and the prevalence in %, per
-- locality and IMD quintile.
-- Who: commissioners and public health analysts (JSNA staple, inequalities).
-- DP: epsilon 1 (the policy default), split over the two person counts. Both keys are
-- constant per person (L0 = 1) with public domains, so every locality x quintile is
-- shown, empty ones included, and delta = 0.
-- carelens: epsilon=1
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
  GROUP BY person_id)
SELECT r.locality, (r.imd_decile + 1) / 2 AS imd_quintile,
       COUNT(DISTINCT r.person_id) AS denominator,
       COUNT(DISTINCT CASE WHEN d.last_dx IS NOT NULL AND (d.last_res IS NULL OR d.last_res < d.last_dx)
                           THEN r.person_id END) AS numerator,
       ROUND(100.0 * COUNT(DISTINCT CASE WHEN d.last_dx IS NOT NULL AND (d.last_res IS NULL OR d.last_res < d.last_dx)
                                         THEN r.person_id END) / COUNT(DISTINCT r.person_id), 1) AS prevalence_pct
FROM reg r LEFT JOIN dm d ON d.person_id = r.person_id
WHERE r.age >= 17
GROUP BY r.locality, (r.imd_decile + 1) / 2
ORDER BY r.locality, imd_quintile;
