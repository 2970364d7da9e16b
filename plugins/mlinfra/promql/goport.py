"""Go 1.19's ``math`` functions on amd64, ported operation for operation, so results match to the bit.

Prometheus 2.42 (the Debian build is Go 1.19.8) computes ``exp``, ``ln``, ``sin``,
``^``... with Go's own implementations, not the C library's: they differ from
Python's ``math`` in the last bit for many arguments (a third of them for ``^``).
Ported from golang/go src/math (Cephes and FreeBSD msun algorithms) and the amd64
assembly of ``Exp`` (its FMA path, which Go takes on CPUs with AVX2 and FMA: every
x86 server since 2013; the fused multiply-add is computed exactly here) and ``Log``.
Go's amd64 compiler does not fuse ``x*y + z`` elsewhere (GOAMD64=v1), so plain
Python float arithmetic reproduces the rest. Arguments at or beyond 2**29 for the
trigonometric functions (Go's Payne-Hanek reduction) use the C library::

    >>> go_exp(1.0), go_log(10.0)
    (2.718281828459045, 2.302585092994046)
"""

from __future__ import annotations

import math
import struct

__all__ = [
    "go_acos",
    "go_acosh",
    "go_asin",
    "go_asinh",
    "go_atan",
    "go_atan2",
    "go_atanh",
    "go_cos",
    "go_cosh",
    "go_exp",
    "go_log",
    "go_log1p",
    "go_log2",
    "go_log10",
    "go_pow",
    "go_sin",
    "go_sinh",
    "go_tan",
    "go_tanh",
]

_NAN = math.nan
_INF = math.inf
_PI = math.pi
_LN2 = 0.6931471805599453
_INV_LN2 = 1.4426950408889634  # Go's 1/Ln2, rounded once from the exact constant
_INV_LN10 = 0.4342944819032518
_FOUR_OVER_PI = 1.2732395447351628
_THREE_PI_4 = 2.356194490192345
_REDUCE_THRESHOLD = float(1 << 29)


