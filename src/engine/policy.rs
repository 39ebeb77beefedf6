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
    /// After a precondition refused the work, it is judged again this much later, ms.
    pub recheck_ms: i64,
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

/// What a [`Policy::health`] report changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Nothing (no open circuit, or no change).
    Unchanged,
    /// The circuit's problem has been resolved since then (`None`: it fired again).
    Since(Option<i64>),
    /// The circuit closed: its problem had stayed resolved long enough.
    Closed,
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

/// What a reset closes: the circuits (and forgets the attempts) of a rule, of a target,
/// or of one (rule, target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Only this rule's, when given.
    pub rule: Option<String>,
    /// Only this target's, when given: `Some(None)` is the rule-level circuit of a
    /// runbook without a target (`-`).
    pub target: Option<Option<String>>,
}

impl Scope {
    /// Every rule's work on broker `target`.
    pub fn target(target: &str) -> Scope {
        Scope {
            rule: None,
            target: Some(Some(target.to_string())),
        }
    }

    /// Whether work of `rule` on `target` is in the scope.
    pub fn covers(&self, rule: &str, target: Option<&str>) -> bool {
        self.rule.as_deref().is_none_or(|r| r == rule)
            && self.target.as_ref().is_none_or(|t| t.as_deref() == target)
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

    /// Replaces what is known of `key`'s attempts (HA: with etcd's shared record, which
    /// every instance appends to, so it is the truth; a peer's reset emptied it).
    pub fn replace_history(&mut self, key: &WorkKey, mut attempts: Vec<Attempt>) {
        attempts.sort_by_key(|a| a.started_ms);
        if attempts.is_empty() {
            self.work.remove(key);
        } else {
            self.work.insert(key.clone(), History { attempts });
        }
    }

    /// The open circuit of (rule, target), if any.
    pub fn circuit(&self, rule: &str, target: Option<&str>) -> Option<&OpenCircuit> {
        self.circuits
            .get(&(rule.to_string(), target.map(String::from)))
    }

    /// Closes the circuit of (rule, target) without a reset's bookkeeping beyond it
    /// (HA: a peer closed it). The work's attempts are forgotten with it.
    pub fn drop_circuit(&mut self, rule: &str, target: Option<&str>) -> bool {
        let k = (rule.to_string(), target.map(String::from));
        let had = self.circuits.contains_key(&k);
        self.close(&k);
        had
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

    /// Opens a circuit by (rule, target).
    pub fn open_circuit(&mut self, rule: String, target: Option<String>, now: i64, reason: String) {
        self.restore_circuit(
            rule,
            target,
            OpenCircuit {
                opened_ms: now,
                reason,
                healthy_since_ms: None,
            },
        );
    }

    /// Restores an open circuit from the journal.
    pub fn restore_circuit(&mut self, rule: String, target: Option<String>, c: OpenCircuit) {
        self.circuits.insert((rule, target), c);
    }

    /// The problem behind (rule, target) resolved at `now` (`healthy`), or fired again.
    /// A circuit closes once its problem has stayed resolved for `l.circuit_reset_ms`
    /// (see [`due`](Self::due)); one that fires sooner (flapping) starts that clock again at
    /// its next resolve. Says what changed.
    pub fn health(
        &mut self,
        rule: &str,
        target: Option<&str>,
        now: i64,
        healthy: bool,
        l: &Limits,
    ) -> Health {
        let k = (rule.to_string(), target.map(String::from));
        let Some(c) = self.circuits.get_mut(&k) else {
            return Health::Unchanged;
        };
        match (healthy, c.healthy_since_ms) {
            (true, None) => {
                c.healthy_since_ms = Some(now);
                Health::Since(Some(now))
            }
            (true, Some(_)) => Health::Unchanged,
            // Its time came and no tick closed it yet: this is a new occurrence.
            (false, Some(h)) if now.saturating_sub(h) >= l.circuit_reset_ms => {
                self.close(&k);
                Health::Closed
            }
            (false, Some(_)) => {
                c.healthy_since_ms = None;
                Health::Since(None)
            }
            (false, None) => Health::Unchanged,
        }
    }

    /// The circuits whose problem has stayed resolved for their `circuit_reset_ms`
    /// (`reset_ms` of a rule) by `now`, closed now, as (rule, target).
    pub fn close_due(
        &mut self,
        now: i64,
        reset_ms: impl Fn(&str) -> i64,
    ) -> Vec<(String, Option<String>)> {
        let mut due: Vec<(String, Option<String>)> = self
            .circuits
            .iter()
            .filter(|((rule, _), c)| {
                c.healthy_since_ms
                    .is_some_and(|h| h.saturating_add(reset_ms(rule)) <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        for k in &due {
            self.close(k);
        }
        due
    }

    /// When the next circuit closes by itself, if its problem stays resolved.
    pub fn next_due(&self, reset_ms: impl Fn(&str) -> i64) -> Option<i64> {
        self.circuits
            .iter()
            .filter_map(|((rule, _), c)| {
                c.healthy_since_ms.map(|h| h.saturating_add(reset_ms(rule)))
            })
            .min()
    }

    fn close(&mut self, k: &(String, Option<String>)) {
        self.circuits.remove(k);
        self.work.retain(|w, _| circuit_key(w) != *k);
    }

    /// Closes every circuit in `scope` and forgets the attempts of its work. Returns the
    /// circuits that were open, as (rule, target), sorted.
    pub fn reset(&mut self, scope: &Scope) -> Vec<(String, Option<String>)> {
        let mut closed: Vec<(String, Option<String>)> = self
            .circuits
            .keys()
            .filter(|(r, t)| scope.covers(r, t.as_deref()))
            .cloned()
            .collect();
        closed.sort();
        self.circuits
            .retain(|(r, t), _| !scope.covers(r, t.as_deref()));
        self.work
            .retain(|k, _| !scope.covers(&k.rule, k.target.as_deref()));
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
            recheck_ms: 30 * S,
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
                recheck_ms: i64::MAX,
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
        let reset = |_: &str| l.circuit_reset_ms;
        assert_eq!(h(&mut p, 10 * S, true), Health::Since(Some(10 * S)));
        assert_eq!(p.next_due(reset), Some(1810 * S));
        assert_eq!(
            h(&mut p, 1000 * S, false),
            Health::Since(None),
            "fired again before circuit_reset: stays open, the clock stops"
        );
        assert_eq!(p.next_due(reset), None);
        assert!(p.close_due(1900 * S, reset).is_empty());
        assert!(matches!(
            p.admit(&k, 1000 * S, &l),
            Admission::CircuitOpen { .. }
        ));
        assert_eq!(h(&mut p, 1100 * S, true), Health::Since(Some(1100 * S)));
        assert_eq!(
            h(&mut p, 2000 * S, true),
            Health::Unchanged,
            "still resolved: the clock keeps its start"
        );
        assert!(p.close_due(2899 * S, reset).is_empty(), "one second early");
        assert_eq!(
            p.close_due(2900 * S, reset),
            vec![("broker-down".to_string(), Some("kafka-1".to_string()))],
            "resolved for 1800 s: closes by itself, no new alert needed"
        );
        assert_eq!(p.admit(&k, 2900 * S, &l), Admission::Allow { attempt: 1 });
        // A firing alert that comes after the time, before any tick, closes it too.
        p.open(&k, 2950 * S, "again".into());
        assert_eq!(h(&mut p, 2960 * S, true), Health::Since(Some(2960 * S)));
        assert_eq!(h(&mut p, 4760 * S, false), Health::Closed);
        assert_eq!(p.open_count(), 0);
        p.open(&k, 3000 * S, "again".into());
        let k1 = Scope::target("kafka-1");
        assert_eq!(
            p.reset(&k1),
            vec![("broker-down".to_string(), Some("kafka-1".to_string()))]
        );
        assert_eq!(p.admit(&k, 3001 * S, &l), Admission::Allow { attempt: 1 });
        assert!(p.reset(&k1).is_empty());
    }

    #[test]
    fn a_reset_closes_exactly_its_scope() {
        let (mut p, l) = (Policy::default(), limits());
        let key = |rule: &str, t: Option<&str>| WorkKey {
            rule: rule.into(),
            target: t.map(String::from),
            params: Default::default(),
        };
        for (rule, t) in [
            ("broker-down", Some("kafka-1")),
            ("broker-down", Some("kafka-2")),
            ("report", None),
            ("high-cpu", Some("kafka-1")),
        ] {
            p.open(&key(rule, t), 0, "x".into());
        }
        let rule_level = Scope {
            rule: Some("report".into()),
            target: Some(None),
        };
        assert!(!Scope::target("kafka-1").covers("report", None));
        assert_eq!(p.reset(&rule_level), vec![("report".to_string(), None)]);
        assert_eq!(
            p.admit(&key("report", None), S, &l),
            Admission::Allow { attempt: 1 }
        );
        let whole_rule = Scope {
            rule: Some("broker-down".into()),
            target: None,
        };
        assert_eq!(
            p.reset(&whole_rule),
            vec![
                ("broker-down".to_string(), Some("kafka-1".to_string())),
                ("broker-down".to_string(), Some("kafka-2".to_string()))
            ]
        );
        assert_eq!(p.open_count(), 1, "high-cpu on kafka-1 stays open");
    }
}
