// Selective scan (Mamba-1's S6) on CPU: one fused pass per (batch, channel), state in registers.
//
// Implements Gu & Dao 2023, Algorithm 2 (the definition in ref.py), with the extras of
// mamba_ssm's selective_scan_fn fused in:
//     dt_t = softplus(delta_t + delta_bias)       (softplus optional)
//     h_t  = exp(dt_t A) * h_{t-1} + dt_t u_t B_t  h: (n,) per (batch, channel), h_{-1} = h0 or 0
//     y_t  = <h_t, C_t> + D u_t;  out_t = y_t * silu(z_t)  (z optional)
// Layouts (all contiguous): u, delta, z, out (b, d, l); A (d, n); B, C (b, g, l, n) (state
// innermost: one time step of B is one vector); D, delta_bias (d,); h0, last (b, d, n);
// ckpt (b, d, nck, n) the state entering each block of K steps (nck = ceil(l / K)).
// The (b, d, l, n) state history is never stored: backward recomputes each block from ckpt.
//
// Parallel over (batch, channel) in forward. In backward, channels of one group share B and C,
// so their dB, dC sums would race: the work is split into (batch, group, channel block) tasks,
// each summing into its own (l, n) slice of dB_part / dC_part (b, g, nblk, l, n); the caller
// sums over nblk. dA, dD, d(delta_bias) are written per (batch, channel) and summed by the caller.
#include <cstdint>
#include <algorithm>
#include <vector>
#include "../_cpu_math.h"

// N > 0: the state size as a compile-time constant (the state then lives in registers across the
// time loop); N == 0: any n <= MAXN. Only N = 16 (Mamba's default d_state) is specialised: each
// specialisation adds about a second of CPU time to the first-use build.
static const int64_t MAXN = 256;

template <typename T, int N>
static void fwd(const T* u, const T* delta, const T* A, const T* B, const T* C, const T* D, const T* z,
                const T* dbias, const T* h0, int softplus_on, int64_t b, int64_t d, int64_t l, int64_t n,
                int64_t g, int64_t K, T* out, T* last, T* ckpt, int nthreads) {
    if (N > 0) n = N;
    const int64_t e = d / g, nck = (l + K - 1) / K;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t bd = 0; bd < b * d; bd++) {
        const int64_t bi = bd / d, di = bd % d, gi = di / e;
        const T* up = u + bd * l;
        const T* dp = delta + bd * l;
        const T* zp = z ? z + bd * l : nullptr;
        const T* Bp = B + (bi * g + gi) * l * n;
        const T* Cp = C + (bi * g + gi) * l * n;
        const T* Ad = A + di * n;
        const T bias = dbias ? dbias[di] : T(0), Dd = D ? D[di] : T(0);
        T* op = out + bd * l;
        std::vector<T> dtv(l), gate(zp ? l : 0);
        T h[N > 0 ? N : MAXN];
        for (int64_t k = 0; k < n; k++) h[k] = h0 ? h0[bd * n + k] : T(0);
        // the per-step scalars first, in vectorised passes: dt = softplus(delta + bias), silu(z)
        if (softplus_on) {
            softplus_row(dp, bias, dtv.data(), (T*)nullptr, l);
        } else {
#pragma omp simd
            for (int64_t t = 0; t < l; t++) dtv[t] = dp[t] + bias;
        }
        if (zp) {
#pragma omp simd
            for (int64_t t = 0; t < l; t++) gate[t] = zp[t] * sigmoid(zp[t]);
        }
        for (int64_t t = 0; t < l; t++) {
            if (ckpt && t % K == 0)
                for (int64_t k = 0; k < n; k++) ckpt[(bd * nck + t / K) * n + k] = h[k];
            const T dt = dtv[t];
            const T du = dt * up[t];
            const T* Bt = Bp + t * n;
            const T* Ct = Cp + t * n;
            T y = 0;
#pragma omp simd reduction(+ : y)
            for (int64_t k = 0; k < n; k++) {
                const T hk = exp_vec(dt * Ad[k]) * h[k] + du * Bt[k];
                h[k] = hk;
                y += hk * Ct[k];
            }
            y += Dd * up[t];
            if (zp) y *= gate[t];
            op[t] = y;
        }
        if (last)
            for (int64_t k = 0; k < n; k++) last[bd * n + k] = h[k];
    }
}

