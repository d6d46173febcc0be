// LODF contingency screening: per (hour, outage) reductions of post-outage branch loadings.
//
// Inputs are prepared by gat_hpc/cuda/screening.py (see its docstring for the mathematics).
// Monitored branches come in tiles of TM rows (t = tile, i = row in tile, m = t TM + i):
//   lodf_t[(t * KP + k) * TM + i] = LODF[m, k] / rating[m]   (tile-major: the TM values of one
//       column in one tile are contiguous; 0 on unrated and padding rows and columns k >= K;
//       NaN at m = out_idx[k])
//   bmax[t * KP + k]      = max_i |lodf_t[t, k, i]|             (NaN ignored; built once)
//   fs_t[(t * HB + h) * TM + i] = f[h, m] / rating[m]           (scaled pre-outage flows)
//   amax[t * HB + h]      = max_i |fs_t[t, h, i]|
//   f_out[h * KP + k]     = f[h, out_idx[k]]                    (unscaled outaged-branch flow)
// so that loading[h, k, m] = |fma(lodf_t[t, k, i], f_out[h, k], fs_t[t, h, i])|. M and K are
// padded to multiples of TM and KB (MP, KP). The NaN on the outaged branch drops out of every
// reduction for free: fmax ignores a NaN operand and every comparison with NaN is false.
//
// screen_partial: one thread per outage k, all HB hours of the launch in registers; the block's
// KB threads walk the row tiles of their split. Each tile's LODF slab (KB columns x TM rows,
// contiguous in tile-major order) and flows are copied to shared memory with cp.async one tile
// ahead, so device memory streams while the SM computes; each LODF element is read from
// device memory once per launch.
// Exact pruning: every loading of a tile is at most U = amax[t, h] + bmax[t, k] |f_out[h, k]|.
// When U (rounded up) is no larger than both the hour's running maximum and the threshold,
// the tile can change neither the maximum, nor its branch (the first maximum is kept), nor the
// violations, so the hour is skipped; the test is voted per warp so that the 32 lanes stay
// together. Otherwise the hour costs one FMA and one max per loading; the tile maximum says
// whether the tile holds a new running maximum (its tile is remembered; the merge finds the
// branch inside it) and whether it holds violations (then, rarely, the tile is re-scanned to
// count them and keep the top N).
// screen_merge: one thread per (hour, outage) merges the splits' partial results and finds the
// branch of the maximum by re-evaluating the TM loadings of the winning tile.
// gather_top: copies the top lists of the (hour, outage) pairs that have violations.

constexpr int KB = 128;  // outages (threads) per block
// TM, the monitored branches per tile, is a template parameter: 32 for float, 16 for double;
// either way a tile row of one column is 128 bytes = 8 chunks of 16 bytes
constexpr int CHUNKS = 8;

