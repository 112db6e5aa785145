"""The journal and a submit committed on its own (`Store.submit`'s `alone`): it may go alone
only while nothing awaits a commit in the loop iteration, and its reply says stored
whatever becomes of the commit the others of that iteration wait for."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from bgjobd.journal import Journal
from bgjobs.errors import StoreUnavailable


class FailingStore:
    """A store whose commits fail (`failing`), as the journal sees it."""

    def __init__(self) -> None:
        self.on_begin: Callable[[], None] | None = None
        self.rollbacks = 0
        self.commit_within = 0.002
        self.failing = False
        self.commits = 0

    def commit(self) -> None:
        self.commits += 1
        if self.failing:
            raise OSError("the server went away")

    def rollback(self) -> None:
        pass

    def redo_kept_writes(self) -> int:
        return 0

    def checkpoint_soon(self) -> None:
        pass


def run(scenario: Callable[[Journal, FailingStore], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        store = FailingStore()
        journal = Journal(store, on_error=lambda message: None)
        try:
            await scenario(journal, store)
        finally:
            journal.close()

    asyncio.run(main())


def test_only_the_first_submit_of_an_iteration_may_go_alone() -> None:
    async def scenario(journal: Journal, store: FailingStore) -> None:
        answers: list[BaseException | None] = []
        assert journal.alone()
        journal.when_committed(answers.append, durable=True)
        assert not journal.alone()  # the next one shares the iteration's commit
        journal.when_committed(answers.append)
        done = asyncio.get_running_loop().create_future()
        journal.after_commit(lambda: done.set_result(None))
        await done
        assert answers == [None, None] and store.commits == 1
        assert journal.alone()

    run(scenario)


def test_a_submit_committed_alone_is_told_stored_when_the_shared_commit_fails() -> None:
    async def scenario(journal: Journal, store: FailingStore) -> None:
        answers: list[BaseException | None] = []
        told = asyncio.get_running_loop().create_future()

        def answered(answer: BaseException | None) -> None:
            answers.append(answer)
            if len(answers) == 2:
                told.set_result(None)

        store.failing = True
        journal.when_committed(answered, durable=True)
        journal.when_committed(answered)
        await told
        assert answers[0] is None
        assert isinstance(answers[1], StoreUnavailable)
        assert journal.stalled is not None and not journal.alone()

    run(scenario)
