-- Outpatient did-not-attend rate by deprivation decile and age band, 2024/25
-- What: outpatient appointments in 2024/25 of people registered on 2025-03-31, the
-- people who had them and the appointments not attended (DNA), with the DNA rate, per
-- IMD decile and age band.
-- Who: public health analysts and elective care commissioners (inequalities in access).
-- DP: epsilon 1 over a person count, an appointment count and a DNA count; keys
-- constant per person with public domains, delta = 0. Appointments count up to
-- max_rows = 5 per person and group (the catalog allows 10; most people have fewer than
-- 5 outpatient appointments a year, so halving the noise is worth the few capped). The
-- DNA percentage is computed from the protected counts and carries an interval.
-- carelens: epsilon=1, max_rows=5
WITH reg AS (
  SELECT p.*, 2025 - p.year_of_birth AS age,
         CASE WHEN 2025 - p.year_of_birth < 18 THEN '0-17' WHEN 2025 - p.year_of_birth < 40 THEN '18-39'
              WHEN 2025 - p.year_of_birth < 65 THEN '40-64' WHEN 2025 - p.year_of_birth < 75 THEN '65-74'
              WHEN 2025 - p.year_of_birth < 85 THEN '75-84' ELSE '85+' END AS age_band
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31'))
SELECT r.imd_decile, r.age_band, COUNT(DISTINCT e.person_id) AS n_persons, COUNT(*) AS appointments,
       COUNT(CASE WHEN e.attendance_status = 'DNA' THEN 1 END) AS dna,
       ROUND(100.0 * COUNT(CASE WHEN e.attendance_status = 'DNA' THEN 1 END) / COUNT(*), 1) AS dna_pct
FROM reg r JOIN encounter e ON e.person_id = r.person_id
WHERE e.setting = 'OP' AND e.start_date BETWEEN DATE '2024-04-01' AND DATE '2025-03-31'
GROUP BY r.imd_decile, r.age_band
ORDER BY r.imd_decile, r.age_band;
