"""The search: param space, searchers and schedulers, the Tune trainables, sweep and retrain Tuners."""
