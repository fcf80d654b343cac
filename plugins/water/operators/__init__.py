"""water's own operators that every target shares: the sizing branch, the drift guard, the run report.

A target's own operators live with it (water.targets.<name>.operators).
"""
