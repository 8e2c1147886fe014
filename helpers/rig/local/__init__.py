"""The local backend: every part of the rig is a process on this machine, no Docker needed."""
