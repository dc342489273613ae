-- High-intensity users of A&E (5+ attendances in 12 months) by locality
-- What: registered people with 5 or more A&E attendances in the 12 months to 2025-03-31
-- (the NHS High Intensity Use programme threshold), their attendances, all attendances
-- and the population, per locality.
-- Who: urgent care commissioners and the High Intensity Use service.
-- DP: epsilon 0.75 over two person counts and two sums. A sum needs a bound on what one
-- person adds: attendances are capped at 10 per person (LEAST), twice the threshold and
-- above what nearly everyone has; the cap is what lets the sums be released at all (the
-- original query, without it, is rejected). Each person is one row here (attendances
-- are counted per person first), so max_rows = 1 and a person moves a sum by at most 10.
-- Keys constant per person, public domain, delta = 0. The sums' noise (95% error about
-- +-160) is large beside a 20,000-person sample's localities and small beside real ones.
-- carelens: epsilon=0.75, max_rows=1
WITH reg AS (
  SELECT p.*, 2025 - p.year_of_birth AS age
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31')),
ae AS (
  SELECT person_id, COUNT(*) AS n_att FROM encounter
  WHERE setting = 'AE' AND start_date > DATE '2025-03-31' - INTERVAL '12 months'
    AND start_date <= DATE '2025-03-31'
  GROUP BY person_id)
SELECT r.locality,
       COUNT(DISTINCT CASE WHEN a.n_att >= 5 THEN r.person_id END) AS hiu_persons,
       SUM(CASE WHEN a.n_att >= 5 THEN LEAST(a.n_att, 10) ELSE 0 END) AS hiu_attendances,
       SUM(LEAST(COALESCE(a.n_att, 0), 10))                         AS all_attendances,
       COUNT(DISTINCT r.person_id)                                  AS population
FROM reg r LEFT JOIN ae a ON a.person_id = r.person_id
GROUP BY r.locality
ORDER BY r.locality;
