//! Throughput control for one model: how many requests may be in flight, and how fast they and
//! their tokens may go out.
//!
//! - **Requests/min and tokens/min**: token buckets holding a minute's allowance, refilled
//!   continuously. A request takes one request token and its estimated tokens (prompt text plus
//!   `max_tokens`) before it is sent; when the reply reports its real usage the difference is
//!   settled, so the bucket may go into debt and later requests wait it off.
//! - **Adaptive concurrency (AIMD)**: the number of requests in flight starts at the spec's
//!   `max_in_flight`; a 429 halves it (once per cool-down, so a burst of 429s from requests that
//!   were already in flight counts once), and every success adds `1/limit`, about one per
//!   round of successes, back up to `max_in_flight`.
//!
//! Every attempt, retries included, goes through [`Throttle::acquire`], and the permit is given
//! back before a backoff sleep, so a request waiting to retry holds no slot. Nothing here changes
//! what a build produces, only when requests are sent.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after a cut further 429s are taken as the same burst.
const COOL_DOWN: Duration = Duration::from_secs(1);

pub struct Throttle {
    max: usize,
    window: Mutex<Window>,
    released: tokio::sync::Notify,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

struct Window {
    limit: f64,
    in_flight: usize,
    last_cut: Option<Instant>,
    cuts: u64,
}

/// A slot in flight; dropping it frees the slot.
pub struct Permit<'t> {
    throttle: &'t Throttle,
    /// Tokens taken for the request, to settle against its usage.
    pub estimated_tokens: u64,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut w = lock(&self.throttle.window);
        w.in_flight = w.in_flight.saturating_sub(1);
        drop(w);
        self.throttle.released.notify_waiters();
    }
}

impl Throttle {
    pub fn new(max_in_flight: u64, requests_per_minute: Option<u64>, tokens_per_minute: Option<u64>) -> Throttle {
        let max = max_in_flight.clamp(1, 4096) as usize;
        Throttle {
            max,
            window: Mutex::new(Window { limit: max as f64, in_flight: 0, last_cut: None, cuts: 0 }),
            released: tokio::sync::Notify::new(),
            requests: requests_per_minute.map(Bucket::per_minute),
            tokens: tokens_per_minute.map(Bucket::per_minute),
        }
    }

    /// Waits for a slot under the current limit, then for one request and `tokens` tokens.
    pub async fn acquire(&self, tokens: u64) -> Permit<'_> {
        loop {
            // Registered before checking, so a release between the check and the wait is seen.
            let released = self.released.notified();
            {
                let mut w = lock(&self.window);
                if w.in_flight < (w.limit.floor() as usize).max(1) {
                    w.in_flight += 1;
                    break;
                }
            }
            released.await;
        }
        let permit = Permit { throttle: self, estimated_tokens: tokens };
        if let Some(b) = &self.requests {
            b.take(1.0).await;
        }
        if let Some(b) = &self.tokens {
            b.take(tokens as f64).await;
        }
        permit
    }

    /// The reply reported `actual` tokens for a request that took `estimated`.
    pub fn settle(&self, estimated: u64, actual: u64) {
        if let Some(b) = &self.tokens {
            b.adjust(estimated as f64 - actual as f64);
        }
    }

    pub fn succeeded(&self) {
        let mut w = lock(&self.window);
        let max = self.max as f64;
        w.limit = (w.limit + 1.0 / w.limit.max(1.0)).min(max);
        drop(w);
        self.released.notify_waiters();
    }

    /// A 429: halve the limit, unless this is the same burst as the last cut.
    pub fn throttled(&self) {
        self.throttled_at(Instant::now());
    }

    fn throttled_at(&self, now: Instant) {
        let mut w = lock(&self.window);
        if w.last_cut.is_some_and(|t| now.saturating_duration_since(t) < COOL_DOWN) {
            return;
        }
        w.limit = (w.limit / 2.0).max(1.0);
        w.last_cut = Some(now);
        w.cuts += 1;
    }

    /// The current limit on requests in flight.
    pub fn limit(&self) -> usize {
        (lock(&self.window).limit.floor() as usize).max(1)
    }

    /// How many times a burst of 429s cut the limit.
    pub fn cuts(&self) -> u64 {
        lock(&self.window).cuts
    }
}

