"""water: an Apache Airflow 3 distribution for machine-learning pipelines."""

__version__ = "0.1.0"
