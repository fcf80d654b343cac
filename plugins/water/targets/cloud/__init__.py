"""The cloud target: `target` (its builders and settings), `operators` (water's own operators on AWS),
`extended` and `vertex_operators` (provider operators water extends), `vertex` (the Vertex AI
requests built from a spec, and their offline check) and `lazy` (how the DAG names provider
operators so that parsing it imports none of them).

Empty on purpose, as water.targets.local: importing the package imports no provider.
"""
