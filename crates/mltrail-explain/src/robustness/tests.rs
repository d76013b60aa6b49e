//! Tiny hand-made ensembles: the verified bound against a brute-force minimum over the ball,
//! and the tree attack's examples against the ensemble itself.

use mltrail_serving::runtime::{NodeMode, OutputSpace, RawOutput};

use super::attack::{candidates, distance, Ball, Search};
use super::trees::{Ensemble, Link, MarginTable, Node, Tree};
use super::verify::{leaf_boxes, margin_bounds, VerifySettings};
use crate::sampling::SplitMix;

/// A depth-2 tree over `features` features with random thresholds and leaf values.
fn random_tree(rng: &mut SplitMix, features: usize) -> Tree {
    let split = |rng: &mut SplitMix| {
        Some((
            rng.below(features) as u32,
            rng.unit() * 2.0 - 1.0,
            NodeMode::Leq,
            false,
        ))
    };
    let leaf = Node {
        split: None,
        true_child: 0,
        false_child: 0,
    };
    let nodes = vec![
        Node {
            split: split(rng),
            true_child: 1,
            false_child: 4,
        },
        Node {
            split: split(rng),
            true_child: 2,
            false_child: 3,
        },
        leaf,
        leaf,
        Node {
            split: split(rng),
            true_child: 5,
            false_child: 6,
        },
        leaf,
        leaf,
    ];
    let values = (0..7)
        .map(|i| {
            if nodes[i].split.is_none() {
                rng.unit() * 2.0 - 1.0
            } else {
                0.0
            }
        })
        .collect();
    let mut used: Vec<u32> = nodes.iter().filter_map(|n| n.split.map(|s| s.0)).collect();
    used.sort_unstable();
    used.dedup();
    Tree {
        nodes,
        values,
        features: used,
    }
}

fn ensemble(seed: u64, trees: usize, features: usize) -> Ensemble {
    let mut rng = SplitMix(seed);
    Ensemble {
        trees: (0..trees)
            .map(|_| random_tree(&mut rng, features))
            .collect(),
        offset: vec![rng.unit() - 0.5],
        link: Link {
            outputs: vec![RawOutput {
                label: "1".into(),
                space: OutputSpace::LogOdds,
            }],
            width: 2,
            threshold: Some(0.0),
        },
        features,
    }
}

/// The smallest margin anywhere in the closed ball, by enumeration: every coordinate that can
/// matter (the ball's ends, each threshold inside, and points between them).
fn brute_force_min(e: &Ensemble, table: &MarginTable, lo: &[f64], hi: &[f64]) -> f64 {
    let coords: Vec<Vec<f64>> = (0..e.features)
        .map(|j| {
            let mut cut: Vec<f64> = vec![lo[j], hi[j]];
            for t in &e.trees {
                for n in &t.nodes {
                    if let Some((f, th, _, _)) = n.split {
                        if f as usize == j && th > lo[j] && th < hi[j] {
                            cut.push(th);
                        }
                    }
                }
            }
            cut.sort_by(f64::total_cmp);
            let mut points = cut.clone();
            for w in cut.windows(2) {
                points.push((w[0] + w[1]) / 2.0);
            }
            points
        })
        .collect();
    let mut best = f64::INFINITY;
    let mut index = vec![0usize; e.features];
    loop {
        let row: Vec<f64> = index
            .iter()
            .enumerate()
            .map(|(j, i)| coords[j][*i])
            .collect();
        let m = table.constants[0]
            + e.trees
                .iter()
                .enumerate()
                .map(|(t, tree)| table.leaves[0][t][tree.leaf(&row)])
                .sum::<f64>();
        best = best.min(m);
        let mut j = 0;
        loop {
            if j == e.features {
                return best;
            }
            index[j] += 1;
            if index[j] < coords[j].len() {
                break;
            }
            index[j] = 0;
            j += 1;
        }
    }
}

