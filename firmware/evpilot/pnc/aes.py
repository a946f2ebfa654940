# AES-128-CBC without padding, for ISO 15118-2 contract-key transport (48 bytes: IV || 2 blocks).
#
# How this works
# --------------
# Three back ends, picked once at import in this order of preference:
#   "cryptolib"     MicroPython's cryptolib.aes(key, 2, iv) (mode 2 = CBC), where the port has it;
#   "cryptography"  the `cryptography` package on CPython, when importable;
#   "python"        a compact pure-Python AES-128 (FIPS-197): S-box generated on first use, key expansion,
#                   block encrypt and decrypt. Slow (about a millisecond per block on MicroPython) but only
#                   a few blocks are ever needed.
# encrypt_cbc / decrypt_cbc take an optional `backend` name so tests can force each path.
# Length errors are our own misuse (UsageError): callers check peer data before calling here.

from evpilot.errors import UsageError

try:
    import cryptolib as _cryptolib
except ImportError:
    try:
        import ucryptolib as _cryptolib
    except ImportError:
        _cryptolib = None

try:
    from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher, algorithms as _algs, modes as _modes
except ImportError:
    _Cipher = None

_MODE_CBC = 2  # cryptolib's mode number for CBC


def backends():
    """Names of the back ends usable here, preferred first."""
    found = []
    if _cryptolib is not None:
        found.append("cryptolib")
    if _Cipher is not None:
        found.append("cryptography")
    found.append("python")
    return found


BACKEND = backends()[0]


def _check(key, iv, data):
    if len(key) != 16:
        raise UsageError("AES-128 key must be 16 bytes, got %d" % len(key))
    if len(iv) != 16:
        raise UsageError("AES-CBC IV must be 16 bytes, got %d" % len(iv))
    if len(data) % 16:
        raise UsageError("AES-CBC data must be whole 16-byte blocks, got %d bytes" % len(data))


def encrypt_cbc(key, iv, data, backend=None):
    _check(key, iv, data)
    backend = backend or BACKEND
    if backend == "cryptolib":
        return bytes(_cryptolib.aes(bytes(key), _MODE_CBC, bytes(iv)).encrypt(bytes(data)))
    if backend == "cryptography":
        enc = _Cipher(_algs.AES(bytes(key)), _modes.CBC(bytes(iv))).encryptor()
        return enc.update(bytes(data)) + enc.finalize()
    if backend == "python":
        rk = _expand(key)
        out = bytearray(len(data))
        prev = bytes(iv)
        for i in range(0, len(data), 16):
            block = bytearray(16)
            for j in range(16):
                block[j] = data[i + j] ^ prev[j]
            prev = _encrypt_block(rk, block)
            out[i:i + 16] = prev
        return bytes(out)
    raise UsageError("unknown AES back end " + repr(backend))


def decrypt_cbc(key, iv, data, backend=None):
    _check(key, iv, data)
    backend = backend or BACKEND
    if backend == "cryptolib":
        return bytes(_cryptolib.aes(bytes(key), _MODE_CBC, bytes(iv)).decrypt(bytes(data)))
    if backend == "cryptography":
        dec = _Cipher(_algs.AES(bytes(key)), _modes.CBC(bytes(iv))).decryptor()
        return dec.update(bytes(data)) + dec.finalize()
    if backend == "python":
        rk = _expand(key)
        out = bytearray(len(data))
        prev = bytes(iv)
        for i in range(0, len(data), 16):
            block = bytes(data[i:i + 16])
            plain = _decrypt_block(rk, block)
            for j in range(16):
                out[i + j] = plain[j] ^ prev[j]
            prev = block
        return bytes(out)
    raise UsageError("unknown AES back end " + repr(backend))


# --- pure-Python AES-128 (FIPS-197) ---------------------------------------------------------------------
# The state is 16 bytes in input order, byte i = row i % 4, column i // 4 (FIPS-197 section 3.4).

