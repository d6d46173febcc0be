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
// branch inside it) and whether the hour has violations (one flag bit per hour).
// Seeding: before the first tile, each thread evaluates its loadings on a few probe branches
// (the host picks the most loaded ones of the call) and starts every hour's running maximum
// just below the largest of them. That value is reached by a real loading, so the true maximum
// is at least the seed and its tile is still evaluated and recorded, while the tiles that cannot
// beat it are skipped from the first tile on instead of after a warm-up in every split (on
// case_ACTIVSg10k this cuts the evaluated tile-hours from 12% to 2%). A split whose loadings all
// stay below the seed reports the seed with no tile; the merge never picks it over the split
// that holds the probe's loading.
// screen_merge: one thread per (hour, outage) merges the splits' partial results, finds the
// branch of the maximum by re-evaluating the TM loadings of the winning tile, and lists the
// pairs flagged with violations.
// screen_violations: one block per listed pair counts its violations and keeps the top N.
// (Counting inside screen_partial, as an earlier version did, left a few blocks with most of
// the list bookkeeping, in device memory, and the launch waited for them: 0.25 ms against
// 0.19 ms without it on an H100.)
// gather_top: copies the top lists of the (hour, outage) pairs that have violations.

constexpr int KB = 128;      // outages (threads) per block of screen_partial
constexpr int VBLOCK = 512;  // threads per block of screen_violations
constexpr int NMAX = 16;     // largest top list (screening.py's NMAX)
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
// Seeds are lowered by this factor (exact in float and double); seeds below SEED_MIN (where a
// product with the factor could round back to the seed) are dropped
constexpr double SEED_DOWN = 1.0 - 1.0 / (1 << 20);
constexpr double SEED_MIN = 1e-30;

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

template <typename T, int HB, int TM>
__device__ void screen_partial(const T* __restrict__ lodf_t, const T* __restrict__ bmax,
                               const T* __restrict__ fs_t, const T* __restrict__ amax,
                               const T* __restrict__ f_out, const int* __restrict__ probe,
                               int n_probe, int K, int KP, int tiles_per_split,
                               int n_tiles, T thr, T* __restrict__ p_max,
                               int* __restrict__ p_bt, int* __restrict__ p_flag)
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
    // tile (within the split) of each hour's running maximum, 0xffff = none yet; the host
    // keeps tiles_per_split below 0xffff
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
    }
    // seed the running maxima with the loadings of the probe branches (same arithmetic as the
    // hot loop, so the seed is a loading that the scan meets again), lowered by 2^-20 so that
    // the probe's own tile still counts as an improvement; fmax drops the outaged branch's NaN
    for (int p = 0; p < n_probe; ++p) {
        const int m = probe[p];
        const size_t tile = (size_t)(m / TM), i = (size_t)(m % TM);
        const T l = lodf_t[(tile * KP + k) * TM + i];
#pragma unroll
        for (int h = 0; h < HB; ++h) mx[h] = vmax(mx[h], vabs(vfma(l, fk[h], fs_t[(tile * HB + h) * TM + i])));
    }
#pragma unroll
    for (int h = 0; h < HB; ++h) mx[h] = mx[h] > T(SEED_MIN) ? mx[h] * T(SEED_DOWN) : T(0);

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

    unsigned viol = 0;  // bit h: some loading of hour h exceeds the threshold
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
#pragma unroll
        for (int h = 0; h < HB; ++h) {
            if (!(need & (1u << h))) continue;  // warp-uniform
            T tm = T(0);
#pragma unroll
            for (int i = 0; i < TM; ++i) tm = vmax(tm, vabs(vfma(l[i], fk[h], fs[h * TM + i])));
            if (tm > mx[h]) {  // a new running maximum: note its tile (the merge finds the row)
                mx[h] = tm;
                s_bt[h][tid] = (unsigned short)t;
            }
            if (tm > thr) viol |= 1u << h;
        }
    }
    cp_async_wait<0>();
    if (!live) return;
#pragma unroll
    for (int h = 0; h < HB; ++h) {
        const size_t o = ((size_t)s * HB + h) * K + k;
        const unsigned r = s_bt[h][tid];
        p_max[o] = mx[h];
        p_bt[o] = r == 0xffff ? -1 : (t_begin + (int)r) * TM;
        p_flag[o] = (viol >> h) & 1u;
    }
}

