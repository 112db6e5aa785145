"""`rate_limit` and `limit_by` in the configuration, and the limit key a submit stores."""

from __future__ import annotations

import time

import pytest

from bgjobd import submission
from bgjobs.config import Config, parse_settings
from bgjobs.errors import BadParams, ConfigError
from bgjobs.model import JobSpec
from bgjobs.rates import Rate, parse_rate

ALLOWED = '[allowed_jobs]\nSync = ["run"]\n'


def spec(params: list[object]) -> JobSpec:
    return JobSpec(class_name="Sync", method="run", params=params)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("5/s", Rate(5, 1.0)), ("300/m", Rate(300, 60.0)), (" 1 / h ", Rate(1, 3600.0))],
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('rate_limit = "0/s"', "jobs.Sync.rate_limit: '0/s' is not a rate"),
        ('rate_limit = "5/sec"', "jobs.Sync.rate_limit: '5/sec' is not a rate"),
        ('rate_limit = "1.5/s"', "jobs.Sync.rate_limit: '1.5/s' is not a rate"),
        ("rate_limit = 5", "jobs.Sync.rate_limit: Expected `str | null`, got `int`"),
        ("limit_by = -1", "jobs.Sync.limit_by: Expected `int` >= 0"),
        ("limit_by = 0", "jobs.Sync.limit_by: counts rate_limit, max_concurrency or overlap"),
    ],
)
def test_bad_rates_and_keys_name_the_key(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^bgjobs.toml: " + message.replace("|", r"\|")):
        parse_settings(f"{ALLOWED}[jobs.Sync]\n{table}\n")


def test_the_config_gives_rates_and_keys() -> None:
    settings = parse_settings(f'{ALLOWED}[jobs.Sync]\nrate_limit = "10/m"\nlimit_by = 1\n')
    config = Config(settings, None)
    assert config.rate_limits == {"Sync": Rate(10, 60.0)}
    assert config.limit_by_of("Sync") == 1
    row = submission.build(config, spec(["full", 17]), time.time(), "me")[0]
    other = submission.build(config, spec(["fast", 42]), time.time(), "me")[0]
    same = submission.build(config, spec(["fast", 17]), time.time(), "me")[0]
    assert row.limit_key and row.limit_key == same.limit_key != other.limit_key
    with pytest.raises(BadParams, match=r"Sync counts its limits per parameter 1 \(jobs.Sync"):
        submission.build(config, spec(["full"]), time.time(), "me")


def test_a_class_without_limit_by_counts_as_one() -> None:
    config = Config(parse_settings(f'{ALLOWED}[jobs.Sync]\nrate_limit = "1/s"\n'), None)
    row = submission.build(config, spec([1]), time.time(), "me")[0]
    assert row.limit_key == ""
