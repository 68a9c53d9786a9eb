"""seqarena training: Hydra configs, a Lightning module, tasks, matched-compute budgets.

    python -m train arch=mamba task=mqar budget.flops=2e12
    from train import compose_config, train_run, load_run, build_task
"""
from .api import compose_config, config_hash, load_run, plan_run, train_run, validate_config
from .data import TASK_NAMES, build_task

__all__ = ["TASK_NAMES", "build_task", "compose_config", "config_hash", "load_run", "plan_run", "train_run", "validate_config"]
