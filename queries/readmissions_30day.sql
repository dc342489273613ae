-- 30-day emergency readmissions after hospital spells, by place
-- What: inpatient spells ending 2024-04-01 to 2025-02-28, the people they belong to, and
-- those followed by an emergency admission within 30 days of discharge, per place. The
-- next admission is looked for over all spells, so readmissions after the period count.
-- Who: commissioners and acute providers (discharge and intermediate care planning).
-- DP: epsilon 0.75 over a spell count, a person count and a readmission count. Spells
-- count up to max_rows = 3 per person (the catalog's encounter limit of 10 would more
-- than triple the noise, and few people have more than 3 spells in 11 months). Place is
-- constant per person, so L0 = 1; public domain, delta = 0. The readmission rate is
-- readmissions / index_spells, computed from the released counts.
-- carelens: epsilon=0.75, max_rows=3
WITH spells AS (
  SELECT e.person_id, e.encounter_id, e.start_date, e.end_date, p.place,
         LEAD(CASE WHEN e.admission_method = 'EMERGENCY' THEN e.start_date END)
           OVER (PARTITION BY e.person_id ORDER BY e.start_date) AS next_emerg_start
  FROM encounter e JOIN person p ON p.person_id = e.person_id
  WHERE e.setting = 'APC')
SELECT place, COUNT(*) AS index_spells, COUNT(DISTINCT person_id) AS n_persons,
       COUNT(CASE WHEN next_emerg_start IS NOT NULL
                   AND next_emerg_start <= end_date + INTERVAL '30 days' THEN 1 END) AS readmissions,
       ROUND(100.0 * COUNT(CASE WHEN next_emerg_start IS NOT NULL
                                 AND next_emerg_start <= end_date + INTERVAL '30 days' THEN 1 END)
             / COUNT(*), 1) AS readmission_pct
FROM spells WHERE end_date BETWEEN DATE '2024-04-01' AND DATE '2025-02-28'
GROUP BY place
ORDER BY place;
