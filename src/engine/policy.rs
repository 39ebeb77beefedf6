//! The remediation policy that needs history: cooldown, bounded attempts with exponential
//! backoff, and the circuit breaker. Pure: time comes in as an argument, so every rule is
//! unit-tested without sleeping, and the state is rebuilt from the journal after a restart.

use std::collections::HashMap;

use super::plan::WorkKey;

/// Policy knobs, after per-rule overrides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Quiet time after a successful execution, ms.
    pub cooldown_ms: i64,
    /// Attempts allowed within the window.
    pub max_attempts: u32,
    /// Delay before the second attempt, ms.
    pub initial_delay_ms: i64,
    /// Growth of the delay per further attempt.
    pub backoff_multiplier: f64,
    /// Window attempts are counted in, ms.
    pub window_ms: i64,
    /// A circuit closes after the problem has been resolved this long, ms.
    pub circuit_reset_ms: i64,
}

/// One finished (or started) attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// When it started.
    pub started_ms: i64,
    /// When it finished and whether it succeeded; `None` while running.
    pub finished: Option<(i64, bool)>,
}

/// An open circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCircuit {
    /// Opened at.
    pub opened_ms: i64,
    /// Why.
    pub reason: String,
    /// Since when the problem has been resolved (no firing alert), if it is.
    pub healthy_since_ms: Option<i64>,
}

/// What the policy says about starting new work now.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Go ahead; this is attempt number `attempt` in the window.
    Allow {
        /// 1-based attempt number.
        attempt: u32,
    },
    /// The previous attempt failed: wait until `until_ms`, then go ahead.
    Backoff {
        /// 1-based attempt number.
        attempt: u32,
        /// Not before this time.
        until_ms: i64,
    },
    /// The previous attempt succeeded recently: nothing to do until `until_ms`.
    Cooldown {
        /// End of the cooldown.
        until_ms: i64,
    },
    /// Attempts are used up: the circuit must open (the caller records and escalates).
    Exhausted {
        /// Attempts made in the window.
        attempts: u32,
    },
    /// The circuit is open: nothing runs until reset.
    CircuitOpen {
        /// Opened at.
        since_ms: i64,
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Clone, Default)]
struct History {
    attempts: Vec<Attempt>,
}

impl History {
    /// Forgets attempts that started before the window, except the last one (its end
    /// still decides cooldown and backoff after a long run); returns how many started
    /// within the window.
    fn prune(&mut self, now: i64, window_ms: i64) -> u32 {
        let cutoff = now.saturating_sub(window_ms);
        let last = self.attempts.pop();
        self.attempts.retain(|a| a.started_ms >= cutoff);
        let in_window =
            self.attempts.len() + usize::from(last.is_some_and(|a| a.started_ms >= cutoff));
        self.attempts.extend(last);
        u32::try_from(in_window).unwrap_or(u32::MAX)
    }
}

/// Per-work-key history. Circuits are per (rule, target): once a rule has given up on a
/// broker it leaves that broker alone whatever the params.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    work: HashMap<WorkKey, History>,
    circuits: HashMap<(String, Option<String>), OpenCircuit>,
}

impl Limits {
    /// The delay before attempt `n` (n ≥ 2) after the previous one finished.
    pub fn backoff_ms(&self, n: u32) -> i64 {
        let exp = n.saturating_sub(2) as i32;
        let d = self.initial_delay_ms as f64 * self.backoff_multiplier.powi(exp);
        d.min(i64::MAX as f64 / 2.0) as i64
    }
}

fn circuit_key(k: &WorkKey) -> (String, Option<String>) {
    (k.rule.clone(), k.target.clone())
}