def _bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def _from_bits(b: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", b & 0xFFFFFFFFFFFFFFFF))[0]


def _two_product(a: float, b: float) -> tuple[float, float]:
    """a*b as an unevaluated sum p + e, exactly (Dekker, Veltkamp's split)."""
    p = a * b
    c = 134217729.0 * a
    ah = c - (c - a)
    al = a - ah
    c = 134217729.0 * b
    bh = c - (c - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _fma(a: float, b: float, c: float) -> float:
    """a*b + c rounded once (the VFMADD instructions): fsum rounds the exact sum correctly."""
    p, e = _two_product(a, b)
    return math.fsum((p, e, c))


# ---------------------------------------------------------------------- exp and log

_LOG2E = 1.4426950408889634
_LN2U = 0.69314718055966295651160180568695068359375
_LN2L = 0.28235290563031577122588448175013436025525412068e-12
_EXP_OVERFLOW = 7.09782712893384e02
_EXP_TAYLOR: tuple[float, ...] = (
    2.4801587301587301587e-5,
    1.9841269841269841270e-4,
    1.3888888888888888889e-3,
)
_EXP_TAYLOR += (8.3333333333333333333e-3, 4.1666666666666666667e-2, 1.6666666666666666667e-1, 0.5, 1.0)


def go_exp(x: float) -> float:
    """exp_amd64.s (the FMA path): Shibata's method, reduction by 2**-4 and four squarings."""
    if math.isnan(x) or x == _INF:
        return x
    if x == -_INF:
        return 0.0
    if x > _EXP_OVERFLOW:
        return _INF
    k = round(_LOG2E * x)  # CVTSD2SL rounds to nearest even
    exponent = k + 0x3FF
    if exponent <= 0:  # the assembly computes on, then returns 0
        return 0.0
    if exponent >= 0x7FF:
        return _INF
    kf = float(k)
    r = _fma(-kf, _LN2U, x)
    r = _fma(-kf, _LN2L, r)
    r *= 0.0625
    p = _EXP_TAYLOR[0]
    for coefficient in _EXP_TAYLOR[1:]:
        p = _fma(p, r, coefficient)
    r = r * p
    for _ in range(3):
        r = r * (r + 2.0)
    r = _fma(r, r + 2.0, 1.0)
    return r * _from_bits(exponent << 52)


_L: tuple[float, ...] = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
)
_L += (1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01)
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


def go_log(x: float) -> float:
    """log_amd64.s: FreeBSD's algorithm, the mantissa taken from the bits (as the assembly does)."""
    b = _bits(x)
    if b & 0x7FFFFFFFFFFFFFFF == 0:
        return -_INF
    if b >> 63:
        return _NAN
    if math.isnan(x) or x == _INF:
        return x
    f1 = _from_bits((b & 0x000FFFFFFFFFFFFF) | 0x3FE0000000000000)
    k = float(((b >> 52) & 0x7FF) - 0x3FE)
    if f1 < 7.07106781186547524401e-01:
        k -= 1.0
        f1 *= 2.0
    f = f1 - 1.0
    s = f / (2.0 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (_L[0] + s4 * (_L[2] + s4 * (_L[4] + s4 * _L[6])))
    t2 = s4 * (_L[1] + s4 * (_L[3] + s4 * _L[5]))
    r = t1 + t2
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


def go_log10(x: float) -> float:
    return go_log(x) * _INV_LN10


def go_log2(x: float) -> float:
    if x == 0 or math.isnan(x) or x < 0 or x == _INF:
        return go_log(x) * _INV_LN2
    frac, exp = math.frexp(x)
    if frac == 0.5:  # exact powers of two
        return float(exp - 1)
    return go_log(frac) * _INV_LN2 + float(exp)


def go_log1p(x: float) -> float:
    """log1p.go (FreeBSD s_log1p.c)."""
    if x < -1 or math.isnan(x):
        return _NAN
    if x == -1:
        return -_INF
    if x == _INF:
        return _INF
    absx = abs(x)
    f = 0.0
    iu = 0
    k = 1
    if absx < 4.142135623730950488017e-01:
        if absx < 1.0 / (1 << 29):
            return x if absx < 1.0 / (1 << 54) else x - x * x * 0.5
        if x > -2.928932188134524755992e-01:
            k, f, iu = 0, x, 1
    c = 0.0
    if k != 0:
        if absx < float(1 << 53):
            u = 1.0 + x
            iu = _bits(u)
            k = (iu >> 52) - 1023
            c = (1.0 - (u - x)) if k > 0 else (x - (u - 1.0))
            c /= u
        else:
            u = x
            iu = _bits(u)
            k = (iu >> 52) - 1023
        iu &= 0x000FFFFFFFFFFFFF
        if iu < 0x0006A09E667F3BCD:
            u = _from_bits(iu | 0x3FF0000000000000)
        else:
            k += 1
            u = _from_bits(iu | 0x3FE0000000000000)
            iu = (0x0010000000000000 - iu) >> 2
        f = u - 1.0
    return _log1p_tail(f, float(k), c, iu)


def _log1p_tail(f: float, k: float, c: float, iu: int) -> float:
    hfsq = 0.5 * f * f
    if iu == 0:
        if f == 0:
            return 0.0 if k == 0 else k * _LN2_HI + (c + k * _LN2_LO)
        r = hfsq * (1.0 - 0.66666666666666666 * f)
        return f - r if k == 0 else k * _LN2_HI - ((r - (k * _LN2_LO + c)) - f)
    s = f / (2.0 + f)
    z = s * s
    r = z * (_L[0] + z * (_L[1] + z * (_L[2] + z * (_L[3] + z * (_L[4] + z * (_L[5] + z * _L[6]))))))
    if k == 0:
        return f - (hfsq - s * (hfsq + r))
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + (k * _LN2_LO + c))) - f)


