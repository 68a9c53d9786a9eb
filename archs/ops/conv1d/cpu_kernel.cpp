// Causal depthwise 1-D convolution on CPU, forward and backward, bias and SiLU fused.
//
//     pre[t] = bias + sum_{k<W} w[k] * xp[t + k],   xp = (initial states (W-1) | x (L))
//     y[t]   = silu(pre[t]) or pre[t]
// Layouts: x (B, D, L) read with its strides xs (a transposed view is not copied); y, gy, gx
// (B, D, L) contiguous; init, ginit (B, D, W-1) (init may be NULL: zeros);
// w (D, W); bias (D,) or NULL. Parallel over (batch, channel); each channel's padded row is built
// in a local buffer and the time loop (innermost, fixed tap offsets) is vectorised. Backward
// recomputes pre; dw and dbias are written per (batch, channel) (gw_part (B, D, W), gb_part (B, D))
// and summed over the batch by the caller.
#include <cstdint>
#include <vector>
#include "../_cpu_math.h"

// xp = (initial states | x row), x read with its strides xs = (batch, channel, time)
template <typename T>
static void build_row(const T* x, const int64_t* xs, const T* init, int64_t bd, int64_t D, int64_t L, int64_t W,
                      T* xp) {
    for (int64_t k = 0; k < W - 1; k++) xp[k] = init ? init[bd * (W - 1) + k] : T(0);
    const T* xr = x + (bd / D) * xs[0] + (bd % D) * xs[1];
    for (int64_t t = 0; t < L; t++) xp[W - 1 + t] = xr[t * xs[2]];
}

template <typename T>
static void pre_act(const T* xp, const T* wd, T bias, int64_t L, int64_t W, T* pre) {
#pragma omp simd
    for (int64_t t = 0; t < L; t++) pre[t] = bias;
    for (int64_t k = 0; k < W; k++) {
        const T wk = wd[k];
        const T* xs = xp + k;
#pragma omp simd
        for (int64_t t = 0; t < L; t++) pre[t] += wk * xs[t];
    }
}

template <typename T>
static void fwd(const T* x, const int64_t* xs, const T* init, const T* w, const T* bias, int silu, int64_t B, int64_t D, int64_t L,
                int64_t W, T* y, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t bd = 0; bd < B * D; bd++) {
        const int64_t d = bd % D;
        std::vector<T> xp(L + W - 1);
        build_row(x, xs, init, bd, D, L, W, xp.data());
        T* yr = y + bd * L;
        pre_act(xp.data(), w + d * W, bias ? bias[d] : T(0), L, W, yr);
        if (silu) {
#pragma omp simd
            for (int64_t t = 0; t < L; t++) yr[t] = yr[t] * sigmoid(yr[t]);
        }
    }
}

template <typename T>
static void bwd(const T* x, const int64_t* xs, const T* init, const T* w, const T* bias, int silu, int64_t B, int64_t D, int64_t L,
                int64_t W, const T* gy, T* gx, T* ginit, T* gw_part, T* gb_part, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t bd = 0; bd < B * D; bd++) {
        const int64_t d = bd % D;
        std::vector<T> xp(L + W - 1), gp(L), gxp(L + W - 1, T(0));
        build_row(x, xs, init, bd, D, L, W, xp.data());
        const T* wd = w + d * W;
        const T* gr = gy + bd * L;
        if (silu) {  // d silu(p) / dp = s (1 + p (1 - s)), s = sigmoid(p)
            pre_act(xp.data(), wd, bias ? bias[d] : T(0), L, W, gp.data());
#pragma omp simd
            for (int64_t t = 0; t < L; t++) {
                const T p = gp[t], s = sigmoid(p);
                gp[t] = gr[t] * s * (T(1) + p * (T(1) - s));
            }
        } else {
            for (int64_t t = 0; t < L; t++) gp[t] = gr[t];
        }
        T gb = 0;
#pragma omp simd reduction(+ : gb)
        for (int64_t t = 0; t < L; t++) gb += gp[t];
        gb_part[bd] = gb;
        for (int64_t k = 0; k < W; k++) {
            const T wk = wd[k];
            const T* xs = xp.data() + k;
            T* gs = gxp.data() + k;
            T gw = 0;
#pragma omp simd reduction(+ : gw)
            for (int64_t t = 0; t < L; t++) {
                gw += gp[t] * xs[t];
                gs[t] += wk * gp[t];
            }
            gw_part[bd * W + k] = gw;
        }
        for (int64_t t = 0; t < L; t++) gx[bd * L + t] = gxp[W - 1 + t];
        if (ginit)
            for (int64_t k = 0; k < W - 1; k++) ginit[bd * (W - 1) + k] = gxp[k];
    }
}

#define EXPORT(T, SUF)                                                                                             \
    extern "C" void conv_fwd_##SUF(const T* x, const int64_t* xs, const T* init, const T* w, const T* bias, int silu, int64_t B,     \
                                   int64_t D, int64_t L, int64_t W, T* y, int nthreads) {                         \
        fwd<T>(x, xs, init, w, bias, silu, B, D, L, W, y, nthreads);                                                   \
    }                                                                                                              \
    extern "C" void conv_bwd_##SUF(const T* x, const int64_t* xs, const T* init, const T* w, const T* bias, int silu, int64_t B,     \
                                   int64_t D, int64_t L, int64_t W, const T* gy, T* gx, T* ginit, T* gw_part,     \
                                   T* gb_part, int nthreads) {                                                    \
        bwd<T>(x, xs, init, w, bias, silu, B, D, L, W, gy, gx, ginit, gw_part, gb_part, nthreads);                     \
    }

EXPORT(float, f32)
EXPORT(double, f64)