__device__ __forceinline__ float vfma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double vfma(double a, double b, double c) { return fma(a, b, c); }
__device__ __forceinline__ float vmax(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double vmax(double a, double b) { return fmax(a, b); }
__device__ __forceinline__ float vmin(float a, float b) { return fminf(a, b); }
__device__ __forceinline__ double vmin(double a, double b) { return fmin(a, b); }
__device__ __forceinline__ float vabs(float a) { return fabsf(a); }
__device__ __forceinline__ double vabs(double a) { return fabs(a); }

// U rounded up: a computed loading is at most (amax + bmax |fk|)(1 + u), the computed bound at
// least that sum times (1 - u)^2, so a factor 1 + 2^-21 (>= 1 + 8u for float and double) covers it
constexpr double BOUND_UP = 1.0 + 1.0 / (1 << 21);

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// The LODF slab in shared memory: row kk (one outage) holds TM values in 8 chunks of 16 bytes,
// chunk c stored at position c ^ (kk % 8) so that eight lanes reading the same chunk of eight
// consecutive rows hit distinct banks (no padding needed).
__device__ __forceinline__ int swz(int kk, int c) { return c ^ (kk & (CHUNKS - 1)); }

// Insert (ld, m) into a list sorted by loading descending, ties by arrival (= branch index
// ascending, since candidates arrive in increasing m); keeps at most top_n. Returns the new length.
template <typename T>
__device__ int insert_top(int* ids, T* lds, int len, int top_n, T ld, int m)
{
    if (top_n <= 0) return 0;
    if (len == top_n && !(ld > lds[len - 1])) return len;
    int pos = len < top_n ? len : top_n - 1;
    while (pos > 0 && lds[pos - 1] < ld) {
        lds[pos] = lds[pos - 1];
        ids[pos] = ids[pos - 1];
        --pos;
    }
    lds[pos] = ld;
    ids[pos] = m;
    return len < top_n ? len + 1 : len;
}

// Count the violations (loading > thr) in one tile held in shared memory, for every hour h
// whose bit is set in `hours`, and offer each to that hour's top list. Counts and lists live
// in device memory (this thread's own entries, stride `plane` between hours): touched only here.
template <typename T, int TM>
__device__ __noinline__ void rescan_tile(unsigned long long hours, const T* row, int kk,
                                         const T* fs, const T* f_out_k, size_t f_stride, int m0,
                                         T thr, int* cnt, int* top_id, T* top_ld, size_t plane,
                                         int top_n)
{
    constexpr int VEC = TM / CHUNKS;
    while (hours) {
        const int h = __ffsll(hours) - 1;
        hours &= hours - 1;
        const T fkh = f_out_k[h * f_stride];
        int c = cnt[h * plane];
        for (int i = 0; i < TM; ++i) {
            const T l = row[swz(kk, i / VEC) * VEC + i % VEC];
            const T ld = vabs(vfma(l, fkh, fs[h * TM + i]));
            if (ld > thr) {
                insert_top(top_id + h * plane * top_n, top_ld + h * plane * top_n,
                           c < top_n ? c : top_n, top_n, ld, m0 + i);
                ++c;
            }
        }
        cnt[h * plane] = c;
    }
}

template <typename T, int HB, int TM>
__device__ void screen_partial(const T* __restrict__ lodf_t, const T* __restrict__ bmax,
                               const T* __restrict__ fs_t, const T* __restrict__ amax,
                               const T* __restrict__ f_out, int K, int KP, int tiles_per_split,
                               int n_tiles, T thr, int top_n, T* __restrict__ p_max,
                               int* __restrict__ p_bt, int* __restrict__ p_cnt,
                               int* __restrict__ p_top_id, T* __restrict__ p_top_ld)
{
    constexpr int STAGES = 2;
    constexpr int VEC = TM / CHUNKS;  // elements per 16-byte chunk
    constexpr int L_CHUNKS = KB * CHUNKS;
    constexpr int F_CHUNKS = TM * HB / VEC;
    constexpr int A_CHUNKS = HB / VEC;
    constexpr int B_CHUNKS = KB / VEC;
    static_assert(TM * sizeof(T) == 16 * CHUNKS, "a tile row is 8 chunks");
    static_assert(HB % VEC == 0 && F_CHUNKS <= 2 * KB && B_CHUNKS <= KB, "copy layout");
    __shared__ __align__(16) T Ls[STAGES][KB * TM];
    __shared__ __align__(16) T Fs[STAGES][HB * TM];
    __shared__ __align__(16) T As[STAGES][HB];
    __shared__ __align__(16) T Bs[STAGES][KB];
    // tile (within the split) of each hour's running maximum, 0xffff = none yet
    __shared__ unsigned short s_bt[HB][KB];

    const int tid = threadIdx.x;
    const int k = blockIdx.x * KB + tid;
    const int s = blockIdx.y;
    const int t_begin = s * tiles_per_split;
    const int n_t = min(n_tiles, t_begin + tiles_per_split) - t_begin;
    const bool live = k < K;

    T fk[HB], mx[HB];
#pragma unroll
    for (int h = 0; h < HB; ++h) {
        fk[h] = f_out[(size_t)h * KP + k];
        mx[h] = T(0);
        s_bt[h][tid] = 0xffff;
        if (live) p_cnt[((size_t)s * HB + h) * K + k] = 0;  // counts change only in rescan_tile
    }

    const T* l_src = lodf_t + ((size_t)t_begin * KP + (size_t)blockIdx.x * KB) * TM;
    auto load_tile = [&](int t, int st) {
        const size_t tile = (size_t)t_begin + t;
        const T* src = l_src + (size_t)t * KP * TM;
#pragma unroll
        for (int j = 0; j < L_CHUNKS / KB; ++j) {
            const int c = tid + j * KB;
            const int kk = c / CHUNKS, part = c % CHUNKS;
            cp_async16(&Ls[st][kk * TM + swz(kk, part) * VEC], src + (size_t)c * VEC);
        }
        const T* fsrc = fs_t + tile * HB * TM;
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            const int c = tid + j * KB;
            if (c < F_CHUNKS) cp_async16(&Fs[st][c * VEC], fsrc + (size_t)c * VEC);
        }
        if (tid < A_CHUNKS) cp_async16(&As[st][tid * VEC], amax + tile * HB + tid * VEC);
        if (tid < B_CHUNKS)
            cp_async16(&Bs[st][tid * VEC], bmax + tile * KP + (size_t)blockIdx.x * KB + tid * VEC);
    };

    load_tile(0, 0);
    cp_async_commit();
    for (int t = 0; t < n_t; ++t) {
        cp_async_wait<0>();
        __syncthreads();  // tile t is in shared memory; the other stage is free again
        if (t + 1 < n_t) load_tile(t + 1, (t + 1) % STAGES);
        cp_async_commit();

        const int st = t % STAGES;
        const T* row = &Ls[st][tid * TM];
        const T* fs = Fs[st];
        // which hours can this tile matter for? one vote per hour keeps the warp together
        const T bk = Bs[st][tid];
        unsigned need = 0;
#pragma unroll
        for (int h = 0; h < HB; ++h) {
            const T u = vfma(bk, vabs(fk[h]), As[st][h]) * T(BOUND_UP);
            need |= (__ballot_sync(0xffffffffu, u > vmin(mx[h], thr)) ? 1u : 0u) << h;
        }
        if (!need) continue;  // warp-uniform
        T l[TM];
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) {
            const T* p = row + swz(tid, c) * VEC;
            if constexpr (sizeof(T) == 4) {
                const float4 v = *reinterpret_cast<const float4*>(p);
                l[4 * c] = v.x; l[4 * c + 1] = v.y; l[4 * c + 2] = v.z; l[4 * c + 3] = v.w;
            } else {
                const double2 v = *reinterpret_cast<const double2*>(p);
                l[2 * c] = v.x; l[2 * c + 1] = v.y;
            }
        }
        unsigned long long viol = 0;
#pragma unroll
        for (int h = 0; h < HB; ++h) {
            if (!(need & (1u << h))) continue;  // warp-uniform
            T tm = T(0);
#pragma unroll
            for (int i = 0; i < TM; ++i) tm = vmax(tm, vabs(vfma(l[i], fk[h], fs[h * TM + i])));
            if (tm > mx[h]) {
                mx[h] = tm;
                s_bt[h][tid] = (unsigned short)t;
            }
            if (tm > thr) viol |= 1ull << h;
        }
        if (viol && live) {  // rare: some hour of this tile has violations
            const size_t o = (size_t)s * HB * K + k;
            rescan_tile<T, TM>(viol, row, tid, fs, f_out + k, KP, (t_begin + t) * TM, thr,
                               p_cnt + o, p_top_id + o * top_n, p_top_ld + o * top_n, (size_t)K,
                               top_n);
        }
    }
    cp_async_wait<0>();
    if (!live) return;
