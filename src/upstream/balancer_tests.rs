use super::{Balance, Pick, View, hash_bytes, interleave, pick};

fn view(id: u64) -> View {
    View {
        weight: 1.0,
        ramp: 1.0,
        in_flight: 0,
        latency: 1.0,
        id,
    }
}

fn plan(balance: Balance, schedule: &[usize]) -> Pick<'_> {
    Pick {
        balance,
        key: 0,
        turn: 0,
        schedule,
    }
}

#[test]
fn smooth_weighted_schedule() {
    assert_eq!(interleave(&[1, 1, 1]), vec![0, 1, 2]);
    assert_eq!(interleave(&[2, 1]), vec![0, 1, 0]);
    let s = interleave(&[5, 1, 1]);
    assert_eq!(s.len(), 7);
    assert_eq!(s.iter().filter(|&&i| i == 0).count(), 5);
    // Never more than two heavy picks in a row around the light ones.
    assert_ne!(&s[..3], &[0, 0, 0]);
}

#[test]
fn nothing_eligible_picks_nothing() {
    let mut rng = fastrand::Rng::with_seed(1);
    for balance in [
        Balance::P2cEwma,
        Balance::RoundRobin,
        Balance::LeastConn,
        Balance::Hash,
    ] {
        let schedule = [0, 1, 2];
        assert_eq!(pick(3, |_| None, &plan(balance, &schedule), &mut rng), None);
        assert_eq!(
            pick(0, |i| Some(view(i as u64)), &plan(balance, &[]), &mut rng),
            None
        );
    }
}

#[test]
fn round_robin_follows_the_schedule_and_skips_ineligible() {
    let mut rng = fastrand::Rng::with_seed(1);
    let schedule = interleave(&[2, 1, 1]);
    let mut counts = [0; 3];
    for turn in 0..400 {
        let p = Pick {
            turn,
            ..plan(Balance::RoundRobin, &schedule)
        };
        let i = pick(3, |i| Some(view(i as u64)), &p, &mut rng).unwrap();
        counts[i] += 1;
    }
    assert_eq!(counts, [200, 100, 100]);

    // Replica 1 out: its turns go to the next eligible entry, never to it.
    for turn in 0..100 {
        let p = Pick {
            turn,
            ..plan(Balance::RoundRobin, &schedule)
        };
        let i = pick(3, |i| (i != 1).then(|| view(i as u64)), &p, &mut rng).unwrap();
        assert_ne!(i, 1);
    }
}

#[test]
fn least_conn_takes_the_least_loaded_per_weight() {
    let mut rng = fastrand::Rng::with_seed(7);
    let loads = [5usize, 2, 9];
    let v = |i: usize| {
        Some(View {
            in_flight: loads[i],
            ..view(i as u64)
        })
    };
    for _ in 0..20 {
        assert_eq!(
            pick(3, v, &plan(Balance::LeastConn, &[]), &mut rng),
            Some(1)
        );
    }
    // Weight 4 makes replica 2 (9 in flight) the lightest per unit: 10/4 < 3/1.
    let weighted = |i: usize| {
        Some(View {
            in_flight: loads[i],
            weight: if i == 2 { 4.0 } else { 1.0 },
            ..view(i as u64)
        })
    };
    assert_eq!(
        pick(3, weighted, &plan(Balance::LeastConn, &[]), &mut rng),
        Some(2)
    );
}

#[test]
fn p2c_avoids_the_slow_and_the_busy() {
    let mut rng = fastrand::Rng::with_seed(42);
    let latency = [1.0, 1.0, 50.0];
    let mut counts = [0; 3];
    for _ in 0..3000 {
        let v = |i: usize| {
            Some(View {
                latency: latency[i],
                ..view(i as u64)
            })
        };
        counts[pick(3, v, &plan(Balance::P2cEwma, &[]), &mut rng).unwrap()] += 1;
    }
    // The slow one wins only when drawn against itself, which p2c never does.
    assert_eq!(counts[2], 0, "{counts:?}");
    assert!(counts[0] > 1200 && counts[1] > 1200, "{counts:?}");

    // With one eligible replica it is always that one.
    for _ in 0..50 {
        let only = |i: usize| (i == 2).then(|| view(2));
        assert_eq!(
            pick(3, only, &plan(Balance::P2cEwma, &[]), &mut rng),
            Some(2)
        );
    }
}

