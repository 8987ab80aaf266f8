"""Load benchmark of EPU against bare Flask baselines: `make bench` (see bench/README.md)."""
