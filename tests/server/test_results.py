"""ResultRecorder: the first result a node sends for a session counts, and results are
recorded one at a time, in the order they came."""

from hatchway.server.results import ResultRecorder, SessionResult


def result(session_id, output, instance_id="mi-1"):
    return SessionResult(session_id, instance_id, "Failed", output)


def test_the_first_result_of_a_session_counts():
    recorder = ResultRecorder()
    first, again = result("s", "first"), result("s", "second")
    assert recorder.received(first)
    assert not recorder.received(again)
    assert recorder.next() is first
    recorder.recorded(first)
    assert recorder.next() is None
    # Recorded or not, a repeat never counts.
    assert not recorder.received(result("s", "third"))


def test_results_come_out_in_the_order_they_arrived():
    recorder = ResultRecorder()
    results = [result(f"s{n}", str(n)) for n in range(5)]
    for item in results:
        assert recorder.received(item)
    out = []
    while (item := recorder.next()) is not None:
        assert recorder.next() is item  # stays first until recorded: a failure retries it
        recorder.recorded(item)
        out.append(item)
    assert out == results and len(recorder) == 0


def test_another_nodes_result_does_not_shadow_the_targets():
    recorder = ResultRecorder()
    assert recorder.received(result("s", "forged", instance_id="mi-2"))
    assert recorder.received(result("s", "real", instance_id="mi-1"))


def test_memory_of_results_is_bounded():
    recorder = ResultRecorder(remembered=2)
    for name in ("a", "b", "c"):
        assert recorder.received(result(name, name))
    assert not recorder.received(result("c", "again"))
    assert recorder.received(result("a", "forgotten"))  # the database check stands behind