#[test]
fn p2c_is_reproducible_with_a_seed() {
    let run = |seed| {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..50)
            .map(|_| {
                pick(
                    10,
                    |i| Some(view(i as u64)),
                    &plan(Balance::P2cEwma, &[]),
                    &mut rng,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn slow_start_thins_a_ramping_replica() {
    let mut rng = fastrand::Rng::with_seed(3);
    let schedule = interleave(&[1, 1]);
    let mut counts = [0; 2];
    for turn in 0..2000 {
        let p = Pick {
            turn,
            ..plan(Balance::RoundRobin, &schedule)
        };
        let v = |i: usize| {
            Some(View {
                ramp: if i == 1 { 0.1 } else { 1.0 },
                ..view(i as u64)
            })
        };
        counts[pick(2, v, &p, &mut rng).unwrap()] += 1;
    }
    assert!(counts[1] > 0 && counts[1] < 200, "{counts:?}");
}

fn owner(key: u64, ids: &[u64]) -> u64 {
    let mut rng = fastrand::Rng::with_seed(0);
    let p = Pick {
        key,
        ..plan(Balance::Hash, &[])
    };
    let i = pick(ids.len(), |i| Some(view(ids[i])), &p, &mut rng).unwrap();
    ids[i]
}

#[test]
fn hash_moves_few_keys_and_only_to_the_new_replica() {
    let three: Vec<u64> = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
        .iter()
        .map(|a| hash_bytes(a.as_bytes()))
        .collect();
    let mut four = three.clone();
    four.push(hash_bytes(b"10.0.0.4:80"));
    let mut moved = 0;
    let mut counts = [0usize; 3];
    for k in 0..10_000u64 {
        let key = hash_bytes(format!("user-{k}").as_bytes());
        let before = owner(key, &three);
        let after = owner(key, &four);
        counts[three.iter().position(|&id| id == before).unwrap()] += 1;
        if before != after {
            moved += 1;
            assert_eq!(after, four[3], "key {k} moved between old replicas");
        }
    }
    assert!(moved <= 3_500, "{moved} of 10000 keys moved");
    assert!(
        moved >= 1_500,
        "{moved} of 10000 keys moved: the new replica gets too few"
    );
    for c in counts {
        assert!((2_800..=3_900).contains(&c), "uneven spread: {counts:?}");
    }
}

#[test]
fn hash_skips_an_ineligible_owner_and_returns_after() {
    let ids = [1u64, 2, 3];
    let key = 12345;
    let first = owner(key, &ids);
    let mut rng = fastrand::Rng::with_seed(0);
    let p = Pick {
        key,
        ..plan(Balance::Hash, &[])
    };
    let i = pick(3, |i| (ids[i] != first).then(|| view(ids[i])), &p, &mut rng).unwrap();
    assert_ne!(ids[i], first);
    assert_eq!(owner(key, &ids), first);
}

#[test]
fn hash_weights_shift_the_share() {
    let ids = [11u64, 22];
    let mut wins = [0; 2];
    let mut rng = fastrand::Rng::with_seed(0);
    for k in 0..6_000u64 {
        let p = Pick {
            key: hash_bytes(&k.to_le_bytes()),
            ..plan(Balance::Hash, &[])
        };
        let v = |i: usize| {
            Some(View {
                weight: if i == 0 { 2.0 } else { 1.0 },
                ..view(ids[i])
            })
        };
        wins[pick(2, v, &p, &mut rng).unwrap()] += 1;
    }
    assert!(
        (3_700..=4_300).contains(&wins[0]),
        "weight 2 wins about 2/3: {wins:?}"
    );
}