// The TM values of one tile row (128 bytes, 128-byte aligned) in 16-byte loads
template <typename T, int TM>
__device__ __forceinline__ void load_row(const T* __restrict__ p, T (&out)[TM])
{
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
        if constexpr (sizeof(T) == 4) {
            const float4 v = reinterpret_cast<const float4*>(p)[c];
            out[4 * c] = v.x; out[4 * c + 1] = v.y; out[4 * c + 2] = v.z; out[4 * c + 3] = v.w;
        } else {
            const double2 v = reinterpret_cast<const double2*>(p)[c];
            out[2 * c] = v.x; out[2 * c + 1] = v.y;
        }
    }
}

// One thread per (hour h < H, outage k): merge the S splits (in branch order, so that the first
// maximum is kept) into the outputs, whose row h is row h0 + h of the caller's H_total x K
// arrays; find the first branch at the maximum by re-evaluating the TM loadings of the winning
// tile; and list the pairs with violations (count 1 for now) for screen_violations.
template <typename T, int HB, int TM>
__device__ void screen_merge(const T* __restrict__ p_max, const int* __restrict__ p_bt,
                             const int* __restrict__ p_flag, const T* __restrict__ lodf_t,
                             const T* __restrict__ fs_t, const T* __restrict__ f_out, int S,
                             int H, int K, int KP, int h0, T* __restrict__ out_max,
                             int* __restrict__ out_arg, int* __restrict__ out_cnt,
                             int* __restrict__ n_listed, int* __restrict__ listed)
{
    constexpr int BATCH = 8;  // splits whose results are loaded together
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)H * K) return;
    const int h = (int)(idx / K);
    const int k = (int)(idx % K);
    const size_t out = (size_t)(h0 + h) * K + k;
    const size_t plane = (size_t)HB * K;  // distance between splits
    const size_t o0 = (size_t)h * K + k;
    T best = T(0);
    int best_s = -1, flag = 0;
    for (int s0 = 0; s0 < S; s0 += BATCH) {
        T v[BATCH];
        int f[BATCH];
#pragma unroll
        for (int j = 0; j < BATCH; ++j) {
            const bool in = s0 + j < S;
            v[j] = in ? p_max[o0 + (s0 + j) * plane] : T(0);
            f[j] = in ? p_flag[o0 + (s0 + j) * plane] : 0;
        }
#pragma unroll
        for (int j = 0; j < BATCH; ++j) {
            if (v[j] > best) {
                best = v[j];
                best_s = s0 + j;
            }
            flag |= f[j];
        }
    }
    // the winning split holds a loading above every seed, so it has noted its tile; the first
    // row of that tile at the maximum, with the hot loop's arithmetic, is the branch
    int arg = -1;
    const int tile_m0 = best_s >= 0 ? p_bt[o0 + best_s * plane] : -1;
    if (tile_m0 >= 0) {
        const size_t tile = tile_m0 / TM;
        T col[TM], fsh[TM];
        load_row<T, TM>(lodf_t + (tile * KP + k) * TM, col);
        load_row<T, TM>(fs_t + (tile * HB + h) * TM, fsh);
        const T fkh = f_out[(size_t)h * KP + k];
#pragma unroll
        for (int i = TM - 1; i >= 0; --i)
            if (vabs(vfma(col[i], fkh, fsh[i])) == best) arg = tile_m0 + i;
    }
    out_max[out] = best;
    out_arg[out] = arg;
    out_cnt[out] = flag;
    if (flag) listed[atomicAdd(n_listed, 1)] = (int)o0;
}

