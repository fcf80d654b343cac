"""Writes the customer_value pipeline's fixtures: a small synthetic web shop.

    python include/data/customer_value/make_fixtures.py [--out DIR]

Deterministic (numpy, fixed seed): re-running it rewrites the same bytes. Outputs, CSV with
a header and dates as YYYY-MM-DD, next to this file:
- customers.csv     customer_key, country, signup_date, channel      (warehouse shop.customers)
- orders.csv        order_id, customer_key, order_date, amount, items, category
                                                                     (warehouse shop.orders)
- value_labels.csv  ds, customer_key, value_class                    (lake source value_labels)

Each customer has a hidden value class that drives how often they order, how much and
what; per-customer noise keeps the classes overlapping. Orders cover FIRST_ORDER_DAY ..
LAST_DAY: the 28-day look-back window of every labelled day (LABEL_DAYS). About 30% of
the customers get a label per labelled day, a few of them wrong (hand labelling).
"""

import argparse
import csv
from datetime import date, timedelta
from pathlib import Path

import numpy as np

SEED = 20261101
CUSTOMERS = 1500
CLASSES = ("vip", "loyal", "occasional", "lapsed")
CLASS_SHARE = (0.10, 0.25, 0.35, 0.30)
WINDOW_DAYS = 28  # the look-back of include/sql/customer_value/daily_orders.sql
LABEL_DAYS = [date(2026, 11, 1) + timedelta(days=i) for i in range(7)]
FIRST_ORDER_DAY = LABEL_DAYS[0] - timedelta(days=WINDOW_DAYS - 1)
LAST_DAY = LABEL_DAYS[-1]
LABEL_SHARE = 0.30
LABEL_NOISE = 0.03

COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "GB")
COUNTRY_SHARE = (0.30, 0.20, 0.12, 0.14, 0.12, 0.12)
CHANNELS = ("web", "app", "marketplace")
CATEGORIES = ("electronics", "fashion", "home", "beauty", "grocery", "sports")

# per class: orders per day, median order amount, extra items per order, channel mix, category mix
BEHAVIOUR = {
    "vip": (0.60, 170.0, 2.5, (0.30, 0.60, 0.10), (0.30, 0.25, 0.15, 0.15, 0.05, 0.10)),
    "loyal": (0.22, 75.0, 1.5, (0.40, 0.45, 0.15), (0.15, 0.20, 0.15, 0.15, 0.25, 0.10)),
    "occasional": (0.08, 45.0, 1.0, (0.55, 0.20, 0.25), (0.15, 0.25, 0.20, 0.10, 0.15, 0.15)),
    "lapsed": (0.01, 30.0, 0.8, (0.50, 0.15, 0.35), (0.20, 0.25, 0.20, 0.10, 0.10, 0.15)),
}
RATE_NOISE, SPEND_NOISE = 0.4, 0.25  # sigma of the per-customer lognormal factors
SIGNUP_FIRST, SIGNUP_LAST = date(2023, 1, 1), date(2026, 9, 30)


def generate():
    rng = np.random.default_rng(SEED)
    keys = [f"C-{i:06d}" for i in range(1, CUSTOMERS + 1)]
    klass = rng.choice(len(CLASSES), size=CUSTOMERS, p=CLASS_SHARE)
    country = rng.choice(len(COUNTRIES), size=CUSTOMERS, p=COUNTRY_SHARE)
    span = (SIGNUP_LAST - SIGNUP_FIRST).days
    # long-standing customers are likelier to be vip or lapsed
    age = np.where(np.isin(klass, (0, 3)), rng.beta(2.0, 1.4, CUSTOMERS), rng.beta(1.4, 1.6, CUSTOMERS))
    signup = [SIGNUP_LAST - timedelta(days=int(a * span)) for a in age]
    channel = [rng.choice(len(CHANNELS), p=BEHAVIOUR[CLASSES[k]][3]) for k in klass]
    customers = [(keys[i], COUNTRIES[country[i]], signup[i].isoformat(), CHANNELS[channel[i]]) for i in range(CUSTOMERS)]

    rate = np.array([BEHAVIOUR[CLASSES[k]][0] for k in klass]) * rng.lognormal(0.0, RATE_NOISE, CUSTOMERS)
    spend = np.array([BEHAVIOUR[CLASSES[k]][1] for k in klass]) * rng.lognormal(0.0, SPEND_NOISE, CUSTOMERS)
    orders = []
    day = FIRST_ORDER_DAY
    while day <= LAST_DAY:
        counts = rng.poisson(rate)
        for i in np.flatnonzero(counts):
            behaviour = BEHAVIOUR[CLASSES[klass[i]]]
            for _ in range(counts[i]):
                amount = round(float(spend[i] * rng.lognormal(0.0, 0.5)), 2)
                items = 1 + int(rng.poisson(behaviour[2]))
                category = CATEGORIES[rng.choice(len(CATEGORIES), p=behaviour[4])]
                orders.append([keys[i], day.isoformat(), amount, items, category])
        day += timedelta(days=1)
    orders = [[f"O-{n:08d}", *row] for n, row in enumerate(orders, start=1)]

    labels = []
    for day in LABEL_DAYS:
        for i in np.flatnonzero(rng.random(CUSTOMERS) < LABEL_SHARE):
            label = klass[i]
            if rng.random() < LABEL_NOISE:
                label = rng.integers(len(CLASSES))
            labels.append((day.isoformat(), keys[i], CLASSES[label]))
    return customers, orders, labels


def write_csv(path: Path, header, rows):
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    print(f"{path}: {len(rows)} rows, {path.stat().st_size} bytes")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    customers, orders, labels = generate()
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "customers.csv", ("customer_key", "country", "signup_date", "channel"), customers)
    write_csv(args.out / "orders.csv", ("order_id", "customer_key", "order_date", "amount", "items", "category"), orders)
    write_csv(args.out / "value_labels.csv", ("ds", "customer_key", "value_class"), labels)


if __name__ == "__main__":
    main()
