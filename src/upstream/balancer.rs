//! Pure replica selection. The caller describes each candidate through a closure that returns
//! `None` for replicas that may not take the request (not live, not ready, ejected, draining,
//! already tried), so nothing is allocated per pick.

/// What the balancer needs to know about one eligible replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// Configured weight (at least 1).
    pub weight: f64,
    /// Slow-start factor in (0, 1]; 1 once the ramp is over.
    pub ramp: f64,
    /// Requests in flight on the replica.
    pub in_flight: usize,
    /// Peak-EWMA latency in any unit (only read by `P2cEwma`).
    pub latency: f64,
    /// Stable identity for consistent hashing (a hash of the address).
    pub id: u64,
}

/// The selection rule, without its configuration details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Two random candidates, the one with less `latency × (in_flight + 1) / weight` wins.
    P2cEwma,
    /// Walk the weighted schedule from `turn`.
    RoundRobin,
    /// Fewest in-flight requests per unit of weight; ties broken at random.
    LeastConn,
    /// Rendezvous hashing of `key`: the highest weighted score wins, so adding a replica moves
    /// only the keys it now wins, and removing one moves only its own.
    Hash,
}

/// One pick's inputs besides the candidates.
#[derive(Debug, Clone, Copy)]
pub struct Pick<'a> {
    /// The rule.
    pub balance: Balance,
    /// The request's hash key (`Hash` only).
    pub key: u64,
    /// A counter advanced once per request (`RoundRobin` only).
    pub turn: usize,
    /// Replica indices repeated by weight and interleaved (`RoundRobin` only).
    pub schedule: &'a [usize],
}

/// Random draws before falling back to a scan when few candidates are eligible.
const P2C_DRAWS: usize = 8;

/// Chooses among `n` replicas; `view(i)` describes replica `i` or rules it out.
pub fn pick<F>(n: usize, view: F, pick: &Pick<'_>, rng: &mut fastrand::Rng) -> Option<usize>
where
    F: Fn(usize) -> Option<View>,
{
    if n == 0 {
        return None;
    }
    match pick.balance {
        Balance::P2cEwma => p2c(n, &view, rng),
        Balance::RoundRobin => round_robin(n, &view, pick, rng),
        Balance::LeastConn => least_conn(n, &view, rng),
        Balance::Hash => hash(n, &view, pick.key),
    }
}

fn p2c_load(v: &View) -> f64 {
    v.latency.max(f64::MIN_POSITIVE) * (v.in_flight as f64 + 1.0) / (v.weight * v.ramp)
}

fn p2c<F: Fn(usize) -> Option<View>>(n: usize, view: &F, rng: &mut fastrand::Rng) -> Option<usize> {
    let mut first: Option<(usize, View)> = None;
    for _ in 0..P2C_DRAWS {
        let i = rng.usize(..n);
        if first.is_some_and(|(f, _)| f == i) {
            continue;
        }
        let Some(v) = view(i) else { continue };
        match first {
            None => first = Some((i, v)),
            Some((f, fv)) => return Some(if p2c_load(&v) < p2c_load(&fv) { i } else { f }),
        }
    }
    // Few eligible replicas: compare every one of them instead (rare, and bounded by `n`).
    let start = rng.usize(..n);
    let mut best: Option<(usize, f64)> = None;
    for step in 0..n {
        let i = (start + step) % n;
        if let Some(v) = view(i) {
            let load = p2c_load(&v);
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
    }
    best.map(|(i, _)| i)
}

fn round_robin<F: Fn(usize) -> Option<View>>(
    n: usize,
    view: &F,
    pick: &Pick<'_>,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let len = pick.schedule.len();
    let mut fallback = None;
    for step in 0..len {
        let i = pick.schedule[(pick.turn + step) % len];
        if i >= n {
            continue;
        }
        let Some(v) = view(i) else { continue };
        // A ramping replica takes its turn only with the probability of its ramp.
        if v.ramp >= 1.0 || rng.f64() < v.ramp {
            return Some(i);
        }
        fallback.get_or_insert(i);
    }
    fallback
}

fn least_conn<F: Fn(usize) -> Option<View>>(
    n: usize,
    view: &F,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let start = rng.usize(..n);
    let mut best: Option<(usize, f64)> = None;
    for step in 0..n {
        let i = (start + step) % n;
        if let Some(v) = view(i) {
            let load = (v.in_flight as f64 + 1.0) / (v.weight * v.ramp);
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
    }
    best.map(|(i, _)| i)
}

fn hash<F: Fn(usize) -> Option<View>>(n: usize, view: &F, key: u64) -> Option<usize> {
    // (index, weight, pair hash) of the best so far.
    let mut best: Option<(usize, f64, u64)> = None;
    for i in 0..n {
        if let Some(v) = view(i) {
            let h = mix(key ^ mix(v.id));
            let wins = match best {
                None => true,
                // The score grows with the hash for a given weight: compare hashes, and pay
                // for logarithms only between replicas of different weights.
                Some((_, w, bh)) if w == v.weight => h > bh,
                Some((_, w, bh)) => hrw_score(h, v.weight) > hrw_score(bh, w),
            };
            if wins {
                best = Some((i, v.weight, h));
            }
        }
    }
    best.map(|(i, _, _)| i)
}

/// Weighted rendezvous score of a pair hash: `-weight / ln(u)` with `u` uniform in (0, 1)
/// (Schindelhauer and Schomaker's logarithmic method), so a replica of weight 2 wins twice as
/// many keys.
fn hrw_score(h: u64, weight: f64) -> f64 {
    let u = ((h >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 2.0);
    -weight / u.ln()
}

/// splitmix64's finaliser: a cheap, well-spread 64-bit mix.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, for hash keys and replica identities.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Spreads each index over the schedule in proportion to its weight (smooth weighted
/// round-robin, as nginx does), so weight 2 vs 1 gives `0 1 0`, not `0 0 1`.
pub fn interleave(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, c)| (*c, -(i as i64)))
        else {
            break;
        };
        current[best] -= total;
        out.push(best);
    }
    out
}

#[cfg(test)]
#[path = "balancer_tests.rs"]
mod tests;
