"""The docker backend: the parts of the rig as containers started by Compose v2."""
