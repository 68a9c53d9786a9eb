// Linear scan h_t = a_t * h_{t-1} + b_t on CPU, real or complex, forward and backward.
//
// Layout: a, b, h, and the gradients (P, L, M) contiguous, except the incoming gradient of h, read
// with any strides (gsP, gsL, gsM, in elements: an expanded one is not copied); h0, dh0 (P, M); complex numbers are
// interleaved (re, im) pairs (torch.view_as_real). Parallel over P x blocks of MB features;
// inside a task the feature loop is innermost and vectorised, the time loop sequential, and the
// previous state is re-read from the row just written (in L1). One pass each way (the gradient of
// a fused into the reversed pass), no temporaries.
// Backward (conj = identity for real numbers):
//     g_t = dL/dh_t + conj(a_{t+1}) g_{t+1};  dL/db_t = g_t;  dL/da_t = g_t conj(h_{t-1});
//     dL/dh0 = conj(a_0) g_0.
#include <algorithm>
#include <cstdint>

static const int64_t MB = 256;  // features per task (a multiple of every vector width)

template <typename T>
static void fwd_real(const T* a, const T* b, const T* h0, T* h, int64_t P, int64_t L, int64_t M, int nthreads) {
    const int64_t nb = (M + MB - 1) / MB;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t task = 0; task < P * nb; task++) {
        const int64_t p = task / nb, m0 = (task % nb) * MB, m1 = std::min(M, m0 + MB);
        const int64_t base = p * L * M;
        if (h0) {
#pragma omp simd
            for (int64_t m = m0; m < m1; m++) h[base + m] = a[base + m] * h0[p * M + m] + b[base + m];
        } else {
            for (int64_t m = m0; m < m1; m++) h[base + m] = b[base + m];
        }
        for (int64_t t = 1; t < L; t++) {
            const T* at = a + base + t * M;
            const T* bt = b + base + t * M;
            const T* hp = h + base + (t - 1) * M;
            T* ht = h + base + t * M;
#pragma omp simd
            for (int64_t m = m0; m < m1; m++) ht[m] = at[m] * hp[m] + bt[m];
        }
    }
}

template <typename T>
static void bwd_real(const T* a, const T* h, const T* h0, const T* gh, int64_t gsP, int64_t gsL, int64_t gsM, T* ga,
                     T* gb, T* gh0, int64_t P, int64_t L, int64_t M, int nthreads) {
    const int64_t nb = (M + MB - 1) / MB;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t task = 0; task < P * nb; task++) {
        const int64_t p = task / nb, m0 = (task % nb) * MB, m1 = std::min(M, m0 + MB);
        const int64_t base = p * L * M;
        // g_t and, fused in the same pass, dL/da_t = g_t h_{t-1} (t >= 1)
        for (int64_t t = L - 1; t >= 0; t--) {
            const T* gt = gh + p * gsP + t * gsL;  // dL/dh_t, any strides (a broadcast one reads no memory)
            T* g = gb + base + t * M;
            if (gsM != 1)
                for (int64_t m = m0; m < m1; m++) g[m] = gt[m * gsM];
            else
                for (int64_t m = m0; m < m1; m++) g[m] = gt[m];
            if (t < L - 1) {
                const T* an = a + base + (t + 1) * M;
                const T* gn = gb + base + (t + 1) * M;
#pragma omp simd
                for (int64_t m = m0; m < m1; m++) g[m] += an[m] * gn[m];
            }
            if (ga && t >= 1) {
                const T* hp = h + base + (t - 1) * M;
                T* o = ga + base + t * M;
#pragma omp simd
                for (int64_t m = m0; m < m1; m++) o[m] = g[m] * hp[m];
            }
        }
        if (ga)
            for (int64_t m = m0; m < m1; m++) ga[base + m] = h0 ? gb[base + m] * h0[p * M + m] : T(0);
        if (gh0)
            for (int64_t m = m0; m < m1; m++) gh0[p * M + m] = a[base + m] * gb[base + m];
    }
}

