#!/usr/bin/env python3
"""Generate golden off-policy-evaluation (OPE) values with Open Bandit Pipeline.

Writes ``obp_estimates.json`` next to this file: for a few small, seeded logged
bandit data sets, the inputs (action, reward, pscore, target-policy action
distribution, reward-model estimates) together with what OBP computes from them
for IPW, SNIPW and DR:

* ``estimates``    -- ``estimate_policy_value`` with default arguments
                      (``lambda_ = inf``, i.e. no weight clipping),
* ``intervals``    -- ``estimate_interval(alpha=0.05, n_bootstrap_samples=10000,
                      random_state=12345)`` exactly as OBP returns it,
* ``round_values`` -- the per-round values ``_estimate_round_rewards`` returns
                      (their mean is the estimate; use them to check standard
                      errors / the bootstrap input).

Everything is seeded, so running this twice gives a byte-identical file.
See README.md beside this file for the environment (pinned in
requirements.txt), the formulas OBP uses and the meaning of each field.

Usage (inside the generator venv, NOT the project's test venv):

    python tests/golden/ope/generate.py            # writes obp_estimates.json
    python tests/golden/ope/generate.py --out X    # writes elsewhere
"""

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import scipy
import sklearn

# NB: `import obp` imports torch (obp/utils.py and obp/policy/*.py do
# `import torch` at module level), so torch must be installed even though
# none of the estimators below use it.
import obp
from obp.dataset import SyntheticBanditDataset, logistic_reward_function
from obp.ope import (
    DoublyRobust,
    InverseProbabilityWeighting,
    OffPolicyEvaluation,
    SelfNormalizedInverseProbabilityWeighting,
)

# The numbers depend on these two only (torch, pandas, ... are never used in
# the computation); refuse to silently write a file from other versions.
EXPECTED_OBP = "0.5.7"
EXPECTED_NUMPY = "1.23.5"

ALPHA = 0.05
N_BOOTSTRAP = 10000
BOOTSTRAP_SEED = 12345

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------
# Cases. Each returns plain numpy arrays:
#   action (n,) int64, reward (n,) float64, pscore (n,) float64,
#   action_dist (n, n_actions) float64 (rows sum to 1), plus extras.
# --------------------------------------------------------------------------


def case_synthetic():
    """OBP's own synthetic generator, binary rewards, 3 actions.

    A logistic reward function makes q(x, a) (and so the softmax behaviour
    policy pi_b and the target policy) depend on the 5-dim context, so the
    propensities and importance weights vary from round to round.
    """
    # 1000 rounds (not 2000) keeps the whole JSON under ~300 KB.
    n_rounds, n_actions, epsilon = 1000, 3, 0.1
    dataset = SyntheticBanditDataset(
        n_actions=n_actions,
        dim_context=5,
        reward_type="binary",
        reward_function=logistic_reward_function,
        random_state=12345,
    )
    bf = dataset.obtain_batch_bandit_feedback(n_rounds=n_rounds)
    q = bf["expected_reward"]  # (n, n_actions): true E[r | x, a]
    # epsilon-greedy over the true expected reward:
    #   pi_e(a|x) = eps/K + (1 - eps) * 1[a == argmax_a' q(x, a')]
    action_dist = np.full((n_rounds, n_actions), epsilon / n_actions)
    action_dist[np.arange(n_rounds), np.argmax(q, axis=1)] += 1.0 - epsilon
    extras = {
        # V(pi_e) on these contexts with the true q: sum_a pi_e(a|x) q(x,a), averaged.
        "ground_truth_policy_value": float(
            dataset.calc_ground_truth_policy_value(
                expected_reward=q, action_dist=action_dist[:, :, np.newaxis]
            )
        ),
    }
    return (
        "SyntheticBanditDataset(n_actions=3, dim_context=5, reward_type='binary', "
        "reward_function=logistic_reward_function, random_state=12345)"
        ".obtain_batch_bandit_feedback(n_rounds=1000); target = epsilon-greedy "
        "(epsilon=0.1) over the true expected_reward",
        bf["action"].astype(np.int64),
        bf["reward"].astype(np.float64),  # binary 0/1 (int in OBP) -> float
        bf["pscore"].astype(np.float64),
        action_dist,
        extras,
    )


