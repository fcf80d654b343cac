"""Pod entrypoint of the `weekly_menu` route: a top-k of recipes for every cook, from the day's events.

    weekly_menu.py --input URI --output URI --classes cook --events URI
                   [--top-k 10] [--campaign weekly_menu] [--row-start N --row-end N]

--input, --classes and --row-start/--row-end pick the route's rows (a shard of it) from the
predictions partition, and OUTPUT gets the lists in the schema every route writes: both as
route_lists.py says. --events is the day's `raw` partition (Parquet: user_id, event_type,
recipe_id, ...; extract.sql).

Per cook: the recipes the user viewed (1), saved (3) or cooked (5) that day, scored by those
weights, best --top-k first; a user with fewer than k is filled up with the day's globally
popular recipes (same weights over every user's events) that are not already on the list.
The events are streamed batch by batch: global popularity is a fixed-size count per recipe,
and only the events of this shard's users are kept, so memory follows the shard.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from route_lists import data_files, parse_route_args, ranked, read_route_predictions, route_parser, write_lists

EVENT_WEIGHTS = {"view": 1.0, "save": 3.0, "cook": 5.0}


def scan_events(uri, users: pa.Array):
    """Stream the day's events once: (popularity per recipe id, this shard's events as
    (user_id, recipe_id, weight) arrays). Only view/save/cook events of a recipe count."""
    fs, files = data_files(uri)
    source = ds.dataset(files, filesystem=fs, format="parquet")
    wanted = pc.field("event_type").isin(list(EVENT_WEIGHTS)) & pc.field("recipe_id").is_valid()
    types = pa.array(list(EVENT_WEIGHTS))
    weights = np.array(list(EVENT_WEIGHTS.values()))
    popularity = np.zeros(0)
    own_users, own_recipes, own_weights = [], [], []
    for batch in source.to_batches(
        columns=["user_id", "event_type", "recipe_id"], filter=wanted, use_threads=False, batch_readahead=1, fragment_readahead=1
    ):
        if batch.num_rows == 0:
            continue
        recipe = batch.column("recipe_id").to_numpy()
        weight = weights[pc.index_in(pc.cast(batch.column("event_type"), pa.string()), value_set=types).to_numpy()]
        counted = np.bincount(recipe, weights=weight)
        if len(counted) > len(popularity):
            popularity = np.pad(popularity, (0, len(counted) - len(popularity)))
        popularity[: len(counted)] += counted
        mine = pc.is_in(batch.column("user_id"), value_set=users).to_numpy(zero_copy_only=False)
        if mine.any():
            own_users.append(batch.column("user_id").to_numpy()[mine])
            own_recipes.append(recipe[mine])
            own_weights.append(weight[mine])
    join = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
    return popularity, join(own_users, np.int64), join(own_recipes, np.int64), join(own_weights, np.float64)


def top_k_lists(users: pa.Array, popularity, ev_users, ev_recipes, ev_weights, k: int):
    """(recipe_ids list<int64> aligned with `users`, how many came from the user's own events)."""
    n = len(users)
    width = max(len(popularity), int(ev_recipes.max()) + 1 if len(ev_recipes) else 0, 1)
    # the user's own recipes: score per (user, recipe), best k per user
    row = pc.index_in(pa.array(ev_users), value_set=users).to_numpy().astype(np.int64)
    pairs, inverse = np.unique(row * width + ev_recipes, return_inverse=True)
    score = np.bincount(inverse, weights=ev_weights)
    pair_row, pair_recipe = pairs // width, pairs % width
    order = np.lexsort((pair_recipe, -score, pair_row))
    pair_row, pair_recipe = pair_row[order], pair_recipe[order]
    slot = np.arange(len(pair_row)) - np.searchsorted(pair_row, pair_row, side="left")
    top = slot < k
    own_row, own_recipe, own_slot = pair_row[top], pair_recipe[top], slot[top]
    n_own = np.bincount(own_row, minlength=n)
    # filled up with the day's most popular recipes that are not already on the user's list
    candidates = np.lexsort((np.arange(len(popularity)), -popularity))[: 2 * k]
    candidates = candidates[popularity[candidates] > 0]
    column_of = np.full(width, -1, np.int64)
    column_of[candidates] = np.arange(len(candidates))
    free = np.ones((n, len(candidates)), bool)
    listed = column_of[own_recipe] >= 0
    free[own_row[listed], column_of[own_recipe[listed]]] = False
    place = np.cumsum(free, axis=1, dtype=np.int16)
    fill_row, fill_col = np.nonzero(free & (place <= (k - n_own)[:, None]))
    fill_slot = n_own[fill_row] + place[fill_row, fill_col] - 1
    all_row = np.concatenate([own_row, fill_row])
    all_slot = np.concatenate([own_slot, fill_slot])
    all_recipe = np.concatenate([own_recipe, candidates[fill_col]])
    order = np.lexsort((all_slot, all_row))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(all_row, minlength=n))]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(all_recipe[order], pa.int64()))
    return lists, n_own


def main(argv=None):
    parser = route_parser(__doc__, events=True)
    parser.add_argument("--top-k", type=int, default=10)
    args, classes = parse_route_args(parser, "weekly_menu", argv)

    rows = ranked(read_route_predictions(args.input, classes, args.row_start, args.row_end))
    users = rows.column("user_id").combine_chunks()
    popularity, ev_users, ev_recipes, ev_weights = scan_events(args.events, users)
    recipe_ids, n_own = top_k_lists(users, popularity, ev_users, ev_recipes, ev_weights, args.top_k)
    trending = pc.list_value_length(recipe_ids).to_numpy(zero_copy_only=False) - n_own
    message = pc.binary_join_element_wise(
        "Your weekly menu: ",
        pa.array(n_own).cast(pa.string()),
        " of your own favourites and ",
        pa.array(trending).cast(pa.string()),
        " trending recipes",
        "",
    )
    written = write_lists(args.output, rows, classes, args.row_start or 0, args.campaign, recipe_ids, message)
    print(
        f"weekly_menu rows_in={rows.num_rows} events_kept={len(ev_users)} recipes={int((popularity > 0).sum())} "
        + " ".join(f"{k}={v}" for k, v in written.items())
    )


if __name__ == "__main__":
    main()
