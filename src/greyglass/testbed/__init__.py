"""`greyglass testbed`: each tool's verdict on a model organism known to have a behaviour and on a control known
not to."""
