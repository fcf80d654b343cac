"""Pod entrypoint of the `win_back` route: a ranked list of dormant users, each with a win-back offer.

    win_back.py --input URI --output URI --classes dormant [--campaign win_back]
                [--row-start N --row-end N]

--input, --classes and --row-start/--row-end pick the route's rows (a shard of it) from the
predictions partition, and OUTPUT gets the lists in the schema every route writes: both as
route_lists.py says (recipe_ids is empty: no recipes).

The lightest route: nothing else is read. Users are ranked by confidence; the offer follows
how sure the model is that the user is dormant (the surer, the stronger the offer).
"""

import numpy as np
import pyarrow as pa
from route_lists import parse_route_args, ranked, read_route_predictions, route_parser, write_lists

# (lowest confidence, offer): the first band the confidence reaches, strongest first
OFFERS = [
    (0.8, "We miss you: 3 months of Premium at half price"),
    (0.5, "Your saved recipes are waiting: 1 month of Premium free"),
    (0.0, "New this week: open the app for a free 7-day meal plan"),
]


def main(argv=None):
    args, classes = parse_route_args(route_parser(__doc__), "win_back", argv)

    rows = ranked(read_route_predictions(args.input, classes, args.row_start, args.row_end))
    confidence = rows.column("confidence").to_numpy()
    band = np.searchsorted(-np.array([low for low, _ in OFFERS]), -confidence, side="left").clip(max=len(OFFERS) - 1)
    message = pa.array([text for _, text in OFFERS]).take(pa.array(band))
    recipe_ids = pa.ListArray.from_arrays(pa.array(np.zeros(rows.num_rows + 1, np.int32)), pa.array([], pa.int64()))
    written = write_lists(args.output, rows, classes, args.row_start or 0, args.campaign, recipe_ids, message)
    print(f"win_back rows_in={rows.num_rows} " + " ".join(f"{k}={v}" for k, v in written.items()))


if __name__ == "__main__":
    main()
