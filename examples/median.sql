-- Median age and the age distribution's quartiles by place: each is released by the
-- exponential mechanism over the ages 0..110 (the catalog's bounds of year_of_birth).
SELECT place, COUNT(DISTINCT person_id) AS people,
       PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY 2025 - year_of_birth) AS q1_age,
       MEDIAN(2025 - year_of_birth) AS median_age,
       PERCENTILE_CONT(0.75) WITHIN GROUP (ORDER BY 2025 - year_of_birth) AS q3_age
FROM person GROUP BY place ORDER BY place