_SBOX = None
_INV_SBOX = None
# ShiftRows as a byte permutation: new[i] = old[_SHIFT[i]] (row r moves left by r); _INV_SHIFT undoes it.
_SHIFT = bytes([(i + 4 * (i % 4)) % 16 for i in range(16)])
_INV_SHIFT = bytes([(i + 12 * (i % 4)) % 16 for i in range(16)])


def _xtime(a):
    a <<= 1
    return (a ^ 0x1B) & 0xFF if a & 0x100 else a


def _tables():
    # S-box from the multiplicative inverse in GF(2^8) and the affine map (FIPS-197 5.1.1), walking the
    # group with generator 3 (p) and its inverse (q = 1/p) together.
    global _SBOX, _INV_SBOX
    sbox = bytearray(256)
    p = q = 1
    while True:
        p = p ^ _xtime(p)
        q ^= (q << 1) & 0xFF
        q ^= (q << 2) & 0xFF
        q ^= (q << 4) & 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q
        for r in (1, 2, 3, 4):
            x ^= ((q << r) | (q >> (8 - r))) & 0xFF
        sbox[p] = x ^ 0x63
        if p == 1:
            break
    sbox[0] = 0x63
    inv = bytearray(256)
    for i in range(256):
        inv[sbox[i]] = i
    _SBOX, _INV_SBOX = bytes(sbox), bytes(inv)


def _expand(key):
    """The 11 round keys of AES-128 as 176 bytes (FIPS-197 5.2)."""
    if _SBOX is None:
        _tables()
    sbox = _SBOX
    w = bytearray(176)
    w[0:16] = key
    rcon = 1
    for i in range(16, 176, 4):
        t0, t1, t2, t3 = w[i - 4], w[i - 3], w[i - 2], w[i - 1]
        if i % 16 == 0:  # RotWord, SubWord, Rcon
            t0, t1, t2, t3 = sbox[t1] ^ rcon, sbox[t2], sbox[t3], sbox[t0]
            rcon = _xtime(rcon)
        w[i] = w[i - 16] ^ t0
        w[i + 1] = w[i - 15] ^ t1
        w[i + 2] = w[i - 14] ^ t2
        w[i + 3] = w[i - 13] ^ t3
    return w


def _add_round_key(s, rk, r):
    o = 16 * r
    for i in range(16):
        s[i] ^= rk[o + i]


def _mix_columns(s):
    for c in range(0, 16, 4):
        a0, a1, a2, a3 = s[c], s[c + 1], s[c + 2], s[c + 3]
        t = a0 ^ a1 ^ a2 ^ a3
        s[c] = a0 ^ t ^ _xtime(a0 ^ a1)
        s[c + 1] = a1 ^ t ^ _xtime(a1 ^ a2)
        s[c + 2] = a2 ^ t ^ _xtime(a2 ^ a3)
        s[c + 3] = a3 ^ t ^ _xtime(a3 ^ a0)


def _inv_mix_columns(s):
    # InvMixColumns = MixColumns after this step (multiplying by {04}x^2 + {05}, FIPS-197 4.3 / 5.3.3).
    for c in range(0, 16, 4):
        u = _xtime(_xtime(s[c] ^ s[c + 2]))
        v = _xtime(_xtime(s[c + 1] ^ s[c + 3]))
        s[c] ^= u
        s[c + 1] ^= v
        s[c + 2] ^= u
        s[c + 3] ^= v
    _mix_columns(s)


def _encrypt_block(rk, block):
    sbox, shift = _SBOX, _SHIFT
    s = bytearray(block)
    _add_round_key(s, rk, 0)
    for r in range(1, 11):
        s = bytearray([sbox[s[shift[i]]] for i in range(16)])  # SubBytes and ShiftRows
        if r != 10:
            _mix_columns(s)
        _add_round_key(s, rk, r)
    return bytes(s)


def _decrypt_block(rk, block):
    inv, shift = _INV_SBOX, _INV_SHIFT
    s = bytearray(block)
    _add_round_key(s, rk, 10)
    for r in range(9, -1, -1):
        s = bytearray([inv[s[shift[i]]] for i in range(16)])  # InvShiftRows and InvSubBytes
        _add_round_key(s, rk, r)
        if r:
            _inv_mix_columns(s)
    return bytes(s)