impl Policy {
    /// Decides whether `key` may start new work at `now`.
    pub fn admit(&mut self, key: &WorkKey, now: i64, l: &Limits) -> Admission {
        if let Some(c) = self.circuits.get(&circuit_key(key)) {
            return Admission::CircuitOpen {
                since_ms: c.opened_ms,
                reason: c.reason.clone(),
            };
        }
        // No entry for work never started: a storm of distinct alerts must not grow it.
        let Some(h) = self.work.get_mut(key) else {
            return Admission::Allow { attempt: 1 };
        };
        let n = h.prune(now, l.window_ms);
        let Some(last) = h.attempts.last().copied() else {
            return Admission::Allow { attempt: 1 };
        };
        let backoff_until = |at: i64| at.saturating_add(l.backoff_ms(n.saturating_add(1)));
        match last.finished {
            // Running: the caller's in-flight dedup normally catches this first.
            None => Admission::Cooldown { until_ms: now },
            Some((at, true)) if now < at.saturating_add(l.cooldown_ms) => Admission::Cooldown {
                until_ms: at.saturating_add(l.cooldown_ms),
            },
            _ if n >= l.max_attempts => Admission::Exhausted { attempts: n },
            Some((at, false)) if now < backoff_until(at) => Admission::Backoff {
                attempt: n + 1,
                until_ms: backoff_until(at),
            },
            Some(_) => Admission::Allow { attempt: n + 1 },
        }
    }

    /// Records that work for `key` started.
    pub fn started(&mut self, key: &WorkKey, now: i64) {
        self.work
            .entry(key.clone())
            .or_default()
            .attempts
            .push(Attempt {
                started_ms: now,
                finished: None,
            });
    }

    /// Forgets the running attempt of `key` (it never started after all).
    pub fn unstart(&mut self, key: &WorkKey) {
        if let Some(h) = self.work.get_mut(key)
            && let Some(i) = h.attempts.iter().rposition(|a| a.finished.is_none())
        {
            h.attempts.remove(i);
        }
    }

    /// Records how the running work for `key` ended. Returns how many attempts were made in
    /// the window so far.
    pub fn finished(&mut self, key: &WorkKey, now: i64, ok: bool, l: &Limits) -> u32 {
        let h = self.work.entry(key.clone()).or_default();
        match h.attempts.iter_mut().rev().find(|a| a.finished.is_none()) {
            Some(a) => a.finished = Some((now, ok)),
            None => h.attempts.push(Attempt {
                started_ms: now,
                finished: Some((now, ok)),
            }),
        }
        h.prune(now, l.window_ms)
    }

    /// Restores an attempt from the journal (after a restart).
    pub fn restore(&mut self, key: &WorkKey, a: Attempt) {
        self.work.entry(key.clone()).or_default().attempts.push(a);
    }

    /// Opens the circuit of `key`'s (rule, target).
    pub fn open(&mut self, key: &WorkKey, now: i64, reason: String) {
        self.open_circuit(key.rule.clone(), key.target.clone(), now, reason);
    }

    /// Opens a circuit by (rule, target) (also used when restoring from the journal).
    pub fn open_circuit(&mut self, rule: String, target: Option<String>, now: i64, reason: String) {
        self.circuits.insert(
            (rule, target),
            OpenCircuit {
                opened_ms: now,
                reason,
                healthy_since_ms: None,
            },
        );
    }

    /// The problem behind (rule, target) resolved at `now` (`healthy`), or fired again.
    /// A circuit whose problem stayed resolved for `l.circuit_reset_ms` closes when it
    /// fires again (a new occurrence, not the one that opened it); returns true then.
    pub fn health(
        &mut self,
        rule: &str,
        target: Option<&str>,
        now: i64,
        healthy: bool,
        l: &Limits,
    ) -> bool {
        let k = (rule.to_string(), target.map(String::from));
        let Some(c) = self.circuits.get_mut(&k) else {
            return false;
        };
        match (healthy, c.healthy_since_ms) {
            (true, None) => c.healthy_since_ms = Some(now),
            (true, Some(_)) => {}
            (false, Some(h)) if now.saturating_sub(h) >= l.circuit_reset_ms => {
                self.circuits.remove(&k);
                self.work.retain(|w, _| circuit_key(w) != k);
                return true;
            }
            (false, _) => c.healthy_since_ms = None,
        }
        false
    }