#pragma unroll
    for (int h = 0; h < HB; ++h) {
        const size_t o = ((size_t)s * HB + h) * K + k;
        const unsigned t = s_bt[h][tid];
        p_max[o] = mx[h];
        p_bt[o] = t == 0xffff ? -1 : (t_begin + (int)t) * TM;
    }
}

// One thread per (hour h < H, outage k): merge the S splits (in branch order, so the first
// maximum and the (loading desc, branch asc) order of the top list are kept) into the outputs,
// whose row h is row h0 + h of the caller's H_total x K arrays; then re-evaluate the winning
// tile's TM loadings with the hot loop's arithmetic to name the first branch at the maximum.
template <typename T, int HB, int TM>
__device__ void screen_merge(const T* __restrict__ p_max, const int* __restrict__ p_bt,
                             const int* __restrict__ p_cnt, const int* __restrict__ p_top_id,
                             const T* __restrict__ p_top_ld, const T* __restrict__ lodf_t,
                             const T* __restrict__ fs_t, const T* __restrict__ f_out, int S,
                             int H, int K, int KP, int top_n, int h0, T* __restrict__ out_max,
                             int* __restrict__ out_arg, int* __restrict__ out_cnt,
                             int* __restrict__ out_top_id, T* __restrict__ out_top_ld)
{
    constexpr int BATCH = 8;  // splits whose results are loaded together
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)H * K) return;
    const int h = (int)(idx / K);
    const int k = (int)(idx % K);
    const size_t out = (size_t)(h0 + h) * K + k;
    const size_t plane = (size_t)HB * K;  // distance between splits
    const size_t o0 = (size_t)h * K + k;
    int* ids = out_top_id + out * top_n;
    T* lds = out_top_ld + out * top_n;
    T best = T(0);
    int best_s = -1, total = 0, kept = 0;
    for (int s0 = 0; s0 < S; s0 += BATCH) {
        T v[BATCH];
        int c[BATCH];
#pragma unroll
        for (int j = 0; j < BATCH; ++j) {
            const bool in = s0 + j < S;
            v[j] = in ? p_max[o0 + (s0 + j) * plane] : T(0);
            c[j] = in ? p_cnt[o0 + (s0 + j) * plane] : 0;
        }
#pragma unroll
        for (int j = 0; j < BATCH; ++j) {
            if (v[j] > best) {
                best = v[j];
                best_s = s0 + j;
            }
            total += c[j];
            if (c[j] > 0) {  // rare: this split has violations; merge its top list
                const size_t o = o0 + (s0 + j) * plane;
                const int n = c[j] < top_n ? c[j] : top_n;
                for (int r = 0; r < n; ++r)
                    kept = insert_top(ids, lds, kept, top_n, p_top_ld[o * top_n + r],
                                      p_top_id[o * top_n + r]);
            }
        }
    }
    for (int j = kept; j < top_n; ++j) {
        ids[j] = -1;
        lds[j] = T(0);
    }
    int arg = -1;
    if (best_s >= 0) {
        const int tile_m0 = p_bt[o0 + best_s * plane];
        const size_t tile = tile_m0 / TM;
        const T* col = lodf_t + (tile * KP + k) * TM;
        const T* fsh = fs_t + (tile * HB + h) * TM;
        const T fkh = f_out[(size_t)h * KP + k];
        // no early exit: the TM loads are independent and go out together
#pragma unroll
        for (int i = TM - 1; i >= 0; --i) {
            const T ld = vabs(vfma(col[i], fkh, fsh[i]));
            if (ld == best) arg = tile_m0 + i;
        }
    }
    out_max[out] = best;
    out_arg[out] = arg;
    out_cnt[out] = total;
}

