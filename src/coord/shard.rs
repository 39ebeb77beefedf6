//! Which instance watches which target: rendezvous (highest-random-weight) hashing, a
//! consistent hash with no ring to maintain. Every instance computes the same owner from
//! the same member list, and when a member leaves only its own targets move.

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not promised to be).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A final avalanche (splitmix64) so similar names spread well.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn weight(member: &str, target: &str) -> u64 {
    let mut key = Vec::with_capacity(member.len() + target.len() + 1);
    key.extend_from_slice(member.as_bytes());
    key.push(0);
    key.extend_from_slice(target.as_bytes());
    mix(fnv1a(&key))
}

/// The member that owns `target` (highest weight; ties broken by name), or `None` when
/// there is no member.
pub fn owner<'a>(members: &'a [String], target: &str) -> Option<&'a str> {
    members
        .iter()
        .max_by(|a, b| {
            weight(a, target)
                .cmp(&weight(b, target))
                .then_with(|| b.cmp(a))
        })
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_target_has_one_owner_and_only_the_dead_members_targets_move() {
        let all = names(&["a", "b", "c"]);
        let targets: Vec<String> = (0..60).map(|i| format!("kafka/{i}")).collect();
        let before: Vec<&str> = targets
            .iter()
            .map(|t| owner(&all, t).expect("owner"))
            .collect();
        // Spread: each member gets some.
        for m in ["a", "b", "c"] {
            assert!(before.contains(&m), "{m} owns nothing: {before:?}");
        }
        let left = names(&["a", "c"]);
        for (t, was) in targets.iter().zip(&before) {
            let now = owner(&left, t).expect("owner");
            if *was != "b" {
                assert_eq!(now, *was, "{t} moved although its owner stayed");
            } else {
                assert_ne!(now, "b");
            }
        }
        // Order of the member list does not matter.
        let shuffled = names(&["c", "a", "b"]);
        for (t, was) in targets.iter().zip(&before) {
            assert_eq!(owner(&shuffled, t), Some(*was));
        }
        assert_eq!(owner(&[], "x"), None);
    }

    #[test]
    fn a_fleet_splits_about_evenly_among_three_and_among_the_two_left() {
        // The fleet bench's names: node ids 1..=1000, as the self-watch names targets.
        let targets: Vec<String> = (1..=1000).map(|i| format!("kafka/{i}")).collect();
        let share = |members: &[String], m: &str| {
            targets
                .iter()
                .filter(|t| owner(members, t) == Some(m))
                .count()
        };
        let three = names(&["ha-0", "ha-1", "ha-2"]);
        for m in &three {
            let n = share(&three, m);
            assert!((290..=380).contains(&n), "{m} holds {n} of 1000");
        }
        let two = names(&["ha-0", "ha-2"]);
        for m in &two {
            let n = share(&two, m);
            assert!(
                (440..=560).contains(&n),
                "{m} holds {n} of 1000 after ha-1 left"
            );
        }
    }
}
