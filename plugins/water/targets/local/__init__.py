"""The local target: `target` (its builders), `operators`, and `engines` (what runs the artifacts).

Empty on purpose: the command line imports engines (partitions, SQL) before it has pointed
Airflow at its home, so importing this package must not import Airflow.
"""
