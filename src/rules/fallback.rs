//! Fallback chains: a runbook whose `fallback:` names other runbooks gets their steps,
//! one action per runbook, tried in order (the executor moves to the next action only
//! when one fails).

use std::collections::BTreeMap;

use super::model::{FallbackAction, Runbook};

/// A problem with a chain: the chain runbook's name, the key under it, and what is wrong.
pub(super) type ChainProblem = (String, String, String);

/// Fills in the steps, params, preconditions and action spans of every runbook with a
/// `fallback:` list from the runbooks it names. `runbooks` holds each runbook with the
/// index of its source; the members are read as written (chains do not nest).
pub(super) fn resolve(runbooks: &mut BTreeMap<String, (usize, Runbook)>) -> Vec<ChainProblem> {
    let mut problems = Vec::new();
    let chains: Vec<String> = runbooks
        .iter()
        .filter(|(_, (_, rb))| !rb.fallback.is_empty())
        .map(|(n, _)| n.clone())
        .collect();
    for name in chains {
        let Some((_, chain)) = runbooks.get(&name) else {
            continue;
        };
        let mut bad = |key: &str, msg: String| problems.push((name.clone(), key.into(), msg));
        if !chain.steps.is_empty() {
            bad(
                "steps",
                "a runbook has `steps` or `fallback`, not both: put these steps in a runbook \
                 of their own and name it in `fallback`"
                    .into(),
            );
            continue;
        }
        let mut steps = Vec::new();
        let mut actions = Vec::new();
        let mut params = BTreeMap::new();
        let mut requires = chain.requires.clone();
        let mut disruptive = chain.disruptive;
        let mut ok = true;
        for (i, member) in chain.fallback.iter().enumerate() {
            let key = format!("fallback[{i}]");
            let Some((_, rb)) = runbooks.get(member) else {
                bad(&key, format!("unknown (or invalid) runbook `{member}`"));
                ok = false;
                continue;
            };
            if !rb.fallback.is_empty() || member == &name {
                bad(
                    &key,
                    format!("`{member}` is itself a fallback chain; chains do not nest"),
                );
                ok = false;
                continue;
            }
            if actions.iter().any(|a: &FallbackAction| &a.name == member) {
                bad(&key, format!("`{member}` is listed twice"));
                ok = false;
                continue;
            }
            actions.push(FallbackAction {
                name: member.clone(),
                start: steps.len(),
                len: rb.steps.len(),
            });
            // Named by action: the same step name may occur in several actions.
            steps.extend(rb.steps.iter().cloned().map(|mut s| {
                s.name = format!("{member}/{}", s.name);
                s
            }));
            for (k, v) in &rb.params {
                match params.get(k) {
                    Some(prev) if prev != v && !chain.params.contains_key(k) => {
                        bad(
                            &key,
                            format!(
                                "param `{k}` of `{member}` has another default than in an \
                                 earlier action; give it in this runbook's `params`"
                            ),
                        );
                        ok = false;
                    }
                    _ => {
                        params.insert(k.clone(), v.clone());
                    }
                }
            }
            for p in &rb.requires {
                if !requires.contains(p) {
                    requires.push(*p);
                }
            }
            disruptive |= rb.disruptive;
        }
        if !ok {
            continue;
        }
        params.extend(chain.params.clone());
        if let Some((_, rb)) = runbooks.get_mut(&name) {
            rb.steps = steps;
            rb.actions = actions;
            rb.params = params;
            rb.requires = requires;
            rb.disruptive = disruptive;
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rb(yaml: &str) -> Runbook {
        serde_json::from_value(crate::yaml::Document::parse(yaml).unwrap().value).unwrap()
    }

    #[test]
    fn a_chain_takes_its_members_steps_as_actions() {
        let mut m = BTreeMap::new();
        m.insert(
            "a".to_string(),
            (0, rb("params: {unit: k.service}\nrequires: [broker_unreachable]\nsteps:\n  - {name: restart, exec: [/bin/false]}\n")),
        );
        m.insert(
            "b".to_string(),
            (0, rb("params: {book: p.yml}\nsteps:\n  - {name: restart, exec: [/bin/true]}\n  - {name: wait, exec: [/bin/true]}\n")),
        );
        m.insert(
            "chain".to_string(),
            (0, rb("fallback: [a, b]\nparams: {unit: x.service}\n")),
        );
        assert!(resolve(&mut m).is_empty());
        let c = &m["chain"].1;
        let names: Vec<&str> = c.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a/restart", "b/restart", "b/wait"]);
        assert_eq!(
            c.actions,
            vec![
                FallbackAction {
                    name: "a".into(),
                    start: 0,
                    len: 1
                },
                FallbackAction {
                    name: "b".into(),
                    start: 1,
                    len: 2
                },
            ]
        );
        assert_eq!(c.params["unit"].value, "x.service");
        assert_eq!(c.params["book"].value, "p.yml");
        assert_eq!(c.requires.len(), 1);
        assert_eq!(FallbackAction::of_step(&c.actions, 2), Some(1));
        assert_eq!(FallbackAction::of_step(&c.actions, 3), None);
    }

    #[test]
    fn unknown_nested_and_mixed_chains_are_problems() {
        let mut m = BTreeMap::new();
        m.insert(
            "a".to_string(),
            (0, rb("steps: [{name: s, exec: [/bin/true]}]\n")),
        );
        m.insert("c1".to_string(), (0, rb("fallback: [a, nope]\n")));
        m.insert("c2".to_string(), (0, rb("fallback: [c1]\n")));
        m.insert(
            "c3".to_string(),
            (
                0,
                rb("fallback: [a]\nsteps: [{name: s, exec: [/bin/true]}]\n"),
            ),
        );
        let p = resolve(&mut m);
        let keys: Vec<(&str, &str)> = p.iter().map(|(n, k, _)| (n.as_str(), k.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("c1", "fallback[1]"),
                ("c2", "fallback[0]"),
                ("c3", "steps")
            ]
        );
        assert!(m["c1"].1.steps.is_empty());
    }
}
