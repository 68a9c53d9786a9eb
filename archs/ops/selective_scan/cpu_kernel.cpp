// Selective scan (Mamba-1's S6) on CPU: fused, vectorised across channels, state in L1.
//
// Implements Gu & Dao 2023, Algorithm 2 (the definition in ref.py), with the extras of
// mamba_ssm's selective_scan_fn fused in:
//     dt_t = softplus(delta_t + delta_bias)       (softplus optional)
//     h_t  = exp(dt_t A) * h_{t-1} + dt_t u_t B_t  h: (n,) per (batch, channel), h_{-1} = h0 or 0
//     y_t  = <h_t, C_t> + D u_t;  out_t = y_t * silu(z_t)  (z optional)
// Layouts: u, delta, z, dout (b, d, l) and B, C (b, g, l, n) read with their own strides (Strides:
// a transposed view from a projection is not copied; B's and C's state axis contiguous); outputs
// out, du, ddelta, dz (b, d, l) contiguous; A (d, n); D, delta_bias (d,); h0, last (b, d, n); ckpt (b, d, nck, n): the state entering
// each block of K steps (nck = ceil(l / K)). The (b, d, l, n) state history is never stored:
// backward recomputes one block at a time from ckpt.
//
// Vectorisation: V channels of one group (V = 16 floats or 8 doubles, one AVX-512 register) are
// the SIMD lanes. Channels of a group share B_t and C_t, so those are scalars broadcast to the
// lanes, and the contraction over the state is a sum of n lane-wise products: no horizontal
// reduction per step. A time block's per-channel scalars (dt, u, z, dout) are gathered into
// (K, V) buffers first; lanes past the last channel carry zeros and write nothing.
//
// Parallel over tasks (batch, group, channel chunk); nblk chunks per (batch, group). Backward
// sums dB, dC over channels: lane-wise into (K, n, V) buffers per time block, then over lanes
// into the task's own (l, n) slice of dB_part / dC_part (b, g, nblk, l, n); the caller sums over
// nblk. dA, dD, d(delta_bias) are written per (batch, channel) and summed over batch by the caller.
#include <algorithm>
#include <cstdint>
#include <vector>
#include "../_cpu_math.h"

template <typename T> struct Lanes { static const int V = 64 / sizeof(T); };

// gather channels [0, nv) x steps [s, s + kk) of a strided (channel, time) view into buf (kk, V);
// zeros in the lanes past nv
template <typename T, int V>
static inline void gather(const T* src, int64_t sd, int64_t sl, int64_t nv, int64_t s, int64_t kk, T* buf) {
    for (int64_t tt = 0; tt < kk; tt++)
        for (int v = 0; v < V; v++) buf[tt * V + v] = v < nv ? src[v * sd + (s + tt) * sl] : T(0);
}

// strides (in elements) of the inputs read in place: u, delta, z, dout as (b, d, l); B, C as (b, g, l)
// (their state axis is contiguous)
struct Strides {
    int64_t u[3], delta[3], z[3], dout[3], B[3], C[3];
};
#define AT(name, bi, c0) (name + (bi) * st->name[0] + (c0) * st->name[1])

template <typename T, int V>
static inline void scatter(const T* buf, int64_t l, int64_t nv, int64_t s, int64_t kk, T* dst) {
    for (int64_t v = 0; v < nv; v++)
        for (int64_t tt = 0; tt < kk; tt++) dst[v * l + s + tt] = buf[tt * V + v];
}

