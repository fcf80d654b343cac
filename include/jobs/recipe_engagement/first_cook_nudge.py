"""Pod entrypoint of the `first_cook_nudge` route: a ranked list of browsers, each with one easy recipe.

    first_cook_nudge.py --input URI --output URI --classes browse --events URI
                        [--choices 20] [--popular 200] [--campaign first_cook_nudge]
                        [--row-start N --row-end N]

--input, --classes and --row-start/--row-end pick the route's rows (a shard of it) from the
predictions partition, and OUTPUT gets the lists in the schema every route writes: both as
route_lists.py says (recipe_ids holds one recipe). --events is the day's `raw` partition
(Parquet; extract.sql).

A light job: the day's cook events are streamed once into fixed-size counts per recipe (how
often cooked, total cooking time); among the --popular most cooked recipes, the --choices
quickest to cook are the easy ones. Every user gets one of them (by user_id, so a user keeps
it whichever shard they land in) and a message saying how long it takes. Nothing per user
is read from the events: memory is the shard's rows plus a constant.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from route_lists import data_files, parse_route_args, ranked, read_route_predictions, route_parser, write_lists


def easy_recipes(uri, popular: int, choices: int):
    """(recipe ids, mean minutes to cook them): the quickest of the day's most cooked recipes."""
    fs, files = data_files(uri)
    source = ds.dataset(files, filesystem=fs, format="parquet")
    cooked = (pc.field("event_type") == "cook") & pc.field("recipe_id").is_valid()
    times, seconds = np.zeros(0), np.zeros(0)
    for batch in source.to_batches(
        columns=["recipe_id", "duration_s"], filter=cooked, use_threads=False, batch_readahead=1, fragment_readahead=1
    ):
        recipe = batch.column("recipe_id").to_numpy()
        duration = pc.fill_null(batch.column("duration_s"), 0.0).to_numpy()
        counted, spent = np.bincount(recipe), np.bincount(recipe, weights=duration)
        if len(counted) > len(times):
            times, seconds = np.pad(times, (0, len(counted) - len(times))), np.pad(seconds, (0, len(counted) - len(seconds)))
        times[: len(counted)] += counted
        seconds[: len(counted)] += spent
    most_cooked = np.lexsort((np.arange(len(times)), -times))[:popular]
    most_cooked = most_cooked[times[most_cooked] > 0]
    if not len(most_cooked):
        raise SystemExit(f"no cook events in {uri}: no recipe to suggest")
    minutes = seconds[most_cooked] / times[most_cooked] / 60
    quickest = np.lexsort((most_cooked, minutes))[:choices]
    return most_cooked[quickest], minutes[quickest]


def main(argv=None):
    parser = route_parser(__doc__, events=True)
    parser.add_argument("--choices", type=int, default=20, help="easy recipes to hand out")
    parser.add_argument("--popular", type=int, default=200, help="among this many most cooked recipes")
    args, classes = parse_route_args(parser, "first_cook_nudge", argv)

    rows = ranked(read_route_predictions(args.input, classes, args.row_start, args.row_end))
    recipes, minutes = easy_recipes(args.events, args.popular, args.choices)
    pick = rows.column("user_id").to_numpy() % len(recipes)  # by user: the same recipe in any shard
    offsets = pa.array(np.arange(rows.num_rows + 1, dtype=np.int32))
    recipe_ids = pa.ListArray.from_arrays(offsets, pa.array(recipes[pick], pa.int64()))
    texts = [
        f"Cook your first recipe today: recipe {r}, about {max(1, round(m))} minutes"
        for r, m in zip(recipes, minutes, strict=True)
    ]
    message = pa.array(texts).take(pa.array(pick))
    written = write_lists(args.output, rows, classes, args.row_start or 0, args.campaign, recipe_ids, message)
    counts = " ".join(f"{k}={v}" for k, v in written.items())
    print(f"first_cook_nudge rows_in={rows.num_rows} easy_recipes={len(recipes)} {counts}")


if __name__ == "__main__":
    main()
