//! The fixed geography of Wessex: places, localities, primary care networks, practices and
//! LSOAs, with their deprivation.
//!
//! Geography is public reference data, so it is the same for every seed and every size of
//! extract (catalog domains stay stable); only how many people live where scales with
//! `--persons`. Populations follow ONS mid-year estimates for Dorset (Dorset Council
//! 379,578, BCP 400,192) and Hampshire and the Isle of Wight (about 1.8 million, Isle of
//! Wight 140,400). Codes are ODS- and ONS-shaped but synthetic.

use std::sync::OnceLock;

use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Integrated care boards of the two systems.
pub const ICB_DORSET: &str = "Dorset";
/// See [`ICB_DORSET`].
pub const ICB_HIOW: &str = "Hampshire and Isle of Wight";

/// A place: a local authority area within an ICB.
#[derive(Debug)]
pub struct Place {
    /// e.g. "BCP".
    pub name: &'static str,
    /// The ICB the place belongs to.
    pub icb: &'static str,
    /// Local authority code, used as the provider of adult social care.
    pub council_code: &'static str,
    /// Acute trusts that serve the place, most used first.
    pub acute_trusts: &'static [&'static str],
    /// Community and mental-health trust.
    pub community_trust: &'static str,
    /// The ODS prefix of its practices, e.g. "J81".
    pub practice_prefix: &'static str,
    /// First LSOA serial number of the place (synthetic `E01` codes).
    pub lsoa_base: u32,
}

/// A locality: the planning unit commissioners report by.
#[derive(Debug)]
pub struct Locality {
    /// e.g. "Weymouth & Portland".
    pub name: &'static str,
    /// Index into [`Geography::places`].
    pub place: usize,
    /// Registered population (persons).
    pub population: u32,
    /// Share of the population aged 65 and over.
    pub share_65_plus: f64,
    /// Mean IMD decile of its LSOAs (1 = most deprived).
    pub mean_imd_decile: f64,
    /// Index of the acute trust most of its residents use, in the place's list.
    pub main_trust: usize,
}

/// A primary care network: a group of practices serving 15,000-60,000 people.
#[derive(Debug)]
pub struct Pcn {
    /// e.g. "U41234".
    pub code: &'static str,
    /// e.g. "Weymouth & Portland 2 PCN".
    pub name: &'static str,
    /// Index into [`Geography::localities`].
    pub locality: usize,
}

/// A GP practice.
#[derive(Debug)]
pub struct Practice {
    /// ODS-style code, e.g. "J81001".
    pub code: &'static str,
    /// Index into [`Geography::pcns`].
    pub pcn: usize,
    /// Registered list size, as a weight.
    pub list_size: f64,
}

/// A lower-layer super output area (about 1,600 people).
#[derive(Debug)]
pub struct Lsoa {
    /// LSOA 2021 code, e.g. "E01020412".
    pub code: &'static str,
    /// Index into [`Geography::localities`].
    pub locality: usize,
    /// Index of Multiple Deprivation decile, 1 = most deprived.
    pub imd_decile: u8,
    /// ONS rural-urban classification.
    pub rural_urban: &'static str,
}

/// All of Wessex.
#[derive(Debug)]
pub struct Geography {
    /// Places, in a fixed order.
    pub places: Vec<Place>,
    /// Localities, grouped by place.
    pub localities: Vec<Locality>,
    /// PCNs, grouped by locality.
    pub pcns: Vec<Pcn>,
    /// Practices, grouped by PCN.
    pub practices: Vec<Practice>,
    /// LSOAs, grouped by locality.
    pub lsoas: Vec<Lsoa>,
    /// For each locality, the range of its practices in `practices`.
    pub practices_of_locality: Vec<std::ops::Range<usize>>,
    /// For each locality, the range of its LSOAs in `lsoas`.
    pub lsoas_of_locality: Vec<std::ops::Range<usize>>,
    /// For each place, the range of its LSOAs in `lsoas`.
    pub lsoas_of_place: Vec<std::ops::Range<usize>>,
}

