"""AWS Glue (PySpark) job: per-user engagement features for one day.

Runs unchanged as a Glue job (Glue passes `--JOB_NAME name --input_path s3://... ...`) and
on local Spark through spark-submit with the same arguments.

Reads the raw extract partition (one row per user and event; NULL event fields for a user
with no event that day) and writes one row per user, ordered by user_id.
"""

import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

REQUIRED = ("input_path", "output_path", "ds")


def resolved_options(argv, required):
    """Glue-style `--name value` arguments (as awsglue.utils.getResolvedOptions parses them).

    Glue adds arguments of its own (--job-bookmark-option, --TempDir, ...); they are kept but
    not required. A missing required argument stops the job with a clear message.
    """
    options, i = {}, 1
    while i < len(argv):
        token = argv[i]
        if token.startswith("--"):
            name, _, inline = token[2:].partition("=")
            if inline or i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                options[name] = inline
                i += 1
            else:
                options[name] = argv[i + 1]
                i += 2
        else:
            i += 1
    missing = [name for name in required if name not in options]
    if missing:
        raise SystemExit(f"missing job arguments: {', '.join('--' + m for m in missing)}")
    return options


def count_of(event_type):
    return F.sum(F.when(F.col("event_type") == event_type, 1).otherwise(0)).cast("long")


def build_features(raw):
    features = raw.groupBy("user_id", "platform", "tenure_days").agg(
        F.count("event_type").alias("n_events"),
        F.countDistinct("session_id").alias("n_sessions"),
        count_of("view").alias("n_views"),
        count_of("save").alias("n_saves"),
        count_of("cook").alias("n_cooks"),
        count_of("search").alias("n_searches"),
        count_of("share").alias("n_shares"),
        F.countDistinct("recipe_id").alias("n_recipes"),
        # Rounded: a floating-point sum depends on the order Spark adds in; the source has 0.1 s steps.
        F.round(F.coalesce(F.sum("duration_s"), F.lit(0.0)), 1).alias("total_duration_s"),
    )
    views = F.greatest(F.col("n_views"), F.lit(1))
    return features.withColumn("cook_rate", F.col("n_cooks") / views).withColumn("save_rate", F.col("n_saves") / views)


def main(argv):
    args = resolved_options(argv, REQUIRED)
    spark = SparkSession.builder.appName(args.get("JOB_NAME", "recipe_engagement_features")).getOrCreate()
    raw = spark.read.parquet(args["input_path"])
    features = build_features(raw).orderBy("user_id")
    (
        features.coalesce(int(args.get("output_files", "1")))
        .write.mode("overwrite")
        .option("compression", "snappy")
        .parquet(args["output_path"])
    )
    print(f"features for ds={args['ds']} written to {args['output_path']}")
    spark.stop()


if __name__ == "__main__":
    main(sys.argv)
