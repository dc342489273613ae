-- Age of people with type 2 diabetes: quartiles and median
-- What: registered adults (17+) on 2025-03-31 with recorded type 2 diabetes (a diagnosis
-- not followed by a resolution code): how many, and the lower quartile, median and upper
-- quartile of their age.
-- Who: commissioners and public health analysts (service planning for an ageing cohort).
-- DP: epsilon 0.5 in five equal shares: the person count, the three quantiles and the
-- number of ages (not released; it bounds the intervals). Each quantile is released by
-- the exponential mechanism over ages 0-110 (the catalog's bounds of year_of_birth) with
-- half of its share, and each end of its 95% interval with a quarter. One age per person,
-- said to the engine with max_rows = 1: the engine cannot tell that `dm` has one row per
-- person and would otherwise allow the catalog's 5 condition rows, multiplying every
-- error by five. On the 20,000-person sample (about 1,200 people in the cohort) the
-- median's 95% error is about 80 ranks and its interval spans about ten years; the
-- quartiles' intervals reach the bounds on their outer side. On the full extract the
-- cohort is over a hundred times larger and the intervals are a year or two wide. No
-- groups, delta = 0.
-- carelens: epsilon=0.5, max_rows=1
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
SELECT COUNT(DISTINCT r.person_id) AS people,
       PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY r.age) AS q1_age,
       MEDIAN(r.age) AS median_age,
       PERCENTILE_CONT(0.75) WITHIN GROUP (ORDER BY r.age) AS q3_age
FROM reg r JOIN dm d ON d.person_id = r.person_id
WHERE r.age >= 17 AND d.last_dx IS NOT NULL AND (d.last_res IS NULL OR d.last_res < d.last_dx);
