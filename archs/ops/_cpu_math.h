// Vectorisable math for the compiled CPU kernels (no torch headers: see archs/ops/_compile.py).
//
// exp: range reduction x = k ln2 + r, |r| <= ln2/2, then a Taylor polynomial in r (degree 7 for
// float, 13 for double: truncation below half an ulp) and 2^k put into the exponent bits. Only
// adds, multiplies and integer shifts, so GCC vectorises loops that call it (libm's expf does
// not vectorise without -ffast-math). Inputs below the smallest normal result give 0, above the
// largest give inf, as exp does up to denormals.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

static inline float exp_vec(float x) {
    const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer held in the low bits
    float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float kd = xc * 1.44269504088896341f + shifter;
    uint32_t ki;
    std::memcpy(&ki, &kd, 4);
    kd -= shifter;
    float r = xc - kd * 0.693145751953125f - kd * 1.428606765330187045e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f + r * (8.3333338e-3f
              + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    uint32_t sb = (ki + 127u) << 23;
    float s;
    std::memcpy(&s, &sb, 4);
    float y = p * s;
    return x < -87.0f ? 0.0f : (x > 88.0f ? INFINITY : y);
}

static inline double exp_vec(double x) {
    const double shifter = 6755399441055744.0;  // 1.5 * 2^52
    double xc = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
    double kd = xc * 1.4426950408889634074 + shifter;
    uint64_t ki;
    std::memcpy(&ki, &kd, 8);
    kd -= shifter;
    double r = xc - kd * 6.93147180369123816490e-01 - kd * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;  // 1/13!
    const double c[13] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                          1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
    for (int i = 0; i < 13; i++) p = p * r + c[i];
    uint64_t sb = (ki + 1023ull) << 52;
    double s;
    std::memcpy(&s, &sb, 8);
    double y = p * s;
    return x < -708.0 ? 0.0 : (x > 709.0 ? INFINITY : y);
}

// log for normal positive x: x = m 2^k with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s),
// s = (m - 1) / (m + 1), |s| <= 0.172, by its odd series (to s^9 for float, s^23 for double).
static inline float log_vec(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    int32_t k = int32_t(bits >> 23) - 127;
    uint32_t mb = (bits & 0x7fffffu) | 0x3f800000u;  // m in [1, 2)
    float m;
    std::memcpy(&m, &mb, 4);
    const int32_t big = m > 1.41421356f;  // arithmetic, not a select: keeps loops vectorisable
    m *= 1.0f - 0.5f * float(big);
    k += big;
    const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    const float q = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));
    return float(k) * 0.693147180559945f + 2.0f * s * q;
}

static inline double log_vec(double x) {
    uint64_t bits;
    std::memcpy(&bits, &x, 8);
    int64_t k = int64_t(bits >> 52) - 1023;
    uint64_t mb = (bits & 0xfffffffffffffull) | 0x3ff0000000000000ull;
    double m;
    std::memcpy(&m, &mb, 8);
    const int64_t big = m > 1.4142135623730951;
    m *= 1.0 - 0.5 * double(big);
    k += big;
    const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double q = 1.0 / 23;
    for (int i = 10; i >= 0; i--) q = q * s2 + 1.0 / (2 * i + 1);
    return double(k) * 0.6931471805599453094 + 2.0 * s * q;
}

// softplus as torch's F.softplus (beta 1, threshold 20) over a row: out = log1p(exp(x + bias)),
// with log1p(w) computed as log(1 + w) corrected by the rounding of 1 + w; dsp (if given) gets
// its derivative, the sigmoid w / (1 + w). Separate loops: GCC vectorises each, not their fusion.
template <typename T> static inline void softplus_row(const T* x, T bias, T* out, T* dsp, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const T raw = x[i] + bias;
        out[i] = exp_vec(raw < T(20) ? raw : T(20));
    }
    if (dsp) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dsp[i] = x[i] + bias > T(20) ? T(1) : out[i] / (T(1) + out[i]);
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const T w = out[i], v = T(1) + w;
        out[i] = log_vec(v) - ((v - T(1)) - w) / v;
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = x[i] + bias > T(20) ? x[i] + bias : out[i];
}
template <typename T> static inline T sigmoid(T x) { return T(1) / (T(1) + exp_vec(-x)); }
