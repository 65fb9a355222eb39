"""Hydra entry points: `mmattn-train` (`train(cfg)`), `mmattn-eval` (`evaluate(cfg)`), `mmattn-translate`."""

from mmattn.cli.cluster import register_resolvers

# Configs use `${mmattn.*:...}` resolvers; a submitit job unpickles its config in a process that imports only this.
register_resolvers()