template <typename T>
static void fwd(const T* u, const T* delta, const T* A, const T* B, const T* C, const T* D, const T* z,
                const T* dbias, const T* h0, const Strides* st, int softplus_on, int64_t b, int64_t d, int64_t l, int64_t n,
                int64_t g, int64_t K, T* out, T* last, T* ckpt, int nthreads) {
    constexpr int V = Lanes<T>::V;
    const int64_t e = d / g, nck = (l + K - 1) / K, ncb = (e + V - 1) / V;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t task = 0; task < b * g * ncb; task++) {
        const int64_t bi = task / (g * ncb), gi = (task / ncb) % g, cb = task % ncb;
        const int64_t c0 = gi * e + cb * V, nv = std::min<int64_t>(V, gi * e + e - c0), bd0 = bi * d + c0;
        const T* Bp = B + bi * st->B[0] + gi * st->B[1];  // row t at Bp + t * st->B[2]
        const T* Cp = C + bi * st->C[0] + gi * st->C[1];
        std::vector<T> h(n * V), Al(n * V), raw(K * V), dt(K * V), ub(K * V), gate(K * V), yb(K * V);
        T bias[V], Dl[V];
        for (int v = 0; v < V; v++) {
            bias[v] = (dbias && v < nv) ? dbias[c0 + v] : T(0);
            Dl[v] = (D && v < nv) ? D[c0 + v] : T(0);
        }
        for (int64_t k = 0; k < n; k++)
            for (int v = 0; v < V; v++) {
                Al[k * V + v] = v < nv ? A[(c0 + v) * n + k] : T(0);
                h[k * V + v] = (h0 && v < nv) ? h0[(bd0 + v) * n + k] : T(0);
            }
        for (int64_t j = 0; j < nck; j++) {
            const int64_t s = j * K, kk = std::min(K, l - s);
            if (ckpt)
                for (int64_t v = 0; v < nv; v++)
                    for (int64_t k = 0; k < n; k++) ckpt[((bd0 + v) * nck + j) * n + k] = h[k * V + v];
            gather<T, V>(AT(delta, bi, c0), st->delta[1], st->delta[2], nv, s, kk, raw.data());
            for (int64_t tt = 0; tt < kk; tt++)
                for (int v = 0; v < V; v++) raw[tt * V + v] += bias[v];
            if (softplus_on)
                softplus_row(raw.data(), T(0), dt.data(), (T*)nullptr, kk * V);
            else
                std::copy(raw.begin(), raw.begin() + kk * V, dt.begin());
            gather<T, V>(AT(u, bi, c0), st->u[1], st->u[2], nv, s, kk, ub.data());
            if (z) {
                gather<T, V>(AT(z, bi, c0), st->z[1], st->z[2], nv, s, kk, gate.data());
#pragma omp simd
                for (int64_t i = 0; i < kk * V; i++) gate[i] *= sigmoid(gate[i]);
            }
            for (int64_t tt = 0; tt < kk; tt++) {
                const T* Bt = Bp + (s + tt) * st->B[2];
                const T* Ct = Cp + (s + tt) * st->C[2];
                const T* dtv = &dt[tt * V];
                const T* uv = &ub[tt * V];
                T du[V], y[V];
                for (int v = 0; v < V; v++) du[v] = dtv[v] * uv[v], y[v] = Dl[v] * uv[v];
                for (int64_t k = 0; k < n; k++) {
                    const T bk = Bt[k], ck = Ct[k];
                    T* hk = &h[k * V];
                    const T* Ak = &Al[k * V];
#pragma omp simd
                    for (int v = 0; v < V; v++) {
                        const T hv = exp_vec(dtv[v] * Ak[v]) * hk[v] + du[v] * bk;
                        hk[v] = hv;
                        y[v] += hv * ck;
                    }
                }
                if (z)
                    for (int v = 0; v < V; v++) y[v] *= gate[tt * V + v];
                for (int v = 0; v < V; v++) yb[tt * V + v] = y[v];
            }
            scatter<T, V>(yb.data(), l, nv, s, kk, out + bd0 * l);
        }
        if (last)
            for (int64_t v = 0; v < nv; v++)
                for (int64_t k = 0; k < n; k++) last[(bd0 + v) * n + k] = h[k * V + v];
    }
}