template <typename T, int N>
static void bwd(const T* u, const T* delta, const T* A, const T* B, const T* C, const T* D, const T* z,
                const T* dbias, int softplus_on, int64_t b, int64_t d, int64_t l, int64_t n, int64_t g,
                int64_t K, const T* ckpt, const T* dout, const T* dlast, T* du, T* ddelta, T* dA_part,
                T* dB_part, T* dC_part, T* dD_part, T* ddbias_part, T* dz, T* dh0, int64_t nblk, int nthreads) {
    if (N > 0) n = N;
    const int64_t e = d / g, nck = (l + K - 1) / K, per = (e + nblk - 1) / nblk;
#pragma omp parallel for schedule(dynamic) num_threads(nthreads)
    for (int64_t task = 0; task < b * g * nblk; task++) {
        const int64_t bi = task / (g * nblk), gi = (task / nblk) % g, blk = task % nblk;
        const T* Bp = B + (bi * g + gi) * l * n;
        const T* Cp = C + (bi * g + gi) * l * n;
        T* dBp = dB_part + task * l * n;
        T* dCp = dC_part + task * l * n;
        for (int64_t i = 0; i < l * n; i++) dBp[i] = dCp[i] = T(0);
        std::vector<T> hbuf((K + 1) * n), abuf(K * n), dtbuf(K), dspbuf(K), sgbuf(K);
        const int64_t c0 = gi * e + blk * per, c1 = gi * e + std::min(e, (blk + 1) * per);
        // per-channel carries between blocks: dL/dh entering from later steps, and the sums
        std::vector<T> dh_all(std::max<int64_t>(c1 - c0, 0) * n), dA_all(dh_all.size());
        std::vector<T> dD_all(std::max<int64_t>(c1 - c0, 0)), db_all(dD_all.size());
        for (int64_t di = c0; di < c1; di++)
            for (int64_t k = 0; k < n; k++) dh_all[(di - c0) * n + k] = dlast ? dlast[(bi * d + di) * n + k] : T(0);
        T dh[N > 0 ? N : MAXN], dAacc[N > 0 ? N : MAXN];
        // blocks outermost, channels inside: a block's B, C, dB, dC rows stay in L1 across the channels
        for (int64_t j = nck - 1; j >= 0; j--) {
            const int64_t s = j * K, kk = std::min(K, l - s);
            for (int64_t di = c0; di < c1; di++) {
                const int64_t bd = bi * d + di;
                const T* up = u + bd * l;
                const T* dp = delta + bd * l;
                const T* zp = z ? z + bd * l : nullptr;
                const T* gp = dout + bd * l;
                const T* Ad = A + di * n;
                const T bias = dbias ? dbias[di] : T(0), Dd = D ? D[di] : T(0);
                T dDacc = dD_all[di - c0], dbacc = db_all[di - c0];
                for (int64_t k = 0; k < n; k++) {
                    dh[k] = dh_all[(di - c0) * n + k];
                    dAacc[k] = dA_all[(di - c0) * n + k];
                }
                // recompute the block: dt, a = exp(dt A) and h_{s-1} .. h_{s+kk-1}
                for (int64_t k = 0; k < n; k++) hbuf[k] = ckpt[(bd * nck + j) * n + k];
                // per-step scalars of the block, vectorised: dt, softplus' = sigmoid, sigmoid(z)
                if (softplus_on) {
                    softplus_row(dp + s, bias, dtbuf.data(), dspbuf.data(), kk);
                } else {
                    for (int64_t tt = 0; tt < kk; tt++) {
                        dtbuf[tt] = dp[s + tt] + bias;
                        dspbuf[tt] = T(1);
                    }
                }
                if (zp) {
#pragma omp simd
                    for (int64_t tt = 0; tt < kk; tt++) sgbuf[tt] = sigmoid(zp[s + tt]);
                }
                for (int64_t tt = 0; tt < kk; tt++) {
                    const int64_t t = s + tt;
                    const T dt = dtbuf[tt];
                    const T dtu = dt * up[t];
                    const T* Bt = Bp + t * n;
                    const T* hp = &hbuf[tt * n];
                    T* hc = &hbuf[(tt + 1) * n];
                    T* a = &abuf[tt * n];
#pragma omp simd
                    for (int64_t k = 0; k < n; k++) {
                        a[k] = exp_vec(dt * Ad[k]);
                        hc[k] = a[k] * hp[k] + dtu * Bt[k];
                    }
                }
                for (int64_t tt = kk - 1; tt >= 0; tt--) {
                    const int64_t t = s + tt;
                    const T* Bt = Bp + t * n;
                    const T* Ct = Cp + t * n;
                    T* dBt = dBp + t * n;
                    T* dCt = dCp + t * n;
                    const T* hp = &hbuf[tt * n];
                    const T* hc = &hbuf[(tt + 1) * n];
                    const T* a = &abuf[tt * n];
                    T dy = gp[t];
                    if (zp) {  // out = y * silu(z): recompute y
                        T y = 0;
#pragma omp simd reduction(+ : y)
                        for (int64_t k = 0; k < n; k++) y += hc[k] * Ct[k];
                        y += Dd * up[t];
                        const T sg = sgbuf[tt];
                        dz[bd * l + t] = dy * y * sg * (T(1) + zp[t] * (T(1) - sg));
                        dy *= zp[t] * sg;
                    }
                    const T dt = dtbuf[tt], dtu = dt * up[t];
                    dDacc += dy * up[t];
                    T ddu = 0, ddt = 0;
#pragma omp simd reduction(+ : ddu, ddt)
                    for (int64_t k = 0; k < n; k++) {
                        const T dhk = dh[k] + dy * Ct[k];  // dL/dh_t
                        dCt[k] += dy * hc[k];
                        dBt[k] += dhk * dtu;
                        ddu += dhk * Bt[k];
                        const T gda = dhk * hp[k] * a[k];  // dL/d(dt A_k)
                        dAacc[k] += gda * dt;
                        ddt += gda * Ad[k];
                        dh[k] = dhk * a[k];  // dL/dh_{t-1} through the recurrence
                    }
                    ddt += ddu * up[t];
                    du[bd * l + t] = dy * Dd + ddu * dt;
                    ddt *= dspbuf[tt];
                    ddelta[bd * l + t] = ddt;
                    dbacc += ddt;
                }
                for (int64_t k = 0; k < n; k++) {
                    dh_all[(di - c0) * n + k] = dh[k];
                    dA_all[(di - c0) * n + k] = dAacc[k];
                }
                dD_all[di - c0] = dDacc;
                db_all[di - c0] = dbacc;
            }
        }
        for (int64_t di = c0; di < c1; di++) {
            const int64_t bd = bi * d + di;
            for (int64_t k = 0; k < n; k++) {
                dA_part[bd * n + k] = dA_all[(di - c0) * n + k];
                if (dh0) dh0[bd * n + k] = dh_all[(di - c0) * n + k];
            }
            dD_part[bd] = dD_all[di - c0];
            ddbias_part[bd] = db_all[di - c0];
        }
    }
}

