-- Oldest year of birth by place: rejected, a maximum is one person's own value
SELECT place, MAX(2025 - year_of_birth) AS oldest FROM person GROUP BY place
