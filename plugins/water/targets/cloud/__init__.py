"""The cloud target: `target` (its builders and settings) and `operators` (water's own operators on AWS).

Empty on purpose, as water.targets.local: importing the package imports no provider.
"""