// One block per listed (hour, outage) pair (grid-stride over the list): the exact violation
// count and top list, from one pass over the pair's LODF column with the hot loop's
// arithmetic. Violations are rare (tens of pairs in 24 x 8,729 on case_ACTIVSg10k), so this
// keeps the list bookkeeping out of the streaming kernel, where a few blocks doing it held
// up the whole launch. Each warp takes a consecutive range of branches (32 per step) and keeps
// its own top list in shared memory, offering violations in branch order; the lists are then
// merged in warp order, which keeps the (loading desc, branch asc) order.
template <typename T, int HB, int TM>
__device__ void screen_violations(const T* __restrict__ lodf_t, const T* __restrict__ fs_t,
                                  const T* __restrict__ f_out, const int* __restrict__ n_listed,
                                  const int* __restrict__ listed, int K, int KP, int n_tiles,
                                  T thr, int top_n, int h0, int* __restrict__ out_cnt,
                                  int* __restrict__ out_top_id, T* __restrict__ out_top_ld)
{
    constexpr int WARPS = VBLOCK / 32;
    constexpr int PER = 32 / TM;  // tiles per warp step: 1 (float) or 2 (double)
    constexpr int UNROLL = 4;     // warp steps whose loads go out together
    __shared__ int s_id[WARPS][NMAX];
    __shared__ T s_ld[WARPS][NMAX];
    __shared__ int s_len[WARPS], s_cnt[WARPS];
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    const int n = *n_listed;
    const int steps = (n_tiles + PER - 1) / PER;
    const int per_warp = (steps + WARPS - 1) / WARPS;
    const int st0 = w * per_warp, st1 = min(steps, st0 + per_warp);
    for (int e = blockIdx.x; e < n; e += gridDim.x) {
        const int pair = listed[e];
        const int h = pair / K, k = pair % K;
        const T fkh = f_out[(size_t)h * KP + k];
        int len = 0, c = 0;
        for (int st = st0; st < st1; st += UNROLL) {
            T ld[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                const int t = (st + u) * PER + lane / TM, i = lane % TM;
                ld[u] = T(0);
                if (st + u < st1 && t < n_tiles)
                    ld[u] = vabs(vfma(lodf_t[((size_t)t * KP + k) * TM + i], fkh,
                                      fs_t[((size_t)t * HB + h) * TM + i]));
            }
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                unsigned bits = __ballot_sync(0xffffffffu, ld[u] > thr);
                c += __popc(bits);
                while (bits) {  // lane order = branch order: lane j holds branch (st + u) 32 + j
                    const int j = __ffs(bits) - 1;
                    bits &= bits - 1;
                    const T v = __shfl_sync(0xffffffffu, ld[u], j);
                    if (lane == 0) len = insert_top(s_id[w], s_ld[w], len, top_n, v, (st + u) * 32 + j);
                    len = __shfl_sync(0xffffffffu, len, 0);
                }
            }
        }
        if (lane == 0) {
            s_len[w] = len;
            s_cnt[w] = c;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int total = s_cnt[0], kept = s_len[0];
            for (int v = 1; v < WARPS; ++v) {
                total += s_cnt[v];
                for (int r = 0; r < s_len[v]; ++r)
                    kept = insert_top(s_id[0], s_ld[0], kept, top_n, s_ld[v][r], s_id[v][r]);
            }
            const size_t out = (size_t)(h0 + h) * K + k;
            out_cnt[out] = total;
            for (int r = 0; r < top_n; ++r) {
                out_top_id[out * top_n + r] = r < kept ? s_id[0][r] : -1;
                out_top_ld[out * top_n + r] = r < kept ? s_ld[0][r] : T(0);
            }
        }
        __syncthreads();
    }
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
        const T* lodf_t, const T* bmax, const T* fs_t, const T* amax, const T* f_out,            \
        const int* probe, int n_probe, int K, int KP, int tiles_per_split, int n_tiles, T thr,   \
        T* p_max, int* p_bt, int* p_flag)                                                        \
    {                                                                                            \
        screen_partial<T, HB, TM>(lodf_t, bmax, fs_t, amax, f_out, probe, n_probe, K, KP,       \
                                  tiles_per_split, n_tiles, thr, p_max, p_bt, p_flag);           \
    }                                                                                            \
    extern "C" __global__ void screen_merge_##SUF##_h##HB(                                       \
        const T* p_max, const int* p_bt, const int* p_flag, const T* lodf_t, const T* fs_t,      \
        const T* f_out, int S, int H, int K, int KP, int h0, T* out_max, int* out_arg,           \
        int* out_cnt, int* n_listed, int* listed)                                                \
    {                                                                                            \
        screen_merge<T, HB, TM>(p_max, p_bt, p_flag, lodf_t, fs_t, f_out, S, H, K, KP, h0,      \
                                out_max, out_arg, out_cnt, n_listed, listed);                    \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(VBLOCK) screen_violations_##SUF##_h##HB(        \
        const T* lodf_t, const T* fs_t, const T* f_out, const int* n_listed, const int* listed,  \
        int K, int KP, int n_tiles, T thr, int top_n, int h0, int* out_cnt, int* out_top_id,     \
        T* out_top_ld)                                                                           \
    {                                                                                            \
        screen_violations<T, HB, TM>(lodf_t, fs_t, f_out, n_listed, listed, K, KP, n_tiles, thr, \
                                     top_n, h0, out_cnt, out_top_id, out_top_ld);                \
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
