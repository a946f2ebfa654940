"""Mutations of real EXI streams for fuzzing: bit flips, truncation, extension, inserted and deleted
bytes, runs of 0xff that turn into huge length fields, splices of two streams, random bodies."""


def mutate(data, rnd, corpus=None):
    data = bytearray(data)
    op = rnd.randrange(8)
    if op == 0 and data:  # flip 1-4 bits
        for _ in range(rnd.randint(1, 4)):
            i = rnd.randrange(len(data) * 8)
            data[i >> 3] ^= 0x80 >> (i & 7)
    elif op == 1 and data:  # truncate
        del data[rnd.randrange(len(data)):]
    elif op == 2:  # extend with random bytes
        data += bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 64)))
    elif op == 3 and data:  # a run of 0xff / 0x7f: long unsigned integers, lengths beyond the stream
        i = rnd.randrange(len(data))
        n = rnd.randint(1, 12)
        data[i:i + n] = bytes([rnd.choice((0xFF, 0x7F, 0xFE))]) * n
    elif op == 4 and data:  # insert random bytes
        i = rnd.randrange(len(data))
        data[i:i] = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 8)))
    elif op == 5 and len(data) > 2:  # delete a range
        i = rnd.randrange(1, len(data))
        del data[i:i + rnd.randint(1, 8)]
    elif op == 6 and corpus:  # splice with another stream
        other = rnd.choice(corpus)
        i = rnd.randrange(len(data) + 1)
        j = rnd.randrange(len(other) + 1)
        data = data[:i] + bytearray(other[j:])
    else:  # random body behind a valid header
        data = bytearray(b"\x80") + bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 200)))
    return bytes(data)
