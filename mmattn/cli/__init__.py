"""Hydra entry points: `mmattn-train` (`train(cfg)`) and `mmattn-eval` (`evaluate(cfg)`)."""
