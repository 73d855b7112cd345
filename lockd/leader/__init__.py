"""The leader machinery as tick objects: each decides on `tick(now)` and returns actions.

`Leadership` (promotion: BeginEpoch, then ready; demotion), `Reaper` (session expiries and
silence checkpoints) and `LockDelayEnds` (EndLockDelay when a lock-delay runs out). None of
them reads a clock, sleeps or proposes: the one driver loop in lockd/server.py reads the
node's injected Clock, calls `tick`, and proposes what they return.
"""