// dst rows j = top lists of pair pairs[j] (pair = h * K + k): the compact download.
template <typename T>
__device__ void gather_top(const int* __restrict__ top_id, const T* __restrict__ top_ld,
                           const int* __restrict__ pairs, int n, int top_n,
                           int* __restrict__ dst_id, T* __restrict__ dst_ld)
{
    const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (size_t)n * top_n) return;
    const size_t j = e / top_n, r = e % top_n;
    const size_t src = (size_t)pairs[j] * top_n + r;
    dst_id[e] = top_id[src];
    dst_ld[e] = top_ld[src];
}

#define SCREEN_KERNELS(T, SUF, HB, TM, MINB)                                                     \
    extern "C" __global__ void __launch_bounds__(KB, MINB) screen_partial_##SUF##_h##HB(         \
        const T* lodf_t, const T* bmax, const T* fs_t, const T* amax, const T* f_out, int K,     \
        int KP, int tiles_per_split, int n_tiles, T thr, int top_n, T* p_max, int* p_bt,         \
        int* p_cnt, int* p_top_id, T* p_top_ld)                                                  \
    {                                                                                            \
        screen_partial<T, HB, TM>(lodf_t, bmax, fs_t, amax, f_out, K, KP, tiles_per_split,      \
                                  n_tiles, thr, top_n, p_max, p_bt, p_cnt, p_top_id, p_top_ld);  \
    }                                                                                            \
    extern "C" __global__ void screen_merge_##SUF##_h##HB(                                       \
        const T* p_max, const int* p_bt, const int* p_cnt, const int* p_top_id,                  \
        const T* p_top_ld, const T* lodf_t, const T* fs_t, const T* f_out, int S, int H, int K,  \
        int KP, int top_n, int h0, T* out_max, int* out_arg, int* out_cnt, int* out_top_id,      \
        T* out_top_ld)                                                                           \
    {                                                                                            \
        screen_merge<T, HB, TM>(p_max, p_bt, p_cnt, p_top_id, p_top_ld, lodf_t, fs_t, f_out, S, \
                                H, K, KP, top_n, h0, out_max, out_arg, out_cnt, out_top_id,      \
                                out_top_ld);                                                     \
    }

// hours per launch, tile rows, blocks per SM (a register cap with no spills); shared memory per
// block stays within the 48 KB of static allocation (float, 24 hours: 2 x 19.6 KB + 6 KB)
SCREEN_KERNELS(float, f32, 8, 32, 4)
SCREEN_KERNELS(float, f32, 16, 32, 4)
SCREEN_KERNELS(float, f32, 24, 32, 4)
SCREEN_KERNELS(double, f64, 8, 16, 4)
SCREEN_KERNELS(double, f64, 16, 16, 3)

extern "C" __global__ void gather_top_f32(const int* top_id, const float* top_ld, const int* pairs,
                                          int n, int top_n, int* dst_id, float* dst_ld)
{
    gather_top<float>(top_id, top_ld, pairs, n, top_n, dst_id, dst_ld);
}

extern "C" __global__ void gather_top_f64(const int* top_id, const double* top_ld,
                                          const int* pairs, int n, int top_n, int* dst_id,
                                          double* dst_ld)
{
    gather_top<double>(top_id, top_ld, pairs, n, top_n, dst_id, dst_ld);
}