/// A token bucket holding a minute's allowance.
struct Bucket {
    capacity: f64,
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn per_minute(n: u64) -> Bucket {
        let capacity = n.max(1) as f64;
        Bucket {
            capacity,
            per_second: capacity / 60.0,
            state: Mutex::new((capacity, tokio::time::Instant::now().into_std())),
        }
    }

    async fn take(&self, n: f64) {
        // A request larger than a minute's allowance waits for a full bucket, not forever.
        let n = n.min(self.capacity);
        loop {
            let wait = {
                let mut s = lock(&self.state);
                let now = tokio::time::Instant::now().into_std();
                s.0 = (s.0 + now.saturating_duration_since(s.1).as_secs_f64() * self.per_second).min(self.capacity);
                s.1 = now;
                if s.0 >= n {
                    s.0 -= n;
                    return;
                }
                Duration::from_secs_f64((n - s.0) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn adjust(&self, refund: f64) {
        let mut s = lock(&self.state);
        s.0 = (s.0 + refund).min(self.capacity);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_429s_halves_once_and_successes_grow_it_back() {
        let t = Throttle::new(16, None, None);
        let now = Instant::now();
        t.throttled_at(now);
        t.throttled_at(now + Duration::from_millis(200));
        assert_eq!(t.limit(), 8, "429s within the cool-down are one burst");
        t.throttled_at(now + Duration::from_secs(2));
        assert_eq!(t.limit(), 4);
        assert_eq!(t.cuts(), 2);
        for _ in 0..4 {
            t.succeeded();
        }
        assert_eq!(t.limit(), 4, "a round of successes adds just under one");
        t.succeeded();
        assert_eq!(t.limit(), 5);
        for _ in 0..10_000 {
            t.succeeded();
        }
        assert_eq!(t.limit(), 16, "never above max_in_flight");
        for k in 0..20 {
            t.throttled_at(now + Duration::from_secs(10 + 2 * k));
        }
        assert_eq!(t.limit(), 1, "never below one");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_spread_calls_over_the_minute() {
        let t = Throttle::new(100, Some(60), None);
        let start = tokio::time::Instant::now();
        for _ in 0..70 {
            drop(t.acquire(0).await);
        }
        // 60 go at once (a full bucket), the next 10 one per second.
        let waited = start.elapsed().as_secs_f64();
        assert!((9.9..=10.5).contains(&waited), "{waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_are_settled_against_usage() {
        let t = Throttle::new(100, None, Some(6_000));
        let start = tokio::time::Instant::now();
        let p = t.acquire(6_000).await;
        t.settle(p.estimated_tokens, 600);
        drop(p);
        // 5 400 were given back: the next 5 400-token request need not wait.
        drop(t.acquire(5_400).await);
        assert!(start.elapsed() < Duration::from_millis(10));
        // The bucket is empty now: 3 000 tokens take 30 s at 100 per second.
        drop(t.acquire(3_000).await);
        let waited = start.elapsed().as_secs_f64();
        assert!((29.9..=30.5).contains(&waited), "{waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_bounds_requests_in_flight() {
        let t = std::sync::Arc::new(Throttle::new(4, None, None));
        t.throttled();
        assert_eq!(t.limit(), 2);
        let a = t.acquire(0).await;
        let _b = t.acquire(0).await;
        let t2 = t.clone();
        let third = tokio::spawn(async move {
            let _c = t2.acquire(0).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "a third request waits while two are in flight at limit 2");
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), third).await.expect("released").expect("task");
    }
}