    /// Closes every circuit of `target` (all rules) and forgets their attempts.
    /// Returns the rules whose circuit was open.
    pub fn reset_target(&mut self, target: &str) -> Vec<String> {
        let mut closed: Vec<String> = self
            .circuits
            .keys()
            .filter(|(_, t)| t.as_deref() == Some(target))
            .map(|(r, _)| r.clone())
            .collect();
        closed.sort();
        self.circuits
            .retain(|(_, t), _| t.as_deref() != Some(target));
        self.work.retain(|k, _| k.target.as_deref() != Some(target));
        closed
    }

    /// How many circuits are open.
    pub fn open_count(&self) -> usize {
        self.circuits.len()
    }

    /// Open circuits as (rule, target, circuit).
    pub fn open_circuits(&self) -> Vec<(String, Option<String>, OpenCircuit)> {
        let mut v: Vec<_> = self
            .circuits
            .iter()
            .map(|((r, t), c)| (r.clone(), t.clone(), c.clone()))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn limits() -> Limits {
        Limits {
            cooldown_ms: 300 * S,
            max_attempts: 3,
            initial_delay_ms: 10 * S,
            backoff_multiplier: 2.0,
            window_ms: 3600 * S,
            circuit_reset_ms: 1800 * S,
        }
    }

    fn key(t: &str) -> WorkKey {
        WorkKey {
            rule: "broker-down".into(),
            target: Some(t.into()),
            params: Default::default(),
        }
    }

    #[test]
    fn backoff_grows_exponentially() {
        let l = limits();
        assert_eq!(l.backoff_ms(2), 10 * S);
        assert_eq!(l.backoff_ms(3), 20 * S);
        assert_eq!(l.backoff_ms(4), 40 * S);
    }

    #[test]
    fn cooldown_after_success() {
        let (mut p, l, k) = (Policy::default(), limits(), key("kafka-1"));
        assert_eq!(p.admit(&k, 0, &l), Admission::Allow { attempt: 1 });
        p.started(&k, 0);
        p.finished(&k, 5 * S, true, &l);
        assert_eq!(
            p.admit(&k, 6 * S, &l),
            Admission::Cooldown { until_ms: 305 * S }
        );
        assert_eq!(
            p.admit(&key("kafka-2"), 6 * S, &l),
            Admission::Allow { attempt: 1 },
            "per target"
        );
        assert_eq!(p.admit(&k, 305 * S, &l), Admission::Allow { attempt: 2 });
    }

    #[test]
    fn failures_back_off_then_exhaust() {
        let (mut p, l, k) = (Policy::default(), limits(), key("kafka-1"));
        p.started(&k, 0);
        assert_eq!(p.finished(&k, S, false, &l), 1);
        assert_eq!(
            p.admit(&k, 2 * S, &l),
            Admission::Backoff {
                attempt: 2,
                until_ms: 11 * S
            }
        );
        assert_eq!(p.admit(&k, 11 * S, &l), Admission::Allow { attempt: 2 });
        p.started(&k, 11 * S);
        assert_eq!(p.finished(&k, 12 * S, false, &l), 2);
        assert_eq!(
            p.admit(&k, 13 * S, &l),
            Admission::Backoff {
                attempt: 3,
                until_ms: 32 * S
            }
        );
        p.started(&k, 32 * S);
        assert_eq!(p.finished(&k, 33 * S, false, &l), 3);
        assert_eq!(
            p.admit(&k, 100 * S, &l),
            Admission::Exhausted { attempts: 3 }
        );
    }

    #[test]
    fn successes_that_do_not_stick_also_exhaust() {
        let (mut p, l, k) = (Policy::default(), limits(), key("kafka-1"));
        for i in 0..3 {
            let t = i * 400 * S;
            assert!(matches!(p.admit(&k, t, &l), Admission::Allow { .. }));
            p.started(&k, t);
            p.finished(&k, t + S, true, &l);
        }
        assert_eq!(
            p.admit(&k, 1300 * S, &l),
            Admission::Exhausted { attempts: 3 }
        );
        // Outside the window, attempts are forgotten.
        assert_eq!(p.admit(&k, 4900 * S, &l), Admission::Allow { attempt: 1 });
    }

    #[test]
    fn limits_at_their_extremes_neither_wrap_nor_turn_off() {
        // What u64::MAX seconds saturate to, and `check`'s maxima (7 days, 30 days).
        for (cooldown_ms, window_ms) in [(i64::MAX, i64::MAX), (604_800 * S, 2_592_000 * S)] {
            let l = Limits {
                cooldown_ms,
                max_attempts: 1,
                initial_delay_ms: i64::MAX,
                backoff_multiplier: 10.0,
                window_ms,
                circuit_reset_ms: i64::MAX,
            };
            let (mut p, k) = (Policy::default(), key("kafka-1"));
            p.started(&k, 0);
            p.finished(&k, S, true, &l);
            assert_eq!(
                p.admit(&k, 2 * S, &l),
                Admission::Cooldown {
                    until_ms: S.saturating_add(cooldown_ms)
                },
                "a cooldown, not a circuit"
            );
            let (mut p, k) = (Policy::default(), key("kafka-2"));
            p.started(&k, 0);
            p.finished(&k, S, false, &l);
            assert_eq!(
                p.admit(&k, 2 * S, &l),
                Admission::Exhausted { attempts: 1 },
                "max_attempts still counts"
            );
            assert!(l.backoff_ms(10) > 0);
        }
    }

    #[test]
    fn a_run_longer_than_the_window_keeps_its_cooldown() {
        let (mut p, l, k) = (Policy::default(), limits(), key("kafka-1"));
        p.started(&k, 0);
        p.finished(&k, 3601 * S, true, &l);
        assert_eq!(
            p.admit(&k, 3602 * S, &l),
            Admission::Cooldown { until_ms: 3901 * S }
        );
        assert_eq!(p.admit(&k, 3901 * S, &l), Admission::Allow { attempt: 1 });
    }

    #[test]
    fn circuit_blocks_until_reset_or_healthy_long_enough() {
        let (mut p, l, k) = (Policy::default(), limits(), key("kafka-1"));
        p.open(&k, 0, "attempts exhausted".into());
        assert!(matches!(
            p.admit(&k, S, &l),
            Admission::CircuitOpen { since_ms: 0, .. }
        ));
        let other_params = WorkKey {
            params: [("x".to_string(), "y".to_string())].into(),
            ..k.clone()
        };
        assert!(
            matches!(p.admit(&other_params, S, &l), Admission::CircuitOpen { .. }),
            "per (rule, target)"
        );
        assert_eq!(
            p.admit(&key("kafka-2"), S, &l),
            Admission::Allow { attempt: 1 }
        );
        let h = |p: &mut Policy, t: i64, healthy: bool| {
            p.health("broker-down", Some("kafka-1"), t, healthy, &l)
        };
        assert!(!h(&mut p, 10 * S, true));
        assert!(
            !h(&mut p, 1000 * S, false),
            "fired again before circuit_reset: stays open"
        );
        assert!(matches!(
            p.admit(&k, 1000 * S, &l),
            Admission::CircuitOpen { .. }
        ));
        assert!(!h(&mut p, 1100 * S, true));
        assert!(
            !h(&mut p, 2000 * S, true),
            "still resolved: the clock keeps its start"
        );
        assert!(
            h(&mut p, 2900 * S, false),
            "resolved for 1800 s, then a new occurrence: closes"
        );
        assert_eq!(p.admit(&k, 2900 * S, &l), Admission::Allow { attempt: 1 });
        p.open(&k, 3000 * S, "again".into());
        assert_eq!(p.reset_target("kafka-1"), vec!["broker-down".to_string()]);
        assert_eq!(p.admit(&k, 3001 * S, &l), Admission::Allow { attempt: 1 });
        assert!(p.reset_target("kafka-1").is_empty());
    }
}
