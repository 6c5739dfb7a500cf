"""The wallie command and the live-graph harness it uses (bench, ask, demo, record, replay)."""
