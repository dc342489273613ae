-- Median year of birth by place: rejected, a median can be one person's own value
SELECT place, median(year_of_birth) AS median_yob FROM person GROUP BY place