# ---------------------------------------------------------------------- trigonometric

_PI4A = 7.85398125648498535156e-1
_PI4B = 3.77489470793079817668e-8
_PI4C = 2.69515142907905952645e-15
_SIN: tuple[float, ...] = (1.58962301576546568060e-10, -2.50507477628578072866e-8, 2.75573136213857245213e-6)
_SIN += (-1.98412698295895385996e-4, 8.33333333332211858878e-3, -1.66666666666666307295e-1)
_COS: tuple[float, ...] = (-1.13585365213876817300e-11, 2.08757008419747316778e-9, -2.75573141792967388112e-7)
_COS += (2.48015872888517045348e-5, -1.38888888888730564116e-3, 4.16666666666665929218e-2)


def _octant(x: float) -> tuple[int, float]:
    """Cephes' reduction of x (0 <= x < 2**29) by pi/4: the octant (zeros mapped to the origin) and z."""
    j = int(x * _FOUR_OVER_PI)
    y = float(j)
    if j & 1:
        j += 1
        y += 1
    return j, ((x - y * _PI4A) - y * _PI4B) - y * _PI4C


def _sin_poly(z: float, zz: float) -> float:
    s = _SIN
    return z + z * zz * ((((((s[0] * zz) + s[1]) * zz + s[2]) * zz + s[3]) * zz + s[4]) * zz + s[5])


def _cos_poly(zz: float) -> float:
    c = _COS
    return (
        1.0
        - 0.5 * zz
        + zz * zz * ((((((c[0] * zz) + c[1]) * zz + c[2]) * zz + c[3]) * zz + c[4]) * zz + c[5])
    )


def go_sin(x: float) -> float:
    if x == 0 or math.isnan(x):
        return x
    if math.isinf(x):
        return _NAN
    sign = x < 0
    x = abs(x)
    if x >= _REDUCE_THRESHOLD:
        return math.sin(-x if sign else x)
    j, z = _octant(x)
    j &= 7
    if j > 3:
        sign = not sign
        j -= 4
    zz = z * z
    y = _cos_poly(zz) if j in (1, 2) else _sin_poly(z, zz)
    return -y if sign else y


def go_cos(x: float) -> float:
    if math.isnan(x) or math.isinf(x):
        return _NAN
    x = abs(x)
    if x >= _REDUCE_THRESHOLD:
        return math.cos(x)
    sign = False
    j, z = _octant(x)
    j &= 7
    if j > 3:
        j -= 4
        sign = not sign
    if j > 1:
        sign = not sign
    zz = z * z
    y = _sin_poly(z, zz) if j in (1, 2) else _cos_poly(zz)
    return -y if sign else y


_TAN_P = (-1.30936939181383777646e4, 1.15351664838587416140e6, -1.79565251976484877988e7)
_TAN_Q: tuple[float, ...] = (
    1.36812963470692954678e4,
    -1.32089234440210967447e6,
    2.50083801823357915839e7,
    -5.38695755929454629881e7,
)


def go_tan(x: float) -> float:
    if x == 0 or math.isnan(x):
        return x
    if math.isinf(x):
        return _NAN
    sign = x < 0
    x = abs(x)
    if x >= _REDUCE_THRESHOLD:
        return math.tan(-x if sign else x)
    j, z = _octant(x)
    zz = z * z
    if zz > 1e-14:
        p, q = _TAN_P, _TAN_Q
        y = z + z * (
            zz * (((p[0] * zz) + p[1]) * zz + p[2]) / ((((zz + q[0]) * zz + q[1]) * zz + q[2]) * zz + q[3])
        )
    else:
        y = z
    if j & 2 == 2:
        y = -1 / y
    return -y if sign else y


