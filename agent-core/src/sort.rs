//! Sorting with one copy of the sort code for the whole agent.
//!
//! Every `slice::sort_by` (or `sort_by_key`, or `sort` over another element type) compiles a
//! copy of the standard library's stable sort for its own closure and element: about 6 KiB of
//! machine code each, and the agent had some thirty of them (docs/PERFORMANCE.md, Agent). The
//! functions here sort a list of positions instead, with one comparison behind a `dyn`
//! pointer, so the sort itself is compiled once; what each caller adds is its comparison and
//! an in-place permutation (a loop of swaps). They are stable, like `sort_by`. The lists the
//! agent sorts are short (a check's problems, a scan's findings, a host's packages), so the
//! indirect call per comparison and the list of positions cost nothing that shows.

use std::cmp::Ordering;

/// Sorts `v` by `cmp`, stably: what `v.sort_by(cmp)` does.
pub fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if v.len() < 2 {
        return;
    }
    let mut order: Vec<usize> = (0..v.len()).collect();
    sort_positions(&mut order, &mut |a, b| cmp(&v[a], &v[b]));
    permute(v, &mut order);
}

/// Sorts `v` by the key `f` gives each element, stably: what `v.sort_by_key(f)` does.
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut f: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| f(a).cmp(&f(b)));
}

/// Sorts `v` in ascending order, stably: what `v.sort()` does.
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, T::cmp);
}

/// The one instance of the standard sort: positions, compared through `cmp`.
#[inline(never)]
fn sort_positions(order: &mut [usize], cmp: &mut dyn FnMut(usize, usize) -> Ordering) {
    order.sort_by(|&a, &b| cmp(a, b));
}

/// Rearranges `v` so that `v[i]` becomes the element that was at `order[i]`, by following each
/// cycle of the permutation with swaps. `order` is used up (each visited slot is set to its
/// own index).
fn permute<T>(v: &mut [T], order: &mut [usize]) {
    for start in 0..v.len() {
        let mut at = start;
        loop {
            let from = std::mem::replace(&mut order[at], at);
            if from == start || from == at {
                break;
            }
            v.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so the cases are reproducible.
    fn numbers(seed: u64, n: usize, modulo: u64) -> Vec<u64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % modulo
            })
            .collect()
    }

    #[test]
    fn sorts_as_the_standard_library_does_and_keeps_equal_elements_in_order() {
        for (seed, n, modulo) in [
            (1, 0, 5),
            (2, 1, 5),
            (3, 2, 5),
            (4, 17, 3),
            (5, 300, 10),
            (6, 1000, 1_000_000),
        ] {
            // (key, original position): the position shows whether the sort was stable.
            let items: Vec<(u64, usize)> = numbers(seed, n, modulo)
                .into_iter()
                .enumerate()
                .map(|(i, k)| (k, i))
                .collect();
            let mut expected = items.clone();
            expected.sort_by_key(|p| p.0);
            let mut ours = items.clone();
            sort_by_key(&mut ours, |p| p.0);
            assert_eq!(ours, expected, "seed {seed}, {n} elements");
            let mut descending = items.clone();
            sort_by(&mut descending, |a, b| b.0.cmp(&a.0));
            let mut expected = items.clone();
            expected.sort_by_key(|b| std::cmp::Reverse(b.0));
            assert_eq!(descending, expected, "seed {seed}, descending");
        }
    }

    #[test]
    fn sorts_owned_values_without_losing_or_repeating_any() {
        let mut names: Vec<String> = ["sshd", "cron", "nginx", "cron", "a", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        sort(&mut names);
        assert_eq!(names, ["", "a", "cron", "cron", "nginx", "sshd"]);
    }

    #[test]
    fn every_permutation_of_four_is_applied_correctly() {
        let base = [10, 20, 30, 40];
        for a in 0..4 {
            for b in 0..4 {
                for c in 0..4 {
                    for d in 0..4 {
                        let order = [a, b, c, d];
                        let mut seen = [false; 4];
                        order.iter().for_each(|&i| seen[i] = true);
                        if seen.contains(&false) {
                            continue;
                        }
                        let mut v = base;
                        permute(&mut v, &mut order.clone());
                        assert_eq!(v, order.map(|i| base[i]), "{order:?}");
                    }
                }
            }
        }
    }
}
