-- Frailty cohort by primary care network, with the care-home split
-- What: registered people aged 65+ with moderate or severe frailty (electronic Frailty
-- Index) and the 65+ population, per PCN and care-home residence, on 2025-03-31.
-- Who: commissioners and PCN clinical directors planning proactive care and care-home
-- support (Enhanced Health in Care Homes).
-- DP: epsilon 0.5 over two person counts. Both keys are constant per person (L0 = 1)
-- with public domains, so every PCN is listed, delta = 0. PCN cells are small: most
-- care-home cells are suppressed, which is the disclosure rule working, not a fault.
-- carelens: epsilon=0.5
WITH reg AS (
  SELECT p.*, 2025 - p.year_of_birth AS age
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31'))
SELECT r.pcn_code, r.care_home_resident,
       COUNT(DISTINCT CASE WHEN r.efi_category IN ('moderate','severe') THEN r.person_id END) AS frail,
       COUNT(DISTINCT r.person_id) AS pop_65_plus
FROM reg r WHERE r.age >= 65
GROUP BY r.pcn_code, r.care_home_resident
ORDER BY r.pcn_code, r.care_home_resident;
