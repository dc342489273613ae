-- Length of stay of emergency spells for people aged 65+, by provider
-- What: emergency inpatient spells ending in 2024/25 for people aged 65+, per provider:
-- people, spells, the median and 90th percentile length of stay, and stays of 21+ days.
-- Who: commissioners and acute trusts (flow, long-stay reviews).
-- DP: epsilon 1. The median and 90th percentile are released by the exponential
-- mechanism over whole days 0-60 (the catalog's bounds), each with an equal share of
-- epsilon (half to the value, a quarter to each end of its 95% interval); explain gives
-- their 95% error in ranks (how many of the provider's spells can lie between the released
-- and the true value), so a provider with few spells gets a rough median. On the
-- 20,000-person sample a provider has about two hundred spells, fewer than the intervals'
-- reach: the medians are mostly noise and their intervals say so by spanning 0-60 days.
-- On the full extract a provider has tens of thousands of spells and the intervals are a
-- day or two wide. The original's bed-day sum and mean are left out: a sum's noise grows
-- with the largest stay one person can add, and the quantiles answer the question
-- better. Provider is not constant per person and providers are not a public list, so
-- providers are released by DP key selection (delta = the policy's 1e-6): a provider
-- with few people is not shown at all. Each person's spells are sampled into max_groups
-- = 1 provider (older people admitted as emergencies are nearly always admitted to their
-- local trust) with up to max_rows = 3 spells: the catalog's limits (4 providers, 10
-- rows) would multiply the noise and raise the key-selection threshold fourfold, hiding
-- every provider of a small extract. The price is that a person's spells at a second
-- trust are dropped.
-- carelens: epsilon=1, max_groups=1, max_rows=3
SELECT e.provider_code, COUNT(DISTINCT e.person_id) AS n_persons, COUNT(*) AS spells,
       MEDIAN(e.los_days) AS median_los,
       PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY e.los_days) AS p90_los,
       COUNT(CASE WHEN e.los_days >= 21 THEN 1 END) AS long_stay_21plus
FROM encounter e JOIN person p ON p.person_id = e.person_id
WHERE e.setting = 'APC' AND e.admission_method = 'EMERGENCY' AND 2025 - p.year_of_birth >= 65
  AND e.end_date BETWEEN DATE '2024-04-01' AND DATE '2025-03-31'
GROUP BY e.provider_code
ORDER BY e.provider_code;
