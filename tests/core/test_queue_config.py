"""`[queues.NAME]` and the keys that name a queue: each error names its key."""

from __future__ import annotations

import pytest

from bgjobs.config import Config, parse_settings
from bgjobs.errors import ConfigError

ALLOWED = 'allowed_jobs = { Echo = ["handle"] }\n'


def config(text: str) -> Config:
    return Config(parse_settings(ALLOWED + text), None)


def test_each_queue_has_its_workers_and_the_daemons_pool_is_default() -> None:
    loaded = config(
        "[daemon]\nworkers = 3\n[queues.slow]\nworkers = 2\n[queues.remote]\nworkers = 0\n"
        '[jobs.Echo]\nqueue = "slow"\n'
    )
    assert loaded.queue_workers == {"default": 3, "slow": 2, "remote": 0}
    assert loaded.workers == 5
    assert loaded.queue_of("Echo") == "slow"
    assert loaded.queue_of("Other") == "default"
    assert loaded.knows_queue("remote") and not loaded.knows_queue("nowhere")


def test_queues_default_may_stand_for_daemon_workers() -> None:
    loaded = config("[queues.default]\nworkers = 0\n[queues.slow]\nworkers = 1\n")
    assert loaded.queue_workers == {"default": 0, "slow": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[jobs.Echo]\nqueue = "slow"\n', "jobs.Echo.queue: no queue 'slow' (add [queues.slow])"),
        ("[queues.slow]\n", "queues.slow: Object missing required field `workers`"),
        ("[queues.slow]\nworkers = -1\n", "queues.slow.workers: Expected `int` >= 0"),
        ("[queues.slow]\nworkers = 1\nthreads = 2\n", "queues.slow.threads: unknown key"),
        ('[queues."a b"]\nworkers = 1\n', "queues.a b: a queue name is letters, digits"),
        (
            "[daemon]\nworkers = 2\n[queues.default]\nworkers = 1\n",
            "queues.default: the default queue's workers are daemon.workers",
        ),
        ("[queues.default]\nworkers = 0\n", "queues: every queue has 0 workers"),
        (
            '[schedules.tick]\ncron = "@hourly"\nclass = "Echo"\nmethod = "handle"\n'
            'queue = "slow"\n',
            "schedules.tick.queue: no queue 'slow'",
        ),
    ],
)
def test_a_bad_queue_setting_names_its_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config(text)
    assert message in str(raised.value)