def _xatan(x: float) -> float:
    p0, p1, p2 = -8.750608600031904122785e-01, -1.615753718733365076637e01, -7.500855792314704667340e01
    p3, p4 = -1.228866684490136173410e02, -6.485021904942025371773e01
    q0, q1, q2 = 2.485846490142306297962e01, 1.650270098316988542046e02, 4.328810604912902668951e02
    q3, q4 = 4.853903996359136964868e02, 1.945506571482613964425e02
    z = x * x
    z = (
        z
        * ((((p0 * z + p1) * z + p2) * z + p3) * z + p4)
        / (((((z + q0) * z + q1) * z + q2) * z + q3) * z + q4)
    )
    return x * z + x


_MOREBITS = 6.123233995736765886130e-17


def _satan(x: float) -> float:
    if x <= 0.66:
        return _xatan(x)
    if x > 2.41421356237309504880:
        return _PI / 2 - _xatan(1 / x) + _MOREBITS
    return _PI / 4 + _xatan((x - 1) / (x + 1)) + 0.5 * _MOREBITS


def go_atan(x: float) -> float:
    if x == 0 or math.isnan(x):
        return x
    return _satan(x) if x > 0 else -_satan(-x)


def go_asin(x: float) -> float:
    if x == 0 or math.isnan(x):
        return x
    sign = x < 0
    x = abs(x)
    if x > 1:
        return _NAN
    temp = math.sqrt(1 - x * x)
    temp = _PI / 2 - _satan(temp / x) if x > 0.7 else _satan(x / temp)
    return -temp if sign else temp


def go_acos(x: float) -> float:
    return _PI / 2 - go_asin(x)


def go_atan2(y: float, x: float) -> float:
    if math.isnan(y) or math.isnan(x):
        return _NAN
    if y == 0:
        if x >= 0 and math.copysign(1.0, x) > 0:
            return math.copysign(0.0, y)
        return math.copysign(_PI, y)
    if x == 0:
        return math.copysign(_PI / 2, y)
    if math.isinf(x):
        if x > 0:
            return math.copysign(_PI / 4 if math.isinf(y) else 0.0, y)
        return math.copysign(_THREE_PI_4 if math.isinf(y) else _PI, y)
    if math.isinf(y):
        return math.copysign(_PI / 2, y)
    q = go_atan(y / x)
    if x < 0:
        return q + _PI if q <= 0 else q - _PI
    return q


# ---------------------------------------------------------------------- hyperbolic


def go_sinh(x: float) -> float:
    p0, p1 = -0.6307673640497716991184787251e6, -0.8991272022039509355398013511e5
    p2, p3 = -0.2894211355989563807284660366e4, -0.2630563213397497062819489e2
    q0, q1, q2 = (
        -0.6307673640497716991212077277e6,
        0.1521517378790019070696485176e5,
        -0.173678953558233699533450911e3,
    )
    sign = x < 0
    x = abs(x)
    if x > 21:
        temp = go_exp(x) * 0.5
    elif x > 0.5:
        ex = go_exp(x)
        temp = (ex - 1 / ex) * 0.5
    else:
        sq = x * x
        temp = (((p3 * sq + p2) * sq + p1) * sq + p0) * x
        temp = temp / (((sq + q2) * sq + q1) * sq + q0)
    return -temp if sign else temp


def go_cosh(x: float) -> float:
    x = abs(x)
    if x > 21:
        return go_exp(x) * 0.5
    ex = go_exp(x)
    return (ex + 1 / ex) * 0.5


def go_tanh(x: float) -> float:
    z = abs(x)
    if z > 0.5 * 8.8029691931113054295988e01:
        return -1.0 if x < 0 else 1.0
    if z >= 0.625:
        s = go_exp(2 * z)
        z = 1 - 2 / (s + 1)
        return -z if x < 0 else z
    if x == 0 or math.isnan(x):
        return x
    s = x * x
    p0, p1, p2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3
    q0, q1, q2 = 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3
    return x + x * s * ((p0 * s + p1) * s + p2) / (((s + q0) * s + q1) * s + q2)


