// Monte-Carlo capacity check with Philox4x32-10 unit states (see gat_hpc/cuda/adequacy.py).
//
// Unit u of sample s in hour h is on forced outage when word (u % 4) of
//     Philox4x32-10(counter = {u / 4, h, s mod 2^32, s / 2^32}, key = {seed mod 2^32, seed / 2^32})
// is below thr[u] (= floor(q_u * 2^32)). Capacities and loads arrive as integers (multiples of
// a quantum, 1 kW by default), so every sum is exact and the indices do not depend on the
// order of the additions: the GPU and the numpy twin give identical results.

typedef unsigned int u32;
typedef long long i64;

constexpr int CAP_THREADS = 256;
constexpr int UNIT_CHUNK = 2048;  // units staged in shared memory at a time (multiple of 4)

__device__ __forceinline__ void philox4x32_10(u32 c[4], u32 k0, u32 k1)
{
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        const u32 hi0 = __umulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        const u32 hi1 = __umulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        const u32 n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
        k0 += 0x9E3779B9u;  // key schedule (the bump after the last round is unused)
        k1 += 0xBB67AE85u;
    }
}

// Raw generator output for arbitrary counters: out[4 i .. 4 i + 3] = Philox(ctr[4 i .. 4 i + 3]).
extern "C" __global__ void philox_words(const u32* __restrict__ ctr, u32 k0, u32 k1, int n,
                                        u32* __restrict__ out)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u32 c[4] = {ctr[4 * i], ctr[4 * i + 1], ctr[4 * i + 2], ctr[4 * i + 3]};
    philox4x32_10(c, k0, k1);
    for (int j = 0; j < 4; ++j) out[4 * i + j] = c[j];
}

// One thread per (hour, sample): capacity on outage, shortfall; block sums per sample.
// thr/cap: n_units entries padded to a multiple of 4 (padding: thr 0, cap 0).
// load[h] is hour hour0 + h of the profile (the hour in the Philox counter), so a study cut
// into chunks of hours draws the states one run does.
// lole[s] += hours with available < load; eue_q[s] += sum of (load - available) over them;
// per hour, over this launch's samples: hour_lol[h] += loss-of-load samples, hour_eue_q[h] += shortfall.
extern "C" __global__ void __launch_bounds__(CAP_THREADS)
    capacity_check(const u32* __restrict__ thr, const i64* __restrict__ cap, int n_units,
                   i64 cap_total, const i64* __restrict__ load, int H, int hour0, i64 sample0, int n_samples,
                   u32 k0, u32 k1, int* __restrict__ lole, i64* __restrict__ eue_q,
                   unsigned long long* __restrict__ hour_lol, i64* __restrict__ hour_eue_q)
{
    __shared__ __align__(16) u32 s_thr[UNIT_CHUNK];
    __shared__ __align__(16) i64 s_cap[UNIT_CHUNK];
    __shared__ int s_cnt[CAP_THREADS / 32];
    __shared__ i64 s_sum[CAP_THREADS / 32];
    const int h = blockIdx.x * CAP_THREADS + threadIdx.x;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    unsigned long long my_lol = 0;  // this thread's hour, over its samples
    i64 my_short = 0;
    for (int si = blockIdx.y; si < n_samples; si += gridDim.y) {
        const unsigned long long s = (unsigned long long)(sample0 + si);
        const u32 c1 = (u32)(hour0 + h), c2 = (u32)s, c3 = (u32)(s >> 32);
        i64 out_cap = 0;
        for (int u0 = 0; u0 < n_units; u0 += UNIT_CHUNK) {
            const int nu = min(UNIT_CHUNK, n_units - u0);
            __syncthreads();
            for (int e = threadIdx.x; e < nu; e += CAP_THREADS) {
                s_thr[e] = thr[u0 + e];
                s_cap[e] = cap[u0 + e];
            }
            __syncthreads();
            for (int q = 0; q < nu / 4; ++q) {
                u32 c[4] = {(u32)(u0 / 4 + q), c1, c2, c3};
                philox4x32_10(c, k0, k1);
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (c[j] < s_thr[4 * q + j]) out_cap += s_cap[4 * q + j];
            }
        }
        const i64 short_q = (h < H) ? load[h] - (cap_total - out_cap) : 0;
        int lol = short_q > 0 ? 1 : 0;  // loss of load: available strictly below load
        i64 sum = short_q > 0 ? short_q : 0;
        my_lol += lol;
        my_short += sum;
#pragma unroll
        for (int off = 16; off > 0; off /= 2) {
            lol += __shfl_down_sync(0xffffffffu, lol, off);
            sum += __shfl_down_sync(0xffffffffu, sum, off);
        }
        if (lane == 0) {
            s_cnt[warp] = lol;
            s_sum[warp] = sum;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int tc = 0;
            i64 ts = 0;
            for (int w = 0; w < CAP_THREADS / 32; ++w) {
                tc += s_cnt[w];
                ts += s_sum[w];
            }
            if (tc) atomicAdd(lole + si, tc);
            if (ts) atomicAdd((unsigned long long*)(eue_q + si), (unsigned long long)ts);
        }
        __syncthreads();  // s_cnt/s_sum are read before the next sample overwrites them
    }
    // loss of load is rare: few threads hold a non-zero count, so few atomics
    if (h < H && my_lol) {
        atomicAdd(hour_lol + h, my_lol);
        atomicAdd((unsigned long long*)(hour_eue_q + h), (unsigned long long)my_short);
    }
}