template <typename T>
static void bwd(const T* u, const T* delta, const T* A, const T* B, const T* C, const T* D, const T* z,
                const T* dbias, const Strides* st, int softplus_on, int64_t b, int64_t d, int64_t l, int64_t n, int64_t g,
                int64_t K, const T* ckpt, const T* dout, const T* dlast, T* du, T* ddelta, T* dA_part,
                T* dB_part, T* dC_part, T* dD_part, T* ddbias_part, T* dz, T* dh0, int64_t nblk, int nthreads) {
    constexpr int V = Lanes<T>::V;
    const int64_t e = d / g, nck = (l + K - 1) / K, ncb = (e + V - 1) / V, per = (ncb + nblk - 1) / nblk;
#pragma omp parallel for schedule(dynamic) num_threads(nthreads)
    for (int64_t task = 0; task < b * g * nblk; task++) {
        const int64_t bi = task / (g * nblk), gi = (task / nblk) % g, blk = task % nblk;
        const int64_t cb0 = blk * per, cb1 = std::min(ncb, (blk + 1) * per), ncbt = std::max<int64_t>(cb1 - cb0, 0);
        const T* Bp = B + bi * st->B[0] + gi * st->B[1];  // row t at Bp + t * st->B[2]
        const T* Cp = C + bi * st->C[0] + gi * st->C[1];
        T* dBp = dB_part + task * l * n;
        T* dCp = dC_part + task * l * n;
        // carries per channel block between time blocks: dL/dh, and the sums for dA, D, delta_bias
        std::vector<T> dh(ncbt * n * V), dA(ncbt * n * V, T(0)), dD(ncbt * V, T(0)), dbs(ncbt * V, T(0));
        std::vector<T> hist((K + 1) * n * V), a(K * n * V), dBv(K * n * V), dCv(K * n * V), Al(n * V);
        std::vector<T> raw(K * V), dt(K * V), dsp(K * V), ub(K * V), zb(K * V), sg(K * V), gb(K * V);
        std::vector<T> o_du(K * V), o_dd(K * V), o_dz(K * V);
        for (int64_t c = 0; c < ncbt; c++) {
            const int64_t c0 = gi * e + (cb0 + c) * V, nv = std::min<int64_t>(V, gi * e + e - c0);
            for (int64_t k = 0; k < n; k++)
                for (int v = 0; v < V; v++)
                    dh[(c * n + k) * V + v] = (dlast && v < nv) ? dlast[(bi * d + c0 + v) * n + k] : T(0);
        }
        for (int64_t j = nck - 1; j >= 0; j--) {
            const int64_t s = j * K, kk = std::min(K, l - s);
            std::fill(dBv.begin(), dBv.begin() + kk * n * V, T(0));
            std::fill(dCv.begin(), dCv.begin() + kk * n * V, T(0));
            for (int64_t c = 0; c < ncbt; c++) {
                const int64_t c0 = gi * e + (cb0 + c) * V, nv = std::min<int64_t>(V, gi * e + e - c0);
                const int64_t bd0 = bi * d + c0;
                T bias[V], Dl[V];
                for (int v = 0; v < V; v++) {
                    bias[v] = (dbias && v < nv) ? dbias[c0 + v] : T(0);
                    Dl[v] = (D && v < nv) ? D[c0 + v] : T(0);
                }
                for (int64_t k = 0; k < n; k++)
                    for (int v = 0; v < V; v++) Al[k * V + v] = v < nv ? A[(c0 + v) * n + k] : T(0);
                // the block's per-step scalars
                gather<T, V>(AT(delta, bi, c0), st->delta[1], st->delta[2], nv, s, kk, raw.data());
                for (int64_t tt = 0; tt < kk; tt++)
                    for (int v = 0; v < V; v++) raw[tt * V + v] += bias[v];
                if (softplus_on) {
                    softplus_row(raw.data(), T(0), dt.data(), dsp.data(), kk * V);
                } else {
                    std::copy(raw.begin(), raw.begin() + kk * V, dt.begin());
                    std::fill(dsp.begin(), dsp.begin() + kk * V, T(1));
                }
                gather<T, V>(AT(u, bi, c0), st->u[1], st->u[2], nv, s, kk, ub.data());
                gather<T, V>(AT(dout, bi, c0), st->dout[1], st->dout[2], nv, s, kk, gb.data());
                if (z) {
                    gather<T, V>(AT(z, bi, c0), st->z[1], st->z[2], nv, s, kk, zb.data());
#pragma omp simd
                    for (int64_t i = 0; i < kk * V; i++) sg[i] = sigmoid(zb[i]);
                }
                // recompute the block's states h_{s-1} .. h_{s+kk-1} and decays a
                for (int64_t k = 0; k < n; k++)
                    for (int v = 0; v < V; v++) hist[k * V + v] = v < nv ? ckpt[((bd0 + v) * nck + j) * n + k] : T(0);
                for (int64_t tt = 0; tt < kk; tt++) {
                    const T* Bt = Bp + (s + tt) * st->B[2];
                    const T* dtv = &dt[tt * V];
                    T duv[V];
                    for (int v = 0; v < V; v++) duv[v] = dtv[v] * ub[tt * V + v];
                    for (int64_t k = 0; k < n; k++) {
                        const T bk = Bt[k];
                        const T* hp = &hist[(tt * n + k) * V];
                        T* hc = &hist[((tt + 1) * n + k) * V];
                        T* ak = &a[(tt * n + k) * V];
                        const T* Ak = &Al[k * V];
#pragma omp simd
                        for (int v = 0; v < V; v++) {
                            ak[v] = exp_vec(dtv[v] * Ak[v]);
                            hc[v] = ak[v] * hp[v] + duv[v] * bk;
                        }
                    }
                }
                // the reverse-time pass
                T* dhc = &dh[c * n * V];
                T* dAc = &dA[c * n * V];
                for (int64_t tt = kk - 1; tt >= 0; tt--) {
                    const T* Bt = Bp + (s + tt) * st->B[2];
                    const T* Ct = Cp + (s + tt) * st->C[2];
                    const T* dtv = &dt[tt * V];
                    const T* uv = &ub[tt * V];
                    T dy[V], ddu[V], ddt[V], dtu[V];
                    for (int v = 0; v < V; v++) dy[v] = gb[tt * V + v], ddu[v] = 0, ddt[v] = 0, dtu[v] = dtv[v] * uv[v];
                    if (z) {  // out = y * silu(z): recompute y
                        T y[V];
                        for (int v = 0; v < V; v++) y[v] = Dl[v] * uv[v];
                        for (int64_t k = 0; k < n; k++) {
                            const T ck = Ct[k];
                            const T* hc = &hist[((tt + 1) * n + k) * V];
#pragma omp simd
                            for (int v = 0; v < V; v++) y[v] += hc[v] * ck;
                        }
                        for (int v = 0; v < V; v++) {
                            const T sgv = sg[tt * V + v], zv = zb[tt * V + v];
                            o_dz[tt * V + v] = dy[v] * y[v] * sgv * (T(1) + zv * (T(1) - sgv));
                            dy[v] *= zv * sgv;
                        }
                    }
                    for (int v = 0; v < V; v++) dD[c * V + v] += dy[v] * uv[v];
                    for (int64_t k = 0; k < n; k++) {
                        const T bk = Bt[k], ck = Ct[k];
                        const T* hp = &hist[(tt * n + k) * V];
                        const T* hc = &hist[((tt + 1) * n + k) * V];
                        const T* ak = &a[(tt * n + k) * V];
                        const T* Ak = &Al[k * V];
                        T* dhk = &dhc[k * V];
                        T* dAk = &dAc[k * V];
                        T* dBk = &dBv[(tt * n + k) * V];
                        T* dCk = &dCv[(tt * n + k) * V];
#pragma omp simd
                        for (int v = 0; v < V; v++) {
                            const T gh = dhk[v] + dy[v] * ck;  // dL/dh_t
                            dCk[v] += dy[v] * hc[v];
                            dBk[v] += gh * dtu[v];
                            ddu[v] += gh * bk;
                            const T gda = gh * hp[v] * ak[v];  // dL/d(dt A_k)
                            dAk[v] += gda * dtv[v];
                            ddt[v] += gda * Ak[v];
                            dhk[v] = gh * ak[v];  // dL/dh_{t-1} through the recurrence
                        }
                    }
                    for (int v = 0; v < V; v++) {
                        const T dd = (ddt[v] + ddu[v] * uv[v]) * dsp[tt * V + v];
                        o_du[tt * V + v] = dy[v] * Dl[v] + ddu[v] * dtv[v];
                        o_dd[tt * V + v] = dd;
                        dbs[c * V + v] += dd;
                    }
                }
                scatter<T, V>(o_du.data(), l, nv, s, kk, du + bd0 * l);
                scatter<T, V>(o_dd.data(), l, nv, s, kk, ddelta + bd0 * l);
                if (z) scatter<T, V>(o_dz.data(), l, nv, s, kk, dz + bd0 * l);
            }
            // dB, dC of the block: sum over the lanes (the block's channels were summed lane-wise)
            for (int64_t i = 0; i < kk * n; i++) {
                T sb = 0, sc = 0;
#pragma omp simd reduction(+ : sb, sc)
                for (int v = 0; v < V; v++) sb += dBv[i * V + v], sc += dCv[i * V + v];
                dBp[s * n + i] = sb;
                dCp[s * n + i] = sc;
            }
        }
        for (int64_t c = 0; c < ncbt; c++) {
            const int64_t c0 = gi * e + (cb0 + c) * V, nv = std::min<int64_t>(V, gi * e + e - c0);
            for (int64_t v = 0; v < nv; v++) {
                const int64_t bd = bi * d + c0 + v;
                for (int64_t k = 0; k < n; k++) {
                    dA_part[bd * n + k] = dA[(c * n + k) * V + v];
                    if (dh0) dh0[bd * n + k] = dh[(c * n + k) * V + v];
                }
                dD_part[bd] = dD[c * V + v];
                ddbias_part[bd] = dbs[c * V + v];
            }
        }
        if (ncbt == 0)  // an empty chunk still owns its dB, dC slices
            for (int64_t i = 0; i < l * n; i++) dBp[i] = dCp[i] = T(0);
    }
}