def go_asinh(x: float) -> float:
    if math.isnan(x) or math.isinf(x):
        return x
    sign = x < 0
    x = abs(x)
    if x > float(1 << 28):
        temp = go_log(x) + 6.93147180559945286227e-01
    elif x > 2:
        temp = go_log(2 * x + 1 / (math.sqrt(x * x + 1) + x))
    elif x < 1.0 / (1 << 28):
        temp = x
    else:
        temp = go_log1p(x + x * x / (1 + math.sqrt(1 + x * x)))
    return -temp if sign else temp


def go_acosh(x: float) -> float:
    if x < 1 or math.isnan(x):
        return _NAN
    if x == 1:
        return 0.0
    if x >= float(1 << 28):
        return go_log(x) + _LN2
    if x > 2:
        return go_log(2 * x - 1 / (x + math.sqrt(x * x - 1)))
    t = x - 1
    return go_log1p(t + math.sqrt(2 * t + t * t))


def go_atanh(x: float) -> float:
    if x < -1 or x > 1 or math.isnan(x):
        return _NAN
    if x == 1:
        return _INF
    if x == -1:
        return -_INF
    sign = x < 0
    x = abs(x)
    if x < 1.0 / (1 << 28):
        temp = x
    elif x < 0.5:
        temp = x + x
        temp = 0.5 * go_log1p(temp + temp * x / (1 - x))
    else:
        temp = 0.5 * go_log1p((x + x) / (1 - x))
    return -temp if sign else temp


# ---------------------------------------------------------------------- pow


def _is_odd_int(x: float) -> bool:
    xf, xi = math.modf(x)
    return xf == 0 and int(xi) & 1 == 1


def _ldexp(frac: float, exp: int) -> float:
    try:
        return math.ldexp(frac, exp)
    except OverflowError:
        return math.copysign(_INF, frac)


def go_pow(x: float, y: float) -> float:
    """pow.go of Go 1.19: Exp(yf*Log(x)) for the fraction, repeated squaring for the integer part."""
    if y == 0 or x == 1:
        return 1.0
    if math.isnan(x) or math.isnan(y):
        return _NAN
    if x == 0:
        if y < 0:
            return math.copysign(_INF, x) if _is_odd_int(y) else _INF
        return x if _is_odd_int(y) else 0.0
    if math.isinf(y):
        if x == -1:
            return 1.0
        return 0.0 if (abs(x) < 1) == (y > 0) else _INF
    if math.isinf(x):
        if x < 0:
            return go_pow(1 / x, -y)
        return 0.0 if y < 0 else _INF
    if y == 0.5:
        return math.sqrt(x) if x >= 0 else _NAN
    if y == -0.5:
        return 1 / math.sqrt(x) if x > 0 else (_INF if x == 0 else _NAN)
    yf, yi = math.modf(abs(y))
    if yf != 0 and x < 0:
        return _NAN
    if yi >= 2.0**63:
        if x == -1:
            return 1.0
        return 0.0 if (abs(x) < 1) == (y > 0) else _INF
    return _pow_finite(x, y, yi, yf)


def _pow_finite(x: float, y: float, yi: float, yf: float) -> float:
    a1 = 1.0
    ae = 0
    if yf != 0:
        if yf > 0.5:
            yf -= 1
            yi += 1
        a1 = go_exp(yf * go_log(x))
    x1, xe = math.frexp(x)
    i = int(yi)
    while i != 0:
        if xe < -(1 << 12) or xe > (1 << 12):
            ae += xe
            break
        if i & 1 == 1:
            a1 *= x1
            ae += xe
        x1 *= x1
        xe <<= 1
        if x1 < 0.5:
            x1 += x1
            xe -= 1
        i >>= 1
    if y < 0:
        a1 = 1 / a1
        ae = -ae
    return _ldexp(a1, ae)