def case_skewed():
    """2 actions, logged propensities as small as 0.05: weights up to 18."""
    rng = np.random.RandomState(20240601)
    n_rounds = 500
    # three context groups with very different logging / target policies
    pi_b1 = np.array([0.05, 0.5, 0.95])  # P_b(a = 1 | group)
    pi_e1 = np.array([0.9, 0.5, 0.1])  # P_e(a = 1 | group)
    q = np.array([[0.2, 0.6], [0.4, 0.5], [0.7, 0.3]])  # E[r | group, a]
    group = rng.randint(0, 3, size=n_rounds)
    action = (rng.uniform(size=n_rounds) < pi_b1[group]).astype(np.int64)
    reward = (rng.uniform(size=n_rounds) < q[group, action]).astype(np.float64)
    pscore = np.where(action == 1, pi_b1[group], 1.0 - pi_b1[group])
    action_dist = np.stack([1.0 - pi_e1[group], pi_e1[group]], axis=1)
    extras = {
        "ground_truth_policy_value": float(np.sum(action_dist * q[group], axis=1).mean())
    }
    return (
        "500 rounds, 2 actions, 3 context groups with P_b(a=1) in {0.05, 0.5, 0.95} "
        "and P_e(a=1) in {0.9, 0.5, 0.1}; binary rewards; numpy RandomState(20240601)",
        action,
        reward,
        pscore,
        action_dist,
        extras,
    )


def case_unlogged_action():
    """3 actions, action 2 is never logged (so q_hat(., 2) = 0.0) but the target
    policy puts mass 0.5 on it; continuous (Gaussian, partly negative) rewards."""
    rng = np.random.RandomState(777)
    n_rounds = 300
    pi_b = np.array([0.7, 0.3, 0.0])  # the logger never plays action 2
    mean_reward = np.array([1.0, -0.5, 2.0])
    action = (rng.uniform(size=n_rounds) < pi_b[1]).astype(np.int64)  # 0 or 1
    reward = mean_reward[action] + rng.normal(size=n_rounds)
    pscore = pi_b[action]
    action_dist = np.tile(np.array([0.2, 0.3, 0.5]), (n_rounds, 1))
    extras = {
        "ground_truth_policy_value": float(np.dot(action_dist[0], mean_reward)),
    }
    return (
        "300 rounds, 3 actions, context-free; pi_b = (0.7, 0.3, 0.0) so action 2 is "
        "never logged; pi_e = (0.2, 0.3, 0.5); reward ~ N(mu_a, 1) with "
        "mu = (1.0, -0.5, 2.0); numpy RandomState(777)",
        action,
        reward,
        pscore,
        action_dist,
        extras,
    )


CASES = {
    "synthetic": case_synthetic,
    "skewed": case_skewed,
    "unlogged_action": case_unlogged_action,
}


# --------------------------------------------------------------------------


def mean_reward_model(action, reward, n_actions):
    """q_hat(x, a) = mean logged reward of action a over all rounds (the same
    for every round); 0.0 for an action that was never logged."""
    q = np.zeros(n_actions)
    for a in range(n_actions):
        mask = action == a
        if mask.any():
            q[a] = reward[mask].mean()
    return q


