"""The Hydra config tree, shipped as `mmattn.configs`; importing it registers the `${mmattn.*:}` resolvers."""

from mmattn.cli.cluster import register_resolvers

register_resolvers()
