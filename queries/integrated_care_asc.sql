-- Long-term social care users with an emergency admission and a mental health contact
-- What: registered people in long-term adult social care support in 2024/25, those of
-- them with an emergency admission, and those with both an emergency admission and a
-- mental health contact in the year, per place.
-- Who: integrated care commissioners (health and social care joint planning).
-- DP: epsilon 0.5 over three person counts; place is constant per person with a public
-- domain, delta = 0. The triple intersection is sparse: on smaller places it is often
-- 7 or fewer and is suppressed, exactly as an output checker would.
-- carelens: epsilon=0.5, chart=asc_and_emergency
WITH reg AS (
  SELECT p.*, 2025 - p.year_of_birth AS age
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31')),
asc_lt AS (SELECT DISTINCT person_id FROM encounter
           WHERE setting = 'ASC' AND service_type LIKE 'Long Term Support%'
             AND start_date <= DATE '2025-03-31' AND (end_date IS NULL OR end_date >= DATE '2024-04-01')),
emerg  AS (SELECT DISTINCT person_id FROM encounter
           WHERE setting = 'APC' AND admission_method = 'EMERGENCY'
             AND start_date BETWEEN DATE '2024-04-01' AND DATE '2025-03-31'),
mh     AS (SELECT DISTINCT person_id FROM encounter
           WHERE setting = 'MH' AND start_date BETWEEN DATE '2024-04-01' AND DATE '2025-03-31')
SELECT r.place, COUNT(DISTINCT a.person_id) AS asc_long_term,
       COUNT(DISTINCT CASE WHEN em.person_id IS NOT NULL THEN a.person_id END) AS asc_and_emergency,
       COUNT(DISTINCT CASE WHEN em.person_id IS NOT NULL AND m.person_id IS NOT NULL
                           THEN a.person_id END) AS asc_emergency_and_mh
FROM reg r JOIN asc_lt a ON a.person_id = r.person_id
LEFT JOIN emerg em ON em.person_id = a.person_id
LEFT JOIN mh m     ON m.person_id = a.person_id
GROUP BY r.place
ORDER BY r.place;
