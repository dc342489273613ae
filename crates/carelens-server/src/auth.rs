//! Who a call comes from: the bearer token's user, and no one else.
//!
//! A call with a wrong, expired or revoked token is answered 401 and logged. An address
//! that keeps failing is slowed down: from its fourth failure within a quarter of an hour
//! each further failure is answered only after a delay that doubles, up to ten seconds.
//! (A token is 256 random bits, so guessing cannot succeed either way; the delay keeps a
//! guessing client from filling the log and the server's time.) The failures are kept
//! for at most [`MAX_ADDRESSES`] addresses, so the memory they take is bounded.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use carelens_service::{Caller, ServiceError};

use crate::observe::CallerSlot;
use crate::{ApiError, AppState};

/// Failures an address may make before it is slowed down.
const FREE_FAILURES: u32 = 3;
/// The first delay, doubled with each further failure.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(10);
/// How long an address's failures are remembered after its last one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses whose failures are remembered at once.
pub(crate) const MAX_ADDRESSES: usize = 4096;

/// The caller of an authenticated call: the user of the call's bearer token.
pub(crate) struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let outcome = match token {
            Some(token) => state.service.authenticate(token.trim()).await,
            None => Err(ServiceError::Unauthenticated),
        };
        match outcome {
            Ok(caller) => {
                if let Some(slot) = parts.extensions.get::<CallerSlot>() {
                    slot.set(caller.name());
                }
                Ok(Self(caller))
            }
            Err(err) => {
                // A call without any token is a client that does not know it needs one,
                // not a guess; only wrong tokens count towards the slowdown.
                // (Calls made in process, as tests make them, have no address.)
                let address = parts.extensions.get::<ConnectInfo<SocketAddr>>();
                if let (Some(_), Some(ConnectInfo(address))) = (token, address)
                    && matches!(err, ServiceError::Unauthenticated)
                {
                    let delay = state.failures.fail(guesser(address.ip()), Instant::now());
                    tokio::time::sleep(delay).await;
                }
                Err(err.into())
            }
        }
    }
}

/// Failed authentications by address (see the module's documentation).
#[derive(Debug, Default)]
pub(crate) struct Failures {
    by_address: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Failures {
    /// Counts a failure from `address` at `now`; how long to wait before answering it.
    pub(crate) fn fail(&self, address: IpAddr, now: Instant) -> Duration {
        let mut map = self
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(&address) && map.len() >= MAX_ADDRESSES {
            map.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if map.len() >= MAX_ADDRESSES {
                // Still full: forget the address with the fewest failures, the one
                // least likely to be guessing.
                if let Some(least) = map.iter().min_by_key(|(_, (n, _))| *n).map(|(a, _)| *a) {
                    map.remove(&least);
                }
            }
        }
        let entry = map.entry(address).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        delay_after(entry.0)
    }

    /// Addresses remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Who a failure is counted against: an IPv4 address as it is (also when it arrives
/// IPv4-mapped), an IPv6 address by its /64 — one host usually holds a whole /64, and
/// would otherwise get a fresh allowance from every address in it.
pub(crate) fn guesser(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// The delay before answering an address's `failures`-th failure.
fn delay_after(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES + 1) {
        None => Duration::ZERO,
        Some(doublings) => FIRST_DELAY
            .checked_mul(1 << doublings.min(16))
            .map_or(MAX_DELAY, |d| d.min(MAX_DELAY)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn failures_are_free_then_slowed_then_capped_and_forgotten() {
        let failures = Failures::default();
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        let delays: Vec<Duration> = (0..10).map(|_| failures.fail(address, t0)).collect();
        assert_eq!(&delays[..3], &[Duration::ZERO; 3]);
        assert_eq!(delays[3], Duration::from_millis(250));
        assert_eq!(delays[4], Duration::from_millis(500));
        assert_eq!(delays[5], Duration::from_secs(1));
        assert_eq!(delays[9], MAX_DELAY);
        // Another address is not slowed by this one's failures.
        assert_eq!(
            failures.fail("192.0.2.8".parse().unwrap(), t0),
            Duration::ZERO
        );
        // A quarter of an hour later the address starts afresh.
        assert_eq!(failures.fail(address, t0 + FORGET_AFTER), Duration::ZERO);
    }

    #[test]
    fn an_ipv6_host_is_one_guesser_across_its_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(guesser(a), guesser(b));
        assert_ne!(guesser(a), guesser(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(guesser(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let failures = Failures::default();
        let t0 = Instant::now();
        // Four addresses of one /64, one failure each: the fourth is slowed.
        let delays: Vec<Duration> = (1..=4u128)
            .map(|i| {
                let IpAddr::V6(base) = a else { unreachable!() };
                let address = IpAddr::V6(Ipv6Addr::from(u128::from(base) + i));
                failures.fail(guesser(address), t0)
            })
            .collect();
        assert_eq!(delays[3], Duration::from_millis(250), "{delays:?}");
    }

    #[test]
    fn the_memory_of_failures_is_bounded() {
        let failures = Failures::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 500) {
            failures.fail(IpAddr::V4(Ipv4Addr::from(i)), t0);
        }
        assert_eq!(failures.len(), MAX_ADDRESSES);
        // A persistent guesser is kept while one-off failures are forgotten.
        let guesser: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..6 {
            failures.fail(guesser, t0);
        }
        for i in 0..1000u32 {
            failures.fail(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), t0);
        }
        assert!(failures.fail(guesser, t0) >= Duration::from_secs(2));
    }
}