// complex: T* point at interleaved (re, im); M counts complex numbers
template <typename T>
static void fwd_cplx(const T* a, const T* b, const T* h0, T* h, int64_t P, int64_t L, int64_t M, int nthreads) {
    const int64_t nb = (M + MB - 1) / MB;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t task = 0; task < P * nb; task++) {
        const int64_t p = task / nb, m0 = (task % nb) * MB, m1 = std::min(M, m0 + MB);
        const int64_t base = 2 * p * L * M;
        for (int64_t t = 0; t < L; t++) {
            const T* at = a + base + 2 * t * M;
            const T* bt = b + base + 2 * t * M;
            const T* hp = t > 0 ? h + base + 2 * (t - 1) * M : (h0 ? h0 + 2 * p * M : nullptr);
            T* ht = h + base + 2 * t * M;
            if (!hp) {
                for (int64_t m = m0; m < m1; m++) ht[2 * m] = bt[2 * m], ht[2 * m + 1] = bt[2 * m + 1];
                continue;
            }
#pragma omp simd
            for (int64_t m = m0; m < m1; m++) {
                const T ar = at[2 * m], ai = at[2 * m + 1], hr = hp[2 * m], hi = hp[2 * m + 1];
                ht[2 * m] = ar * hr - ai * hi + bt[2 * m];
                ht[2 * m + 1] = ar * hi + ai * hr + bt[2 * m + 1];
            }
        }
    }
}

template <typename T>
static void bwd_cplx(const T* a, const T* h, const T* h0, const T* gh, int64_t gsP, int64_t gsL, int64_t gsM, T* ga,
                     T* gb, T* gh0, int64_t P, int64_t L, int64_t M, int nthreads) {
    const int64_t nb = (M + MB - 1) / MB;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t task = 0; task < P * nb; task++) {
        const int64_t p = task / nb, m0 = (task % nb) * MB, m1 = std::min(M, m0 + MB);
        const int64_t base = 2 * p * L * M;
        for (int64_t t = L - 1; t >= 0; t--) {
            const T* gt = gh + 2 * (p * gsP + t * gsL);  // strides in complex numbers
            T* g = gb + base + 2 * t * M;
            if (gsM != 1)
                for (int64_t m = m0; m < m1; m++) g[2 * m] = gt[2 * m * gsM], g[2 * m + 1] = gt[2 * m * gsM + 1];
            else
                for (int64_t m = 2 * m0; m < 2 * m1; m++) g[m] = gt[m];
            if (t < L - 1) {
                const T* an = a + base + 2 * (t + 1) * M;
                const T* gn = gb + base + 2 * (t + 1) * M;
#pragma omp simd
                for (int64_t m = m0; m < m1; m++) {  // g = gh + conj(a_next) g_next
                    const T ar = an[2 * m], ai = an[2 * m + 1], xr = gn[2 * m], xi = gn[2 * m + 1];
                    g[2 * m] += ar * xr + ai * xi;
                    g[2 * m + 1] += ar * xi - ai * xr;
                }
            }
            if (!ga) continue;
            // fused: dL/da_t = g_t conj(h_{t-1})
            const T* hp = t > 0 ? h + base + 2 * (t - 1) * M : (h0 ? h0 + 2 * p * M : nullptr);
            T* o = ga + base + 2 * t * M;
            if (!hp) {
                for (int64_t m = 2 * m0; m < 2 * m1; m++) o[m] = T(0);
                continue;
            }
#pragma omp simd
            for (int64_t m = m0; m < m1; m++) {
                const T gr = g[2 * m], gi = g[2 * m + 1], hr = hp[2 * m], hi = hp[2 * m + 1];
                o[2 * m] = gr * hr + gi * hi;
                o[2 * m + 1] = gi * hr - gr * hi;
            }
        }
        if (gh0)
            for (int64_t m = m0; m < m1; m++) {  // conj(a_0) g_0
                const T ar = a[base + 2 * m], ai = a[base + 2 * m + 1], gr = gb[base + 2 * m], gi = gb[base + 2 * m + 1];
                gh0[2 * (p * M + m)] = ar * gr + ai * gi;
                gh0[2 * (p * M + m) + 1] = ar * gi - ai * gr;
            }
    }
}

#define EXPORT(KIND, T, SUF)                                                                                    \
    extern "C" void ls_fwd_##SUF(const T* a, const T* b, const T* h0, T* h, int64_t P, int64_t L, int64_t M,     \
                                 int nthreads) {                                                                \
        fwd_##KIND<T>(a, b, h0, h, P, L, M, nthreads);                                                          \
    }                                                                                                           \
    extern "C" void ls_bwd_##SUF(const T* a, const T* h, const T* h0, const T* gh, int64_t gsP, int64_t gsL,     \
                                 int64_t gsM, T* ga, T* gb, T* gh0, int64_t P, int64_t L, int64_t M,            \
                                 int nthreads) {                                                                \
        bwd_##KIND<T>(a, h, h0, gh, gsP, gsL, gsM, ga, gb, gh0, P, L, M, nthreads);                             \
    }

EXPORT(real, float, f32)
EXPORT(real, double, f64)
EXPORT(cplx, float, c64)
EXPORT(cplx, double, c128)
