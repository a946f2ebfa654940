# evpilot.compat: the ticks helpers must wrap like MicroPython's time.ticks_* on both interpreters, because
# every protocol timer compares times through them.

from evpilot.compat import MICROPYTHON, TICKS_PERIOD, const, ticks_add, ticks_diff

_LAST = TICKS_PERIOD - 1


def test_ticks_diff_plain():
    assert ticks_diff(1500, 1000) == 500
    assert ticks_diff(1000, 1500) == -500
    assert ticks_diff(7, 7) == 0


def test_ticks_diff_across_wrap_around():
    # 10 ms after the counter wrapped is still 20 ms after 10 ms before the wrap, in both directions.
    before = _LAST - 9
    after = 10
    assert ticks_diff(after, before) == 20
    assert ticks_diff(before, after) == -20
    # The range is half the period either way: the largest positive and negative differences.
    assert ticks_diff(TICKS_PERIOD // 2 - 1, 0) == TICKS_PERIOD // 2 - 1
    assert ticks_diff(TICKS_PERIOD // 2, 0) == -(TICKS_PERIOD // 2)


def test_ticks_add_wraps_and_inverts_diff():
    assert ticks_add(_LAST, 1) == 0
    assert ticks_add(0, -1) == _LAST
    for start in (0, 12345, _LAST - 3, _LAST):
        for delta in (0, 1, 4, 1000, -1000, TICKS_PERIOD // 2 - 1, -(TICKS_PERIOD // 2)):
            t = ticks_add(start, delta)
            assert 0 <= t <= _LAST
            assert ticks_diff(t, start) == delta


def test_const_and_interpreter_flag():
    import sys

    assert const(42) == 42
    assert MICROPYTHON == (sys.implementation.name == "micropython")
