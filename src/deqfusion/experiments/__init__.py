"""Experiments: one module per experiment (its defaults, data loading, model, objective and tables) and the one
runner that trains every variant for every seed into one output layout (:mod:`.runner`)."""

from .runner import (
    Column,
    Experiment,
    LoadedRun,
    Run,
    Table,
    available_experiments,
    get_experiment,
    load_run,
    register_experiment,
    run_experiment,
)

__all__ = ["Column", "Experiment", "LoadedRun", "Run", "Table", "available_experiments", "get_experiment",
           "load_run", "register_experiment", "run_experiment"]
