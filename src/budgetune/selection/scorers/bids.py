"""BIDS (Dai et al. 2025, "Improving Influence-based Instruction Tuning Data Selection for Balanced Learning of
Diverse Capabilities", arXiv 2501.12147): influence scores normalised per dev instance, then picks made one at a time
for the task that the picks so far serve least.

Some tasks have intrinsically larger influence than others, so ranking raw influence fills a budget with those
tasks (BIDS §3). BIDS therefore
1. computes the influence A_ij of training example i on dev example j (here: cosine of per-example LoRA gradients,
   by the vectorised per-example gradient path (pergrad.py), projected to k dimensions (projection.py), as LESS
   computes its features; without LESS's warm-up and Adam preconditioning unless `warmup_steps` > 0);
2. normalises every dev instance's column: Ā_ij = (A_ij − mean_i A_ij) / std_i A_ij (instance-level
   normalisation), so each dev example has the same scale of influence across the pool;
3. per task t (the dev examples' categories), T_it = mean over the task's dev instances of Ā_ij;
4. picks iteratively: with S the picks so far, the task t* = argmin_t mean_{i∈S} T_it is the least represented,
   and the next pick is argmax_{i∉S} T_{i t*}.
The order of picks is the score (every budget takes a prefix). FLOPs: per-example gradients of pool and dev set,
their projection, the cosine matrix (2·n·d·k), the normalisation and task means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from .. import pergrad, warmup
from ..allocate import order_scores
from ..projection import BlockProjector, FeatureStore, project_stream, unit_rows
from ..protocol import Scores
from ..scaffold import scorer

NAME = "bids"
NEEDS_MODEL = True
NEEDS_TARGET = True
DEFAULT_STRATEGY = "topk"  # the scores are BIDS's pick order

AUTO = False  # not an `auto` candidate: the survey benchmark (docs/benchmarks/survey_systems.md) found it no
# better than a random subset at equal total FLOPs, so its cost model prices it (predict_seconds) but auto never picks it


def predicted_work(model, pool, target, config):
    """Exact: the warm-up (one LoRA copy), then per-example gradients of pool and dev set, their projections to k
    dimensions, the cosines, and the normalisation (selection/costs.py)."""
    from ..costs import Work, adapter_dim, pergrad_flops

    lora = warmup.lora_profile(model)
    dim = pergrad.dimension(model) if hasattr(model, "peft_config") else adapter_dim(model)
    grads = pergrad_flops(lora, pool, config.batch_size, dim) + pergrad_flops(lora, target, config.batch_size, dim)
    size = len(pool) * len(target)
    return Work(forward=2.0 * (len(pool) + len(target)) * dim * config.k + 2.0 * size * config.k + 5.0 * size,
                train=warmup.planned_flops(lora, pool, steps=config.warmup_steps, batch_size=config.batch_size,
                                           seed=config.seed) + grads, copies=1)


@dataclass(kw_only=True)
class Config:
    k: int = 256  # projection dimension of the per-example gradients
    warmup_steps: int = 0  # LoRA warm-up steps on the pool before the gradients (0: the fresh adapters' gradients)
    lr: float = 1e-3
    batch_size: int = 8  # examples per vectorised gradient pass
    workdir: str = ""  # where the float16 feature files go; empty: a temporary directory
    seed: int = 0

    def __post_init__(self):
        if self.k < 1 or self.batch_size < 1 or self.warmup_steps < 0:
            raise UserError(f"{NAME} options need k >= 1, batch_size >= 1 and warmup_steps >= 0")


def normalise_instances(influence: np.ndarray) -> np.ndarray:
    """Each dev instance's column to zero mean and unit (population) standard deviation over the pool; a constant
    column becomes zeros."""
    mean = influence.mean(axis=0, keepdims=True)
    std = influence.std(axis=0, keepdims=True)
    return np.divide(influence - mean, std, out=np.zeros_like(influence, dtype=float), where=std > 0)


def task_influence(normalised: np.ndarray, task_of_dev: np.ndarray) -> np.ndarray:
    """[pool, tasks]: mean normalised influence on each task's dev instances (tasks in sorted order)."""
    tasks = np.unique(task_of_dev)
    return np.stack([normalised[:, task_of_dev == t].mean(axis=1) for t in tasks], axis=1)


def greedy_order(per_task: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """BIDS's iterative selection over the whole pool: each pick serves the task the picks so far serve least."""
    n, tasks = per_task.shape
    left = np.ones(n, dtype=bool)
    served = np.zeros(tasks)  # Σ over picks of T_it
    tie = rng.random(tasks) * 1e-12  # equal service (the first pick): a random task, not always the first
    order = []
    for count in range(n):
        t = int(np.argmin(served / max(1, count) + tie))
        column = np.where(left, per_task[:, t], -np.inf)
        i = int(np.argmax(column))
        order.append(i)
        left[i] = False
        served += per_task[i]
    return np.asarray(order, dtype=np.int64)


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        c = self.config
        tasks = sorted({str(e.category) for e in target})
        task_of = np.array([tasks.index(str(e.category)) for e in target])
        cost = {"flops": 0.0, "tokens": 0}
        influence = np.zeros((len(pool), len(target)))

        def on_checkpoint(ck):
            projector = BlockProjector(pergrad.dimension(ck.model), c.k, seed=c.seed)
            train = FeatureStore(len(pool), c.k, c.workdir or None, "bids-train")
            dev = FeatureStore(len(target), c.k, c.workdir or None, "bids-dev")
            for examples, store in ((pool, train), (target, dev)):
                stream = pergrad.per_example_grads(ck.model, examples, batch_size=c.batch_size)
                cost["flops"] += project_stream(stream, projector, store)
                cost["tokens"] += sum(e.n_tokens for e in examples)
            influence[:] = unit_rows(train.read()) @ unit_rows(dev.read()).T
            cost["flops"] += 2.0 * len(pool) * len(target) * c.k

        spent = warmup.run(model, pool, steps=c.warmup_steps, lr=c.lr, batch_size=c.batch_size, seed=c.seed,
                           on_checkpoint=on_checkpoint)
        cost["flops"] += spent
        per_task = task_influence(normalise_instances(influence), task_of)
        cost["flops"] += 5.0 * influence.size  # mean, std, normalise; then the task means
        order = greedy_order(per_task, np.random.default_rng(c.seed))
        picks = np.bincount(np.argmax(per_task[order[: max(1, len(pool) // 10)]], axis=1), minlength=len(tasks))
        return Scores(order_scores(order, len(pool)), cost["flops"], cost["tokens"],
                      meta={"tasks": tasks, "k": c.k,
                            "first_tenth_by_task": {t: int(p) for t, p in zip(tasks, picks)}})