#define EXPORT(T, SUF)                                                                                            \
    extern "C" void ss_fwd_##SUF(const T* u, const T* delta, const T* A, const T* B, const T* C, const T* D,      \
                                 const T* z, const T* dbias, const T* h0, const Strides* st, int softplus_on,      \
                                 int64_t b, int64_t d,                                                            \
                                 int64_t l, int64_t n, int64_t g, int64_t K, T* out, T* last, T* ckpt,             \
                                 int nthreads) {                                                                  \
        fwd<T>(u, delta, A, B, C, D, z, dbias, h0, st, softplus_on, b, d, l, n, g, K, out, last, ckpt, nthreads);     \
    }                                                                                                             \
    extern "C" void ss_bwd_##SUF(const T* u, const T* delta, const T* A, const T* B, const T* C, const T* D,      \
                                 const T* z, const T* dbias, const Strides* st, int softplus_on, int64_t b,        \
                                 int64_t d, int64_t l,                                                            \
                                 int64_t n, int64_t g, int64_t K, const T* ckpt, const T* dout, const T* dlast,    \
                                 T* du, T* ddelta, T* dA_part, T* dB_part, T* dC_part, T* dD_part,                 \
                                 T* ddbias_part, T* dz, T* dh0, int64_t nblk, int nthreads) {                      \
        bwd<T>(u, delta, A, B, C, D, z, dbias, st, softplus_on, b, d, l, n, g, K, ckpt, dout, dlast, du, ddelta,       \
               dA_part, dB_part, dC_part, dD_part, ddbias_part, dz, dh0, nblk, nthreads);                          \
    }

EXPORT(float, f32)
EXPORT(double, f64)