#define EXPORT(T, SUF)                                                                                            \
    extern "C" void ss_fwd_##SUF(const T* u, const T* delta, const T* A, const T* B, const T* C, const T* D,      \
                                 const T* z, const T* dbias, const T* h0, int softplus_on, int64_t b, int64_t d,   \
                                 int64_t l, int64_t n, int64_t g, int64_t K, T* out, T* last, T* ckpt,             \
                                 int nthreads) {                                                                  \
        auto f = n == 16 ? fwd<T, 16> : fwd<T, 0>;                                                                  \
        f(u, delta, A, B, C, D, z, dbias, h0, softplus_on, b, d, l, n, g, K, out, last, ckpt, nthreads);          \
    }                                                                                                             \
    extern "C" void ss_bwd_##SUF(const T* u, const T* delta, const T* A, const T* B, const T* C, const T* D,      \
                                 const T* z, const T* dbias, int softplus_on, int64_t b, int64_t d, int64_t l,     \
                                 int64_t n, int64_t g, int64_t K, const T* ckpt, const T* dout, const T* dlast,    \
                                 T* du, T* ddelta, T* dA_part, T* dB_part, T* dC_part, T* dD_part,                 \
                                 T* ddbias_part, T* dz, T* dh0, int64_t nblk, int nthreads) {                      \
        auto f = n == 16 ? bwd<T, 16> : bwd<T, 0>;                                                                  \
        f(u, delta, A, B, C, D, z, dbias, softplus_on, b, d, l, n, g, K, ckpt, dout, dlast, du, ddelta, dA_part,   \
          dB_part, dC_part, dD_part, ddbias_part, dz, dh0, nblk, nthreads);                                       \
    }

EXPORT(float, f32)
EXPORT(double, f64)
