"""Stage timers: seconds per stage, captured where work ran and added where its result arrives."""

import threading
import time

from dawnchorus import stages


def test_stages_sum_here_and_arrive_from_workers_in_data_flow_order():
    before = stages.snapshot()
    with stages.timed("network"):
        time.sleep(0.02)
    captured = {}

    def worker():  # a decoding thread: its seconds travel with its result
        with stages.collect() as seconds:
            with stages.timed("read"):
                time.sleep(0.01)
        captured.update(seconds)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert set(stages.since(before)) == {"network"}  # not added until the result arrives
    stages.add(captured)
    spent = stages.since(before)
    assert list(spent) == ["read", "network"]
    assert spent["read"] >= 0.01 and spent["network"] >= 0.02
    assert "read" in stages.describe(spent)
