"""How close full-ranking evaluation comes to its floor: one score matmul plus one top-k.

The floor is what no full-ranking evaluator can avoid per user batch: ``U[users] @ V.T`` and
``torch.topk`` at the largest cutoff. :meth:`recsys.eval.Evaluator.evaluate` adds the
``-inf`` mask of training items, the hit lookup and every metric at every cutoff; the design
bar is that it costs at most twice the floor.

The default problem has MovieLens-100k's shape: 943 users, 1682 items, embedding dimension 64,
about 80k training entries masked and 20k held out.

Usage::

    python benchmarks/bench_eval_floor.py [--users 943] [--items 1682] [--dim 64]
        [--train 80000] [--test 20000] [--batch-size 4096] [--device cpu] [--repeats 30]
        [--threads 0]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from recsys.eval import Evaluator


def random_interactions(
    rng: np.random.Generator, n_users: int, n_items: int, n: int
) -> sp.csr_array:
    """``n`` distinct (user, item) pairs, items drawn with a power-law popularity."""
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < min(n, n_users * n_items):
        users = rng.integers(0, n_users, size=n)
        items = rng.choice(n_items, size=n, p=weights / weights.sum())
        keys = np.union1d(keys, users * n_items + items)
    keys = rng.permutation(keys)[:n]
    data = np.ones(len(keys), dtype=np.float32)
    matrix = sp.csr_array((data, (keys // n_items, keys % n_items)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    return matrix


def timed_pair(
    first: Callable[[], object], second: Callable[[], object], device: torch.device, repeats: int
) -> tuple[float, float, float]:
    """Median wall times (seconds) of ``first`` and ``second`` and the median of their
    per-repeat ratio, after two warm-up rounds. The two alternate, so load from other
    processes on the machine hits both alike."""

    def once(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    t_first, t_second = [], []
    for i in range(repeats + 2):
        a, b = once(first), once(second)
        if i >= 2:
            t_first.append(a)
            t_second.append(b)
    ratios = [b / a for a, b in zip(t_first, t_second, strict=True)]
    return statistics.median(t_first), statistics.median(t_second), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=943)
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--train", type=int, default=80_000)
    parser.add_argument("--test", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    train = random_interactions(rng, args.users, args.items, args.train)
    test = random_interactions(rng, args.users, args.items, args.test)
    test = sp.csr_array(test - test.multiply(train))  # held-out items are not training items
    test.eliminate_zeros()
    popularity = np.asarray(train.sum(axis=0)).ravel()
    user_emb = torch.randn(args.users, args.dim, device=device)
    item_emb = torch.randn(args.items, args.dim, device=device)

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        return user_emb[users] @ item_emb.T

    topk = (10, 20)
    evaluator = Evaluator(topk=topk, batch_size=args.batch_size, device=device)
    eval_users = np.flatnonzero(np.diff(test.indptr) > 0)
    eval_users_t = torch.from_numpy(eval_users).to(device)

    def floor() -> None:
        with torch.inference_mode():
            for start in range(0, len(eval_users), args.batch_size):
                scores = score_fn(eval_users_t[start : start + args.batch_size])
                torch.topk(scores, max(topk), dim=1)

    def evaluate() -> None:
        evaluator.evaluate(score_fn, test, [train], item_popularity=popularity)

    t_floor, t_eval, ratio = timed_pair(floor, evaluate, device, args.repeats)
    result = evaluator.evaluate(score_fn, test, [train], item_popularity=popularity)
    print(
        f"problem: {args.users} users x {args.items} items, dim {args.dim}, "
        f"{train.nnz} training entries masked, {test.nnz} held out, "
        f"{result['n_users']} users evaluated, batch {args.batch_size}, device {device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"floor (matmul + topk@{max(topk)}): {t_floor * 1e3:8.2f} ms")
    print(f"Evaluator.evaluate ({len(result) - 1} values): {t_eval * 1e3:8.2f} ms")
    print(f"ratio (median of per-repeat ratios): {ratio:.2f}")


if __name__ == "__main__":
    main()