/// `(name, place, population, share 65+, mean IMD decile, rural share, main trust)`.
type LocalitySpec = (&'static str, usize, u32, f64, f64, f64, usize);

const PLACES: [Place; 6] = [
    Place {
        name: "Dorset",
        icb: ICB_DORSET,
        council_code: "E06000059",
        acute_trusts: &["RBD", "R0D", "RA4"],
        community_trust: "RDY",
        practice_prefix: "J81",
        lsoa_base: 20_400,
    },
    Place {
        name: "BCP",
        icb: ICB_DORSET,
        council_code: "E06000058",
        acute_trusts: &["R0D", "RBD"],
        community_trust: "RDY",
        practice_prefix: "J81",
        lsoa_base: 15_400,
    },
    Place {
        name: "Hampshire",
        icb: ICB_HIOW,
        council_code: "E10000014",
        acute_trusts: &["RN5", "RHM", "RHU", "RDU"],
        community_trust: "RW1",
        practice_prefix: "J82",
        lsoa_base: 22_500,
    },
    Place {
        name: "Southampton",
        icb: ICB_HIOW,
        council_code: "E06000045",
        acute_trusts: &["RHM", "RN5"],
        community_trust: "R1C",
        practice_prefix: "J82",
        lsoa_base: 17_000,
    },
    Place {
        name: "Portsmouth",
        icb: ICB_HIOW,
        council_code: "E06000044",
        acute_trusts: &["RHU", "RHM"],
        community_trust: "R1C",
        practice_prefix: "J82",
        lsoa_base: 17_400,
    },
    Place {
        name: "Isle of Wight",
        icb: ICB_HIOW,
        council_code: "E06000046",
        acute_trusts: &["R1F", "RHU"],
        community_trust: "R1F",
        practice_prefix: "J84",
        lsoa_base: 17_700,
    },
];

const LOCALITIES: [LocalitySpec; 25] = [
    // Dorset Council: 379,578 people, 29.6% aged 65+.
    ("East Dorset", 0, 88_000, 0.330, 7.8, 0.35, 1),
    ("Mid Dorset", 0, 52_000, 0.285, 6.2, 0.70, 0),
    ("North Dorset", 0, 64_000, 0.275, 6.0, 0.75, 0),
    ("Purbeck", 0, 44_578, 0.315, 6.3, 0.65, 1),
    ("West Dorset", 0, 68_000, 0.320, 5.8, 0.70, 0),
    ("Weymouth & Portland", 0, 63_000, 0.260, 3.6, 0.10, 0),
    // BCP: 400,192 people, 21.6% aged 65+.
    ("Bournemouth East", 1, 56_000, 0.215, 4.8, 0.0, 0),
    ("Bournemouth North", 1, 60_000, 0.205, 4.4, 0.0, 0),
    ("Central Bournemouth", 1, 62_192, 0.150, 3.2, 0.0, 0),
    ("Christchurch", 1, 52_000, 0.300, 6.4, 0.05, 0),
    ("Poole Bay", 1, 55_000, 0.260, 7.2, 0.0, 0),
    ("Poole Central", 1, 56_000, 0.190, 4.2, 0.0, 0),
    ("Poole North", 1, 59_000, 0.205, 5.6, 0.02, 0),
    // Hampshire (the part in this ICB): about 1.18 million people.
    ("North Hampshire", 2, 250_000, 0.195, 8.0, 0.30, 0),
    ("Mid Hampshire", 2, 228_000, 0.225, 7.8, 0.45, 0),
    ("South West Hampshire", 2, 250_000, 0.270, 6.6, 0.40, 1),
    ("Eastleigh", 2, 135_000, 0.200, 7.0, 0.15, 1),
    ("Fareham & Gosport", 2, 200_000, 0.240, 5.4, 0.05, 2),
    ("South East Hampshire", 2, 120_000, 0.230, 4.6, 0.25, 2),
    // Southampton: a young, student city.
    ("Southampton Central", 3, 90_000, 0.100, 3.0, 0.0, 0),
    ("Southampton East", 3, 85_000, 0.140, 3.8, 0.0, 0),
    ("Southampton West", 3, 85_000, 0.150, 4.4, 0.0, 0),
    // Portsmouth.
    ("Portsmouth North", 4, 110_000, 0.165, 4.2, 0.0, 0),
    ("Portsmouth South", 4, 105_000, 0.120, 3.0, 0.0, 0),
    // Isle of Wight: 140,400 people, old.
    ("Isle of Wight", 5, 140_400, 0.295, 4.2, 0.45, 0),
];

/// People per LSOA, as in the 2021 Census.
const PEOPLE_PER_LSOA: u32 = 1_600;
/// Typical people per PCN.
const PEOPLE_PER_PCN: u32 = 38_000;
/// The geography is the same for every seed.
const GEOGRAPHY_SEED: u64 = 0x5765_7373_6578; // "Wessex"

const RURAL_URBAN_URBAN: [&str; 2] = ["Urban city and town", "Urban minor conurbation"];
const RURAL_URBAN_RURAL: [&str; 2] = ["Rural town and fringe", "Rural village and dispersed"];

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

impl Geography {
    /// The one geography, built on first use.
    pub fn get() -> &'static Geography {
        static GEOGRAPHY: OnceLock<Geography> = OnceLock::new();
        GEOGRAPHY.get_or_init(Geography::build)
    }

    fn build() -> Geography {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(GEOGRAPHY_SEED);
        let places: Vec<Place> = PLACES.into_iter().collect();
        let mut localities = Vec::new();
        let mut pcns = Vec::new();
        let mut practices = Vec::new();
        let mut lsoas = Vec::new();
        let mut practices_of_locality = Vec::new();
        let mut lsoas_of_locality = Vec::new();
        let mut lsoa_serial: Vec<u32> = places.iter().map(|p| p.lsoa_base).collect();
        let mut practice_serial = [0u32; 3];

        // Keep localities grouped by place so places own contiguous LSOA ranges.
        let mut specs: Vec<LocalitySpec> = LOCALITIES.to_vec();
        specs.sort_by_key(|s| s.1);
        for (name, place, population, share_65_plus, mean_imd, rural_share, main_trust) in specs {
            let locality = localities.len();
            localities.push(Locality {
                name,
                place,
                population,
                share_65_plus,
                mean_imd_decile: mean_imd,
                main_trust,
            });

            // LSOAs with deprivation scattered around the locality's mean.
            let first_lsoa = lsoas.len();
            let n_lsoa = population.div_ceil(PEOPLE_PER_LSOA).max(2);
            let spread = Normal::new(mean_imd, 1.7).unwrap_or_else(|_| unreachable!());
            for _ in 0..n_lsoa {
                let serial = &mut lsoa_serial[place];
                let code = leak(format!("E01{:06}", *serial));
                *serial += 1;
                let imd_decile = spread.sample(&mut rng).round().clamp(1.0, 10.0) as u8;
                let rural = rng.random_bool(rural_share);
                let classes = if rural {
                    RURAL_URBAN_RURAL
                } else {
                    RURAL_URBAN_URBAN
                };
                let rural_urban = classes[usize::from(rng.random_bool(0.3))];
                lsoas.push(Lsoa {
                    code,
                    locality,
                    imd_decile,
                    rural_urban,
                });
            }
            lsoas_of_locality.push(first_lsoa..lsoas.len());

            // PCNs of uneven size, each with 2-7 practices of uneven list size.
            let first_practice = practices.len();
            let n_pcn = (population + PEOPLE_PER_PCN / 2) / PEOPLE_PER_PCN;
            for k in 0..n_pcn.max(1) {
                let pcn = pcns.len();
                pcns.push(Pcn {
                    code: leak(format!("U{:05}", 40_000 + 137 * pcn + 11)),
                    name: leak(if n_pcn <= 1 {
                        format!("{name} PCN")
                    } else {
                        format!("{name} {} PCN", k + 1)
                    }),
                    locality,
                });
                let pcn_weight = rng.random_range(0.4..1.6);
                let n_practices = rng.random_range(2..=7);
                for _ in 0..n_practices {
                    let prefix_slot = match places[place].practice_prefix {
                        "J81" => 0,
                        "J82" => 1,
                        _ => 2,
                    };
                    let serial = &mut practice_serial[prefix_slot];
                    *serial += 1;
                    practices.push(Practice {
                        code: leak(format!(
                            "{}{:03}",
                            places[place].practice_prefix,
                            *serial * 3 % 1000
                        )),
                        pcn,
                        list_size: pcn_weight * rng.random_range(0.3..1.7) / n_practices as f64,
                    });
                }
            }
            practices_of_locality.push(first_practice..practices.len());
        }

        let lsoas_of_place = (0..places.len())
            .map(|p| {
                let of_place: Vec<usize> = (0..lsoas.len())
                    .filter(|&i| localities[lsoas[i].locality].place == p)
                    .collect();
                of_place[0]..of_place[of_place.len() - 1] + 1
            })
            .collect();

        Geography {
            places,
            localities,
            pcns,
            practices,
            lsoas,
            practices_of_locality,
            lsoas_of_locality,
            lsoas_of_place,
        }
    }

    /// Total population of the real Wessex the geography describes.
    #[cfg(test)]
    pub fn total_population(&self) -> u64 {
        self.localities
            .iter()
            .map(|l| u64::from(l.population))
            .sum()
    }

    /// The place of a locality.
    pub fn place_of(&self, locality: usize) -> &Place {
        &self.places[self.localities[locality].place]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let g = Geography::get();
        let lsoa: HashSet<_> = g.lsoas.iter().map(|l| l.code).collect();
        assert_eq!(lsoa.len(), g.lsoas.len());
        assert!(
            g.lsoas
                .iter()
                .all(|l| l.code.len() == 9 && l.code.starts_with("E01"))
        );
        let practices: HashSet<_> = g.practices.iter().map(|p| p.code).collect();
        assert_eq!(practices.len(), g.practices.len());
        let pcns: HashSet<_> = g.pcns.iter().map(|p| p.code).collect();
        assert_eq!(pcns.len(), g.pcns.len());
    }

    #[test]
    fn dorset_has_its_localities_and_wessex_its_population() {
        let g = Geography::get();
        let dorset = g
            .localities
            .iter()
            .filter(|l| g.places[l.place].icb == ICB_DORSET)
            .count();
        assert_eq!(dorset, 13);
        let total = g.total_population();
        assert!((2_550_000..2_650_000).contains(&total), "{total}");
        assert!(g.lsoas_of_place.iter().all(|r| !r.is_empty()));
    }
}
