from __future__ import annotations

import math
import random

import pytest

from loadtests import Histogram
from loadtests._histogram import bucket_bounds, bucket_of


def test_every_value_lands_in_a_bucket_whose_bounds_contain_it_within_one_percent():
    rng = random.Random(5)
    values = [0, 1, 255, 256, 257, 511, 512, 10**6, 3_600_000_000]
    values += [rng.randrange(0, 10**9) for _ in range(2000)]
    for value in values:
        low, high = bucket_bounds(bucket_of(value))
        assert low <= value <= high
        assert high - low <= max(0, value) / 100


def test_bucket_indices_are_contiguous_and_ordered():
    previous_high = -1
    for index in range(0, 3000):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1
        previous_high = high


def test_percentiles_agree_with_exact_ranks_to_one_percent():
    rng = random.Random(7)
    values = sorted(int(rng.lognormvariate(9, 1.2)) for _ in range(20_000))
    histogram = Histogram.of(values)
    for q in (50, 90, 99, 99.9):
        exact = values[max(0, math.ceil(len(values) * q / 100) - 1)]
        got = histogram.percentile(q)
        assert got is not None
        assert exact <= got <= exact * 1.01 + 1
    assert histogram.percentile(100) == values[-1]
    assert histogram.percentile(0) == values[0]


def test_merged_histograms_equal_one_histogram_of_all_values():
    rng = random.Random(3)
    a_values = [rng.randrange(0, 50_000) for _ in range(3000)]
    b_values = [rng.randrange(1000, 900_000) for _ in range(1000)]
    merged = Histogram.of(a_values)
    merged.merge(Histogram.from_dict(Histogram.of(b_values).to_dict()))
    whole = Histogram.of(a_values + b_values)
    assert merged == whole
    assert merged.total == 4000
    assert merged.min_value == min(a_values + b_values)
    assert merged.max_value == max(a_values + b_values)


def test_an_empty_histogram_has_no_percentiles_and_bad_quantiles_are_refused():
    assert Histogram().percentile(50) is None
    assert Histogram().mean() is None
    with pytest.raises(ValueError, match=r"0\.\.100"):
        Histogram.of([1]).percentile(101)
