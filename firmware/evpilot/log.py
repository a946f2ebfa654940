# The application's log: levels and a ring of the last lines.
#
# How this works: Log(size, level, echo, clock) keeps the last `size` lines in a preallocated ring, each
# "ms LEVEL text" (ms from `clock`, the adapters' monotonic milliseconds by default); lines below `level`
# are not formatted at all. lines() gives them oldest first (the provisioning service's "log" command reads
# them); add(line) stores a line made elsewhere; echo, when given, also gets every line as it is stored (the
# unix board writes them to stderr). debug() tests the level before the call formats anything.

from evpilot.compat import const

DEBUG = const(0)
INFO = const(1)
WARN = const(2)
ERROR = const(3)
LEVEL_NAMES = ("debug", "info", "warn", "error")


class Log:
    """Levels and a ring buffer of the last `size` lines; lines() oldest first; add(line) for others."""

    def __init__(self, size=64, level=INFO, echo=None, clock=None):
        self.size = size
        self.level = level
        self.echo = echo
        if clock is None:
            from evpilot.aio.stream import now_ms as clock
        self.clock = clock
        self._ring = [None] * size
        self._next = 0
        self.count = 0

    def add(self, text):
        self._ring[self._next] = text
        self._next = (self._next + 1) % self.size
        self.count += 1
        if self.echo is not None:
            self.echo(text)

    def log(self, level, text):
        if level >= self.level:
            self.add("%d %s %s" % (self.clock(), LEVEL_NAMES[level], text))

    def debug(self, text):
        if self.level <= DEBUG:
            self.log(DEBUG, text)

    def info(self, text):
        self.log(INFO, text)

    def warn(self, text):
        self.log(WARN, text)

    def error(self, text):
        self.log(ERROR, text)

    def lines(self):
        if self.count < self.size:
            return self._ring[:self.count]
        return self._ring[self._next:] + self._ring[:self._next]
