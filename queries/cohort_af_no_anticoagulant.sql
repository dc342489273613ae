-- Cohort count: adults with atrial fibrillation and no anticoagulant in 6 months
-- What: registered adults on 2025-03-31 with atrial fibrillation and no DOAC or warfarin
-- issued in the 6 months before. One number.
-- Who: researchers checking feasibility of an anticoagulation-optimisation trial.
-- DP: epsilon 0.5 on one person count: noise scale 2, 95% error about +-6 before
-- rounding to 5. No groups, delta = 0.
-- carelens: epsilon=0.5
WITH reg AS (
  SELECT p.*, 2025 - p.year_of_birth AS age
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31')),
af AS (SELECT DISTINCT person_id FROM condition WHERE condition_group = 'AF' AND NOT is_resolution),
ac AS (SELECT DISTINCT person_id FROM medication
       WHERE drug_class IN ('ANTICOAG_DOAC','WARFARIN')
         AND issue_date > DATE '2025-03-31' - INTERVAL '6 months')
SELECT COUNT(DISTINCT r.person_id) AS n
FROM reg r JOIN af ON af.person_id = r.person_id
LEFT JOIN ac ON ac.person_id = r.person_id
WHERE r.age >= 18 AND ac.person_id IS NULL;