#[test]
fn the_verified_bound_is_the_exact_minimum_when_merged_fully_and_never_above_it() {
    let mut checked = 0;
    for seed in 0..200u64 {
        let e = ensemble(seed, 4, 2);
        let mut rng = SplitMix(seed ^ 0xabc);
        let x = vec![rng.unit() * 2.0 - 1.0, rng.unit() * 2.0 - 1.0];
        let r = 0.05 + rng.unit() * 0.4;
        let (lo, hi): (Vec<f64>, Vec<f64>) = x.iter().map(|v| (v - r, v + r)).unzip();
        let Some(class) = e.class(&x) else { continue };
        let table = MarginTable::new(&e, class);
        let exact = brute_force_min(&e, &table, &lo, &hi);
        let boxes = leaf_boxes(&e);
        let full = margin_bounds(&boxes, &table, &lo, &hi, &VerifySettings::default())[0];
        let loose = margin_bounds(
            &boxes,
            &table,
            &lo,
            &hi,
            &VerifySettings {
                clique: 2,
                levels: 1,
                max_cliques: 20_000,
            },
        )[0];
        // Merged into one group, the bound is the minimum (thresholds are distinct reals, so
        // the closed boxes add no point the trees cannot reach).
        assert!(
            (full - exact).abs() < 1e-12,
            "seed {seed}: {full} vs {exact}"
        );
        assert!(
            loose <= full + 1e-12,
            "seed {seed}: a looser level gave a higher bound"
        );
        checked += 1;
    }
    assert!(checked > 150);
}

#[test]
fn the_attack_finds_flips_inside_the_ball_and_never_where_verification_proves_none() {
    let (mut found, mut flippable, mut found_flippable) = (0, 0, 0);
    for seed in 0..300u64 {
        let e = ensemble(seed, 6, 3);
        let mut rng = SplitMix(seed ^ 0x5eed);
        let x: Vec<f64> = (0..3).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let r = 0.1 + rng.unit() * 0.3;
        let scale = vec![1.0; 3];
        let (lo, hi): (Vec<f64>, Vec<f64>) = x.iter().map(|v| (v - r, v + r)).unzip();
        let Some(class) = e.class(&x) else { continue };
        let table = MarginTable::new(&e, class);
        let ball = Ball {
            origin: &x,
            lo: &lo,
            hi: &hi,
            scale: &scale,
        };
        let values = candidates(&e, &ball, &|v| v);
        let touched: Vec<Vec<usize>> = (0..3)
            .map(|j| {
                (0..e.trees.len())
                    .filter(|t| e.trees[*t].features.contains(&(j as u32)))
                    .collect()
            })
            .collect();
        let search = Search {
            ensemble: &e,
            table: &table,
            class,
            touched: &touched,
            restarts: 3,
            moves: 20,
        };
        let exact = brute_force_min(&e, &table, &lo, &hi);
        let bound = margin_bounds(
            &leaf_boxes(&e),
            &table,
            &lo,
            &hi,
            &VerifySettings::default(),
        )[0];
        let flips_exist = exact < -1e-12;
        flippable += usize::from(flips_exist);
        if let Some(adv) = search.run(&ball, &values, &mut SplitMix(seed)) {
            found += 1;
            found_flippable += usize::from(flips_exist);
            assert_ne!(e.class(&adv), Some(class), "seed {seed}: not adversarial");
            assert!(
                distance(&x, &adv, &scale) <= r + 1e-12,
                "seed {seed}: outside the ball"
            );
            assert!(bound <= 0.0, "seed {seed}: verified robust, yet flipped");
            assert!(
                exact <= 0.0,
                "seed {seed}: the exact minimum says no flip exists"
            );
        }
    }
    assert!(found > 20, "the attack found {found} flips");
    // A greedy search may miss some, but not many, on ensembles this small.
    assert!(
        found_flippable * 10 >= flippable * 9,
        "the attack found {found_flippable} of {flippable} flippable rows"
    );
}