def floats(x):
    return [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


def run_case(name, builder):
    description, action, reward, pscore, action_dist2, extras = builder()
    n_rounds, n_actions = action_dist2.shape
    q_per_action = mean_reward_model(action, reward, n_actions)
    est_rewards2 = np.tile(q_per_action, (n_rounds, 1))

    # OBP wants (n_rounds, n_actions, len_list) with len_list = 1.
    action_dist = action_dist2[:, :, np.newaxis]
    est_rewards = est_rewards2[:, :, np.newaxis]
    position = np.zeros(n_rounds, dtype=int)  # what OBP uses when position=None

    estimators = {
        "ipw": InverseProbabilityWeighting(),
        "snipw": SelfNormalizedInverseProbabilityWeighting(),
        "dr": DoublyRobust(),
    }
    common = dict(reward=reward, action=action, pscore=pscore, action_dist=action_dist)
    estimates, intervals, round_values = {}, {}, {}
    for key, est in estimators.items():
        extra = {"estimated_rewards_by_reg_model": est_rewards} if key == "dr" else {}
        estimates[key] = float(est.estimate_policy_value(**common, **extra))
        ci = est.estimate_interval(
            **common,
            **extra,
            alpha=ALPHA,
            n_bootstrap_samples=N_BOOTSTRAP,
            random_state=BOOTSTRAP_SEED,
        )
        intervals[key] = {k: float(v) for k, v in ci.items()}
        rv = est._estimate_round_rewards(**common, **extra, position=position)
        assert rv.shape == (n_rounds,)
        # the policy value is exactly the (numpy) mean of the round values
        assert float(rv.mean()) == estimates[key]
        round_values[key] = floats(rv)

    # Cross-check through OBP's meta class (same code path a user would take).
    ope = OffPolicyEvaluation(
        bandit_feedback=dict(
            action=action,
            reward=reward,
            pscore=pscore,
            position=None,
            context=np.zeros((n_rounds, 1)),
        ),
        ope_estimators=list(estimators.values()),
    )
    meta = ope.estimate_policy_values(
        action_dist=action_dist, estimated_rewards_by_reg_model=est_rewards
    )
    assert {k: float(v) for k, v in meta.items()} == estimates, (meta, estimates)

    # Bootstrap probe: OBP resamples with sklearn.utils.check_random_state(seed)
    # = np.random.RandomState(seed) and `random_.choice(samples, size=n)`, which
    # for replace=True, p=None draws `randint(0, n, size=n)` indices. Every
    # estimator gets a fresh RandomState(12345), so all three resample the SAME
    # index sets. Record the first indices and the first bootstrap means so an
    # MT19937 port can be checked step by step.
    rs = np.random.RandomState(BOOTSTRAP_SEED)
    first_idx = rs.choice(np.arange(n_rounds), size=n_rounds)
    rs_check = np.random.RandomState(BOOTSTRAP_SEED)
    assert np.array_equal(first_idx, rs_check.randint(0, n_rounds, size=n_rounds))
    probe_means = {}
    for key in estimators:
        rv = np.asarray(round_values[key])
        rs = np.random.RandomState(BOOTSTRAP_SEED)
        probe_means[key] = [float(np.mean(rs.choice(rv, size=n_rounds))) for _ in range(5)]

    return {
        "description": description,
        "obp_version": obp.__version__,
        "n_rounds": int(n_rounds),
        "n_actions": int(n_actions),
        "action": [int(a) for a in action],
        "reward": floats(reward),
        "pscore": floats(pscore),
        "action_dist": [floats(row) for row in action_dist2],
        "estimated_rewards": [floats(row) for row in est_rewards2],
        "estimated_reward_per_action": floats(q_per_action),
        "estimates": estimates,
        "intervals": intervals,
        "round_values": round_values,
        "bootstrap_probe": {
            "seed": BOOTSTRAP_SEED,
            "first_resample_indices_head": [int(i) for i in first_idx[:20]],
            "first_bootstrap_means": probe_means,
        },
        **extras,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "obp_estimates.json")
    args = parser.parse_args()

    if obp.__version__ != EXPECTED_OBP or np.__version__ != EXPECTED_NUMPY:
        raise SystemExit(
            f"expected obp=={EXPECTED_OBP} and numpy=={EXPECTED_NUMPY}, found "
            f"obp=={obp.__version__} numpy=={np.__version__}; "
            "install requirements.txt (see README.md)"
        )

    out = {
        "generator": {
            "script": "tests/golden/ope/generate.py",
            "python_version": platform.python_version(),
            "obp_version": obp.__version__,
            "numpy_version": np.__version__,
            "scipy_version": scipy.__version__,
            "scikit_learn_version": sklearn.__version__,
            "alpha": ALPHA,
            "n_bootstrap_samples": N_BOOTSTRAP,
            "bootstrap_random_state": BOOTSTRAP_SEED,
        },
        "cases": {name: run_case(name, builder) for name, builder in CASES.items()},
    }
    # json.dump writes Python floats with repr(), which round-trips float64
    # bit-exactly. Compact separators keep the file small.
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    for name, case in out["cases"].items():
        print(name, case["estimates"])


if __name__ == "__main__":
    main()
