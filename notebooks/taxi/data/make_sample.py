"""Generate a small, synthetic NYC green-taxi trip sample for the taxi example pipeline.

The output mimics the layout of the TLC "green_tripdata_2019-01.csv" file (same
columns, same encodings, same kind of dirt) but every value is drawn from a
seeded random generator, so no network access is needed and re-running the
script produces a byte-for-byte identical file.

Usage:
    python make_sample.py            # writes green_tripdata_2019-01_sample.csv.gz next to this script
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20190101
N_ROWS = 3_000
OUTPUT = Path(__file__).resolve().with_name("green_tripdata_2019-01_sample.csv.gz")

COLUMNS = [
    "VendorID",
    "lpep_pickup_datetime",
    "lpep_dropoff_datetime",
    "store_and_fwd_flag",
    "RatecodeID",
    "PULocationID",
    "DOLocationID",
    "passenger_count",
    "trip_distance",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "ehail_fee",
    "improvement_surcharge",
    "total_amount",
    "payment_type",
    "trip_type",
    "congestion_surcharge",
]

# Busy green-taxi zones (Harlem, upper Manhattan, Queens and Brooklyn), used for
# most pickups; the rest are drawn from all 265 TLC zones.
HOT_PICKUP_ZONES = np.array(
    [74, 75, 41, 42, 166, 82, 7, 129, 255, 97, 65, 181, 95, 260, 244, 116, 152, 43, 25, 33, 49, 61, 189, 226, 112]
)
HOT_DROPOFF_ZONES = np.array(
    [74, 75, 41, 42, 166, 82, 7, 129, 255, 97, 236, 237, 263, 161, 170, 230, 48, 140, 238, 151, 256, 112, 223, 17]
)

# Relative pickup volume per hour of day (quiet at night, peak in the evening).
HOURLY_WEIGHTS = np.array(
    [3.0, 2.2, 1.6, 1.2, 1.0, 1.0, 1.8, 3.2, 4.2, 4.3, 4.0, 4.1,
     4.3, 4.5, 4.8, 5.2, 5.6, 5.9, 6.0, 5.6, 5.0, 4.6, 4.2, 3.6]
)


def _zones(rng: np.random.Generator, hot: np.ndarray, n: int, p_hot: float) -> np.ndarray:
    from_hot = rng.random(n) < p_hot
    return np.where(from_hot, rng.choice(hot, size=n), rng.integers(1, 266, size=n))


def make_sample(seed: int = SEED, n: int = N_ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)

    # --- when -----------------------------------------------------------------
    start = pd.Timestamp("2019-01-01 00:00:00")
    end = pd.Timestamp("2019-02-01 00:00:00")
    day = rng.integers(0, 31, size=n)
    hour = rng.choice(24, size=n, p=HOURLY_WEIGHTS / HOURLY_WEIGHTS.sum())
    second_of_hour = rng.integers(0, 3600, size=n)
    pickup = start + pd.to_timedelta(day * 86_400 + hour * 3_600 + second_of_hour, unit="s")

    # --- how far and how long ---------------------------------------------------
    distance = np.clip(rng.lognormal(mean=np.log(2.0), sigma=0.8, size=n), 0.05, 35.0).round(2)
    speed_mph = np.clip(rng.lognormal(mean=np.log(11.0), sigma=0.35, size=n), 3.0, 40.0)
    minutes = distance / speed_mph * 60 + rng.uniform(0.5, 3.0, size=n)

    # Dirt: GPS / meter glitches with a recorded distance of exactly zero.
    zero_distance = rng.random(n) < 0.02
    distance[zero_distance] = 0.0
    minutes[zero_distance] = rng.uniform(0.2, 4.0, size=zero_distance.sum())

    duration = pd.to_timedelta(np.round(minutes * 60).astype(np.int64), unit="s")
    # Keep the whole trip inside January: trips that would end in February are
    # moved back so that they end one second before midnight.
    overflow = pickup + duration >= end
    pickup = pickup.where(~overflow, end - pd.Timedelta(seconds=1) - duration)
    dropoff = pickup + duration

    # --- who and where ----------------------------------------------------------
    vendor = np.where(rng.random(n) < 0.82, 2, 1)
    store_and_fwd = np.where(rng.random(n) < 0.996, "N", "Y")
    ratecode = rng.choice([1, 5, 2, 4, 3], size=n, p=[0.925, 0.06, 0.006, 0.006, 0.003])
    trip_type = np.where(ratecode == 5, 2, 1)
    pu_zone = _zones(rng, HOT_PICKUP_ZONES, n, p_hot=0.8)
    do_zone = _zones(rng, HOT_DROPOFF_ZONES, n, p_hot=0.6)
    passengers = rng.choice([1, 2, 3, 4, 5, 6], size=n, p=[0.84, 0.08, 0.02, 0.008, 0.037, 0.015])
    # Dirt: drivers who did not key in the passenger count.
    passengers[rng.random(n) < 0.015] = 0

    # --- money ----------------------------------------------------------------
    metered = ratecode != 5
    fare = np.where(metered, 2.5 + 2.0 * distance + 0.3 * minutes, rng.integers(5, 31, size=n).astype(float))
    fare = np.where(ratecode == 2, 52.0, fare)  # JFK flat fare
    fare = np.round(fare * 2) / 2  # the meter ticks in 50 cent steps

    pickup_hour = pickup.hour.to_numpy()
    weekday = pickup.day_of_week.to_numpy() < 5
    extra = np.select(
        [~metered, (pickup_hour >= 20) | (pickup_hour < 6), weekday & (pickup_hour >= 16)],
        [0.0, 0.5, 1.0],
        default=0.0,
    )
    mta_tax = np.where(metered, 0.5, 0.0)
    improvement_surcharge = np.where(metered, 0.3, 0.0)
    tolls = np.where(rng.random(n) < 0.02, 5.76, 0.0)

    payment = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.52, 0.46, 0.012, 0.006, 0.002])
    tip_rate = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0.12, 0.30, size=n))
    tip = np.where(payment == 1, np.round((fare + extra) * tip_rate, 2), 0.0)

    total = np.round(fare + extra + mta_tax + tip + tolls + improvement_surcharge, 2)

    # Congestion surcharge only started on 2019-02-02: blank in January, a few zeros.
    congestion = np.where(rng.random(n) < 0.01, 0.0, np.nan)

    frame = pd.DataFrame(
        {
            "VendorID": pd.array(vendor, dtype="Int64"),
            "lpep_pickup_datetime": pickup.strftime("%Y-%m-%d %H:%M:%S"),
            "lpep_dropoff_datetime": dropoff.strftime("%Y-%m-%d %H:%M:%S"),
            "store_and_fwd_flag": pd.array(store_and_fwd, dtype="string"),
            "RatecodeID": pd.array(ratecode, dtype="Int64"),
            "PULocationID": pu_zone,
            "DOLocationID": do_zone,
            "passenger_count": pd.array(passengers, dtype="Int64"),
            "trip_distance": distance,
            "fare_amount": fare,
            "extra": extra,
            "mta_tax": mta_tax,
            "tip_amount": tip,
            "tolls_amount": tolls,
            "ehail_fee": np.nan,
            "improvement_surcharge": improvement_surcharge,
            "total_amount": total,
            "payment_type": pd.array(payment, dtype="Int64"),
            "trip_type": pd.array(trip_type, dtype="Int64"),
            "congestion_surcharge": congestion,
        },
        columns=COLUMNS,
    )

    # Dirt: a handful of records from devices that only send the trip itself, as
    # in the real TLC files (vendor, passenger count, rate code, payment type,
    # trip type and store-and-forward flag all blank).
    blank = rng.choice(n, size=12, replace=False)
    for column in ["VendorID", "store_and_fwd_flag", "RatecodeID", "passenger_count", "payment_type", "trip_type"]:
        frame.loc[blank, column] = pd.NA

    return frame.sort_values("lpep_pickup_datetime", kind="stable").reset_index(drop=True)


def main() -> None:
    csv_bytes = make_sample().to_csv(index=False, lineterminator="\n").encode("utf-8")
    # mtime=0 and no embedded file name keep the gzip stream reproducible.
    OUTPUT.write_bytes(gzip.compress(csv_bytes, compresslevel=9, mtime=0))
    print(f"wrote {OUTPUT.name}: {OUTPUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
